/**
 * `lfusion replay`: every frame of a recording, in one of two modes. `--out <dir>` writes the pipeline's
 * results as JSON lines and PNG planes; `--report <dir>` writes the QA report (src/report), and Ctrl-C
 * still writes it, marked partial.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Subscription } from 'rxjs';
import { encodePng } from '../../report/png.js';
import { ProgressBar } from '../../report/progress.js';
import { replayReport, type ReplayReportOptions, type ReplayReportSummary } from '../../report/replay.js';
import { countFrames, type FrameSelection } from '../../report/sources.js';
import { LfusionError, type LfusionErrorCode } from '../../runtime/errors.js';
import type { FrameResult, Plane } from '../../runtime/types/results.js';
import { countedPath, createPipeline } from '../pipeline.js';
import { integerOption, pixelSpacing, pipelineOptions, providerOption, sampleCounts, usageError, type CliValues } from './args.js';
import { once, untilSignalled } from './shutdown.js';

/** The PNG of a plane: the quantised bytes, except label maps (`mask`, `clip.mask`) whose classes are scaled to 0/255 to be visible. */
function planeImage(plane: Plane): { pixels: Uint8Array; min: number; scale: number } {
  if (plane.name !== 'mask' && plane.name !== 'clip.mask') return { pixels: plane.data, min: plane.min, scale: plane.scale };
  return { pixels: plane.data.map((q) => q * 255), min: 0, scale: 1 / 255 };
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

/** `--mask ellipse|pixels`. */
function maskOption(text: string): 'ellipse' | 'pixels' {
  if (text !== 'ellipse' && text !== 'pixels') throw usageError(`--mask must be ellipse or pixels, got ${text}`);
  return text;
}

/**
 * What `replay --report <dir>` runs for `source`: its flags validated and turned into the report's options.
 * `lfusion worker` runs each queued recording through this and {@link failedSources}, so a job is exactly `replay --report`.
 */
export function replayReportOptions(source: string, values: CliValues): ReplayReportOptions {
  for (const flag of ['uncertainty', 'planes', 'region', 'no-region'] as const) {
    if (values[flag] !== undefined) throw usageError(`--${flag} does not apply to replay --report (the report always runs the uncertainty chain on whole frames)`);
  }
  const frames = frameSelection(values);
  const spacing = pixelSpacing(values);
  const thumbnails = integerOption(values, 'thumbnails', 0);
  return {
    source,
    report: values.report!,
    ...(values.model ? { modelPath: values.model } : {}),
    executionProvider: providerOption(values),
    ...sampleCounts(values),
    ...(thumbnails === undefined ? {} : { thumbnails }),
    ...(frames ? { frames } : {}),
    ...(spacing ? { pixelSpacing: spacing } : {}),
    ...(values['ground-truth'] ? { groundTruth: values['ground-truth'] } : {}),
    ...(values['mask-video'] ? { maskVideo: values['mask-video'] } : {}),
    ...(values.mask ? { mask: maskOption(values.mask) } : {}),
  };
}

/** The error `replay --report` exits with when a source failed (the report still covers the frames processed). */
export function failedSources(summary: ReplayReportSummary): LfusionError | undefined {
  const first = summary.errors[0];
  if (!first) return undefined;
  return new LfusionError(first.code as LfusionErrorCode, `${summary.errors.length} source(s) failed (${first.source}: ${first.message}); the report covers the frames that were processed`, { errors: summary.errors });
}

/** `replay --report`: the QA report (src/report). Ctrl-C stops the run; the report is still written, marked partial. */
async function replayWithReport(source: string, values: CliValues): Promise<number> {
  const abort = new AbortController();
  const done = replayReport({ ...replayReportOptions(source, values), command: ['lfusion', ...process.argv.slice(2)], signal: abort.signal });
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
  const failure = failedSources(summary);
  if (failure) throw failure;
  return abort.signal.aborted ? 130 : 0;
}

/** Exit code: 0, or 130 when Ctrl-C stopped a report run. */
export async function replay(video: string, values: CliValues): Promise<number> {
  if (values.report) {
    if (values.out) throw usageError('--out and --report exclude each other');
    return replayWithReport(video, values);
  }
  if (!values.out) throw usageError('replay needs --out <dir> (frames only) or --report <dir> (QA report)');
  for (const flag of ['frames', 'max-frames', 'ground-truth', 'mask-video', 'thumbnails', 'mask'] as const) {
    if (values[flag] !== undefined) throw usageError(`--${flag} needs --report`);
  }
  const out = values.out;
  const [pipeline, total] = await Promise.all([createPipeline({ ...pipelineOptions(video, values, 'exact'), live: false }), countFrames(video)]);
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
    const { region, screen, ood, clipOod, biometry } = result;
    const path = result.path ?? 'frame';
    lines.write(`${JSON.stringify({ frame: result.frame, path, planes, ...(ood ? { ood } : {}), ...(clipOod ? { clipOod } : {}), ...(biometry ? { biometry } : {}), ...(region ? { region, screen } : {}), timings: result.timings })}\n`);
    if (path === countedPath(pipeline.paths)) progress.tick();
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
