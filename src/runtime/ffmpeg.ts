/**
 * Finding the ffmpeg binary and building its command line. The SDK spawns ffmpeg directly (no wrapper library):
 * see docs/decisions.md for why.
 */
import { createRequire } from 'node:module';

/** Where the ffmpeg binary came from, in the order it is looked for. */
export type FfmpegOrigin = 'option' | 'FFMPEG_PATH' | '@ffmpeg-installer/ffmpeg' | 'PATH';

export interface FfmpegBinary {
  path: string;
  origin: FfmpegOrigin;
}

/**
 * Resolves the ffmpeg binary: an explicit path, then the `FFMPEG_PATH` environment variable, then the binary shipped
 * inside `@ffmpeg-installer/ffmpeg` (no download at install), then `ffmpeg` on `PATH`.
 * An explicit choice is never silently replaced: if it does not exist, spawning fails with `FFMPEG_NOT_FOUND`.
 *
 * @example
 * const { path, origin } = resolveFfmpeg();
 * console.log(`decoding with ${path} (${origin})`);
 */
export function resolveFfmpeg(explicitPath?: string, env: NodeJS.ProcessEnv = process.env): FfmpegBinary {
  if (explicitPath) return { path: explicitPath, origin: 'option' };
  const fromEnv = env.FFMPEG_PATH;
  if (fromEnv) return { path: fromEnv, origin: 'FFMPEG_PATH' };
  const shipped = shippedFfmpegPath();
  if (shipped) return { path: shipped, origin: '@ffmpeg-installer/ffmpeg' };
  return { path: 'ffmpeg', origin: 'PATH' };
}

let shippedPath: string | null | undefined;

/** The installer package throws (a string) on unsupported platforms or a missing binary: that means "not shipped". */
function shippedFfmpegPath(): string | null {
  if (shippedPath === undefined) {
    try {
      const installer = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path?: unknown };
      shippedPath = typeof installer.path === 'string' ? installer.path : null;
    } catch {
      shippedPath = null;
    }
  }
  return shippedPath;
}

/** The three kinds of input ffmpeg is asked to open. */
export type VideoInput =
  | { kind: 'file'; path: string }
  | { kind: 'network'; url: string }
  | { kind: 'v4l2'; device: string; capture: V4l2Options };

/** Capture settings for a V4L2 device (how HDMI capture cards appear on Linux). Omitted ones use the device's defaults. */
export interface V4l2Options {
  /** Pixel or compressed format the device sends, e.g. `mjpeg`, `yuyv422`. */
  inputFormat?: string;
  /** `WIDTHxHEIGHT`, e.g. `1920x1080`. */
  videoSize?: string;
  frameRate?: number;
}

const NETWORK_URL = /^(https?|rtsps?|rtmp|udp|rtp|srt|tcp):\/\//i;
const V4L2_DEVICE = /^\/dev\/video\d+$/;

/** Classifies a source string: a network URL, a `/dev/videoN` device (or any path when V4L2 options are given), else a file. */
export function toVideoInput(source: string, v4l2?: V4l2Options): VideoInput {
  if (NETWORK_URL.test(source)) return { kind: 'network', url: source };
  if (v4l2 || V4L2_DEVICE.test(source)) return { kind: 'v4l2', device: source, capture: v4l2 ?? {} };
  return { kind: 'file', path: source };
}

/** What one decode run asks of ffmpeg. Values are trusted: callers validate user input. */
export interface GreyDecodeSpec {
  input: VideoInput;
  /** Output size; one side alone keeps the aspect ratio; neither keeps the source size. */
  width?: number;
  height?: number;
  /** Read the input at its native frame rate (`-re`). */
  realtime?: boolean;
  /** Extra input options placed just before `-i`, for what this builder does not cover. */
  inputOptions?: readonly string[];
}

/**
 * Arguments for ffmpeg to decode `spec.input` to 8-bit grey raw video on stdout, one frame after another, with one
 * `showinfo` line per frame on stderr (its `pts_time` is the frame's presentation time). `-vsync passthrough` keeps
 * frames 1:1 with the decoder (no duplicates or drops), so the n-th stdout frame is the n-th showinfo line.
 */
export function greyDecodeArgs(spec: GreyDecodeSpec): string[] {
  // `level` prefixes each stderr line with its severity, which is how errors are told from information.
  const args = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'level+info'];
  if (spec.realtime) args.push('-re');
  args.push(...inputArgs(spec.input), ...(spec.inputOptions ?? []), '-i', inputLocation(spec.input));

  const filters = ['format=gray'];
  if (spec.width !== undefined || spec.height !== undefined) filters.push(`scale=${spec.width ?? -1}:${spec.height ?? -1}`);
  filters.push('showinfo');
  args.push('-map', '0:v:0', '-an', '-sn', '-dn', '-vf', filters.join(','), '-vsync', 'passthrough');
  args.push('-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1');
  return args;
}

function inputArgs(input: VideoInput): string[] {
  switch (input.kind) {
    case 'file':
      return [];
    case 'network': {
      // ffmpeg's default 5 s of stream analysis delays a live stream's first frame by as much; 1 s is enough for
      // the stream parameters. RTSP over TCP survives NAT and loss that UDP transport does not.
      const args = ['-analyzeduration', '1000000'];
      if (/^rtsps?:/i.test(input.url)) args.push('-rtsp_transport', 'tcp');
      return args;
    }
    case 'v4l2': {
      const { inputFormat, videoSize, frameRate } = input.capture;
      const args = ['-f', 'v4l2'];
      if (inputFormat) args.push('-input_format', inputFormat);
      if (videoSize) args.push('-video_size', videoSize);
      if (frameRate !== undefined) args.push('-framerate', String(frameRate));
      return args;
    }
  }
}

function inputLocation(input: VideoInput): string {
  switch (input.kind) {
    case 'file':
      // `file:` stops ffmpeg reading a name such as `a:b.mp4` as a protocol.
      return `file:${input.path}`;
    case 'network':
      return input.url;
    case 'v4l2':
      return input.device;
  }
}

/** One frame's line from the `showinfo` filter. */
export interface ShowinfoFrame {
  n: number;
  /** Seconds; `NaN` when the decoder had no timestamp (`NOPTS`). */
  ptsTime: number;
}

const SHOWINFO_FRAME = /Parsed_showinfo_\d+ @ [^\]]+\] (?:\[info\] )?n:\s*(\d+)\s+pts:\s*\S+\s+pts_time:(\S+)/;

/** Parses a `showinfo` per-frame line, or returns `null` for any other stderr line. */
export function parseShowinfo(line: string): ShowinfoFrame | null {
  const match = SHOWINFO_FRAME.exec(line);
  if (!match) return null;
  const ptsTime = Number(match[2]);
  return { n: Number(match[1]), ptsTime: Number.isFinite(ptsTime) ? ptsTime : Number.NaN };
}

/**
 * ffmpeg's text-mode demuxers: `tty` reads any text file as ANSI art (one picture of the text), the others read
 * DOS-era art files. Such an input decodes, but it is not a video.
 */
const TEXT_INPUT = /^(?:\[info\] )?Input #0, (tty|bin|xbin|adf|idf), from /;

/** The demuxer name when an `Input #0` line shows ffmpeg reading the source as text art, else `null`. */
export function textInputFormat(line: string): string | null {
  return TEXT_INPUT.exec(line)?.[1] ?? null;
}

const OUTPUT_SECTION = /^(?:\[info\] )?Output #0/;
/** ffmpeg 4 prints `gray, 224x168`; ffmpeg 5 adds the range and scan type: `gray(pc, progressive), 224x168`. */
const RAW_GREY_STREAM = /Stream #0:0.*: Video: rawvideo\b.*?, gray(?:\([^)]*\))?, (\d+)x(\d+)/;

/**
 * Reads the size of the frames ffmpeg will write from its `Output #0` stream line (printed before the first frame
 * reaches stdout). Feed every stderr line; returns the size once known.
 */
export class OutputSizeReader {
  private inOutputSection = false;

  read(line: string): { width: number; height: number } | null {
    if (OUTPUT_SECTION.test(line)) this.inOutputSection = true;
    if (!this.inOutputSection) return null;
    const match = RAW_GREY_STREAM.exec(line);
    return match ? { width: Number(match[1]), height: Number(match[2]) } : null;
  }
}

const ERROR_LEVEL = /\[(?:error|fatal|panic)\]/;

/** Whether a stderr line (logged with `-loglevel level+...`) was logged at error severity or worse. */
export function isErrorLine(line: string): boolean {
  return ERROR_LEVEL.test(line);
}

const SOURCE_MISSING =
  /No such file or directory|Connection refused|Server returned 4\d\d|Could not resolve|Name or service not known|No route to host|Network is unreachable|Connection timed out|Cannot open video device|No such device|bind failed|Address already in use/i;

/**
 * Whether ffmpeg's output says the source could not be reached at all (as opposed to reached and undecodable). A
 * port still bound by another process (an ffmpeg that has not exited yet) counts: it can free up.
 */
export function saysSourceMissing(stderr: string): boolean {
  return SOURCE_MISSING.test(stderr);
}
