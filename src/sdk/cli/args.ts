/**
 * What the `lfusion` commands share: the usage text, the option table and its parsing, usage errors, and
 * the flags that more than one command reads (sample counts, provider, and the pipeline options that
 * `serve` and `replay --out` both build).
 */
import { parseArgs } from 'node:util';
import { LfusionError } from '../../runtime/errors.js';
import type { ExecutionProvider } from '../../runtime/types/model.js';
import type { PathName, PipelineOptions } from '../pipeline-options.js';

export const USAGE = `usage:
  lfusion serve <source> [--port 8080] [--host 127.0.0.1] [--model <dir>] [--once]
                [--token <secret> (or LFUSION_TOKEN)] [--allow-origin <origin>]... [--tls-cert <pem> --tls-key <pem>]
                [--uncertainty [--planes <maps>] [--m 10 --n 4 --k 10 --seed 18] [--mode live|exact]] [--biometry [--pixel-spacing mm | x,y]]
                [--paths frame|clip|frame,clip [--clip-stride 8] [--clip-align]]
                [--region auto|x,y,w,h | --no-region] [--no-reconnect] [--provider cpu|cuda|webgpu]
                [--input-format mjpeg --video-size 1920x1080 --framerate 30]   (V4L2 devices)
      Runs the pipeline live on a file (paced at its frame rate, looped unless --once), a URL or a
      V4L2 device, and serves results at the printed WebSocket URL (docs/protocol.md) and the overlay
      viewer at http://<host>:<port>/viewer/. A host other than 127.0.0.1 needs a token (16+ characters) that
      clients send as ?token= or "Authorization: Bearer"; browsers from other sites need --allow-origin;
      --tls-cert/--tls-key serve https and wss (docs/integration.md, "Security").
  lfusion replay <video | folder of videos | folder of images> --report <dir> [--model <dir>] [--provider ...]
                [--m 10 --n 4 --k 10 --seed 18] [--frames a:b | --max-frames N] [--pixel-spacing mm | x,y]
                [--ground-truth <HC18 folder or CSV>] [--mask-video <file>] [--thumbnails 8] [--mask ellipse|pixels]
      QA report (docs/qa-replay.md): runs the uncertainty chain on every frame and writes <dir>/report.html
      (offline), frames.csv, frames.jsonl, alerts.jsonl, labels/*.png (source resolution) and run.json.
      Ctrl-C stops and still writes the report, marked partial. --mask: the label maps written and scored,
      the head biometry's ellipse (default) or the thresholded pixels.
  lfusion replay <video> --out <dir> [--model <dir>] [--uncertainty [--planes <maps>] [--m --n --k --seed] [--mode exact|live] [--biometry]]
                [--paths frame|clip|frame,clip [--clip-stride 8] [--clip-align]] [--region auto|x,y,w,h]
                [--provider cpu|cuda|webgpu]
      Processes every frame; writes <dir>/results.jsonl (one line per frame) and <dir>/<plane>/<index>.png.
  --uncertainty adds the fused map, the OOD score and alerts; --planes adds per-path maps, comma-separated
  (e.g. laplace.mutual_information,dropout.total_entropy); --m/--n/--k (weight samples, logit samples per
  weight sample, dropout passes) and --seed override the model package's defaults.
  --mode live spreads those samples over consecutive frames and pools the last frames' (reset on a scene cut):
  serve's default, the mode that keeps up with a 30 frames/s scanner (its cost on a moving probe is measured in
  docs/results.md); exact, replay's default, samples all of them on every frame.
  --biometry adds head biometry to every frame (ellipse, HC/BPD/OFD with 95% intervals, GA, status; in mm
  with --pixel-spacing, mm per pixel of the frame), on each path asked for (the clip path's from the clip
  heads' samples); replay --report always measures it.
  --region cuts frames to the ultrasound image of a scanner screen: "auto" detects it, x,y,w,h fixes it
  (screen pixels). Default: auto for devices and URLs, off for files; --no-region turns it off.
  --paths clip (or frame,clip) adds the clip path: the package's 3D heads on 16-frame windows every
  --clip-stride frames (default 8), planes clip.mask and clip.fused (and clip.<map> for each --planes map),
  a window OOD score and clip alerts; --clip-align aligns frames to a reference before the clip heads.
  --no-reconnect: end when a live source (device, URL) is lost instead of retrying with backoff.
  lfusion queue add <files | folders>... [--report-root qa-reports] [--attempts 3 --backoff 30]
                [replay --report's flags: --model --provider --m --n --k --seed --frames --max-frames
                 --pixel-spacing --ground-truth --thumbnails --mask]
      One replay job per recording (a folder: every video and image below it) on the Redis job queue; a
      recording already queued (same bytes, any state) is left as it is. Workers write <report-root>/<name>-<hash>/.
  lfusion queue status [--json]
      Jobs waiting, active (with progress), delayed (retry backoff), completed and failed (with reasons).
  lfusion queue retry
      Failed jobs back on the queue (after fixing what failed them), with their attempts afresh.
  lfusion queue report [--report-root qa-reports] [--out <report-root>/index.html]
      One offline page over every completed recording under the root (and the failed jobs, when Redis answers).
  lfusion worker [--concurrency 1] [--lock-duration 30]
      Runs queued jobs, each exactly as replay --report; run one per machine (docs/scale-out.md). Ctrl-C
      finishes the running jobs first; a second Ctrl-C quits at once (another worker takes the jobs over).
  The queue commands and the worker reach Redis at --redis <redis://:password@host:6379> (or LFUSION_REDIS_URL)
  and take --queue <name> (default lfusion-replay).`;

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
  mask: { type: 'string' },
  thumbnails: { type: 'string' },
  provider: { type: 'string' },
  uncertainty: { type: 'boolean' },
  mode: { type: 'string' },
  biometry: { type: 'boolean' },
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
  token: { type: 'string' },
  'allow-origin': { type: 'string', multiple: true },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'report-root': { type: 'string' },
  redis: { type: 'string' },
  queue: { type: 'string' },
  attempts: { type: 'string' },
  backoff: { type: 'string' },
  concurrency: { type: 'string' },
  'lock-duration': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The command line split into flags (see OPTIONS) and positionals; a parse failure is a usage error. */
export function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw usageError((error as Error).message);
  }
}

/** The parsed flags (see OPTIONS). */
export type CliValues = ReturnType<typeof parseCommandLine>['values'];

export function usageError(message: string): LfusionError {
  return new LfusionError('INVALID_OPTION', `${message}\n${USAGE}`);
}

/** A whole number >= `min` from a flag, or `undefined` when the flag is absent. */
export function integerOption(values: CliValues, name: 'm' | 'n' | 'k' | 'seed' | 'max-frames' | 'thumbnails' | 'attempts' | 'backoff' | 'concurrency' | 'lock-duration', min: number): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw usageError(`--${name} must be a whole number >= ${min}, got ${text}`);
  return value;
}

/** Refuses flags that `command` does not read (they would otherwise be ignored silently). */
export function onlyFlags(command: string, values: CliValues, allowed: readonly string[]): void {
  const extra = Object.keys(values).filter((name) => name !== 'help' && !allowed.includes(name));
  if (extra.length > 0) throw usageError(`${command} does not take ${extra.map((name) => `--${name}`).join(', ')}`);
}

/** `--m --n --k --seed`: only the flags given, so the manifest's defaults hold for the others. */
export function sampleCounts(values: CliValues): { m?: number; n?: number; k?: number; seed?: number } {
  const entries = [
    ['m', integerOption(values, 'm', 1)],
    ['n', integerOption(values, 'n', 1)],
    ['k', integerOption(values, 'k', 1)],
    ['seed', integerOption(values, 'seed', 0)],
  ] as const;
  return Object.fromEntries(entries.filter(([, value]) => value !== undefined));
}

/** `--provider`, default cpu. */
export function providerOption(values: CliValues): ExecutionProvider {
  const provider = values.provider ?? 'cpu';
  if (!['cpu', 'cuda', 'webgpu'].includes(provider)) throw usageError(`--provider must be cpu, cuda or webgpu, got ${provider}`);
  return provider as ExecutionProvider;
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

/** `--pixel-spacing mm` (square pixels) or `x,y` (mm per pixel along x and y). */
export function pixelSpacing(values: CliValues): { x: number; y: number } | undefined {
  const text = values['pixel-spacing'];
  if (text === undefined) return undefined;
  const parts = text.split(',').map(Number);
  if (parts.length > 2 || !parts.every((v) => v > 0)) throw usageError(`--pixel-spacing must be mm per pixel, or x,y, got ${text}`);
  return { x: parts[0]!, y: parts[1] ?? parts[0]! };
}

/**
 * The pipeline options `serve` and `replay --out` share; each adds its own `live` and `video`. `mode` is the
 * sampling mode without `--mode`: `serve` live (within issue 15's quality budget on the alert, Dice and the HC
 * intervals, and the mode that keeps up: docs/results.md), `replay` exact (every sample fresh, for QA).
 */
export function pipelineOptions(source: string, values: CliValues, mode: 'live' | 'exact'): Omit<PipelineOptions, 'live' | 'video'> {
  const region = regionOption(values);
  const provider = providerOption(values);
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
  if (values.biometry && !values.uncertainty && !clip) throw usageError('--biometry needs --uncertainty (or the clip path)');
  if (values.mode !== undefined && values.mode !== 'live' && values.mode !== 'exact') throw usageError(`--mode must be live or exact, got ${values.mode}`);
  if (values.mode !== undefined && !values.uncertainty) throw usageError('--mode needs --uncertainty');
  const spacing = pixelSpacing(values);
  if (spacing && !values.biometry) throw usageError('--pixel-spacing needs --biometry (or replay --report)');
  const biometry = values.biometry ? { biometry: spacing ? { pixelSpacing: spacing } : true } : {};
  return {
    source,
    ...(values.model ? { modelPath: values.model } : {}),
    pool: { executionProvider: provider },
    analysis: values.uncertainty ? 'uncertainty' : 'segment',
    uncertainty: { planes, ...counts, ...(values.uncertainty ? biometry : {}), mode: (values.mode as 'live' | 'exact' | undefined) ?? mode },
    paths: paths as PathName[],
    ...(clip ? { clip: { uncertainty: { planes, ...counts, ...biometry }, ...(stride === undefined ? {} : { stride }), ...(values['clip-align'] ? { align: true } : {}) } } : {}),
    ...(region === undefined ? {} : { region }),
    ...(values['no-reconnect'] ? { reconnect: false } : {}),
  };
}
