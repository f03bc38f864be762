#!/usr/bin/env node
/**
 * `lfusion serve <source>`: the live pipeline behind a WebSocket server.
 * `lfusion replay <video> --out <dir>`: every frame of a recording, written as JSON lines and PNG planes.
 */
import { createWriteStream, realpathSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Subscription } from 'rxjs';
import type { Spacing } from '../report/metrics.js';
import { encodePng } from '../report/png.js';
import { ProgressBar } from '../report/progress.js';
import { replayReport } from '../report/replay.js';
import { countFrames, type FrameSelection } from '../report/sources.js';
import { LfusionError, type LfusionErrorCode } from '../runtime/errors.js';
import { toVideoInput, type V4l2Options } from '../runtime/ffmpeg.js';
import { createPipeline, type PathName, type Pipeline, type PipelineOptions } from './pipeline.js';
import { modelInfo, ResultServer } from './server.js';
import type { ExecutionProvider, FrameResult, Plane } from '../runtime/types.js';

const USAGE = `usage:
  lfusion serve <source> [--port 8080] [--host 127.0.0.1] [--model <dir>] [--once]
                [--uncertainty [--planes <maps>] [--m 10 --n 4 --k 10 --seed 0]]
                [--paths frame|clip|frame,clip [--clip-stride 8] [--clip-align]]
                [--region auto|x,y,w,h | --no-region] [--no-reconnect] [--provider cpu|cuda|webgpu]
                [--input-format mjpeg --video-size 1920x1080 --framerate 30]   (V4L2 devices)
      Runs the pipeline live on a file (paced at its frame rate, looped unless --once), a URL or a
      V4L2 device, and serves results at the printed WebSocket URL (docs/protocol.md) and the overlay
      viewer at http://<host>:<port>/viewer/.
  lfusion replay <video | folder of videos | folder of images> --report <dir> [--model <dir>] [--provider ...]
                [--m 10 --n 4 --k 10 --seed 0] [--frames a:b | --max-frames N] [--pixel-spacing mm | x,y]
                [--ground-truth <HC18 folder or CSV>] [--mask-video <file>] [--thumbnails 8]
      QA report (docs/qa-replay.md): runs the uncertainty chain on every frame and writes <dir>/report.html
      (offline), frames.csv, frames.jsonl, alerts.jsonl, labels/*.png (source resolution) and run.json.
      Ctrl-C stops and still writes the report, marked partial.
  lfusion replay <video> --out <dir> [--model <dir>] [--uncertainty [--planes <maps>] [--m --n --k --seed]]
                [--paths frame|clip|frame,clip [--clip-stride 8] [--clip-align]] [--region auto|x,y,w,h]
                [--provider cpu|cuda|webgpu]
      Processes every frame; writes <dir>/results.jsonl (one line per frame) and <dir>/<plane>/<index>.png.
  --uncertainty adds the fused map, the OOD score and alerts; --planes adds per-path maps, comma-separated
  (e.g. laplace.mutual_information,dropout.total_entropy); --m/--n/--k (weight samples, logit samples per
  weight sample, dropout passes) and --seed override the model package's defaults.
  --region cuts frames to the ultrasound image of a scanner screen: "auto" detects it, x,y,w,h fixes it
  (screen pixels). Default: auto for devices and URLs, off for files; --no-region turns it off.
  --paths clip (or frame,clip) adds the clip path: the package's 3D heads on 16-frame windows every
  --clip-stride frames (default 8), planes clip.mask and clip.fused (and clip.<map> for each --planes map),
  a window OOD score and clip alerts; --clip-align aligns frames to a reference before the clip heads.
  --no-reconnect: end when a live source (device, URL) is lost instead of retrying with backoff.`;

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  model: { type: 'string' },
  out: { type: 'string' },
  report: { type: 'string' },
  m: { type: 'string' },
  n: { type: 'string' },
  k: { type: 'string' },
  seed: { type: 'string' },
  frames: { type: 'string' },
  'max-frames': { type: 'string' },
  'pixel-spacing': { type: 'string' },
  'ground-truth': { type: 'string' },
  'mask-video': { type: 'string' },
  thumbnails: { type: 'string' },
  provider: { type: 'string' },
  uncertainty: { type: 'boolean' },
  planes: { type: 'string' },
  paths: { type: 'string' },
  'clip-stride': { type: 'string' },
  'clip-align': { type: 'boolean' },
  once: { type: 'boolean' },
  region: { type: 'string' },
  'no-region': { type: 'boolean' },
  'no-reconnect': { type: 'boolean' },
  'input-format': { type: 'string' },
  'video-size': { type: 'string' },
  framerate: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The parsed flags (see OPTIONS). */
interface CliValues {
  port?: string;
  host?: string;
  model?: string;
  out?: string;
  report?: string;
  m?: string;
  n?: string;
  k?: string;
  seed?: string;
  frames?: string;
  'max-frames'?: string;
  'pixel-spacing'?: string;
  'ground-truth'?: string;
  'mask-video'?: string;
  thumbnails?: string;
  provider?: string;
  planes?: string;
  uncertainty?: boolean;
  paths?: string;
  'clip-stride'?: string;
  'clip-align'?: boolean;
  once?: boolean;
  region?: string;
  'no-region'?: boolean;
  'no-reconnect'?: boolean;
  'input-format'?: string;
  'video-size'?: string;
  framerate?: string;
  help?: boolean;
}

function usageError(message: string): LfusionError {
  return new LfusionError('INVALID_OPTION', `${message}\n${USAGE}`);
}

/** `--region` / `--no-region`: `undefined` leaves the pipeline's default (auto for devices and URLs). */
function regionOption(values: CliValues): PipelineOptions['region'] {
  if (values['no-region']) {
    if (values.region !== undefined) throw usageError('--region and --no-region exclude each other');
    return false;
  }
  if (values.region === undefined) return undefined;
  if (values.region === 'auto') return {};
  const numbers = values.region.split(',').map((part) => Number(part.trim()));
  if (numbers.length !== 4 || !numbers.every((n) => Number.isInteger(n) && n >= 0)) throw usageError(`--region must be "auto" or x,y,width,height in whole pixels, got ${values.region}`);
  const [x, y, width, height] = numbers as [number, number, number, number];
  return { region: { x, y, width, height } };
}

function pipelineOptions(source: string, values: CliValues): Omit<PipelineOptions, 'live' | 'video'> {
  const provider = values.provider ?? 'cpu';
  const region = regionOption(values);
  if (!['cpu', 'cuda', 'webgpu'].includes(provider)) throw usageError(`--provider must be cpu, cuda or webgpu, got ${provider}`);
  const paths = (values.paths ?? 'frame').split(',').map((path) => path.trim());
  if (!paths.every((path) => path === 'frame' || path === 'clip')) throw usageError(`--paths must be frame, clip or frame,clip, got ${values.paths}`);
  const clip = paths.includes('clip');
  if (!clip && (values['clip-stride'] !== undefined || values['clip-align'])) throw usageError('--clip-stride and --clip-align need --paths with clip');
  // The clip path always runs the uncertainty chain; the frame path only with --uncertainty.
  if (values.planes !== undefined && !values.uncertainty && !clip) throw usageError('--planes needs --uncertainty (or the clip path)');
  const planes = values.planes?.split(',').map((name) => name.trim()).filter(Boolean) ?? [];
  const counts = sampleCounts(values);
  if (Object.keys(counts).length > 0 && !values.uncertainty && !clip) throw usageError('--m, --n, --k and --seed need --uncertainty (or the clip path)');
  const stride = values['clip-stride'] === undefined ? undefined : Number(values['clip-stride']);
  return {
    source,
    ...(values.model ? { modelPath: values.model } : {}),
    pool: { executionProvider: provider as ExecutionProvider },
    analysis: values.uncertainty ? 'uncertainty' : 'segment',
    uncertainty: { planes, ...counts },
    paths: paths as PathName[],
    ...(clip ? { clip: { uncertainty: { planes, ...counts }, ...(stride === undefined ? {} : { stride }), ...(values['clip-align'] ? { align: true } : {}) } } : {}),
    ...(region === undefined ? {} : { region }),
    ...(values['no-reconnect'] ? { reconnect: false } : {}),
  };
}

/** `action` run at most once, however often it is called. */
function once(action: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= action());
}

/** Runs until the first SIGINT/SIGTERM (then `stop`), or until `done` settles. A second signal exits at once. */
async function untilSignalled(done: Promise<void>, stop: () => Promise<void>): Promise<void> {
  let signalled = false;
  const onSignal = () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write('\nstopping...\n');
    void stop().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await done;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** `--input-format`, `--video-size`, `--framerate`: V4L2 capture settings; `undefined` when none is given. */
function v4l2Options(values: CliValues): V4l2Options | undefined {
  const { 'input-format': inputFormat, 'video-size': videoSize, framerate } = values;
  if (inputFormat === undefined && videoSize === undefined && framerate === undefined) return undefined;
  if (videoSize !== undefined && !/^\d+x\d+$/.test(videoSize)) throw usageError(`--video-size must be WIDTHxHEIGHT, got ${videoSize}`);
  const frameRate = framerate === undefined ? undefined : Number(framerate);
  if (frameRate !== undefined && !(frameRate > 0)) throw usageError(`--framerate must be a positive number, got ${framerate}`);
  return { ...(inputFormat ? { inputFormat } : {}), ...(videoSize ? { videoSize } : {}), ...(frameRate ? { frameRate } : {}) };
}

async function serve(source: string, values: CliValues): Promise<void> {
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`--port must be 0..65535, got ${values.port}`);
  const v4l2 = v4l2Options(values);
  const isFile = toVideoInput(source, v4l2).kind === 'file';
  const pipeline = await createPipeline({
    ...pipelineOptions(source, values),
    live: true,
    image: true,
    video: isFile ? { realtime: true, ...(values.once ? {} : { inputOptions: ['-stream_loop', '-1'] }) } : v4l2 ? { v4l2 } : {},
  });
  const { manifest } = pipeline.model;
  const server = await ResultServer.listen({
    port,
    ...(values.host ? { host: values.host } : {}),
    model: modelInfo(manifest),
    streams: pipeline.streams,
  }).catch(async (error: unknown) => {
    await pipeline.close();
    throw error;
  });
  process.stdout.write(`${server.url}\n`);
  const features = [pipeline.region ? 'region detection' : '', pipeline.reconnect ? 'reconnecting' : ''].filter(Boolean).join(', ');
  process.stderr.write(`lfusion: serving ${source} with ${manifest.name} (${pipeline.pool.executionProvider}${features ? `; ${features}` : ''}); Ctrl-C stops\n`);
  process.stderr.write(`lfusion: overlay viewer at ${server.viewerUrl}\n`);
  const sourceLog = pipeline.sourceEvents$.subscribe((event) =>
    process.stderr.write(event.type === 'source-lost' ? `lfusion: source lost (${event.code}), retry ${event.attempt} in ${event.retryInMs} ms\n` : `lfusion: source restored after ${event.downtimeMs} ms\n`),
  );
  const delivery = server.deliver(pipeline);
  const stop = once(async () => {
    delivery.stop();
    sourceLog.unsubscribe();
    await server.close();
    await pipeline.close();
  });
  await untilSignalled(delivery.done, stop).finally(stop);
}

/** The PNG of a plane: the quantised bytes, except label maps (`mask`, `clip.mask`) whose classes are scaled to 0/255 to be visible. */
function planeImage(plane: Plane): { pixels: Uint8Array; min: number; scale: number } {
  if (plane.name !== 'mask' && plane.name !== 'clip.mask') return { pixels: plane.data, min: plane.min, scale: plane.scale };
  return { pixels: plane.data.map((q) => q * 255), min: 0, scale: 1 / 255 };
}

/** A whole number >= `min` from a flag, or `undefined` when the flag is absent. */
function integerOption(values: CliValues, name: 'm' | 'n' | 'k' | 'seed' | 'max-frames' | 'thumbnails', min: number): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw usageError(`--${name} must be a whole number >= ${min}, got ${text}`);
  return value;
}

/** `--m --n --k --seed`: only the flags given, so the manifest's defaults hold for the others. */
function sampleCounts(values: CliValues): { m?: number; n?: number; k?: number; seed?: number } {
  const entries = [
    ['m', integerOption(values, 'm', 1)],
    ['n', integerOption(values, 'n', 1)],
    ['k', integerOption(values, 'k', 1)],
    ['seed', integerOption(values, 'seed', 0)],
  ] as const;
  return Object.fromEntries(entries.filter(([, value]) => value !== undefined));
}

/** `--frames a:b` (half-open; either end may be left out) or `--max-frames N`. */
function frameSelection(values: CliValues): FrameSelection | undefined {
  const max = integerOption(values, 'max-frames', 1);
  if (values.frames === undefined) return max === undefined ? undefined : { start: 0, end: max };
  if (max !== undefined) throw usageError('--frames and --max-frames exclude each other');
  const match = /^(\d*):(\d*)$/.exec(values.frames);
  const start = Number(match?.[1] || 0);
  const end = match?.[2] ? Number(match[2]) : undefined;
  if (!match || (end !== undefined && end <= start)) throw usageError(`--frames must be a:b with a < b (either may be left out), got ${values.frames}`);
  return end === undefined ? { start } : { start, end };
}

/** `--pixel-spacing mm` (square pixels) or `x,y` (mm per pixel along x and y). */
function pixelSpacing(values: CliValues): Spacing | undefined {
  const text = values['pixel-spacing'];
  if (text === undefined) return undefined;
  const parts = text.split(',').map(Number);
  if (parts.length > 2 || !parts.every((v) => v > 0)) throw usageError(`--pixel-spacing must be mm per pixel, or x,y, got ${text}`);
  return { x: parts[0]!, y: parts[1] ?? parts[0]! };
}

/** `replay --report`: the QA report (src/report). Ctrl-C stops the run; the report is still written, marked partial. */
async function replayWithReport(source: string, values: CliValues): Promise<number> {
  for (const flag of ['uncertainty', 'planes', 'region', 'no-region'] as const) {
    if (values[flag] !== undefined) throw usageError(`--${flag} does not apply to replay --report (the report always runs the uncertainty chain on whole frames)`);
  }
  const provider = values.provider ?? 'cpu';
  if (!['cpu', 'cuda', 'webgpu'].includes(provider)) throw usageError(`--provider must be cpu, cuda or webgpu, got ${provider}`);
  const abort = new AbortController();
  const frames = frameSelection(values);
  const spacing = pixelSpacing(values);
  const thumbnails = integerOption(values, 'thumbnails', 0);
  const done = replayReport({
    source,
    report: values.report!,
    ...(values.model ? { modelPath: values.model } : {}),
    executionProvider: provider as ExecutionProvider,
    ...sampleCounts(values),
    ...(thumbnails === undefined ? {} : { thumbnails }),
    ...(frames ? { frames } : {}),
    ...(spacing ? { pixelSpacing: spacing } : {}),
    ...(values['ground-truth'] ? { groundTruth: values['ground-truth'] } : {}),
    ...(values['mask-video'] ? { maskVideo: values['mask-video'] } : {}),
    command: ['lfusion', ...process.argv.slice(2)],
    signal: abort.signal,
  });
  // First Ctrl-C: stop and write the partial report; a second one exits at once.
  const onSignal = () => {
    if (abort.signal.aborted) process.exit(130);
    process.stderr.write('\nstopping: writing the partial report (Ctrl-C again quits at once)...\n');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const summary = await done.finally(() => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  });
  const state = summary.partial ? 'partial report' : 'report';
  process.stderr.write(`lfusion: ${summary.frames} frames; ${state} at ${summary.reportPath}\n`);
  for (const error of summary.errors) process.stderr.write(`lfusion: ${error.source}: ${error.message} [${error.code}]\n`);
  if (summary.errors.length > 0) throw new LfusionError(summary.errors[0]!.code as LfusionErrorCode, `${summary.errors.length} source(s) failed; the report covers the frames that were processed`);
  return abort.signal.aborted ? 130 : 0;
}

/** Exit code: 0, or 130 when Ctrl-C stopped a report run. */
async function replay(video: string, values: CliValues): Promise<number> {
  if (values.report) {
    if (values.out) throw usageError('--out and --report exclude each other');
    return replayWithReport(video, values);
  }
  if (!values.out) throw usageError('replay needs --out <dir> (frames only) or --report <dir> (QA report)');
  for (const flag of ['frames', 'max-frames', 'pixel-spacing', 'ground-truth', 'mask-video', 'thumbnails'] as const) {
    if (values[flag] !== undefined) throw usageError(`--${flag} needs --report`);
  }
  const out = values.out;
  const [pipeline, total] = await Promise.all([createPipeline({ ...pipelineOptions(video, values), live: false }), countFrames(video)]);
  const progress = new ProgressBar(total);
  await mkdir(out, { recursive: true });
  await Promise.all(pipeline.streams.map((name) => mkdir(join(out, name), { recursive: true })));
  const lines = createWriteStream(join(out, 'results.jsonl'));
  const write = async (result: FrameResult) => {
    const name = String(result.frame.index).padStart(6, '0');
    const planes = await Promise.all(
      result.planes.map(async (plane) => {
        const image = planeImage(plane);
        const file = `${plane.name}/${name}.png`;
        await writeFile(join(out, file), encodePng(plane.width, plane.height, image.pixels));
        return { name: plane.name, file, width: plane.width, height: plane.height, min: image.min, scale: image.scale };
      }),
    );
    const { region, screen, ood, clipOod } = result;
    lines.write(`${JSON.stringify({ frame: result.frame, planes, ...(ood ? { ood } : {}), ...(clipOod ? { clipOod } : {}), ...(region ? { region, screen } : {}), timings: result.timings })}\n`);
    progress.tick();
  };
  let subscription: Subscription | undefined;
  let writing = Promise.resolve();
  const finished = new Promise<void>((resolve, reject) => {
    subscription = pipeline.results$.subscribe({
      next: (result) => (writing = writing.then(() => write(result))),
      error: reject,
      complete: resolve,
    });
  });
  const stop = once(async () => {
    subscription?.unsubscribe();
    await writing;
    await new Promise<void>((resolve) => lines.end(resolve));
    await pipeline.close();
    progress.finish();
  });
  try {
    await untilSignalled(finished.then(() => writing), stop);
  } finally {
    await stop();
  }
  process.stderr.write(`lfusion: wrote ${progress.frames} frames to ${out}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const [command, source, ...extra] = parsed.positionals;
  if (parsed.values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  if (!source || extra.length > 0) throw usageError(`${command} takes exactly one source`);
  if (command === 'serve') await serve(source, parsed.values);
  else if (command === 'replay') return replay(source, parsed.values);
  else throw usageError(`unknown command "${command}"`);
  return 0;
}

function isMainModule(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMainModule()) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      const code = error instanceof LfusionError ? ` [${error.code}]` : '';
      process.stderr.write(`lfusion: ${error instanceof Error ? error.message : String(error)}${code}\n`);
      process.exit(1);
    },
  );
}
