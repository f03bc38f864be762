import { asyncScheduler, Observable, timer, type Subscription } from 'rxjs';
import { LfusionError, SourceError } from '../runtime/errors.js';
import type { SourceEvent } from '../runtime/source-events.js';
import type { Frame } from '../runtime/types/frames.js';

/** Delay before reconnection attempt `n` (1-based): `min(initialMs * factor^(n-1), maxMs)`. */
export interface BackoffOptions {
  /** Default 500 ms. */
  initialMs?: number;
  /** Default 10000 ms. */
  maxMs?: number;
  /** Default 2. */
  factor?: number;
}

export interface ReconnectingOptions {
  backoff?: BackoffOptions;
  /**
   * Consecutive reconnection attempts that may fail before giving up with the last error. Default: unlimited, since
   * a scanner that is unplugged for an hour should still be picked up when it comes back.
   */
  maxAttempts?: number;
}

const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 10_000, factor: 2 };

/** The errors that mean "the source is not there right now", as opposed to "it can never work". */
function isRecoverable(error: unknown): error is SourceError & { code: 'SOURCE_LOST' | 'SOURCE_NOT_FOUND' } {
  return error instanceof SourceError && (error.code === 'SOURCE_LOST' || error.code === 'SOURCE_NOT_FOUND');
}

/** The delay before reconnection attempt `attempt` (1-based). */
function backoffDelay(attempt: number, backoff: Required<BackoffOptions>): number {
  return Math.min(backoff.initialMs * backoff.factor ** (attempt - 1), backoff.maxMs);
}

/**
 * Keeps a live source going through outages: when it is lost (`SOURCE_LOST`) or cannot be opened
 * (`SOURCE_NOT_FOUND`), emits a `source-lost` event and connects again after an exponential backoff, as often as it
 * takes; when frames flow again, emits `source-restored` before the first of them. Frame `index` is renumbered so it
 * runs on across outages (a fresh connection counts from 0); `pts` stays the new connection's own clock.
 *
 * Why: a cable pulled or a stream dropped should pause the results, not end the pipeline. Any other error
 * (`FFMPEG_NOT_FOUND`, `DECODE_FAILED`, a bad option) cannot be fixed by waiting and is passed on at once, as is
 * completion. Wrap live sources only: for a file, a missing path would be retried forever.
 *
 * @example
 * reconnecting(() => fromVideo('udp://127.0.0.1:5000', { width: 800 }), { backoff: { initialMs: 250, maxMs: 5000 } })
 *   .subscribe((item) => (isSourceEvent(item) ? console.warn(item.type, item) : render(item)));
 *
 * @param connect Opens the source; called once per connection attempt, so it must return a cold Observable that
 * starts afresh on each call (as `fromVideo` does).
 * @param options See {@link ReconnectingOptions}; invalid values throw an `INVALID_OPTION` error here.
 * @return Frames with continuous indices, interleaved with {@link SourceEvent}s; errors only when the source cannot
 * recover (or after `maxAttempts` failed attempts in a row).
 */
export function reconnecting(connect: () => Observable<Frame>, options: ReconnectingOptions = {}): Observable<Frame | SourceEvent> {
  const backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  validate(backoff, maxAttempts);

  return new Observable<Frame | SourceEvent>((subscriber) => {
    let nextIndex = 0;
    /** Consecutive failed connections; 0 while frames flow. */
    let failures = 0;
    let outageStart = 0;
    let source: string | undefined;
    let connection: Subscription | undefined;
    let pendingRetry: Subscription | undefined;

    const open = (): void => {
      let flowing = false;
      let frames: Observable<Frame>;
      try {
        frames = connect();
      } catch (error) {
        subscriber.error(error);
        return;
      }
      connection = frames.subscribe({
        next: (frame) => {
          if (!flowing) {
            flowing = true;
            if (failures > 0) {
              const time = asyncScheduler.now();
              subscriber.next({ type: 'source-restored', source, attempts: failures, downtimeMs: time - outageStart, firstIndex: nextIndex, time });
            }
            failures = 0;
          }
          subscriber.next({ ...frame, index: nextIndex++ });
        },
        error: (error: unknown) => {
          if (!isRecoverable(error) || failures >= maxAttempts) {
            subscriber.error(error);
            return;
          }
          failures += 1;
          const time = asyncScheduler.now();
          if (failures === 1) outageStart = time;
          source = error.source;
          const retryInMs = backoffDelay(failures, backoff);
          subscriber.next({
            type: 'source-lost',
            source,
            code: error.code,
            message: error.message,
            stderrTail: error.stderrTail,
            attempt: failures,
            retryInMs,
            lastIndex: nextIndex - 1,
            time,
          });
          pendingRetry = timer(retryInMs).subscribe(open);
        },
        complete: () => subscriber.complete(),
      });
    };

    open();
    return () => {
      pendingRetry?.unsubscribe();
      connection?.unsubscribe();
    };
  });
}

function validate(backoff: Required<BackoffOptions>, maxAttempts: number): void {
  const fail = (name: string, rule: string, value: number): never => {
    throw new LfusionError('INVALID_OPTION', `${name} must be ${rule}, got ${String(value)}`, { [name]: value });
  };
  if (!(Number.isFinite(backoff.initialMs) && backoff.initialMs >= 0)) fail('backoff.initialMs', 'a finite number >= 0', backoff.initialMs);
  if (!(Number.isFinite(backoff.maxMs) && backoff.maxMs >= backoff.initialMs)) fail('backoff.maxMs', 'a finite number >= initialMs', backoff.maxMs);
  if (!(Number.isFinite(backoff.factor) && backoff.factor >= 1)) fail('backoff.factor', 'a finite number >= 1', backoff.factor);
  if (!(maxAttempts === Number.POSITIVE_INFINITY || (Number.isInteger(maxAttempts) && maxAttempts >= 0))) {
    fail('maxAttempts', 'a whole number >= 0 or Infinity', maxAttempts);
  }
}
