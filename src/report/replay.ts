/**
 * `lfusion replay --report`: every frame of a video, a folder of videos or a folder of images through the
 * L-FUSION uncertainty chain, written as a QA report folder:
 *
 *   report.html     self-contained (plots bundled inline): OOD score, mean uncertainty, head circumference over
 *                   time with alert intervals, the most uncertain frames with overlays, a summary table
 *   frames.csv      one row per frame, every number the report shows (frames.jsonl: the same as JSON lines)
 *   alerts.jsonl    the OOD alerts, raised and cleared
 *   labels/...png   each frame's label map (0 background, 255 head) at the source resolution
 *   run.json        settings (model package and checksums, m/n/k, seed, command, versions) and the summary
 *
 * Frames, alerts and run.json are written as the run goes; stopping it (an `AbortSignal`, Ctrl-C in the CLI)
 * still writes the report, marked partial.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic-write.js';
import { createRequire } from 'node:module';
import { basename, extname, join } from 'node:path';
import {
  catchError,
  concatMap,
  defer,
  EMPTY,
  filter,
  finalize,
  from,
  map,
  materialize,
  Observable,
  of,
  Subject,
  takeWhile,
  tap,
  throwError,
  zip,
  type Subscription,
} from 'rxjs';
import { encodeFrames } from '../operators/encodeFrames.js';
import { fromVideo } from '../operators/fromVideo.js';
import { raiseAlerts, type AlertOptions } from '../operators/raiseAlerts.js';
import { sampleCounts } from '../operators/sampleHeads.js';
import { LfusionError } from '../runtime/errors.js';
import { InferencePool } from '../runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../runtime/model-package.js';
import { dequantizePlane } from '../runtime/quantize.js';
import type { Frame } from '../runtime/types/frames.js';
import type { ExecutionProvider } from '../runtime/types/model.js';
import type { Alert, FrameResult, Plane } from '../runtime/types/results.js';
import { lfusionUncertainty } from '../operators/lfusionUncertainty.js';
import { rasteriseEllipse } from '../operators/measureBiometry/ellipse.js';
import { loadHc18Annotations, outlineToMask, readGreyImage, thresholdMask, type Hc18Annotations } from './ground-truth.js';
import { loadPlotLibrary, renderReport, summarise, type ReportThumbnail } from './html.js';
import { dice, hausdorffMm, headCircumferenceMm, type Mask, type Spacing } from './metrics.js';
import { keepMostUncertain, labelMapAt, paintThumbnail, thumbnailLayers, type FloatMap, type ThumbnailLayers } from './overlay.js';
import { encodePng } from './png.js';
import { ProgressBar } from './progress.js';
import { biometryFields, maskComparison, NO_MASK_COMPARISON, RecordWriter, type FrameRecord } from './records.js';
import { listInputs, totalFrames, type FrameSelection, type ReplayInput } from './sources.js';

export interface ReplayReportOptions {
  /** A video file, a folder of videos, or a folder of images. */
  source: string;
  /** Output folder (created). */
  report: string;
  modelPath?: string;
  executionProvider?: ExecutionProvider;
  /** Sample counts and seed of the uncertainty chain (defaults from the manifest, its `sampling.seed` included). */
  m?: number;
  n?: number;
  k?: number;
  seed?: number;
  /** Alert hysteresis (defaults from the manifest). */
  alerts?: AlertOptions;
  /** Frames to process: `[start, end)` of each video, or of an image folder's images. Default all. */
  frames?: FrameSelection;
  /** mm per source pixel, for head circumferences (an HC18 CSV overrides it per image). */
  pixelSpacing?: Spacing;
  /** HC18 annotations: a `training_set` folder or its pixel-size CSV (image folders). */
  groundTruth?: string;
  /** A mask video aligned frame by frame with the (single) source video. */
  maskVideo?: string;
  /** How many of the most uncertain frames get a thumbnail. Default 8. */
  thumbnails?: number;
  /** The command line, recorded in run.json. */
  command?: readonly string[];
  /** Stops the run; the report is still written, marked partial. */
  signal?: AbortSignal;
  /** Show a progress bar on stderr. Default true. */
  progress?: boolean;
  /** Called after each frame's record is written: frames done, and the frames expected when known (`lfusion worker` reports it as job progress). */
  onFrame?: (framesDone: number, framesExpected: number | undefined) => void;
  /**
   * The label maps written and scored: `ellipse` (default: the head biometry's posterior-median ellipse, filled;
   * it scores better on HC18, docs/results.md) or `pixels` (the mean probability thresholded at 0.5).
   */
  mask?: 'ellipse' | 'pixels';
}

export interface ReplayReportSummary {
  frames: number;
  partial: boolean;
  /** Per-source failures (the run goes on with the next source). */
  errors: { source: string; code: string; message: string }[];
  reportPath: string;
}

const THUMBNAIL_WIDTH = 320;
/** The frames of a video in one window of this many compete for one thumbnail. */
const THUMBNAIL_WINDOW = 10;

/** A frame and, with a mask video, its ground-truth mask frame. */
interface SourceFrame {
  input: ReplayInput;
  frame: Frame;
  truthFrame?: Frame;
}

/** `name@version` of the packages a report depends on, for run.json. */
function versions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const version = (manifest: string) => {
    try {
      return (require(manifest) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  };
  return {
    node: process.versions.node,
    'lfusion-stream': version('../../package.json'),
    'onnxruntime-node': version('onnxruntime-node/package.json'),
    uplot: version('uplot/package.json'),
  };
}

/** The probability the label map thresholds: the mean of both paths' `mean_prob` planes, or the mask itself. */
function foregroundProbability(result: FrameResult): FloatMap {
  const plane = (name: string) => result.planes.find((p) => p.name === name);
  const laplace = plane('laplace.mean_prob');
  const dropout = plane('dropout.mean_prob');
  const mask = plane('mask')!;
  if (!laplace || !dropout) return { width: mask.width, height: mask.height, data: Float32Array.from(mask.data) };
  const l = dequantizePlane(laplace);
  const d = dequantizePlane(dropout);
  return { width: laplace.width, height: laplace.height, data: l.map((value, i) => 0.5 * (value + d[i]!)) };
}

function planeMap(plane: Plane): FloatMap {
  return { width: plane.width, height: plane.height, data: dequantizePlane(plane) };
}

function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return values.length ? sum / values.length : NaN;
}

const finiteOrNull = (value: number) => (Number.isNaN(value) ? null : value);

/**
 * Runs the replay and writes the report folder (see the module comment).
 *
 * @example
 * const summary = await replayReport({ source: 'scan.mp4', report: 'qa/scan', m: 10, n: 4, k: 10, pixelSpacing: { x: 0.2, y: 0.2 } });
 * console.log(`${summary.frames} frames, report at ${summary.reportPath}`);
 * @throws SourceError when the source does not exist; ModelError for a bad package; LfusionError `INVALID_OPTION`.
 */
export async function replayReport(options: ReplayReportOptions): Promise<ReplayReportSummary> {
  const selection = options.frames ?? { start: 0 };
  const { layout, inputs } = listInputs(options.source);
  if (options.maskVideo && layout !== 'video') throw new LfusionError('INVALID_OPTION', '--mask-video goes with a single source video', { source: options.source });
  if (options.groundTruth && layout !== 'images') throw new LfusionError('INVALID_OPTION', '--ground-truth (HC18 annotations) goes with a folder of images; use --mask-video for a video', { source: options.source });
  const annotations: Hc18Annotations | undefined = options.groundTruth ? await loadHc18Annotations(options.groundTruth) : undefined;
  const thumbnailCount = options.thumbnails ?? 8;
  const maskMode = options.mask ?? 'ellipse';
  if (maskMode !== 'ellipse' && maskMode !== 'pixels') throw new LfusionError('INVALID_OPTION', `mask must be "ellipse" or "pixels", got ${String(maskMode)}`, { mask: maskMode });

  const modelPath = options.modelPath ?? DEFAULT_MODEL_PATH;
  const model = await loadModelPackage(modelPath);
  const { manifest } = model;
  const manifestSha256 = createHash('sha256').update(await readFile(join(model.path, 'manifest.json'))).digest('hex');
  const probabilityPlanes = manifest.measures.order.includes('mean_prob') ? ['laplace.mean_prob', 'dropout.mean_prob'] : [];
  const sampling = { ...sampleCounts(manifest, options), seed: options.seed ?? manifest.sampling.seed };
  raiseAlerts(manifest, options.alerts); // validates the hysteresis before the workers start

  const out = options.report;
  await mkdir(join(out, 'labels'), { recursive: true });
  const started = new Date();
  const run = {
    command: options.command ?? [],
    source: options.source,
    layout,
    sources: inputs.map((input) => input.name),
    model: { name: manifest.name, path: model.path, manifestSha256, files: Object.fromEntries(Object.entries(manifest.graphs).map(([name, spec]) => [name, { file: spec.file, sha256: spec.sha256 }])) },
    sampling,
    ood: manifest.ood,
    biometry: manifest.biometry ?? null,
    alerts: { raiseAfter: options.alerts?.raiseAfter ?? manifest.ood.raiseAfter, clearAfter: options.alerts?.clearAfter ?? manifest.ood.clearAfter },
    frames: selection,
    mask: maskMode,
    pixelSpacing: options.pixelSpacing ?? null,
    groundTruth: options.groundTruth ?? options.maskVideo ?? null,
    versions: versions(),
    started: started.toISOString(),
  };
  const writeRun = (extra: Record<string, unknown>) => writeFileAtomic(join(out, 'run.json'), `${JSON.stringify({ ...run, ...extra }, null, 2)}\n`);
  await writeRun({ status: 'running' });

  const pool = await InferencePool.open(model, options.executionProvider ? { executionProvider: options.executionProvider } : {});
  let encode: ReturnType<typeof encodeFrames>;
  let uncertainty: ReturnType<typeof lfusionUncertainty>;
  try {
    encode = encodeFrames(pool, manifest);
    uncertainty = lfusionUncertainty(pool, manifest, { ...sampling, planes: probabilityPlanes, biometry: { pixelSpacing: () => currentSpacing } });
  } catch (error) {
    await pool.close();
    throw error;
  }
  const total = await totalFrames({ layout, inputs }, selection);
  let current = '';
  /** The pixel spacing of the input being processed (frames go through the chain one at a time). */
  let currentSpacing: Spacing | undefined;
  const progress = options.progress === false ? undefined : new ProgressBar(total, () => (inputs.length > 1 ? current : ''));

  const records: FrameRecord[] = [];
  const alerts: Alert[] = [];
  const errors: ReplayReportSummary['errors'] = [];
  const writer = new RecordWriter(join(out, 'frames.jsonl'), join(out, 'frames.csv'));
  const alertLines = createWriteStream(join(out, 'alerts.jsonl'));
  /** The most uncertain frames so far, most uncertain first, with their thumbnails' layers (at thumbnail size). */
  const candidates: { record: FrameRecord; layers: ThumbnailLayers; fusedPeak: number }[] = [];

  /** mm per pixel of an input: its HC18 CSV row, else `pixelSpacing`. */
  const spacingOf = (input: ReplayInput): Spacing | undefined => {
    const facts = input.kind === 'image' ? annotations?.facts.get(input.name) : undefined;
    return facts ? { x: facts.pixelSizeMm, y: facts.pixelSizeMm } : options.pixelSpacing;
  };
  const truthOf = async (item: SourceFrame): Promise<{ mask?: Mask; spacing?: Spacing; hcTrueMm?: number }> => {
    const spacing = spacingOf(item.input);
    if (item.truthFrame) return { mask: thresholdMask(item.truthFrame), ...(spacing ? { spacing } : {}) };
    const facts = annotations?.facts.get(item.input.name);
    if (!annotations || !facts) return spacing ? { spacing } : {};
    const outline = annotations.outlineOf(item.input.name);
    return { ...(spacing ? { spacing } : {}), ...(facts.hcMm === undefined ? {} : { hcTrueMm: facts.hcMm }), ...(outline ? { mask: outlineToMask(await readGreyImage(outline)) } : {}) };
  };

  /** The record being written; a stop waits for it, so that no write comes after the files are closed. */
  let recording: Promise<void> = Promise.resolve();
  const record = async (item: SourceFrame, result: FrameResult, alertsIn: Subject<FrameResult>, processingStarted: number): Promise<void> => {
    const { frame, input } = item;
    const seq = records.length;
    const pixels = labelMapAt(foregroundProbability(result), frame.width, frame.height);
    const fitted = result.biometry?.ellipse;
    const ellipse: Mask | undefined = fitted ? { width: frame.width, height: frame.height, data: rasteriseEllipse(fitted, frame.width, frame.height) } : undefined;
    // A frame without a head ellipse writes an empty ellipse map: no head is the ellipse output's answer.
    const labels = maskMode === 'pixels' ? pixels : (ellipse ?? { width: frame.width, height: frame.height, data: new Uint8Array(frame.width * frame.height) });
    const fusedPlane = result.planes.find((plane) => plane.name === 'fused')!;
    const fused = planeMap(fusedPlane);
    const truth = await truthOf(item);
    let truthMask = truth.mask;
    if (truthMask && (truthMask.width !== frame.width || truthMask.height !== frame.height)) {
      truthMask = labelMapAt(truthMask, frame.width, frame.height);
    }
    const spacing = truth.spacing;
    const hcMm = spacing ? finiteOrNull(headCircumferenceMm(labels, spacing)) : null;
    const hcTrueMm = truth.hcTrueMm ?? (truthMask && spacing ? finiteOrNull(headCircumferenceMm(truthMask, spacing)) : null);
    const stem = input.kind === 'image' ? basename(input.name, extname(input.name)) : `${basename(input.name, extname(input.name))}/${String(frame.index).padStart(6, '0')}`;
    const labelMap = `labels/${stem}.png`;
    await mkdir(join(out, labelMap, '..'), { recursive: true });
    await writeFile(join(out, labelMap), encodePng(frame.width, frame.height, labels.data.map((q) => q * 255)));
    let head = 0;
    for (const q of labels.data) head += q;
    const entry: FrameRecord = {
      seq,
      source: input.name,
      index: frame.index,
      pts: input.kind === 'image' || Number.isNaN(frame.pts) ? null : frame.pts,
      width: frame.width,
      height: frame.height,
      oodScore: result.ood?.score ?? null,
      oodThreshold: result.ood?.threshold ?? null,
      oodAbove: result.ood?.above ?? null,
      oodReasons: result.ood?.reasons?.map((r) => `${r.reason}:${r.evidence}`).join(';') ?? null,
      density: result.ood?.evidence?.density ?? null,
      meanUncertainty: finiteOrNull(mean(fused.data)),
      headFraction: head / labels.data.length,
      spacingXMm: spacing?.x ?? null,
      spacingYMm: spacing?.y ?? null,
      hcMm,
      dice: truthMask ? dice(labels, truthMask) : null,
      hausdorffMm: truthMask && spacing ? hausdorffMm(labels, truthMask, spacing) : null,
      hcTrueMm,
      hcAbsErrorMm: hcMm !== null && hcTrueMm !== null ? Math.abs(hcMm - hcTrueMm) : null,
      ...biometryFields(result.biometry, hcTrueMm),
      ...(truthMask && spacing ? maskComparison(pixels, ellipse, truthMask, spacing) : NO_MASK_COMPARISON),
      labelMap,
      processingMs: performance.now() - processingStarted,
    };
    records.push(entry);
    writer.write(entry);
    // Alerts count in run positions (seq), so that intervals line up with the plots across sources.
    alertsIn.next({ ...result, frame: { ...result.frame, index: seq } });
    const fusedPeak = fused.data.reduce((m, v) => (v > m ? v : m), 0);
    keepMostUncertain(candidates, { record: entry, layers: thumbnailLayers(frame, labels, fused, THUMBNAIL_WIDTH, truthMask), fusedPeak }, thumbnailCount, THUMBNAIL_WINDOW);
    progress?.tick();
    options.onFrame?.(records.length, total);
  };

  /** Decoded frames of one input, `selection` applied, decoding at most a few frames ahead of `processed`. */
  const framesOf = (input: ReplayInput, position: number, processed: Subject<void>): Observable<SourceFrame> => {
    if (input.kind === 'image') return defer(() => readGreyImage(input.path)).pipe(map((frame) => ({ input, frame: { ...frame, index: position } })));
    const flow = { flow: { acknowledge: processed } };
    const frames$ = options.maskVideo
      ? zip(fromVideo(input.path, flow), fromVideo(options.maskVideo, flow)).pipe(map(([frame, truthFrame]) => ({ input, frame, truthFrame })))
      : fromVideo(input.path, flow).pipe(map((frame) => ({ input, frame })));
    return frames$.pipe(
      takeWhile(({ frame }) => frame.index < (selection.end ?? Infinity)),
      tap(({ frame }) => frame.index < selection.start && processed.next()),
      filter(({ frame }) => frame.index >= selection.start),
    );
  };

  /** OOD hysteresis runs along one sequence of frames: each video, or a whole image folder. */
  const openSequence = () => {
    const results = new Subject<FrameResult>();
    const subscription = results.pipe(raiseAlerts(manifest, options.alerts)).subscribe((alert) => {
      alerts.push(alert);
      alertLines.write(`${JSON.stringify({ ...alert, source: records[alert.startFrame]?.source })}\n`);
    });
    return { results, close: () => (results.complete(), subscription.unsubscribe()) };
  };
  const folderSequence = layout === 'images' ? openSequence() : undefined;

  const selected = layout === 'images' ? inputs.slice(selection.start, selection.end) : inputs;
  const replay$ = from(selected.map((input, i) => ({ input, position: layout === 'images' ? selection.start + i : 0 }))).pipe(
    concatMap(({ input, position }) =>
      defer(() => {
        current = input.name;
        const processed = new Subject<void>();
        const sequence = folderSequence ?? openSequence();
        return framesOf(input, position, processed).pipe(
          // A decode error waits behind the frames decoded before it: every decoded frame gets its record.
          materialize(),
          concatMap((note) => {
            if (note.kind === 'E') return throwError(() => note.error);
            if (note.kind === 'C') return EMPTY;
            const item = note.value;
            const processingStarted = performance.now();
            currentSpacing = spacingOf(item.input);
            return of(item.frame).pipe(
              encode,
              uncertainty,
              concatMap((result) => (recording = record(item, result, sequence.results, processingStarted))),
              tap(() => processed.next()),
            );
          }),
          finalize(() => sequence !== folderSequence && sequence.close()),
          // A failing source (missing, corrupt) is recorded, and the run goes on with the next one.
          catchError((error: unknown) => {
            errors.push({ source: input.name, code: error instanceof LfusionError ? error.code : 'INTERNAL', message: error instanceof Error ? error.message : String(error) });
            return EMPTY;
          }),
        );
      }),
    ),
  );

  let subscription: Subscription | undefined;
  const stopped = new Promise<boolean>((resolve, reject) => {
    const onAbort = () => {
      subscription?.unsubscribe();
      resolve(true);
    };
    if (options.signal?.aborted) return resolve(true);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    subscription = replay$.subscribe({
      error: (error: unknown) => reject(error),
      complete: () => {
        options.signal?.removeEventListener('abort', onAbort);
        resolve(false);
      },
    });
  });
  let partial = true;
  let failure: unknown;
  try {
    partial = await stopped;
  } catch (error) {
    failure = error;
  } finally {
    await recording.catch(() => {}); // its failure, if any, already reached the subscriber
    progress?.finish();
    folderSequence?.close();
    await pool.close();
    await writer.close();
    await new Promise<void>((resolve) => alertLines.end(resolve));
  }
  if (failure) errors.push({ source: current, code: failure instanceof LfusionError ? failure.code : 'INTERNAL', message: failure instanceof Error ? failure.message : String(failure) });
  const incomplete = partial || failure !== undefined;
  const summary = summarise(records, alerts);
  const fusedMax = Math.max(0, ...candidates.map((c) => c.fusedPeak));
  const thumbnails: ReportThumbnail[] = candidates.map(({ record: entry, layers }) => {
    const image = paintThumbnail(layers, fusedMax);
    return { record: entry, png: encodePng(image.width, image.height, image.rgb, 3).toString('base64') };
  });
  const finished = new Date();
  const status = incomplete ? (partial ? 'stopped' : 'failed') : errors.length ? 'finished with errors' : 'complete';
  await writeRun({ status, partial: incomplete, finished: finished.toISOString(), framesProcessed: records.length, framesExpected: total ?? null, errors, summary });
  await writeFileAtomic(
    join(out, 'report.html'),
    renderReport({
      title: `L-FUSION replay: ${basename(options.source)}`,
      run: { ...run, status, partial: incomplete, finished: finished.toISOString(), framesExpected: total ?? null, errors },
      records,
      alerts,
      summary,
      thumbnails,
      thumbnailWindow: THUMBNAIL_WINDOW,
      plotLibrary: await loadPlotLibrary(),
    }),
  );
  return { frames: records.length, partial: incomplete, errors, reportPath: join(out, 'report.html') };
}
