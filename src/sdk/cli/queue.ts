/**
 * `lfusion queue add | status | retry | report`: recordings onto the Redis job queue (one job each, deduplicated by
 * content hash), the queue's state, failed jobs back on the queue, and the aggregated offline page over every completed recording.
 */
import { resolve } from 'node:path';
import type { Queue } from 'bullmq';
import { writeFleetReport } from '../../report/fleet.js';
import { redisUrl } from '../queue/connection.js';
import { DEFAULT_RETRY, enqueueRecordings, listRecordings, openReplayQueue, queueStatus, REPORT_FLAGS, type QueueStatus, type ReplayJobData, type ReplayJobResult, type ReportFlags } from '../queue/jobs.js';
import { integerOption, onlyFlags, usageError, type CliValues } from './args.js';
import { replayReportOptions } from './replay.js';

/** Where reports go unless `--report-root` says otherwise. */
const DEFAULT_REPORT_ROOT = 'qa-reports';
const CONNECTION_FLAGS = ['redis', 'queue'];

/** The queue at `--redis`/`LFUSION_REDIS_URL`, closed when `use` ends. */
async function withQueue<T>(values: CliValues, use: (queue: Queue<ReplayJobData, ReplayJobResult>) => Promise<T>): Promise<T> {
  const queue = await openReplayQueue(redisUrl(values.redis), values.queue);
  try {
    return await use(queue);
  } finally {
    await queue.close();
  }
}

async function add(paths: string[], values: CliValues): Promise<number> {
  onlyFlags('queue add', values, [...REPORT_FLAGS, ...CONNECTION_FLAGS, 'report-root', 'attempts', 'backoff']);
  if (paths.length === 0) throw usageError('queue add takes one or more recordings or folders');
  const flags: ReportFlags = Object.fromEntries(REPORT_FLAGS.filter((name) => values[name] !== undefined).map((name) => [name, values[name]]));
  const attempts = integerOption(values, 'attempts', 1) ?? DEFAULT_RETRY.attempts;
  const backoffSeconds = integerOption(values, 'backoff', 0);
  const recordings = await listRecordings(paths);
  replayReportOptions(recordings[0]!, { ...flags, report: 'validation' }); // bad flags fail here, not in every job
  const reportRoot = resolve(values['report-root'] ?? DEFAULT_REPORT_ROOT);
  const results = await withQueue(values, (queue) =>
    enqueueRecordings(queue, recordings, { reportRoot, flags, attempts, backoffMs: backoffSeconds === undefined ? DEFAULT_RETRY.backoffMs : backoffSeconds * 1000 }),
  );
  for (const result of results) {
    process.stdout.write(`${result.added ? 'added    ' : `skipped (already ${result.state})`} ${result.jobId.slice(0, 12)} ${result.recording}\n`);
  }
  const added = results.filter((result) => result.added).length;
  process.stderr.write(`lfusion: ${added} job(s) added, ${results.length - added} already on the queue; reports under ${reportRoot}\n`);
  return 0;
}

function formatStatus(status: QueueStatus): string {
  const { counts } = status;
  const lines = [`waiting ${counts.waiting + counts.prioritized + counts.paused}  active ${counts.active}  delayed ${counts.delayed}  completed ${counts.completed}  failed ${counts.failed}`];
  for (const job of status.active) {
    const progress = job.progress ? `${job.progress.frames}${job.progress.total === null ? '' : `/${job.progress.total}`} frames` : 'starting';
    lines.push(`  active  ${job.jobId.slice(0, 12)} ${job.recording}: ${progress} (attempt ${job.attempt})`);
  }
  for (const job of status.failed) lines.push(`  failed  ${job.jobId.slice(0, 12)} ${job.recording} after ${job.attempts} attempt(s): ${job.reason}`);
  return `${lines.join('\n')}\n`;
}

async function status(values: CliValues): Promise<number> {
  onlyFlags('queue status', values, [...CONNECTION_FLAGS, 'json']);
  const state = await withQueue(values, (queue) => queueStatus(queue));
  process.stdout.write(values.json ? `${JSON.stringify(state, null, 2)}\n` : formatStatus(state));
  return 0;
}

async function report(values: CliValues): Promise<number> {
  onlyFlags('queue report', values, [...CONNECTION_FLAGS, 'report-root', 'out']);
  const reportRoot = resolve(values['report-root'] ?? DEFAULT_REPORT_ROOT);
  // The failed jobs come from Redis; without it the page still covers every completed recording, and says so.
  let failed: QueueStatus['failed'] | undefined;
  try {
    failed = (await withQueue(values, (queue) => queueStatus(queue, 10_000))).failed.filter((job) => job.recording !== undefined);
  } catch (error) {
    process.stderr.write(`lfusion: the page leaves out failed jobs: ${(error as Error).message}\n`);
  }
  const written = await writeFleetReport({ root: reportRoot, ...(values.out ? { out: values.out } : {}), ...(failed ? { failed } : {}) });
  process.stderr.write(`lfusion: ${written.recordings} completed recording(s), ${written.frames} frames; page at ${written.path}\n`);
  return 0;
}

/** Failed jobs back to waiting, their attempts counted afresh (after fixing what failed them: storage, a worker's install). */
async function retry(values: CliValues): Promise<number> {
  onlyFlags('queue retry', values, CONNECTION_FLAGS);
  const failed = await withQueue(values, async (queue) => {
    const count = await queue.getFailedCount();
    await queue.retryJobs({ state: 'failed' });
    return count;
  });
  process.stderr.write(`lfusion: ${failed} failed job(s) back on the queue\n`);
  return 0;
}

/** `lfusion queue <add | status | retry | report> ...`. */
export async function queueCommand(args: string[], values: CliValues): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'add') return add(rest, values);
  if (rest.length > 0) throw usageError(`queue ${sub ?? ''} takes no positional arguments`);
  if (sub === 'status') return status(values);
  if (sub === 'retry') return retry(values);
  if (sub === 'report') return report(values);
  throw usageError(`queue needs add, status, retry or report, got ${sub ?? 'nothing'}`);
}
