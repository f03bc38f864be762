/**
 * A replay worker: takes jobs from the queue and runs each one exactly as `lfusion replay --report` (the same
 * options function and report code), into a staging folder beside the report root's folders; the finished folder,
 * with its completion marker inside, is renamed into place in one step. A retried or taken-over job whose folder is
 * already in place returns it without writing again, and of two attempts that both finish only one rename wins.
 *
 * Failures retry with the job's backoff, except those that would fail again the same way (a corrupt recording, a
 * bad option or model package): these go straight to the failed set. A worker killed mid-job leaves the job's lock
 * to expire; BullMQ's stalled-job check then hands the job to another worker.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { COMPLETED_MARKER } from '../../report/fleet.js';
import { replayReport } from '../../report/replay.js';
import { LfusionError, type LfusionErrorCode } from '../../runtime/errors.js';
import { failedSources, replayReportOptions } from '../cli/replay.js';
import type { CliValues } from '../cli/args.js';
import { assertRedisReachable, connectionOptions, DEFAULT_QUEUE_NAME, redacted } from './connection.js';
import { assertReplayJob, type ReplayJobData, type ReplayJobProgress, type ReplayJobResult } from './jobs.js';

/** Under the report root: attempts in progress (renamed into place when done) and the partial reports of failed attempts. */
export const STAGING_DIR = '.staging';
export const FAILED_DIR = '.failed';

/** Failures that a retry would meet again. */
const PERMANENT: ReadonlySet<LfusionErrorCode> = new Set(['DECODE_FAILED', 'INVALID_OPTION', 'MODEL_INVALID', 'SHAPE_MISMATCH']);

export interface ReplayWorkerOptions {
  /** redis:// URL (password included). */
  redis: string;
  /** Queue name. Default `lfusion-replay`. */
  queue?: string;
  /** Jobs run at once in this process. Default 1 (one replay already uses the cores through ONNX Runtime). */
  concurrency?: number;
  /**
   * How long a job's lock lives without renewal (renewed every half of it). A worker killed mid-job has its job
   * handed to another worker after at most about twice this. Default 30 000 ms (BullMQ's).
   */
  lockDurationMs?: number;
  /** One line per event (job started, completed, failed, Redis lost). Default: stdout. */
  log?: (line: string) => void;
}

export interface ReplayWorker {
  /** Stops taking jobs and waits for the running ones; `force`: stops at once (the running jobs are taken over elsewhere). */
  close(force?: boolean): Promise<void>;
  /** Jobs running now. */
  readonly running: number;
}

const workerName = () => `${hostname()}:${process.pid}`;

async function readMarker(folder: string): Promise<ReplayJobResult | undefined> {
  try {
    return JSON.parse(await readFile(join(folder, COMPLETED_MARKER), 'utf8')) as ReplayJobResult;
  } catch {
    return undefined;
  }
}

/** An error whose reason (kept in the failed set) starts with its code; permanent ones skip the retries. */
function jobError(error: unknown): Error {
  const code: string = error instanceof LfusionError ? error.code : 'INTERNAL';
  const reason = `[${code}] ${error instanceof Error ? error.message : String(error)}`;
  return error instanceof LfusionError && PERMANENT.has(error.code) ? new UnrecoverableError(reason) : new Error(reason);
}

/** Runs one job: the recording through `replay --report` into staging, then renamed into place with its marker. */
async function runJob(job: Job<ReplayJobData, ReplayJobResult>, log: (line: string) => void): Promise<ReplayJobResult> {
  assertReplayJob(job.data);
  const { recording, sha256, reportRoot, reportDir, flags } = job.data;
  const final = join(reportRoot, reportDir);
  const done = await readMarker(final);
  if (done) {
    log(`already complete ${job.id!.slice(0, 12)} ${reportDir} (written by ${done.worker}, attempt ${done.attempt})`);
    return done;
  }
  const staging = join(reportRoot, STAGING_DIR, `${reportDir}.${workerName().replace(':', '-')}.${randomUUID().slice(0, 8)}`);
  const started = new Date();
  const attempt = job.attemptsMade + 1;
  log(`started ${job.id!.slice(0, 12)} ${recording} (attempt ${attempt})`);
  await mkdir(staging, { recursive: true });
  let lastProgress = 0;
  const onFrame = (frames: number, total: number | undefined) => {
    if (Date.now() - lastProgress < 1000 && frames !== total) return;
    lastProgress = Date.now();
    const progress: ReplayJobProgress = { frames, total: total ?? null };
    job.updateProgress(progress as unknown as object).catch(() => {}); // progress is advisory: a Redis blip must not fail the job
  };
  try {
    return await replayIntoPlace(job, staging, final, onFrame, started, log);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** The replay into `staging`, then `staging` renamed to `final`; a failed attempt's partial report goes to the failed folder. */
async function replayIntoPlace(
  job: Job<ReplayJobData, ReplayJobResult>,
  staging: string,
  final: string,
  onFrame: (frames: number, total: number | undefined) => void,
  started: Date,
  log: (line: string) => void,
): Promise<ReplayJobResult> {
  const { recording, sha256, reportRoot, reportDir, flags } = job.data;
  const options = replayReportOptions(recording, { ...flags, report: staging } as CliValues);
  const summary = await replayReport({ ...options, command: ['lfusion', 'worker', `job ${job.id}`], progress: false, onFrame });
  const failure = failedSources(summary);
  if (failure) {
    // The partial report of a failed attempt is kept for inspection, the latest one per recording.
    const kept = join(reportRoot, FAILED_DIR, reportDir);
    await mkdir(join(reportRoot, FAILED_DIR), { recursive: true });
    await rm(kept, { recursive: true, force: true });
    await rename(staging, kept);
    throw failure;
  }
  const finished = new Date();
  const result: ReplayJobResult = {
    jobId: job.id!,
    recording,
    sha256,
    reportDir,
    frames: summary.frames,
    attempt: job.attemptsMade + 1,
    worker: workerName(),
    started: started.toISOString(),
    finished: finished.toISOString(),
    seconds: (finished.getTime() - started.getTime()) / 1000,
  };
  await writeFile(join(staging, COMPLETED_MARKER), `${JSON.stringify(result, null, 2)}\n`);
  try {
    await rename(staging, final);
  } catch (error) {
    // Another attempt of this job (taken over while this one still ran) put its folder in place first.
    const winner = await readMarker(final);
    if (!winner) throw new LfusionError('INVALID_OPTION', `cannot write ${final}: ${(error as Error).message} (a folder not written by the queue is in the way?)`, { final });
    await rm(staging, { recursive: true, force: true });
    log(`already complete ${job.id!.slice(0, 12)} ${reportDir} (written by ${winner.worker}, attempt ${winner.attempt})`);
    return winner;
  }
  await removeStaleAttempts(reportRoot, reportDir);
  log(`completed ${job.id!.slice(0, 12)} ${reportDir}: ${summary.frames} frames in ${result.seconds.toFixed(1)} s (wrote ${final})`);
  return result;
}

/** Staging folders left by attempts of this recording that died (their worker killed); the job is done now. */
async function removeStaleAttempts(reportRoot: string, reportDir: string): Promise<void> {
  const stagingRoot = join(reportRoot, STAGING_DIR);
  const names = await readdir(stagingRoot).catch(() => [] as string[]);
  await Promise.all(names.filter((name) => name.startsWith(`${reportDir}.`)).map((name) => rm(join(stagingRoot, name), { recursive: true, force: true })));
}

/**
 * Starts a worker on the queue at `options.redis`. Throws `QUEUE_UNAVAILABLE` when Redis cannot be reached at start;
 * afterwards a lost Redis is retried for as long as it takes (the running jobs go on; their results are
 * reported once Redis is back).
 *
 * @example
 * const worker = await startReplayWorker({ redis: 'redis://:secret@queue-host:6379', concurrency: 1 });
 * process.on('SIGTERM', () => worker.close());
 */
export async function startReplayWorker(options: ReplayWorkerOptions): Promise<ReplayWorker> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const concurrency = options.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new LfusionError('INVALID_OPTION', `concurrency must be a whole number >= 1, got ${concurrency}`);
  await assertRedisReachable(options.redis);
  const lockDuration = options.lockDurationMs ?? 30_000;
  let running = 0;
  const worker = new Worker<ReplayJobData, ReplayJobResult>(
    options.queue ?? DEFAULT_QUEUE_NAME,
    async (job) => {
      running += 1;
      try {
        return await runJob(job, log);
      } catch (error) {
        throw jobError(error);
      } finally {
        running -= 1;
      }
    },
    { connection: connectionOptions(options.redis, true), concurrency, lockDuration, stalledInterval: lockDuration, maxStalledCount: 1 },
  );
  // Connection errors repeat while Redis is down (ioredis reconnects by itself): one line per 10 s at most.
  let lastRedisError = 0;
  worker.on('error', (error) => {
    if (Date.now() - lastRedisError < 10_000) return;
    lastRedisError = Date.now();
    log(`redis: ${error.message} (${redacted(options.redis)}); retrying`);
  });
  worker.on('failed', (job, error) => {
    if (job) log(`failed ${job.id!.slice(0, 12)} ${job.data.recording} (attempt ${job.attemptsMade}): ${error.message}`);
  });
  await worker.waitUntilReady();
  return {
    close: (force = false) => worker.close(force),
    get running() {
      return running;
    },
  };
}
