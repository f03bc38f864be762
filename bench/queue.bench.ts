/**
 * Fleet replay throughput on this machine: the same recordings (cut from assets/sample.mp4 at its 800x540, replayed
 * at the package's default sample counts) drained by 1, then 2 `lfusion worker` processes on a local Redis (the
 * test harness's redis-server). Jobs per hour and frames per second from enqueue to the last completion (workers
 * started and ready before), the CPU the workers used (their own and their ffmpeg children's, from /proc) as a
 * share of the machine's cores, and each job's own seconds.
 *
 *   npm run bench -- queue        # BENCH_QUEUE_RECORDINGS=6 BENCH_QUEUE_FRAMES=16 BENCH_QUEUE_WORKERS=1,2
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MODEL_PATH } from '../src/runtime/model-package.js';
import { enqueueRecordings, openReplayQueue } from '../src/sdk/queue/jobs.js';
import { makeRecording, untilCounts, WorkerProcess } from '../test/helpers/queue.js';
import { REDIS_SERVER, startRedis } from '../test/helpers/redis-server.js';
import type { BenchModule, BenchResult } from './run.js';

const RECORDINGS = Number(process.env.BENCH_QUEUE_RECORDINGS ?? 6);
const FRAMES = Number(process.env.BENCH_QUEUE_FRAMES ?? 16);
const WORKERS = (process.env.BENCH_QUEUE_WORKERS ?? '1,2').split(',').map(Number);
/** /proc/<pid>/stat times are in clock ticks; 100 per second on Linux. */
const TICKS_PER_SECOND = 100;

/** CPU seconds of a process and its waited-for children (ffmpeg decoders), or NaN when /proc has no such process. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // After "pid (comm) ": state is field 3, so utime/stime/cutime/cstime (fields 14-17) are at 11-14.
    return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

const bench: BenchModule = {
  title: `queue drain: ${RECORDINGS} recordings x ${FRAMES} frames (800x540, default m/n/k) by ${WORKERS.join(', then ')} worker process(es)`,
  async run(): Promise<BenchResult[]> {
    if (!existsSync(REDIS_SERVER) || !existsSync(join(DEFAULT_MODEL_PATH, 'manifest.json'))) {
      process.stderr.write(`queue bench skipped: needs ${REDIS_SERVER} and the model package at ${DEFAULT_MODEL_PATH}\n`);
      return [];
    }
    const dir = mkdtempSync(join(tmpdir(), 'lfusion-queue-bench-'));
    const redis = await startRedis();
    const results: BenchResult[] = [];
    try {
      const recordings = Array.from({ length: RECORDINGS }, (_, i) => makeRecording(join(dir, `scan-${i}.mp4`), (i * 40) % 300, FRAMES, '800:540'));
      for (const count of WORKERS) {
        const queueName = `bench-${count}`;
        const workers = Array.from({ length: count }, () => new WorkerProcess(redis.url, queueName));
        const queue = await openReplayQueue(redis.url, queueName);
        try {
          await Promise.all(workers.map((worker) => worker.ready()));
          const cpuBefore = workers.map((worker) => cpuSeconds(worker.child.pid!));
          const started = performance.now();
          await enqueueRecordings(queue, recordings, { reportRoot: join(dir, queueName), flags: {} });
          await untilCounts(queue, (c) => c.completed === RECORDINGS, 3_600_000);
          const seconds = (performance.now() - started) / 1000;
          const cpu = workers.reduce((sum, worker, i) => sum + cpuSeconds(worker.child.pid!) - cpuBefore[i]!, 0);
          const jobs = await queue.getCompleted(0, RECORDINGS);
          const notes = { workers: count, recordings: RECORDINGS, framesPerRecording: FRAMES, cores: cpus().length };
          results.push(
            { name: `${count} worker(s): jobs per hour`, unit: 'jobs/h', samples: [(RECORDINGS / seconds) * 3600], notes },
            { name: `${count} worker(s): frames per second`, unit: 'frames/s', samples: [(RECORDINGS * FRAMES) / seconds], notes },
            { name: `${count} worker(s): CPU used, share of all cores`, unit: '%', samples: [(100 * cpu) / (seconds * cpus().length)], notes },
            { name: `${count} worker(s): one job, start to report in place`, unit: 's', samples: jobs.map((job) => job.returnvalue.seconds), notes },
          );
        } finally {
          await queue.close();
          await Promise.all(workers.map((worker) => worker.stop()));
        }
      }
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    return results;
  },
};

export default bench;
