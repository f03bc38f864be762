/** Short scanner-screen recordings: sample-video frames placed inside a scanner UI, encoded losslessly. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, take, toArray } from 'rxjs';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { resolveFfmpeg } from '../../src/runtime/ffmpeg.js';
import type { Frame, Region } from '../../src/runtime/types/frames.js';
import { scannerScreen, type ScreenLayout } from './scanner-screen.js';

const SAMPLE = fileURLToPath(new URL('../../assets/sample.mp4', import.meta.url));

/** Lossless FFV1 (Matroska): a pipeline decodes exactly the frames written. */
export const LOSSLESS = ['-c:v', 'ffv1'] as const;
/** H.264 as a screen recorder writes it (4:2:0, CRF 23): block and blur artefacts of video compression. */
export const RECORDER = ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-pix_fmt', 'yuv420p'] as const;

/** Encodes grey frames with `codec`'s ffmpeg arguments (default losslessly). */
export async function writeGreyVideo(path: string, frames: readonly Frame[], fps = 20, codec: readonly string[] = LOSSLESS): Promise<void> {
  const { width, height } = frames[0]!;
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', `${width}x${height}`, '-r', String(fps), '-i', '-', ...codec, path];
  const ffmpeg = spawn(resolveFfmpeg().path, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  ffmpeg.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  for (const frame of frames) ffmpeg.stdin.write(frame.data);
  ffmpeg.stdin.end();
  const [code] = await once(ffmpeg, 'close');
  if (code !== 0) throw new Error(`ffmpeg could not write ${path}: ${stderr}`);
}

/**
 * Writes `dir/screen.mkv`: the first `count` frames of the sample (at `layout.place`'s size) on 1920x1080 scanner
 * screens. Returns the path and, per frame, the screen and the true image region.
 */
export async function writeScannerScreenVideo(dir: string, layout: ScreenLayout, count: number): Promise<{ path: string; screens: { frame: Frame; truth: Region }[] }> {
  const scans = await lastValueFrom(fromVideo(SAMPLE, { width: layout.place.width, height: layout.place.height }).pipe(take(count), toArray()));
  const screens = scans.map((scan) => scannerScreen(scan, layout));
  const path = join(dir, 'screen.mkv');
  await writeGreyVideo(path, screens.map((screen) => screen.frame));
  return { path, screens };
}
