import { Observable, type Subscriber, type Subscription } from 'rxjs';
import { LfusionError, SourceError } from '../runtime/errors.js';
import {
  greyDecodeArgs,
  isErrorLine,
  OutputSizeReader,
  parseShowinfo,
  resolveFfmpeg,
  saysSourceMissing,
  textInputFormat,
  toVideoInput,
  type V4l2Options,
} from '../runtime/ffmpeg.js';
import { spawnFfmpeg, stopFfmpeg } from '../runtime/ffmpeg-process.js';
import type { Frame } from '../runtime/types/frames.js';

export interface FromVideoOptions {
  /** Read a file at its own frame rate, like a live scanner (ffmpeg `-re`). Default false: as fast as it decodes. */
  realtime?: boolean;
  /** Output size, scaled by ffmpeg. One side alone keeps the aspect ratio. Default: the source size. */
  width?: number;
  height?: number;
  /** Capture settings for a V4L2 device; giving them also marks `source` as a device. */
  v4l2?: V4l2Options;
  /** ffmpeg binary; default: `FFMPEG_PATH`, then `@ffmpeg-installer/ffmpeg`, then `ffmpeg` on `PATH`. */
  ffmpegPath?: string;
  /**
   * A live source has no natural end: its end is a `SOURCE_LOST` error, and so is silence longer than
   * `stallTimeoutMs`; no first frame within `openTimeoutMs` is `SOURCE_NOT_FOUND`.
   * Default: true for devices and network URLs, false for files.
   */
  live?: boolean;
  /** Live sources only: how long the first frame may take (connecting, stream analysis). Default 10000 ms. */
  openTimeoutMs?: number;
  /** Live sources only: how long without video, once it has started, counts as lost. Default 5000 ms. */
  stallTimeoutMs?: number;
  /**
   * Lossless flow control for replaying a file through an async stage: at most `window` (default 4) frames are
   * emitted ahead of the values `acknowledge` has produced, and decoding pauses until the consumer catches up.
   * Without it frames are emitted as fast as ffmpeg decodes them.
   */
  flow?: { acknowledge: Observable<unknown>; window?: number };
  /** Extra ffmpeg input options (placed before `-i`) for what the options above do not cover. */
  inputOptions?: readonly string[];
}

/** Decoded frames held in memory before ffmpeg is paused (it then blocks on its stdout pipe). */
const MAX_QUEUED_FRAMES = 4;
const STDERR_TAIL_LINES = 20;
const DEFAULT_OPEN_TIMEOUT_MS = 10_000;
const DEFAULT_STALL_TIMEOUT_MS = 5000;
const DEFAULT_FLOW_WINDOW = 4;

/**
 * The ffmpeg last started for a live source (by its URL or device), until it has exited: a new connection waits for
 * it, since a UDP port or a device can be opened by one process at a time.
 */
const previousFfmpeg = new Map<string, Promise<void>>();

/**
 * Decodes a video file, an http/rtsp/udp URL, or a V4L2 device (e.g. `/dev/video0`, an HDMI capture card) into 8-bit
 * grey frames, with ffmpeg doing the decoding, the pixel-format conversion and the scaling.
 *
 * Each subscription spawns its own ffmpeg; unsubscribing ends it (SIGTERM, then SIGKILL after a short grace), and so
 * does the end of the process. A new subscription to a live source first waits for the previous ffmpeg on it to exit.
 * Failures arrive as a {@link SourceError}: `FFMPEG_NOT_FOUND`, `SOURCE_NOT_FOUND`, `DECODE_FAILED` (a corrupt or
 * truncated file: every frame that decoded is delivered first; a file with no video frames; a text file, which ffmpeg
 * would render as one picture of the text), `SOURCE_LOST` (a live source ended or went silent).
 * A lost live source can be resumed with RxJS `retry`, since every subscription starts a fresh ffmpeg.
 *
 * @param source A file path, a network URL, or a device path.
 * @param options See {@link FromVideoOptions}; invalid values throw an `INVALID_OPTION` error here.
 * @return A cold Observable of {@link Frame}s; `pts` is the frame's presentation time (seconds from the stream start,
 * `NaN` if the container had none), `index` counts decoded frames from 0.
 *
 * @example
 * fromVideo('assets/sample.mp4', { realtime: true, width: 400 })
 *   .subscribe((frame) => console.log(frame.index, frame.pts.toFixed(2), frame.width, frame.height));
 */
export function fromVideo(source: string, options: FromVideoOptions = {}): Observable<Frame> {
  const input = toVideoInput(source, options.v4l2);
  const live = options.live ?? input.kind !== 'file';
  const args = greyDecodeArgs({
    input,
    width: optionalPositive('width', options.width),
    height: optionalPositive('height', options.height),
    realtime: options.realtime,
    inputOptions: options.inputOptions,
  });
  const openTimeoutMs = optionalPositive('openTimeoutMs', options.openTimeoutMs) ?? DEFAULT_OPEN_TIMEOUT_MS;
  const stallTimeoutMs = optionalPositive('stallTimeoutMs', options.stallTimeoutMs) ?? DEFAULT_STALL_TIMEOUT_MS;
  const flowWindow = optionalPositive('flow.window', options.flow?.window) ?? DEFAULT_FLOW_WINDOW;

  const decode = (subscriber: Subscriber<Frame>): (() => Promise<void>) => {
    const binary = resolveFfmpeg(options.ffmpegPath);
    const child = spawnFfmpeg(binary.path, args, ['ignore', 'pipe', 'pipe']);
    const stdout = child.stdout!;
    const stderr = child.stderr!;

    const sizeReader = new OutputSizeReader();
    const stderrTail: string[] = [];
    let stderrRest = '';
    let loggedError = false;

    let width = 0;
    let height = 0;
    /** stdout bytes that arrived before ffmpeg printed the frame size. */
    let early: Buffer[] = [];
    let partial: Uint8Array | null = null;
    let partialFilled = 0;
    /** Complete frames and showinfo timestamps, paired in order (they travel on different pipes). */
    const pixels: Uint8Array[] = [];
    const timestamps: number[] = [];

    let index = 0;
    let credit = options.flow ? flowWindow : Number.POSITIVE_INFINITY;
    let draining = false;
    let paused = false;
    let exited: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let receivedVideo = false;
    let settled = false;
    let watchdog: NodeJS.Timeout | undefined;

    const tail = (): string => stderrTail.join('\n');
    const fail = (code: ConstructorParameters<typeof SourceError>[0], message: string, cause?: unknown): void => {
      if (settled) return;
      settled = true;
      subscriber.error(new SourceError(code, message, source, tail(), cause === undefined ? undefined : { cause }));
    };

    const armWatchdog = (): void => {
      if (!live || settled) return;
      clearTimeout(watchdog);
      const started = receivedVideo;
      const timeoutMs = started ? stallTimeoutMs : openTimeoutMs;
      watchdog = setTimeout(() => {
        fail(started ? 'SOURCE_LOST' : 'SOURCE_NOT_FOUND', `no video from ${source} for ${timeoutMs} ms`);
      }, timeoutMs);
    };

    const takeBytes = (chunk: Buffer): void => {
      const frameBytes = width * height;
      let offset = 0;
      while (offset < chunk.length) {
        partial ??= new Uint8Array(frameBytes);
        const n = Math.min(frameBytes - partialFilled, chunk.length - offset);
        partial.set(chunk.subarray(offset, offset + n), partialFilled);
        partialFilled += n;
        offset += n;
        if (partialFilled === frameBytes) {
          pixels.push(partial);
          partial = null;
          partialFilled = 0;
        }
      }
    };

    const finish = (): void => {
      if (settled || !exited) return;
      const leftover = pixels.length > 0 || partialFilled > 0 || early.length > 0;
      const status = exited.signal ? `signal ${exited.signal}` : `code ${exited.code}`;
      if (!live && exited.code === 0 && index === 0 && !leftover) {
        // An empty recording is a failed capture, not an empty result. Looping it (`-stream_loop`) also logs a
        // failed seek: the answer must not depend on that.
        fail('DECODE_FAILED', `${source} has no video frames`);
      } else if (!live && exited.code === 0 && !loggedError && !leftover) {
        settled = true;
        subscriber.complete();
      } else if (index === 0 && saysSourceMissing(tail())) {
        fail('SOURCE_NOT_FOUND', `cannot open ${source}`);
      } else if (live && index > 0) {
        fail('SOURCE_LOST', `live source ${source} ended (ffmpeg ${status}) after ${index} frames`);
      } else {
        const why = leftover ? 'left an incomplete frame' : exited.code === 0 ? 'logged decoding errors' : `exited with ${status}`;
        fail('DECODE_FAILED', `ffmpeg ${why} while decoding ${source}, after ${index} frames`);
      }
    };

    /** Emits what is paired and allowed, then pauses or resumes ffmpeg to keep the queue bounded. */
    const drain = (): void => {
      // A consumer may acknowledge from inside next() (replay --report skips the frames before its selection so):
      // the loop below takes that credit, so a nested call returns at once and no frame overtakes or shares an index.
      if (draining) return;
      draining = true;
      try {
        while (!settled && credit > 0 && pixels.length > 0 && timestamps.length > 0) {
          credit -= 1;
          const data = pixels.shift() as Uint8Array;
          const pts = timestamps.shift() as number;
          subscriber.next({ index: index++, pts, captureTime: Date.now(), width, height, data });
        }
      } finally {
        draining = false;
      }
      if (settled) return;
      if (exited) {
        // Wait only for frames that can still go out once the consumer acknowledges.
        if (pixels.length === 0 || timestamps.length === 0) finish();
        return;
      }
      const full = pixels.length >= MAX_QUEUED_FRAMES;
      if (full && !paused) {
        paused = true;
        stdout.pause();
        clearTimeout(watchdog);
      } else if (!full && paused) {
        paused = false;
        stdout.resume();
        armWatchdog();
      }
    };

    const onStderrLine = (line: string): void => {
      const frameInfo = parseShowinfo(line);
      if (frameInfo) {
        timestamps.push(frameInfo.ptsTime);
        return;
      }
      if (line.trim() === '' || line.includes('Parsed_showinfo')) return;
      const textFormat = textInputFormat(line);
      if (textFormat) {
        stderrTail.push(line);
        fail('DECODE_FAILED', `${source} is not a video: ffmpeg can only read it as text (${textFormat})`);
        return;
      }
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
      if (isErrorLine(line)) loggedError = true;
      if (width === 0) {
        const size = sizeReader.read(line);
        if (size) {
          ({ width, height } = size);
          for (const chunk of early) takeBytes(chunk);
          early = [];
        }
      }
    };

    stdout.on('data', (chunk: Buffer) => {
      receivedVideo = true;
      armWatchdog();
      if (width === 0) early.push(chunk);
      else takeBytes(chunk);
      drain();
    });
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => {
      const lines = (stderrRest + text).split(/\r\n|\r|\n/);
      stderrRest = lines.pop() ?? '';
      for (const line of lines) onStderrLine(line);
      drain();
    });
    // Pipe errors also surface as ffmpeg's exit; without a listener they would be thrown as uncaught.
    stdout.on('error', () => undefined);
    stderr.on('error', () => undefined);
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (child.pid !== undefined) return; // a failed kill() on an exiting process: its 'close' settles us
      fail('FFMPEG_NOT_FOUND', `cannot run ffmpeg at ${binary.path} (from ${binary.origin}): ${error.code ?? error.message}; ` +
        'set FFMPEG_PATH, install @ffmpeg-installer/ffmpeg, or put ffmpeg on PATH', error);
    });
    child.on('close', (code, signal) => {
      if (stderrRest) onStderrLine(stderrRest);
      stderrRest = '';
      exited = { code, signal };
      clearTimeout(watchdog);
      drain();
    });

    let acknowledgements: Subscription | undefined;
    if (options.flow) {
      acknowledgements = options.flow.acknowledge.subscribe({
        next: () => {
          credit += 1;
          drain();
        },
        error: (error: unknown) => subscriber.error(error),
      });
    }
    armWatchdog();

    return () => {
      settled = true;
      clearTimeout(watchdog);
      acknowledgements?.unsubscribe();
      return stopFfmpeg(child);
    };
  };

  const location = input.kind === 'file' ? undefined : input.kind === 'network' ? input.url : input.device;
  return new Observable<Frame>((subscriber) => {
    let stop: (() => Promise<void>) | undefined;
    let cancelled = false;
    const start = (): void => {
      if (!cancelled) stop = decode(subscriber);
    };
    const previous = location === undefined ? undefined : previousFfmpeg.get(location);
    if (previous) void previous.then(start);
    else start();
    return () => {
      cancelled = true;
      const exited = stop?.();
      if (!exited || location === undefined) return;
      const done = exited.finally(() => previousFfmpeg.get(location) === done && previousFfmpeg.delete(location));
      previousFfmpeg.set(location, done);
    };
  });
}

function optionalPositive(name: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!(Number.isInteger(value) && value > 0)) {
    throw new LfusionError('INVALID_OPTION', `${name} must be a positive integer, got ${String(value)}`, { [name]: value });
  }
  return value;
}
