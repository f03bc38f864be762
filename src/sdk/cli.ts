#!/usr/bin/env node
/**
 * `lfusion serve <source>`: the live pipeline behind a WebSocket server.
 * `lfusion replay <video> --out <dir>`: every frame of a recording, written as JSON lines and PNG planes.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, realpathSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { crc32, deflateSync } from 'node:zlib';
import type { Subscription } from 'rxjs';
import { LfusionError } from './errors.js';
import { resolveFfmpeg, toVideoInput, type V4l2Options } from './ffmpeg.js';
import { createPipeline, type Pipeline, type PipelineOptions } from './pipeline.js';
import { modelInfo, ResultServer } from './server.js';
import type { ExecutionProvider, FrameResult, Plane } from './types.js';

const USAGE = `usage:
  lfusion serve <source> [--port 8080] [--host 127.0.0.1] [--model <dir>] [--uncertainty [--planes <maps>]] [--once]
                [--region auto|x,y,w,h | --no-region] [--no-reconnect] [--provider cpu|cuda|webgpu]
                [--input-format mjpeg --video-size 1920x1080 --framerate 30]   (V4L2 devices)
      Runs the pipeline live on a file (paced at its frame rate, looped unless --once), a URL or a
      V4L2 device, and serves results at the printed WebSocket URL (docs/protocol.md) and the overlay
      viewer at http://<host>:<port>/viewer/.
  lfusion replay <video> --out <dir> [--model <dir>] [--uncertainty [--planes <maps>]] [--region auto|x,y,w,h]
                [--provider cpu|cuda|webgpu]
      Processes every frame; writes <dir>/results.jsonl (one line per frame) and <dir>/<plane>/<index>.png.
  --uncertainty adds the fused map, the OOD score and alerts; --planes adds per-path maps, comma-separated
  (e.g. laplace.mutual_information,dropout.total_entropy).
  --region cuts frames to the ultrasound image of a scanner screen: "auto" detects it, x,y,w,h fixes it
  (screen pixels). Default: auto for devices and URLs, off for files; --no-region turns it off.
  --no-reconnect: end when a live source (device, URL) is lost instead of retrying with backoff.`;

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  model: { type: 'string' },
  out: { type: 'string' },
  provider: { type: 'string' },
  uncertainty: { type: 'boolean' },
  planes: { type: 'string' },
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
  provider?: string;
  planes?: string;
  uncertainty?: boolean;
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
  if (values.planes !== undefined && !values.uncertainty) throw usageError('--planes needs --uncertainty');
  const planes = values.planes?.split(',').map((name) => name.trim()).filter(Boolean) ?? [];
  return {
    source,
    ...(values.model ? { modelPath: values.model } : {}),
    pool: { executionProvider: provider as ExecutionProvider },
    analysis: values.uncertainty ? 'uncertainty' : 'segment',
    uncertainty: { planes },
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

/** Frames in a file, counted by ffmpeg without decoding (stream copy); `undefined` when it cannot tell. */
function countFrames(video: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const ffmpeg = spawn(resolveFfmpeg().path, ['-hide_banner', '-nostdin', '-i', video, '-map', '0:v:0', '-c', 'copy', '-f', 'null', '-'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    ffmpeg.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4096)));
    ffmpeg.on('error', () => resolve(undefined));
    ffmpeg.on('close', (code) => {
      const frames = [...stderr.matchAll(/frame=\s*(\d+)/g)].at(-1)?.[1];
      resolve(code === 0 && frames ? Number(frames) : undefined);
    });
  });
}

/** A grey 8-bit PNG (filter type 0 on every row), deflated with node's zlib. */
export function encodePng(width: number, height: number, pixels: Uint8Array): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const header = Buffer.alloc(8);
    header.writeUInt32BE(data.length, 0);
    header.write(type, 4, 'ascii');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([header.subarray(4), data])), 0);
    return Buffer.concat([header, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8); // bit depth 8, grey, deflate, adaptive filtering, no interlace
  const rows = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) rows.set(pixels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

/** The PNG of a plane: the quantised bytes, except `mask` whose classes are scaled to 0/255 to be visible. */
function planeImage(plane: Plane): { pixels: Uint8Array; min: number; scale: number } {
  if (plane.name !== 'mask') return { pixels: plane.data, min: plane.min, scale: plane.scale };
  return { pixels: plane.data.map((q) => q * 255), min: 0, scale: 1 / 255 };
}

function progressLine(done: number, total: number | undefined, startedMs: number): string {
  const seconds = (Date.now() - startedMs) / 1000;
  const fps = seconds > 0 ? done / seconds : 0;
  if (total === undefined) return `${done} frames  ${fps.toFixed(1)} fps`;
  const width = 30;
  const filled = Math.min(width, Math.round((done / total) * width));
  const eta = fps > 0 ? Math.max(0, (total - done) / fps) : NaN;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} frames  ${fps.toFixed(1)} fps  ETA ${Number.isNaN(eta) ? '?' : `${eta.toFixed(0)}s`}`;
}

async function replay(video: string, values: CliValues): Promise<void> {
  if (!values.out) throw usageError('replay needs --out <dir>');
  const out = values.out;
  const [pipeline, total] = await Promise.all([createPipeline({ ...pipelineOptions(video, values), live: false }), countFrames(video)]);
  await mkdir(out, { recursive: true });
  await Promise.all(pipeline.streams.map((name) => mkdir(join(out, name), { recursive: true })));
  const lines = createWriteStream(join(out, 'results.jsonl'));
  const started = Date.now();
  const tty = process.stderr.isTTY;
  let done = 0;
  let lastReport = 0;
  const report = (final = false) => {
    if (!final && Date.now() - lastReport < (tty ? 100 : 2000)) return;
    lastReport = Date.now();
    process.stderr.write(tty ? `\r${progressLine(done, total, started)}${final ? '\n' : ''}` : `${progressLine(done, total, started)}\n`);
  };
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
    const { region, screen, ood } = result;
    lines.write(`${JSON.stringify({ frame: result.frame, planes, ...(ood ? { ood } : {}), ...(region ? { region, screen } : {}), timings: result.timings })}\n`);
    done += 1;
    report();
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
    report(true);
  });
  try {
    await untilSignalled(finished.then(() => writing), stop);
  } finally {
    await stop();
  }
  process.stderr.write(`lfusion: wrote ${done} frames to ${out}\n`);
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
  else if (command === 'replay') await replay(source, parsed.values);
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
