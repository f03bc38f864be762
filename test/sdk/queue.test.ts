/**
 * The replay queue against a real Redis (redis-server on a free 127.0.0.1 port, with a password; skipped with a
 * message when it is not installed): unreachable Redis and a wrong password fail fast, duplicates are ignored, a
 * job's frames.csv is replay --report's, a corrupt recording ends in the failed set with its reason, retries back
 * off, and the fleet page covers the completed recordings. Worker processes, kill -9 and a Redis restart are in
 * the fault suite (test/faults/queue.fault.ts).
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { main } from '../../src/sdk/cli.js';
import { LfusionError } from '../../src/runtime/errors.js';
import { assertRedisReachable } from '../../src/sdk/queue/connection.js';
import { contentHash, queueStatus, reportDirName } from '../../src/sdk/queue/jobs.js';
import { startReplayWorker, type ReplayWorker } from '../../src/sdk/queue/worker.js';
import { freePort } from '../helpers/loopback-stream.js';
import { makeCorruptRecording, makeRecording, testQueue, untilCounts } from '../helpers/queue.js';
import { redisServerPresent, startRedis, type TestRedis } from '../helpers/redis-server.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';

const available = redisServerPresent('queue tests with a real Redis') && shippedPackagePresent('queue tests (jobs run replay --report)');
const FAST = ['--m', '1', '--n', '1', '--k', '1', '--seed', '5', '--model', SHIPPED_PACKAGE];
let redis: TestRedis;
let dir: string;
let name = 0;
const queueName = () => `test-${process.pid}-${++name}`;
const logs: string[] = [];

test.before(async () => {
  if (!available) return;
  redis = await startRedis();
  dir = mkdtempSync(join(tmpdir(), 'lfusion-queue-'));
});
test.after(async () => {
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function rejectsWith(run: () => Promise<unknown>, code: string): Promise<LfusionError> {
  try {
    await run();
  } catch (error) {
    assert.instance(error, LfusionError);
    assert.is((error as LfusionError).code, code, (error as Error).message);
    return error as LfusionError;
  }
  throw new Error(`expected ${code}`);
}

async function withWorker<T>(queue: string, use: (worker: ReplayWorker) => Promise<T>): Promise<T> {
  const worker = await startReplayWorker({ redis: redis.url, queue, log: (line) => logs.push(line) });
  try {
    return await use(worker);
  } finally {
    await worker.close();
  }
}

if (available) {
  test('an unreachable Redis or a wrong password is QUEUE_UNAVAILABLE within the connect timeout, not a hang', async () => {
    const closed = await freePort();
    const started = Date.now();
    const refused = await rejectsWith(() => main(['queue', 'status', '--redis', `redis://127.0.0.1:${closed}`]), 'QUEUE_UNAVAILABLE');
    assert.match(refused.message, /ECONNREFUSED/);
    await rejectsWith(() => main(['worker', '--redis', `redis://127.0.0.1:${closed}`]), 'QUEUE_UNAVAILABLE');
    const wrong = await rejectsWith(() => assertRedisReachable(redis.url.replace(/:[0-9a-f]+@/, ':not-the-password@')), 'QUEUE_UNAVAILABLE');
    assert.match(wrong.message, /WRONGPASS|NOAUTH|invalid/i);
    assert.not.match(wrong.message, /not-the-password/, 'the password is not in the message');
    assert.ok(Date.now() - started < 12_000, `${Date.now() - started} ms`);
    await rejectsWith(() => main(['worker', '--redis', 'http://127.0.0.1:6379']), 'INVALID_OPTION');
  });

  test('adding a recording twice, or a copy under another name, leaves one job (its id: the content hash)', async () => {
    const queue = queueName();
    const recording = makeRecording(join(dir, 'twice.mp4'), 40);
    copyFileSync(recording, join(dir, 'twice-copy.mp4'));
    const add = (...paths: string[]) => main(['queue', 'add', ...paths, '--redis', redis.url, '--queue', queue, '--report-root', join(dir, 'root-twice'), ...FAST]);
    await add(recording);
    await add(recording, join(dir, 'twice-copy.mp4'));
    const client = testQueue(redis.url, queue);
    try {
      const counts = await client.getJobCounts('waiting', 'active', 'completed', 'failed');
      assert.is(counts.waiting, 1, JSON.stringify(counts));
      const [job] = await client.getWaiting();
      assert.is(job!.id, await contentHash(recording));
      assert.equal(job!.data.flags, { m: '1', n: '1', k: '1', seed: '5', model: SHIPPED_PACKAGE });
      await rejectsWith(() => main(['queue', 'add', recording, '--redis', redis.url, '--queue', queue, '--mask-video', recording]), 'INVALID_OPTION');
      await rejectsWith(() => main(['queue', 'add', recording, '--redis', redis.url, '--queue', queue, '--m', 'zero']), 'INVALID_OPTION');
    } finally {
      await client.close();
    }
  });

  test('a job writes the frames.csv that replay --report writes for the same seed (byte for byte but the timing column)', async () => {
    const queue = queueName();
    const root = join(dir, 'root-same');
    const recording = makeRecording(join(dir, 'same.mp4'), 100, 3);
    assert.is(await main(['replay', recording, '--report', join(dir, 'direct'), ...FAST]), 0);
    await main(['queue', 'add', recording, '--redis', redis.url, '--queue', queue, '--report-root', root, ...FAST]);
    const client = testQueue(redis.url, queue);
    try {
      await withWorker(queue, () => untilCounts(client, (c) => c.completed === 1, 120_000));
      const [job] = await client.getCompleted();
      assert.is(job!.returnvalue.frames, 3);
      const folder = join(root, reportDirName(recording, job!.id!));
      // processingMs (the last column) is wall-clock time: it differs between any two runs, replay --report's own included.
      const withoutTiming = (path: string) => readFileSync(path, 'utf8').split('\n').map((line) => line.replace(/,[^,]*$/, '')).join('\n');
      const direct = readFileSync(join(dir, 'direct/frames.csv'), 'utf8');
      assert.ok(direct.split('\n')[0]!.endsWith(',processingMs'));
      assert.is(withoutTiming(join(folder, 'frames.csv')), withoutTiming(join(dir, 'direct/frames.csv')));
      for (const png of readdirSync(join(dir, 'direct/labels/same'))) assert.ok(readFileSync(join(folder, 'labels/same', png)).equals(readFileSync(join(dir, 'direct/labels/same', png))), png);
      const marker = JSON.parse(readFileSync(join(folder, 'completed.json'), 'utf8'));
      assert.is(marker.jobId, job!.id);
      assert.is(marker.attempt, 1);
      assert.equal(readdirSync(join(root, '.staging')), [], 'no staging folder left');
      // The fleet page: this recording's row links to its report.
      await main(['queue', 'report', '--report-root', root, '--redis', redis.url, '--queue', queue]);
      const page = readFileSync(join(root, 'index.html'), 'utf8');
      assert.ok(page.includes(`href="${reportDirName(recording, job!.id!)}/report.html"`));
      assert.match(page, /Completed recordings<\/td><td>1</);
    } finally {
      await client.close();
    }
  });

  test('a corrupt recording fails at once with its reason; a missing one is retried with backoff, then fails, and completes after queue retry', async () => {
    const queue = queueName();
    const root = join(dir, 'root-fail');
    const corrupt = makeCorruptRecording(dir);
    const vanishing = makeRecording(join(dir, 'vanishing.mp4'), 200);
    await main(['queue', 'add', corrupt, vanishing, '--redis', redis.url, '--queue', queue, '--report-root', root, '--attempts', '2', '--backoff', '1', ...FAST]);
    const vanishingDir = reportDirName(vanishing, await contentHash(vanishing));
    unlinkSync(vanishing); // shared storage lost the file after it was queued
    const client = testQueue(redis.url, queue);
    try {
      const started = Date.now();
      await withWorker(queue, () => untilCounts(client, (c) => c.failed === 2, 120_000));
      const status = await queueStatus(client);
      const byName = Object.fromEntries(status.failed.map((job) => [job.recording.split('/').at(-1), job]));
      assert.is(byName['corrupt.mp4']!.attempts, 1, 'a corrupt recording is not retried');
      assert.match(byName['corrupt.mp4']!.reason, /^\[DECODE_FAILED\] .*corrupt\.mp4/);
      assert.is(byName['vanishing.mp4']!.attempts, 2);
      assert.match(byName['vanishing.mp4']!.reason, /^\[SOURCE_NOT_FOUND\]/);
      assert.ok(Date.now() - started >= 1000, 'the retry waited for its backoff');
      assert.ok(existsSync(join(root, '.failed', reportDirName(corrupt, await contentHash(corrupt)), 'run.json')), 'the failed attempt keeps its partial report');
      assert.equal(readdirSync(root).filter((entry) => !entry.startsWith('.')), [], 'no report folder for a failed job');
      // The storage is back: `queue retry` puts both failed jobs back; the recording completes, the corrupt one fails again.
      makeRecording(vanishing, 200);
      await main(['queue', 'retry', '--redis', redis.url, '--queue', queue]);
      await withWorker(queue, () => untilCounts(client, (c) => c.completed === 1 && c.failed === 1 && c.waiting === 0 && c.active === 0, 120_000));
      assert.equal(readdirSync(root).filter((entry) => !entry.startsWith('.')), [vanishingDir]);
    } finally {
      await client.close();
    }
  });
}

test.run();
