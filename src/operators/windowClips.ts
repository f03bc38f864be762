import { concat, concatMap, defer, EMPTY, from, of, take, throwIfEmpty, type Observable, type ObservableInput, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import type { ClipWindow, EncodedFrame, Frame } from '../runtime/types/frames.js';
import { keepLatest } from './keepLatest.js';

/**
 * Runs the 2D encoder on one frame. With `encodeFrames`, build the operator once (it keeps its resize tables):
 * `const encoder = encodeFrames(pool, manifest); const encode = (frame) => of(frame).pipe(encoder);`
 */
export type FrameEncoder = (frame: Frame) => ObservableInput<EncodedFrame>;

/** What live mode dropped: a frame before encoding, or a whole window before the window stage. */
export type ClipDrop = { kind: 'frame'; frame: Frame } | { kind: 'window'; window: ClipWindow };

export interface WindowClipsOptions {
  /** Frames per window. Default 16 (the paper's clips). */
  length?: number;
  /** Frames between window starts. Default 8 (half overlap). Above `length`, the frames between windows are never encoded. */
  stride?: number;
  /**
   * The window that the stream ends inside of. `shift` (default): moved back to end at the last frame, so it is
   * full (its frames are still cached); `partial`: emitted with the frames it has. Either way, a stream shorter
   * than `length` gives one partial window, and with `stride > length` (frames between windows are not encoded)
   * the last window is partial.
   */
  end?: 'shift' | 'partial';
  /**
   * Live: frames wait for the encoder and windows for `analyse` keep-latest (`keepLatest`), so nothing queues
   * without bound; the frames windowed are those encoded. Needs `analyse`. Default false: every frame, every window.
   */
  live?: boolean;
  /** Live mode: called for each frame or window dropped, with the running count of drops of that kind. */
  onDrop?: (drop: ClipDrop, dropCount: number) => void;
}

const DEFAULTS = { length: 16, stride: 8, end: 'shift', live: false } as const;

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new LfusionError('INVALID_OPTION', `windowClips ${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * The windowing state of one `windowClips` subscription, free of RxJS: stream positions in, windows out, and the
 * cache of encoded frames that windows to come still need (at most `length` of them).
 */
export class ClipWindower {
  /** Encoded frames by stream position. */
  readonly #cache = new Map<number, EncodedFrame>();
  #received = 0;
  /** Start of the first window not emitted yet, and end of the last one emitted. */
  #nextStart = 0;
  #covered = 0;

  constructor(readonly length: number, readonly stride: number, readonly end: 'shift' | 'partial') {}

  /** Encoded frames held. */
  get cached(): number {
    return this.#cache.size;
  }

  /** Takes the next stream position. */
  next(): number {
    return this.#received++;
  }

  /** Whether a position lies in some window (with `stride > length`, those between windows do not): only those are encoded. */
  needs(position: number): boolean {
    return position % this.stride < this.length;
  }

  /** Caches the encoded frame at `position` (positions in order) and returns the windows it completes. */
  add(position: number, encoded: EncodedFrame): ClipWindow[] {
    this.#cache.set(position, encoded);
    const ready: ClipWindow[] = [];
    while (this.#nextStart + this.length <= position + 1) {
      ready.push(this.#cut(this.#nextStart, this.#nextStart + this.length, false));
      this.#covered = this.#nextStart + this.length;
      this.#nextStart += this.stride;
    }
    // Should the stream end here, a shifted last window would hold the last `length` frames.
    const keepFrom = this.#shifts() ? Math.min(this.#nextStart, position + 1 - this.length) : this.#nextStart;
    for (const cached of this.#cache.keys()) if (cached < keepFrom) this.#cache.delete(cached);
    return ready;
  }

  /** After the last frame: the window the stream ended inside of, if it holds frames no window had; then empty. */
  finish(): ClipWindow[] {
    const received = this.#received;
    const windows =
      this.#nextStart >= received || this.#covered >= received
        ? []
        : this.#shifts() && received >= this.length
          ? [this.#cut(received - this.length, received, false)]
          : [this.#cut(this.#nextStart, received, true)];
    this.#cache.clear();
    return windows;
  }

  #shifts(): boolean {
    return this.end === 'shift' && this.stride <= this.length;
  }

  #cut(start: number, stop: number, partial: boolean): ClipWindow {
    const features: EncodedFrame[] = [];
    for (let position = start; position < stop; position++) features.push(this.#cache.get(position)!);
    return { frames: features.map((encoded) => encoded.frame), features, start, end: stop, partial };
  }
}

/**
 * Cuts a stream of frames into windows of `length` consecutive frames every `stride` frames, for the clip
 * (3D) path, encoding each frame once: an encoded frame is cached while a window still to come contains it, and
 * every window containing it reuses it, so the encoder's cost per frame does not depend on the overlap. At most
 * `length` encoded frames are cached.
 *
 * Without `analyse` the operator emits the windows (replay). With `analyse`, it runs the window stage (e.g. the 3D
 * heads) itself and emits its results: in order, one window at a time, or in live mode keep-latest, which an
 * operator placed after it could not do because it cannot tell when the stage downstream is busy.
 *
 * @example
 * const encoder = encodeFrames(pool, manifest);
 * fromVideo('assets/sample.mp4')
 *   .pipe(windowClips((frame) => of(frame).pipe(encoder), { length: 16, stride: 8 }))
 *   .subscribe((clip) => console.log(clip.start, clip.end, clip.partial));
 *
 * @param encode runs the 2D encoder on one frame (first value taken; none is an `INFERENCE_FAILED` error).
 * @param options See {@link WindowClipsOptions}; bad values throw `INVALID_OPTION` at once.
 * @param analyse optional window stage whose results are emitted instead of the windows.
 * @return Windows in stream order (positions `[start, end)`), or `analyse`'s results.
 */
export function windowClips(encode: FrameEncoder, options?: WindowClipsOptions): OperatorFunction<Frame, ClipWindow>;
export function windowClips<R>(encode: FrameEncoder, options: WindowClipsOptions, analyse: (window: ClipWindow) => ObservableInput<R>): OperatorFunction<Frame, R>;
export function windowClips<R>(encode: FrameEncoder, options: WindowClipsOptions = {}, analyse?: (window: ClipWindow) => ObservableInput<R>): OperatorFunction<Frame, ClipWindow | R> {
  const settings = { ...DEFAULTS, ...options };
  const length = positiveInteger('length', settings.length);
  const stride = positiveInteger('stride', settings.stride);
  const { end, live, onDrop } = settings;
  if (end !== 'shift' && end !== 'partial') throw new LfusionError('INVALID_OPTION', `windowClips end must be "shift" or "partial", got ${JSON.stringify(end)}`);
  if (live && !analyse) throw new LfusionError('INVALID_OPTION', 'windowClips live mode needs the window stage (analyse) to know when it is busy');

  const windows: OperatorFunction<Frame, ClipWindow> = (frames) =>
    defer(() => {
      const windower = new ClipWindower(length, stride, end);
      const step = (frame: Frame): Observable<ClipWindow> => {
        const position = windower.next();
        if (!windower.needs(position)) return EMPTY;
        return from(encode(frame)).pipe(
          take(1),
          throwIfEmpty(() => new LfusionError('INFERENCE_FAILED', `the encoder produced nothing for frame ${frame.index}`, { frame: frame.index })),
          concatMap((encoded) => from(windower.add(position, encoded))),
        );
      };
      let dropped = 0;
      const encodeEach = live ? keepLatest(step, { onDrop: (frame) => onDrop?.({ kind: 'frame', frame }, ++dropped) }) : concatMap(step);
      return concat(frames.pipe(encodeEach), defer(() => from(windower.finish())));
    });

  if (!analyse) return windows;
  if (!live) return (frames) => frames.pipe(windows, concatMap(analyse));
  return (frames) =>
    defer(() => {
      let dropped = 0;
      return frames.pipe(windows, keepLatest(analyse, { onDrop: (window) => onDrop?.({ kind: 'window', window }, ++dropped) }));
    });
}
