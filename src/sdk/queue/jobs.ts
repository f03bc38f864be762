/**
 * Replay jobs on the BullMQ queue: what one job carries, how recordings are found and enqueued (one job per
 * recording, its id the SHA-256 of the recording's bytes, so that adding it again does nothing), and the queue's
 * state for `lfusion queue status`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Queue, type Job, type JobsOptions } from 'bullmq';
import { isRecordingFile } from '../../report/sources.js';
import { LfusionError, SourceError } from '../../runtime/errors.js';
import { assertRedisReachable, connectionOptions, DEFAULT_QUEUE_NAME } from './connection.js';

/** The `replay --report` flags a job carries (as given on the command line; paths made absolute). */
export const REPORT_FLAGS = ['model', 'provider', 'm', 'n', 'k', 'seed', 'frames', 'max-frames', 'pixel-spacing', 'ground-truth', 'thumbnails', 'mask'] as const;
export type ReportFlags = Partial<Record<(typeof REPORT_FLAGS)[number], string>>;
/** Flags naming files, resolved against the enqueuing machine's working directory. */
const PATH_FLAGS = ['model', 'ground-truth'] as const;

/** The data of one replay job. */
export interface ReplayJobData {
  /** Absolute path of the recording, the same on every worker (shared storage). */
  recording: string;
  /** SHA-256 of the recording's bytes; also the job id. */
  sha256: string;
  /** Absolute path of the folder that holds one report folder per recording. */
  reportRoot: string;
  /** This recording's report folder, under `reportRoot`. */
  reportDir: string;
  flags: ReportFlags;
}

/** What a completed job returns; also the report folder's completion marker (`completed.json`). */
export interface ReplayJobResult {
  jobId: string;
  recording: string;
  sha256: string;
  reportDir: string;
  frames: number;
  /** 1-based attempt that wrote the folder. */
  attempt: number;
  /** `host:pid` of the worker that wrote the folder. */
  worker: string;
  started: string;
  finished: string;
  seconds: number;
}

/** Job progress, as `job.progress`. */
export interface ReplayJobProgress {
  frames: number;
  total: number | null;
}

/** Retries and their backoff, per job. */
export interface RetryOptions {
  /** Tries in all, the first included. Default 3. */
  attempts?: number;
  /** First retry delay; each next one doubles it. Default 30 000 ms. */
  backoffMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { attempts: 3, backoffMs: 30_000 };

/**
 * The replay queue on the Redis at `url`, after a bounded first contact. For one-shot use (adding, status): a lost
 * connection fails the call instead of waiting. Close it when done.
 *
 * @example
 * const queue = await openReplayQueue(process.env.LFUSION_REDIS_URL!);
 * try {
 *   await enqueueRecordings(queue, await listRecordings(['/mnt/scans/2026-11-30']), { reportRoot: '/mnt/qa', flags: { seed: '18' } });
 * } finally {
 *   await queue.close();
 * }
 * @throws LfusionError `QUEUE_UNAVAILABLE` when Redis does not answer within 5 s or refuses the password.
 */
export async function openReplayQueue(url: string, name = DEFAULT_QUEUE_NAME): Promise<Queue<ReplayJobData, ReplayJobResult>> {
  await assertRedisReachable(url);
  const queue = new Queue<ReplayJobData, ReplayJobResult>(name, { connection: connectionOptions(url, false) });
  queue.on('error', () => {}); // a lost connection fails the caller's own call, which reports it
  return queue;
}

/** SHA-256 of a file's bytes, hex. */
export async function contentHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** The report folder name of a recording: its name and the start of its hash (two files called scan.mp4 do not collide). */
export function reportDirName(recording: string, sha256: string): string {
  const stem = basename(recording, extname(recording)).replace(/[^A-Za-z0-9._-]+/g, '_');
  return `${stem}-${sha256.slice(0, 12)}`;
}

/**
 * The recordings under `paths`: a file is one recording; a folder gives every video and image below it (HC18
 * outline annotations and dot-folders left out), in name order.
 *
 * @example
 * const recordings = await listRecordings(['/mnt/scans/2026-11-30', '/mnt/scans/extra.mp4']);
 * @throws SourceError `SOURCE_NOT_FOUND` for a path that does not exist, or when nothing replayable is found.
 */
export async function listRecordings(paths: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  const walk = async (folder: string): Promise<void> => {
    const entries = (await readdir(folder, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && isRecordingFile(entry.name)) found.push(path);
    }
  };
  for (const path of paths) {
    const absolute = resolve(path);
    const info = await stat(absolute).catch(() => undefined);
    if (!info) throw new SourceError('SOURCE_NOT_FOUND', `${path} does not exist`, path);
    if (info.isDirectory()) await walk(absolute);
    else found.push(absolute);
  }
  if (found.length === 0) throw new SourceError('SOURCE_NOT_FOUND', `no videos or images under ${paths.join(', ')}`, paths.join(', '));
  return found;
}

/** One recording of an enqueue: added, or already on the queue (in `state`). */
export interface EnqueuedRecording {
  recording: string;
  jobId: string;
  added: boolean;
  state: string;
}

/**
 * Adds one job per recording; a recording whose hash is already a job (in any state) is left as it is. `flags` are
 * `replay --report`'s (validated by the caller: `lfusion queue add` checks them before adding).
 *
 * @example
 * const results = await enqueueRecordings(queue, ['/mnt/scans/a.mp4'], { reportRoot: '/mnt/qa', flags: { m: '10', seed: '18' }, attempts: 3 });
 * console.log(results.filter((r) => r.added).length, 'added');
 */
export async function enqueueRecordings(
  queue: Queue<ReplayJobData, ReplayJobResult>,
  recordings: readonly string[],
  options: { reportRoot: string; flags: ReportFlags } & RetryOptions,
): Promise<EnqueuedRecording[]> {
  const flags: ReportFlags = { ...options.flags };
  for (const name of PATH_FLAGS) if (flags[name] !== undefined) flags[name] = resolve(flags[name]!);
  const jobOptions = (jobId: string): JobsOptions => ({
    jobId,
    attempts: options.attempts ?? DEFAULT_RETRY.attempts,
    backoff: { type: 'exponential', delay: options.backoffMs ?? DEFAULT_RETRY.backoffMs },
    // Kept: the completed set is the dedup record and the fleet view; failed jobs keep their reasons.
    removeOnComplete: false,
    removeOnFail: false,
  });
  const results: EnqueuedRecording[] = [];
  for (const recording of recordings) {
    const sha256 = await contentHash(recording);
    const existing = await queue.getJob(sha256);
    if (existing) {
      results.push({ recording, jobId: sha256, added: false, state: await existing.getState() });
      continue;
    }
    const data: ReplayJobData = { recording, sha256, reportRoot: resolve(options.reportRoot), reportDir: reportDirName(recording, sha256), flags };
    // A concurrent `queue add` of the same bytes makes this a no-op too: BullMQ ignores an existing job id.
    await queue.add('replay', data, jobOptions(sha256));
    results.push({ recording, jobId: sha256, added: true, state: 'waiting' });
  }
  return results;
}

/** The queue's state for `lfusion queue status`. */
export interface QueueStatus {
  counts: { waiting: number; active: number; delayed: number; completed: number; failed: number; paused: number; prioritized: number };
  active: { jobId: string; recording: string; progress: ReplayJobProgress | null; attempt: number }[];
  failed: { jobId: string; recording: string; reason: string; attempts: number; finishedOn: string | null }[];
}

/**
 * Counts by state, the active jobs with their progress, and the failed jobs with their reasons (at most `limit` of each).
 *
 * @example
 * const { counts, failed } = await queueStatus(queue);
 * for (const job of failed) console.log(job.recording, job.reason);
 */
export async function queueStatus(queue: Queue<ReplayJobData, ReplayJobResult>, limit = 100): Promise<QueueStatus> {
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'paused', 'prioritized');
  const [active, failed] = await Promise.all([queue.getActive(0, limit - 1), queue.getFailed(0, limit - 1)]);
  const present = (jobs: Job<ReplayJobData, ReplayJobResult>[]) => jobs.filter((job) => job !== undefined && job !== null);
  return {
    counts: {
      waiting: counts.waiting ?? 0,
      active: counts.active ?? 0,
      delayed: counts.delayed ?? 0,
      completed: counts.completed ?? 0,
      failed: counts.failed ?? 0,
      paused: counts.paused ?? 0,
      prioritized: counts.prioritized ?? 0,
    },
    active: present(active).map((job) => ({
      jobId: job.id!,
      recording: job.data.recording,
      progress: typeof job.progress === 'object' ? (job.progress as unknown as ReplayJobProgress) : null,
      attempt: job.attemptsMade + 1,
    })),
    failed: present(failed).map((job) => ({
      jobId: job.id!,
      recording: job.data.recording,
      reason: job.failedReason,
      attempts: job.attemptsMade,
      finishedOn: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
    })),
  };
}

/** A job whose data is not a replay job (another producer on the same queue name). */
export function assertReplayJob(data: unknown): asserts data is ReplayJobData {
  const job = data as Partial<ReplayJobData> | null;
  const ok = job && typeof job.recording === 'string' && typeof job.sha256 === 'string' && typeof job.reportRoot === 'string' && typeof job.reportDir === 'string' && /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(job.reportDir) && typeof job.flags === 'object';
  if (!ok) throw new LfusionError('INVALID_OPTION', 'not a replay job: the queue holds jobs from another producer', { data });
}
