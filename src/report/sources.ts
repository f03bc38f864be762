/**
 * What a replay reads: one video, a folder of videos, or a folder of images (each image one frame, e.g. HC18
 * scans), listed in name order, with their frame counts for the progress bar.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { SourceError } from '../runtime/errors.js';
import { resolveFfmpeg, toVideoInput } from '../runtime/ffmpeg.js';
import { spawnFfmpeg, stopFfmpeg } from '../runtime/ffmpeg-process.js';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff']);
const VIDEO_EXTENSIONS = new Set(['.mp4', '.mkv', '.avi', '.mov', '.webm', '.m4v', '.mpg', '.mpeg', '.ts', '.wmv', '.nut']);

/** One file of a replay. */
export interface ReplayInput {
  path: string;
  /** File name, as it appears in the report and the CSV. */
  name: string;
  kind: 'video' | 'image';
}

/** Which frames to process: `[start, end)` per video, or of the image sequence of an image folder. */
export interface FrameSelection {
  start: number;
  end?: number;
}

export interface ReplayInputs {
  layout: 'video' | 'videos' | 'images';
  inputs: ReplayInput[];
}

const isImage = (file: string) => IMAGE_EXTENSIONS.has(extname(file).toLowerCase());

/** A file a replay reads as one recording: a video, or an image that is not an HC18 outline annotation. */
export const isRecordingFile = (file: string) => VIDEO_EXTENSIONS.has(extname(file).toLowerCase()) || (isImage(file) && !/_Annotation\.[a-z]+$/i.test(file));

/**
 * Lists a replay's inputs. A folder holding images is an image folder (HC18 outline annotations,
 * `*_Annotation.*`, are ground truth, not frames); otherwise its videos are replayed one after another.
 */
export function listInputs(source: string): ReplayInputs {
  if (toVideoInput(source).kind === 'network') return { layout: 'video', inputs: [{ path: source, name: source, kind: 'video' }] };
  if (!existsSync(source)) throw new SourceError('SOURCE_NOT_FOUND', `${source} does not exist`, source, '');
  if (!statSync(source).isDirectory()) {
    return { layout: isImage(source) ? 'images' : 'video', inputs: [{ path: source, name: basename(source), kind: isImage(source) ? 'image' : 'video' }] };
  }
  const files = readdirSync(source).sort().filter((file) => statSync(join(source, file)).isFile());
  const images = files.filter((file) => isImage(file) && !/_Annotation\.[a-z]+$/i.test(file));
  if (images.length > 0) return { layout: 'images', inputs: images.map((file) => ({ path: join(source, file), name: file, kind: 'image' })) };
  const videos = files.filter((file) => VIDEO_EXTENSIONS.has(extname(file).toLowerCase()));
  if (videos.length === 0) throw new SourceError('SOURCE_NOT_FOUND', `${source} holds no images or videos`, source, '');
  return { layout: 'videos', inputs: videos.map((file) => ({ path: join(source, file), name: file, kind: 'video' })) };
}

/** How long counting a file's frames may take before the progress bar does without a total. */
const COUNT_TIMEOUT_MS = 30_000;

/**
 * Frames in a video file, counted by ffmpeg without decoding (stream copy); `undefined` when it cannot tell, for a
 * live source (a URL or a device: no count, nothing started), or when counting takes over `timeoutMs`.
 */
export function countFrames(video: string, timeoutMs = COUNT_TIMEOUT_MS): Promise<number | undefined> {
  if (toVideoInput(video).kind !== 'file') return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const ffmpeg = spawnFfmpeg(resolveFfmpeg().path, ['-hide_banner', '-nostdin', '-i', `file:${video}`, '-map', '0:v:0', '-c', 'copy', '-f', 'null', '-'], ['ignore', 'ignore', 'pipe']);
    let stderr = '';
    const timeout = setTimeout(() => {
      void stopFfmpeg(ffmpeg);
      resolve(undefined);
    }, timeoutMs);
    ffmpeg.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4096)));
    ffmpeg.on('error', () => resolve(undefined));
    ffmpeg.on('close', (code) => {
      clearTimeout(timeout);
      const frames = [...stderr.matchAll(/frame=\s*(\d+)/g)].at(-1)?.[1];
      resolve(code === 0 && frames ? Number(frames) : undefined);
    });
  });
}

/** How many of `count` frames a selection keeps. */
export function selectedCount(count: number, selection: FrameSelection): number {
  return Math.max(0, Math.min(count, selection.end ?? Infinity) - selection.start);
}

/** Frames the whole run will process, for the progress bar; `undefined` when a video's count is unknown. */
export async function totalFrames({ layout, inputs }: ReplayInputs, selection: FrameSelection): Promise<number | undefined> {
  if (layout === 'images') return selectedCount(inputs.length, selection);
  const counts = await Promise.all(inputs.map((input) => countFrames(input.path)));
  if (counts.some((count) => count === undefined)) return undefined;
  return counts.reduce<number>((sum, count) => sum + selectedCount(count!, selection), 0);
}
