/**
 * The default pipeline in one call: source (reconnecting when live) -> ultrasound region -> (keep-latest when
 * live | every frame on replay) -> encode -> analysis (MAP segmentation or the L-FUSION uncertainty chain) ->
 * results, stats, alerts, source events.
 */
import { fileURLToPath } from 'node:url';
import { concatMap, defer, EMPTY, filter, map, materialize, Observable, of, share, Subject, tap, throwError, type OperatorFunction } from 'rxjs';
import { encodeFrames } from '../operators/encodeFrames.js';
import { fromVideo, type FromVideoOptions } from '../operators/fromVideo.js';
import { keepLatest } from '../operators/keepLatest.js';
import { raiseAlerts, type AlertOptions } from '../operators/raiseAlerts.js';
import { reconnecting, type ReconnectingOptions } from '../operators/reconnecting.js';
import { segmentFrames } from '../operators/segmentFrames.js';
import { ultrasoundRegion, type UltrasoundRegionOptions } from '../operators/ultrasoundRegion.js';
import { LfusionError } from './errors.js';
import { toVideoInput } from './ffmpeg.js';
import { InferencePool, type InferencePoolOptions } from './inference-pool.js';
import { loadModelPackage, type ModelPackage } from './model-package.js';
import { isSourceEvent } from './source-events.js';
import { StatsRecorder, type StatsOptions } from './stats.js';
import type { Alert, EncodedFrame, Frame, FrameResult, GraphRunner, ModelManifest, Plane, ScreenRegion, ScreenSize, SourceEvent } from './types.js';
import { lfusionUncertainty, type UncertaintyOptions } from './uncertainty-pipeline.js';

/** The model package shipped with the SDK. */
export const DEFAULT_MODEL_PATH = fileURLToPath(new URL('../../models/packages/lfusion-hc18', import.meta.url));

/** What runs after the encoder: an operator from encoded frames to results. */
export type Analysis = (pool: GraphRunner, manifest: ModelManifest) => OperatorFunction<EncodedFrame, FrameResult>;

/** Options of {@link createPipeline}. */
export interface PipelineOptions {
  /** A video file, an http/rtsp/udp URL, or a V4L2 device such as `/dev/video0`. */
  source: string;
  /** Model package folder. Default: the bundled `models/packages/lfusion-hc18`. */
  modelPath?: string;
  /**
   * `true`: keep only the newest frame while inference is busy (drops are counted), for live sources.
   * `false`: process every frame, decoding no faster than inference (replay). Default: live for devices,
   * network URLs and files read with `video.realtime`; replay for other files.
   */
  live?: boolean;
  /** Decoding options (pacing, size, V4L2 settings, ffmpeg path, open and stall timeouts). */
  video?: Omit<FromVideoOptions, 'flow'>;
  /**
   * Reconnect a live source that is lost or cannot be opened, with backoff, reporting it on `sourceEvents$`
   * instead of ending the pipeline. Default: on (`{}`) for devices and network URLs, off for files. Needs a
   * live pipeline: a replay never reconnects.
   */
  reconnect?: ReconnectingOptions | false;
  /**
   * Cut each frame to its ultrasound image (an HDMI capture is the scanner's whole screen) before the model
   * sees it; results then carry `region` and `screen`. `{}` detects it automatically, `{ region: { x, y,
   * width, height } }` fixes it. Default: detection for devices and network URLs, off for files.
   */
  region?: UltrasoundRegionOptions | false;
  /** Inference workers and execution provider. */
  pool?: InferencePoolOptions;
  /**
   * `segment` (default): the MAP mask alone, cheapest. `uncertainty`: the L-FUSION chain (mask, fused map,
   * OOD score, alerts), configured by `uncertainty`. Or any operator from encoded frames to results.
   */
  analysis?: 'segment' | 'uncertainty' | Analysis;
  uncertainty?: UncertaintyOptions;
  /**
   * Add an `image` plane: the grey frame as the model saw it (224x224, byte = pixel value), so that a viewer
   * can draw the overlay without a second video stream. Default false.
   */
  image?: boolean;
  /** Plane names a custom `analysis` produces (announced to WebSocket clients). */
  streams?: readonly string[];
  /** Hysteresis of OOD alerts (defaults from the manifest). */
  alerts?: AlertOptions;
  stats?: StatsOptions;
}

/** A running pipeline's parts. */
export interface Pipeline {
  readonly model: ModelPackage;
  readonly pool: InferencePool;
  readonly live: boolean;
  /** Plane names every result carries. */
  readonly streams: readonly string[];
  /**
   * The results, in frame order. Subscribing starts decoding (one ffmpeg shared by all current
   * subscribers); unsubscribing every subscriber stops it.
   */
  readonly results$: Observable<FrameResult>;
  /** OOD alerts raised and cleared from the results (none with `analysis: 'segment'`). Never dropped. */
  readonly alerts$: Observable<Alert>;
  /** `source-lost` / `source-restored` of a reconnecting live source, while `results$` is subscribed. */
  readonly sourceEvents$: Observable<SourceEvent>;
  /** Whether a lost source is reconnected, and whether frames are cut to their ultrasound region. */
  readonly reconnect: boolean;
  readonly region: boolean;
  readonly stats: StatsRecorder;
  /** Ends the inference workers (after their running tasks). */
  close(): Promise<void>;
}

/** The model input back in grey levels, `pixel = (x * std + mean) * 255`: the resized frame the model saw. */
function imagePlane(image: Float32Array, manifest: ModelManifest): Plane {
  const { width, height, normalization } = manifest.input;
  const data = new Uint8Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = Math.round((image[i]! * normalization.std + normalization.mean) * 255); // Uint8Array clamps
  return { name: 'image', width, height, data, min: 0, scale: 1 };
}

/** Runs `analyse` and appends the `image` plane, taken before the analysis hands the image to a worker. */
function withImagePlane(analyse: OperatorFunction<EncodedFrame, FrameResult>, manifest: ModelManifest): OperatorFunction<EncodedFrame, FrameResult> {
  return concatMap((encoded) => {
    const image = imagePlane(encoded.image, manifest);
    return of(encoded).pipe(analyse, map((result) => ({ ...result, planes: [...result.planes, image] })));
  });
}

/** A decoded frame cut to its ultrasound region, with where it came from and what finding it took. */
interface LocatedFrame {
  frame: Frame;
  region?: ScreenRegion;
  screen?: ScreenSize;
  regionMs?: number;
}

/** `ultrasoundRegion`, timed per frame (it runs synchronously inside each `next`). */
function locateRegions(options: UltrasoundRegionOptions): OperatorFunction<Frame, LocatedFrame> {
  const locate = ultrasoundRegion(options);
  return (frames) =>
    defer(() => {
      let started = 0;
      return frames.pipe(
        tap(() => (started = performance.now())),
        locate,
        map(({ frame, region, origin, screen }) => ({ frame, region: { ...region, origin }, screen, regionMs: performance.now() - started })),
      );
    });
}

/** Attaches where the processed crop lies on the screen, and what finding it took, to its result. */
function placeResult(result: FrameResult, located: LocatedFrame): FrameResult {
  if (!located.region) return result;
  return { ...result, region: located.region, screen: located.screen, timings: { region: located.regionMs ?? 0, ...result.timings } };
}

function chooseAnalysis(options: PipelineOptions): { analysis: Analysis; streams: (manifest: ModelManifest) => string[] } {
  const choice = options.analysis ?? 'segment';
  if (choice === 'segment') return { analysis: segmentFrames, streams: () => ['mask'] };
  if (choice === 'uncertainty') {
    return {
      analysis: (pool, manifest) => lfusionUncertainty(pool, manifest, options.uncertainty),
      streams: () => ['mask', 'fused', ...(options.uncertainty?.planes ?? [])],
    };
  }
  if (typeof choice === 'function') return { analysis: choice, streams: () => [...(options.streams ?? [])] };
  throw new LfusionError('INVALID_OPTION', `analysis must be "segment", "uncertainty" or an operator, got ${JSON.stringify(choice)}`);
}

/**
 * Loads the model package, starts the inference workers and wires the pipeline. Nothing is decoded until
 * `results$` is subscribed.
 *
 * @example
 * const pipeline = await createPipeline({ source: 'assets/sample.mp4' });
 * pipeline.results$.subscribe({
 *   next: (result) => console.log(result.frame.index, result.planes.map((plane) => plane.name)),
 *   complete: () => void pipeline.close(),
 * });
 * @throws ModelError for an invalid model package; LfusionError `INVALID_OPTION` for a bad option.
 */
export async function createPipeline(options: PipelineOptions): Promise<Pipeline> {
  const { analysis, streams } = chooseAnalysis(options);
  const video = options.video ?? {};
  const isStream = toVideoInput(options.source, video.v4l2).kind !== 'file';
  const live = options.live ?? (video.realtime === true || isStream);
  const reconnect = options.reconnect ?? (isStream && live ? {} : false);
  const region = options.region ?? (isStream ? {} : false);
  if (reconnect && !live) throw new LfusionError('INVALID_OPTION', 'reconnect needs a live pipeline (live: true): a replay processes a recording once', { source: options.source });
  // Both check their options when called: fail here, before the model loads.
  if (reconnect) reconnecting(() => EMPTY, reconnect);
  const locate = region ? locateRegions(region) : map((frame: Frame): LocatedFrame => ({ frame }));
  const model = await loadModelPackage(options.modelPath ?? DEFAULT_MODEL_PATH);
  const pool = await InferencePool.open(model, options.pool);
  const { manifest } = model;
  const stats = new StatsRecorder(options.stats);
  let stages: OperatorFunction<Frame, FrameResult>;
  try {
    const encode = encodeFrames(pool, manifest);
    const analyse = options.image ? withImagePlane(analysis(pool, manifest), manifest) : analysis(pool, manifest);
    stages = (frames) => frames.pipe(encode, analyse);
  } catch (error) {
    await pool.close();
    throw error;
  }

  const sourceEvents = new Subject<SourceEvent>();
  const core$ = new Observable<FrameResult>((subscriber) => {
    const processed = new Subject<void>();
    const decoded$: Observable<Frame | SourceEvent> = reconnect
      ? reconnecting(() => fromVideo(options.source, video), reconnect)
      : fromVideo(options.source, live ? video : { ...video, flow: { acknowledge: processed } });
    const frames$ = decoded$.pipe(
      filter((item): item is Frame => {
        if (!isSourceEvent(item)) return true;
        sourceEvents.next(item);
        return false;
      }),
      tap(() => stats.frameIn()),
      locate,
    );
    const process = (located: LocatedFrame) => of(located.frame).pipe(stages, map((result) => placeResult(result, located)));
    const results$ = live
      ? frames$.pipe(keepLatest(process, { onDrop: () => stats.dropped() }))
      : frames$.pipe(
          // A source error waits behind the frames decoded before it: every decoded frame yields its result.
          materialize(),
          concatMap((note) => (note.kind === 'N' ? process(note.value).pipe(tap(() => processed.next())) : note.kind === 'E' ? throwError(() => note.error) : EMPTY)),
        );
    return results$.pipe(tap((result) => stats.frameOut(result))).subscribe(subscriber);
  }).pipe(share());

  const alerts = new Subject<Alert>();
  const results$ = new Observable<FrameResult>((subscriber) => {
    // A failure reaches the delivery subscriber below; the alert branch need not report it twice.
    const alerting = core$.pipe(raiseAlerts(manifest, options.alerts)).subscribe({ next: (alert) => alerts.next(alert), error: () => {} });
    const delivery = core$.subscribe(subscriber);
    return () => {
      delivery.unsubscribe();
      alerting.unsubscribe();
    };
  });

  return {
    model,
    pool,
    live,
    streams: [...streams(manifest), ...(options.image ? ['image'] : [])],
    results$,
    alerts$: alerts.asObservable(),
    sourceEvents$: sourceEvents.asObservable(),
    reconnect: reconnect !== false,
    region: region !== false,
    stats,
    close: () => pool.close(),
  };
}
