/**
 * Builds assets/sample.mp4: a slow pan and zoom over a few HC18 scans with cross-fades, so that the SDK runs out of the
 * box on real ultrasound without ../shared. Also writes assets/ATTRIBUTION.md (the data's licence asks for it).
 *
 *   node --import tsx scripts/make-sample-video.ts [--data ../shared/data/hc18] [--out assets]
 *
 * Scans come from the TEST split of models/splits/hc18_split.json when it exists, so the sample never shows the model
 * a scan it was trained on.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { firstValueFrom } from 'rxjs';
import { fromVideo } from '../src/operators/fromVideo.js';
import { resolveFfmpeg } from '../src/runtime/ffmpeg.js';

/** What the sample is; tests check decoded output against it. */
export const SAMPLE_VIDEO = {
  width: 800,
  height: 540,
  fps: 20,
  scans: 5,
  /** Seconds from one scan's start to the next's. */
  secondsPerScan: 3.4,
  /** Seconds of cross-fade at the end of each scan but the last. */
  fadeSeconds: 0.8,
  get frames(): number {
    return Math.round(this.scans * this.secondsPerScan * this.fps);
  },
} as const;

const REPO_ROOT = resolve(import.meta.dirname, '..');
const SPLIT_FILE = join(REPO_ROOT, 'models/splits/hc18_split.json');
const MAX_ZOOM = 1.25;

interface Scan {
  name: string;
  pixels: Uint8Array;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string', default: join(REPO_ROOT, '../shared/data/hc18') },
      out: { type: 'string', default: join(REPO_ROOT, 'assets') },
    },
  });
  const trainingSet = join(values.data, 'training_set');
  if (!existsSync(trainingSet)) throw new Error(`HC18 training set not found at ${trainingSet} (pass --data)`);
  const scans = await pickScans(trainingSet);
  const videoPath = join(values.out, 'sample.mp4');
  await encode(scans, videoPath);
  writeAttribution(join(values.out, 'ATTRIBUTION.md'), scans);
  const megabytes = statSync(videoPath).size / 1e6;
  console.log(`${videoPath}: ${SAMPLE_VIDEO.frames} frames, ${megabytes.toFixed(2)} MB, scans ${scans.map((s) => s.name).join(', ')}`);
}

/** Evenly spaced scans of the sample's size, from the test split when there is one, else from all scans. */
async function pickScans(trainingSet: string): Promise<Scan[]> {
  const candidates = existsSync(SPLIT_FILE)
    ? (JSON.parse(readFileSync(SPLIT_FILE, 'utf8')) as { scans: { test: string[] } }).scans.test
    : [];
  if (candidates.length === 0) throw new Error(`no test split in ${SPLIT_FILE}: run the data preparation first`);
  const sized: Scan[] = [];
  for (const name of [...candidates].sort()) {
    // Decoding a PNG is a one-frame video to ffmpeg: the SDK's own source reads it.
    const frame = await firstValueFrom(fromVideo(join(trainingSet, `${name}.png`)));
    if (frame.width === SAMPLE_VIDEO.width && frame.height === SAMPLE_VIDEO.height) sized.push({ name, pixels: frame.data });
  }
  if (sized.length < SAMPLE_VIDEO.scans) throw new Error(`only ${sized.length} test scans are ${SAMPLE_VIDEO.width}x${SAMPLE_VIDEO.height}`);
  return Array.from({ length: SAMPLE_VIDEO.scans }, (_, i) => sized[Math.floor((i * sized.length) / SAMPLE_VIDEO.scans)] as Scan);
}

/** Renders every frame in JS and pipes it to ffmpeg's H.264 encoder (no filter that old ffmpeg builds lack). */
async function encode(scans: Scan[], videoPath: string): Promise<void> {
  const { width, height, fps } = SAMPLE_VIDEO;
  const ffmpeg = spawn(resolveFfmpeg().path, [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', `${width}x${height}`, '-r', String(fps), '-i', 'pipe:0',
    // One keyframe a second: a receiver joining a stream late starts within a second.
    '-c:v', 'libx264', '-preset', 'slow', '-crf', '24', '-g', String(fps), '-threads', '1',
    '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-map_metadata', '-1', videoPath,
  ], { stdio: ['pipe', 'inherit', 'inherit'] });
  const exited = once(ffmpeg, 'close');
  for (let i = 0; i < SAMPLE_VIDEO.frames; i += 1) {
    if (!ffmpeg.stdin.write(renderFrame(scans, i / fps))) await once(ffmpeg.stdin, 'drain');
  }
  ffmpeg.stdin.end();
  const [code] = (await exited) as [number | null];
  if (code !== 0) throw new Error(`ffmpeg exited with code ${code} while encoding ${videoPath}`);
}

/** Scan `i` zooms in slowly towards a point off-centre; during the last `fadeSeconds` it blends into scan `i + 1`. */
function renderFrame(scans: Scan[], seconds: number): Uint8Array {
  const { secondsPerScan, fadeSeconds } = SAMPLE_VIDEO;
  const current = Math.min(Math.floor(seconds / secondsPerScan), scans.length - 1);
  const local = seconds - current * secondsPerScan;
  const frame = renderScan(scans[current] as Scan, current, local / secondsPerScan);
  const fadeStart = secondsPerScan - fadeSeconds;
  if (current + 1 < scans.length && local > fadeStart) {
    const next = renderScan(scans[current + 1] as Scan, current + 1, 0);
    const alpha = (local - fadeStart) / fadeSeconds;
    for (let p = 0; p < frame.length; p += 1) frame[p] = Math.round((1 - alpha) * (frame[p] as number) + alpha * (next[p] as number));
  }
  return frame;
}

/** One scan at `progress` (0..1) through its zoom, sampled bilinearly. */
function renderScan(scan: Scan, position: number, progress: number): Uint8Array {
  const { width, height } = SAMPLE_VIDEO;
  const ease = 0.5 - 0.5 * Math.cos(Math.PI * Math.min(Math.max(progress, 0), 1));
  const zoom = 1 + (MAX_ZOOM - 1) * ease;
  // Alternate the drift direction from scan to scan; keep the zoomed window inside the image.
  const drift = (position % 2 === 0 ? 1 : -1) * ease;
  const halfW = width / 2 / zoom;
  const halfH = height / 2 / zoom;
  const centreX = width / 2 + drift * (width / 2 - halfW);
  const centreY = height / 2 + 0.5 * ease * (height / 2 - halfH);
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y += 1) {
    const sy = Math.min(centreY + (y + 0.5 - height / 2) / zoom - 0.5, height - 1.001);
    const y0 = Math.max(Math.floor(sy), 0);
    const fy = sy - y0;
    for (let x = 0; x < width; x += 1) {
      const sx = Math.min(centreX + (x + 0.5 - width / 2) / zoom - 0.5, width - 1.001);
      const x0 = Math.max(Math.floor(sx), 0);
      const fx = sx - x0;
      const i = y0 * width + x0;
      const top = (scan.pixels[i] as number) * (1 - fx) + (scan.pixels[i + 1] as number) * fx;
      const bottom = (scan.pixels[i + width] as number) * (1 - fx) + (scan.pixels[i + width + 1] as number) * fx;
      out[y * width + x] = Math.round(top * (1 - fy) + bottom * fy);
    }
  }
  return out;
}

function writeAttribution(path: string, scans: Scan[]): void {
  const { width, height, fps, frames } = SAMPLE_VIDEO;
  const text = `# Attribution for assets/

## sample.mp4

A ${(frames / fps).toFixed(1)} s, ${width}x${height}, ${fps} fps (${frames} frames) H.264 video: a slow zoom over ${scans.length}
fetal head ultrasound scans from the HC18 dataset, with cross-fades between them.

- Scans (HC18 \`training_set\`, all from the **test** split of \`models/splits/hc18_split.json\`, so not seen in training):
  ${scans.map((s) => `\`${s.name}.png\``).join(', ')}
- Made by: \`node --import tsx scripts/make-sample-video.ts\` (from the repository root, with \`../shared/data/hc18\`).
  The script renders the frames and encodes them with the ffmpeg the SDK resolves (libx264, CRF 24, yuv420p).

### Source and licence

HC18 Grand Challenge data: T. L. A. van den Heuvel, D. de Bruijn, C. L. de Korte, B. van Ginneken,
"Automated measurement of fetal head circumference using 2D ultrasound images", PLoS ONE 13(8): e0200412 (2018),
https://doi.org/10.1371/journal.pone.0200412. Data: Zenodo record 1327317, https://doi.org/10.5281/zenodo.1327317.

Licensed under Creative Commons Attribution 4.0 International (CC BY 4.0), https://creativecommons.org/licenses/by/4.0/.
Changes made: scans cropped, zoomed, cross-faded and re-encoded as video.
`;
  writeFileSync(path, text);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
