/**
 * The replay queue under faults, with worker processes (`lfusion worker`) and a real Redis (skipped with a message
 * when redis-server is not installed): three workers drain thirty recordings; a worker killed with SIGKILL mid-job
 * has its job taken over and the report written once; Redis killed and restarted mid-run loses no job.
 * In the fault suite (`npm run test:faults`) because it starts several worker processes and takes a minute or two.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../src/sdk/cli.js';
import { reportDirName, type ReplayJobProgress } from '../../src/sdk/queue/jobs.js';
import { makeRecording, testQueue, untilCounts, WorkerProcess } from '../helpers/queue.js';
import { redisServerPresent, startRedis, type TestRedis } from '../helpers/redis-server.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';

const FAST = ['--m', '1', '--n', '1', '--k', '1', '--model', SHIPPED_PACKAGE];
const available = redisServerPresent('queue fault tests with a real Redis') && shippedPackagePresent('queue fault tests (jobs run replay --report)');
const figure = (what: string, value: string) => console.log(`  fault figure: ${what}: ${value}`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: TestRedis;
let dir: string;
let queues = 0;
const workers: WorkerProcess[] = [];
/** A worker process of this test's Redis, stopped after each test. */
const startWorker = (queue: string, extra: string[] = []) => {
  const worker = new WorkerProcess(redis.url, queue, extra);
  workers.push(worker);
  return worker;
};

test.before(async () => {
  if (!available) return;
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'lfusion-queue-faults-'));
});
test.after.each(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.stop()));
});
test.after(async () => {
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function enqueue(queue: string, root: string, recordings: string[]): Promise<void> {
  assert.is(await main(['queue', 'add', ...recordings, '--redis', redis.url, '--queue', queue, '--report-root', root, ...FAST]), 0);
}

/** Every job completed exactly once across the workers' logs, and its folder is there with its marker. */
function assertWrittenOnce(root: string, all: WorkerProcess[], expected: number): void {
  const completions = all.flatMap((worker) => worker.completed());
  assert.is(completions.length, expected, `completions: ${completions.join(', ')}\n${all.join('\n---\n')}`);
  assert.is(new Set(completions).size, expected, 'no job written twice');
  const folders = readdirSync(root).filter((entry) => !entry.startsWith('.') && entry !== 'index.html');
  assert.is(folders.length, expected);
  for (const folder of folders) JSON.parse(readFileSync(join(root, folder, 'completed.json'), 'utf8'));
  assert.equal(readdirSync(join(root, '.staging')), [], 'no staging folder left');
}

if (available) {
  test('three workers drain thirty recordings; each written once, every worker took jobs', async () => {
    const queue = `drain-${++queues}`;
    const root = join(dir, queue);
    const recordings = Array.from({ length: 30 }, (_, i) => makeRecording(join(dir, `drain-${String(i).padStart(2, '0')}.mp4`), 10 * i));
    await enqueue(queue, root, recordings);
    const client = testQueue(redis.url, queue);
    try {
      const started = Date.now();
      const pool = [startWorker(queue), startWorker(queue), startWorker(queue)];
      await untilCounts(client, (c) => c.completed === 30, 300_000);
      const seconds = (Date.now() - started) / 1000;
      figure('30 one-frame recordings, 3 workers (worker start-up included)', `${seconds.toFixed(1)} s, ${pool.map((w) => w.completed().length).join(' + ')} jobs`);
      assertWrittenOnce(root, pool, 30);
      for (const worker of pool) assert.ok(worker.completed().length > 0, `${worker.name} took no job`);
      assert.is((await client.getJobCounts('failed')).failed, 0);
    } finally {
      await client.close();
    }
  });

  test('a worker killed with SIGKILL mid-job: another worker takes the job over and writes the report once', async () => {
    const queue = `kill-${++queues}`;
    const root = join(dir, queue);
    const recording = makeRecording(join(dir, 'long.mp4'), 0, 24);
    await enqueue(queue, root, [recording]);
    const client = testQueue(redis.url, queue);
    try {
      const doomed = startWorker(queue, ['--lock-duration', '3']);
      let progress: ReplayJobProgress | undefined;
      const deadline = Date.now() + 120_000;
      while (!progress || progress.frames < 2) {
        if (Date.now() > deadline) throw new Error(`the job made no progress:\n${doomed}`);
        await sleep(200);
        const [job] = await client.getActive();
        progress = typeof job?.progress === 'object' ? (job.progress as unknown as ReplayJobProgress) : undefined;
      }
      await doomed.kill9();
      figure('killed a worker mid-job at', `${progress.frames}/${progress.total} frames`);
      const killedAt = Date.now();
      const heir = startWorker(queue, ['--lock-duration', '3']);
      await untilCounts(client, (c) => c.completed === 1, 180_000);
      figure('takeover and completion after the kill', `${((Date.now() - killedAt) / 1000).toFixed(1)} s`);
      const [job] = await client.getCompleted();
      assert.ok(job!.stalledCounter >= 1, 'taken over through the stalled-job check');
      const folder = join(root, reportDirName(recording, job!.id!));
      assert.is(JSON.parse(readFileSync(join(folder, 'completed.json'), 'utf8')).worker, heir.name);
      assert.is(readFileSync(join(folder, 'frames.csv'), 'utf8').trim().split('\n').length, 1 + 24);
      assert.equal(doomed.completed(), []);
      assertWrittenOnce(root, [doomed, heir], 1);
    } finally {
      await client.close();
    }
  });

  test('Redis killed and restarted mid-run: the workers reconnect and no job is lost', async () => {
    const queue = `restart-${++queues}`;
    const root = join(dir, queue);
    const recordings = Array.from({ length: 6 }, (_, i) => makeRecording(join(dir, `restart-${i}.mp4`), 15 * i + 3, 3));
    await enqueue(queue, root, recordings);
    const client = testQueue(redis.url, queue);
    try {
      const pool = [startWorker(queue), startWorker(queue)];
      await untilCounts(client, (c) => (c.completed ?? 0) >= 1, 180_000);
      await redis.restart(2000);
      figure('Redis killed (SIGKILL) and restarted after', '2 s');
      await untilCounts(client, (c) => c.completed === 6, 240_000);
      assert.is((await client.getJobCounts('failed')).failed, 0);
      assertWrittenOnce(root, pool, 6);
      assert.ok(pool.some((worker) => worker.lines.some((line) => line.startsWith('redis: '))), 'the workers noticed the outage');
    } finally {
      await client.close();
    }
  });
}

test.run();
