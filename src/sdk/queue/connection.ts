/**
 * The Redis behind the replay queue: its URL (`--redis`, else `LFUSION_REDIS_URL`), and a bounded first contact, so
 * that a wrong host, port or password is a clear `QUEUE_UNAVAILABLE` within seconds instead of a silent wait.
 */
import { Queue, type ConnectionOptions } from 'bullmq';
import { LfusionError } from '../../runtime/errors.js';

/** The BullMQ queue all replay jobs go to, unless `--queue` names another. */
export const DEFAULT_QUEUE_NAME = 'lfusion-replay';
/** How long a first connection (and its PING) may take. */
export const CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_URL = 'redis://127.0.0.1:6379';

/**
 * `--redis <url>`, else `LFUSION_REDIS_URL`, else a local Redis without a password.
 *
 * @example
 * const worker = await startReplayWorker({ redis: redisUrl(undefined) }); // LFUSION_REDIS_URL=redis://:secret@queue-host:6379
 * @throws LfusionError `INVALID_OPTION` for a URL that is not redis:// or rediss://.
 */
export function redisUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const url = flag ?? env.LFUSION_REDIS_URL ?? DEFAULT_URL;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new LfusionError('INVALID_OPTION', `--redis must be a redis:// or rediss:// URL, got ${url}`, { url });
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new LfusionError('INVALID_OPTION', `--redis must be a redis:// or rediss:// URL, got ${parsed.protocol}//…`, { url: redacted(url) });
  return url;
}

/** The URL without its password, for messages and logs. */
export function redacted(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/**
 * Connection options. `persistent` (workers): reconnect forever with capped backoff and let commands wait for the
 * connection (BullMQ needs `maxRetriesPerRequest: null` for workers). Otherwise (one-shot commands): no reconnect,
 * so that a lost Redis fails the command instead of hanging it.
 */
export function connectionOptions(url: string, persistent: boolean): ConnectionOptions {
  return persistent
    ? { url, connectTimeout: CONNECT_TIMEOUT_MS, maxRetriesPerRequest: null, retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 3_000) }
    : { url, connectTimeout: CONNECT_TIMEOUT_MS, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy: () => null };
}

/** Connects once and PINGs within `timeoutMs`; throws `QUEUE_UNAVAILABLE` (unreachable, refused, wrong password) otherwise. */
export async function assertRedisReachable(url: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<void> {
  const probe = new Queue(DEFAULT_QUEUE_NAME, { connection: { ...(connectionOptions(url, false) as object), connectTimeout: timeoutMs, lazyConnect: false } });
  let lastError: unknown;
  probe.on('error', (error) => (lastError = error));
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)));
    await Promise.race([probe.getJobCounts('waiting'), timeout]);
  } catch (error) {
    const reason = (lastError ?? error) instanceof Error ? ((lastError ?? error) as Error).message : String(lastError ?? error);
    throw new LfusionError('QUEUE_UNAVAILABLE', `cannot use the job queue's Redis at ${redacted(url)}: ${reason}`, { url: redacted(url) }, { cause: error });
  } finally {
    clearTimeout(timer);
    await probe.disconnect().catch(() => {});
  }
}
