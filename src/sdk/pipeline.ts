/**
 * The default pipeline in one call: source (reconnecting when live) -> ultrasound region -> (keep-latest when
 * live, the encoder of one frame overlapping the analysis of the one before | every frame on replay) -> encode -> analysis (MAP segmentation or the L-FUSION uncertainty chain) ->
 * results, stats, alerts, source events.
 */
import { catchError, concat, concatMap, defer, distinctUntilChanged, EMPTY, filter, finalize, ignoreElements, map, materialize, merge, Observable, of, share, Subject, tap, throwError, type OperatorFunction } from 'rxjs';
import { alignFrames, type AlignFramesOptions } from '../operators/alignFrames.js';
import { warpToOriginal } from '../operators/alignFrames/warp.js';
import { encodeFrames } from '../operators/encodeFrames.js';
import { fromVideo, type FromVideoOptions } from '../operators/fromVideo.js';
import { keepLatestStages } from '../operators/keepLatestStages.js';
import { biometryOnSource } from '../operators/measureBiometry.js';
import { mergeClipFrames } from '../operators/mergeClipFrames.js';
import { raiseAlerts, type AlertOptions } from '../operators/raiseAlerts.js';
import { reconnecting, type ReconnectingOptions } from '../operators/reconnecting.js';
import { segmentFrames } from '../operators/segmentFrames.js';
import { ultrasoundRegion, type UltrasoundRegionOptions } from '../operators/ultrasoundRegion.js';
import { windowClips } from '../operators/windowClips.js';
import { CLIP_GRAPHS, clipModel, type ClipModel } from '../runtime/clip-model.js';
import { lfusionClipUncertainty } from '../operators/lfusionClipUncertainty.js';
import { LfusionError } from '../runtime/errors.js';
import { toVideoInput } from '../runtime/ffmpeg.js';
import { InferencePool, type InferencePoolOptions } from '../runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage, type ModelPackage } from '../runtime/model-package.js';
import { isSourceEvent } from '../runtime/source-events.js';
import { StatsRecorder, type StatsOptions } from '../runtime/stats.js';
import { defaultRange, greyLevels, maskPlane, quantizePlane } from '../runtime/quantize.js';
import type { AlignedFrame, EncodedFrame, Frame, ScreenRegion, ScreenSize, SourceEvent } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { Alert, ClipOodScore, FrameResult, Plane } from '../runtime/types/results.js';
import type { ClipFrame } from '../runtime/types/uncertainty.js';
import { lfusionUncertainty } from '../operators/lfusionUncertainty.js';
import type { Analysis, ClipPathOptions, PathName, Pipeline, PipelineOptions } from './pipeline-options.js';


/** The model input back in grey levels (`greyLevels`): the resized frame the model saw. */
function imagePlane(image: Float32Array, manifest: ModelManifest): Plane {
  const { width, height, normalization } = manifest.input;
  return { name: 'image', width, height, data: greyLevels(image, normalization), min: 0, scale: 1 };
}

/** Runs `analyse` and appends the `image` plane of the model input. */
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

/**
 * Inference workers of the frame path for `analysis: 'uncertainty'` unless `pool.workers` says otherwise: its two
 * heads then run side by side, each in its own worker (on 2 cores 1.35x the frames/s of one worker at (10, 4, 10),
 * docs/decisions.md). The other analyses run one graph at a time and keep one worker.
 */
export const UNCERTAINTY_WORKERS = 2;

function chooseAnalysis(options: PipelineOptions): { analysis: Analysis; streams: (manifest: ModelManifest) => string[]; workers: number } {
  const choice = options.analysis ?? 'segment';
  if (choice === 'segment') return { analysis: segmentFrames, streams: () => ['mask'], workers: 1 };
  if (choice === 'uncertainty') {
    return {
      analysis: (pool, manifest) => lfusionUncertainty(pool, manifest, options.uncertainty),
      streams: () => ['mask', 'fused', ...(options.uncertainty?.planes ?? [])],
      workers: UNCERTAINTY_WORKERS,
    };
  }
  if (typeof choice === 'function') return { analysis: choice, streams: () => [...(options.streams ?? [])], workers: 1 };
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
  const { analysis, streams, workers } = chooseAnalysis(options);
  const paths = choosePaths(options.paths);
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
  const { manifest } = model;
  const clip = paths.includes('clip') ? clipModel(manifest) : undefined; // no clip heads: fail before the workers start
  const pool = await InferencePool.open(model, { workers, ...options.pool, graphs: options.pool?.graphs ?? Object.keys(manifest.graphs).filter((graph) => !CLIP_GRAPHS.includes(graph)) });
  // The clip heads run in a worker of their own, so that a window never queues the frame path's graphs behind it;
  // live, on one intra-op thread, leaving the other cores to the frame path.
  const clipPool = clip
    ? await InferencePool.open(model, { ...options.pool, workers: 1, threadsPerWorker: options.pool?.threadsPerWorker ?? (live ? 1 : undefined), graphs: CLIP_GRAPHS }).catch(async (error: unknown) => {
        await pool.close();
        throw error;
      })
    : undefined;
  const close = () => Promise.all([pool.close(), clipPool?.close()]).then(() => undefined);
  const stats = new StatsRecorder(options.stats);
  let encode: OperatorFunction<Frame, EncodedFrame>;
  let analyse: OperatorFunction<EncodedFrame, FrameResult>;
  let clipStages: ClipStages | undefined;
  try {
    encode = encodeFrames(pool, manifest);
    analyse = options.image ? withImagePlane(analysis(pool, manifest), manifest) : analysis(pool, manifest);
    if (clip && clipPool) {
      const frameAnalysis = paths.includes('frame') ? analyse : undefined;
      clipStages = clipPathStages(clipPool, manifest, clip, options.clip, { live, image: options.image === true }, encode, frameAnalysis, () => stats.dropped());
    }
  } catch (error) {
    await close();
    throw error;
  }

  const sourceEvents = new Subject<SourceEvent>();
  const core$ = new Observable<FrameResult>((subscriber) => {
    const processed = new Subject<void>();
    const flow = { acknowledge: processed, ...(clipStages ? { window: clipStages.lookahead } : {}) };
    const decoded$: Observable<Frame | SourceEvent> = reconnect
      ? reconnecting(() => fromVideo(options.source, video), reconnect)
      : fromVideo(options.source, live ? video : { ...video, flow });
    const frames$ = decoded$.pipe(
      filter((item): item is Frame => {
        if (!isSourceEvent(item)) return true;
        sourceEvents.next(item);
        return false;
      }),
      tap(() => stats.frameIn()),
      locate,
    );
    const encodeLocated = (located: LocatedFrame) => of(located.frame).pipe(encode, map((encoded) => ({ encoded, located })));
    const analyseLocated = ({ encoded, located }: { encoded: EncodedFrame; located: LocatedFrame }) => of(encoded).pipe(analyse, map((result) => placeResult(result, located)));
    const process = (located: LocatedFrame) => encodeLocated(located).pipe(concatMap(analyseLocated));
    const results$ = clipStages
      ? afterEveryFrame(frames$, clipStages.stages).pipe(tap((result) => result.path === 'clip' && processed.next()))
      : live
        ? // The encoder of the newest frame runs while the analysis of the one before runs (two cores).
          frames$.pipe(keepLatestStages(encodeLocated, analyseLocated, { onDrop: () => stats.dropped() }))
        : frames$.pipe(
            // A source error waits behind the frames decoded before it: every decoded frame yields its result.
            materialize(),
            concatMap((note) => (note.kind === 'N' ? process(note.value).pipe(tap(() => processed.next())) : note.kind === 'E' ? throwError(() => note.error) : EMPTY)),
          );
    const counted = countedPath(paths);
    return results$.pipe(tap((result) => ((result.path ?? 'frame') === counted ? stats.frameOut(result) : stats.clipOut(result)))).subscribe(subscriber);
  }).pipe(share());

  const alerts = new Subject<Alert>();
  const results$ = new Observable<FrameResult>((subscriber) => {
    // A failure reaches the delivery subscriber below; the alert branches need not report it twice.
    const alerting = [
      paths.includes('frame') ? core$.pipe(raiseAlerts(manifest, options.alerts)) : EMPTY,
      clip ? core$.pipe(windowScores(), raiseAlerts(clip.manifest, { ...options.clip?.alerts, path: 'clip' })) : EMPTY,
    ].map((alerts$) => alerts$.subscribe({ next: (alert) => alerts.next(alert), error: () => {} }));
    const delivery = core$.subscribe(subscriber);
    return () => {
      delivery.unsubscribe();
      for (const subscription of alerting) subscription.unsubscribe();
    };
  });

  const clipStreams = clip ? ['clip.mask', 'clip.fused', ...(options.clip?.uncertainty?.planes ?? []).map((name) => `clip.${name}`)] : [];
  return {
    model,
    pool,
    live,
    paths,
    streams: [...(paths.includes('frame') ? streams(manifest) : []), ...(options.image ? ['image'] : []), ...clipStreams],
    results$,
    alerts$: alerts.asObservable(),
    sourceEvents$: sourceEvents.asObservable(),
    reconnect: reconnect !== false,
    region: region !== false,
    stats,
    close,
  };
}

function choosePaths(paths: readonly PathName[] = ['frame']): PathName[] {
  const chosen = [...new Set(paths)];
  if (chosen.length === 0 || chosen.some((path) => path !== 'frame' && path !== 'clip')) {
    throw new LfusionError('INVALID_OPTION', `paths must list "frame", "clip" or both, got ${JSON.stringify(paths)}`, { paths });
  }
  return chosen;
}

/** The path whose results count as frames out (stats, progress): the frame path, or the clip path when it runs alone. */
export function countedPath(paths: readonly PathName[]): PathName {
  return paths.includes('frame') ? 'frame' : 'clip';
}

/** Runs `stages` on the frames; a source error is raised only after the frames before it went through them. */
function afterEveryFrame<T, R>(frames$: Observable<T>, stages: OperatorFunction<T, R>): Observable<R> {
  return defer(() => {
    let failure: { error: unknown } | undefined;
    const untilError = frames$.pipe(
      catchError((error: unknown) => {
        failure = { error };
        return EMPTY;
      }),
    );
    return concat(untilError.pipe(stages), defer(() => (failure ? throwError(() => failure!.error) : EMPTY)));
  });
}

/** One item per clip window, out of the results that carry its score, for the clip path's alerts. */
function windowScores(): OperatorFunction<FrameResult, { frame: { index: number }; ood: ClipOodScore }> {
  return (results) =>
    results.pipe(
      filter((result): result is FrameResult & { clipOod: ClipOodScore } => result.clipOod !== undefined),
      distinctUntilChanged((a, b) => a.clipOod.window.first === b.clipOod.window.first && a.clipOod.window.last === b.clipOod.window.last),
      map((result) => ({ frame: { index: result.clipOod.window.last }, ood: result.clipOod })),
    );
}

/** The clip path's stages, and how many frames replay may decode ahead of its results. */
interface ClipStages {
  stages: OperatorFunction<LocatedFrame, FrameResult>;
  lookahead: number;
}

/**
 * located frames -> (align) -> windows of encoded frames (each frame encoded once; with the frame path, its 2D
 * result computed then too and delivered at once) -> clip heads per window -> one clip result per frame, an item
 * of its own (`path: 'clip'`) with the clip planes (and the `image` plane asked for). A 2D result never waits for
 * a window; frames whose windows were all dropped (live) get no clip result.
 */
function clipPathStages(
  pool: GraphRunner,
  manifest: ModelManifest,
  clip: ClipModel,
  options: ClipPathOptions = {},
  { live, image }: { live: boolean; image: boolean },
  encode: OperatorFunction<Frame, EncodedFrame>,
  analyse: OperatorFunction<EncodedFrame, FrameResult> | undefined,
  onDrop: () => void,
): ClipStages {
  const { frames: length } = clip.settings;
  const stride = options.stride ?? Math.max(1, Math.floor(length / 2));
  if (!(Number.isInteger(stride) && stride >= 1 && stride <= length)) {
    throw new LfusionError('INVALID_OPTION', `clip.stride must be an integer from 1 to the window length ${length} (every frame gets a clip result), got ${stride}`, { stride });
  }
  const analyseWindow = lfusionClipUncertainty(pool, manifest, options.uncertainty);
  const planes = options.uncertainty?.planes ?? [];
  const ranges = options.uncertainty?.ranges ?? {};
  const align: OperatorFunction<Frame, Pick<AlignedFrame, 'frame'> & Partial<AlignedFrame>> = options.align
    ? alignFrames(options.align === true ? {} : options.align)
    : map((frame: Frame) => ({ frame }));
  const stages: OperatorFunction<LocatedFrame, FrameResult> = (located$) =>
    defer(() => {
      /**
       * Frames waiting for their clip result, by index: where they came from, their alignment, and the `image`
       * plane for it: of the frame as decoded (`image`, from its 2D result) or as the clip heads saw it (`seen`).
       */
      const inFlight = new Map<number, { located: LocatedFrame; aligned?: AlignedFrame; image?: Plane; seen?: Plane }>();
      const frameResults = new Subject<FrameResult>();
      const step = (frame: Frame): Observable<EncodedFrame> => {
        const entry = inFlight.get(frame.index)!;
        if (!analyse) return of(frame).pipe(encode, tap((encoded) => image && (entry.seen = imagePlane(encoded.image, manifest))));
        const original = entry.located.frame;
        const twoD = (encoded: EncodedFrame) =>
          of(encoded).pipe(
            analyse,
            tap((result) => {
              entry.image = result.planes.find((plane) => plane.name === 'image');
              frameResults.next(placeResult(result, entry.located));
            }),
          );
        if (frame === original) return of(frame).pipe(encode, concatMap((encoded) => concat(twoD(encoded).pipe(ignoreElements()), of(encoded))));
        return of(original).pipe(encode, concatMap(twoD), ignoreElements(), (done) => concat(done, of(frame).pipe(encode)));
      };
      const toResult = (merged: ClipFrame): FrameResult[] => {
        // Frames before this one still waiting never get a clip result (live: their windows were dropped).
        for (const at of inFlight.keys()) if (at < merged.frame.index) inFlight.delete(at);
        const entry = inFlight.get(merged.frame.index);
        if (!entry) return [];
        inFlight.delete(merged.frame.index);
        const { data: _pixels, ...frame } = entry.located.frame;
        const transform = entry.aligned?.aligned ? entry.aligned.transform : undefined;
        const size = merged.size;
        const onFrame = (values: Float32Array) => (transform ? warpToOriginal({ width: size, height: size, data: values }, transform, entry.located.frame) : values);
        const plane = (name: string) => quantizePlane(`clip.${name}`, onFrame(merged.maps[name]!), size, size, ranges[name] ?? defaultRange(name));
        const clipPlanes = [{ ...maskPlane(onFrame(merged.maps.mean_prob!), size, size), name: 'clip.mask' }, plane('fused'), ...planes.map(plane)];
        const seen = entry.seen && { ...entry.seen, data: transform ? warpToOriginal(entry.seen, transform, entry.located.frame) : entry.seen.data };
        const imagePlanes = [entry.image ?? seen].filter((plane): plane is Plane => plane !== undefined);
        const timings = Object.fromEntries(Object.entries(merged.timings).map(([stage, ms]) => [`clip.${stage}`, ms]));
        const biometry = merged.biometry && (transform ? biometryOnSource(merged.biometry, transform) : merged.biometry);
        const placed = placeResult({ frame, path: 'clip', planes: [...imagePlanes, ...clipPlanes], clipOod: merged.ood, ...(biometry ? { biometry } : {}), timings }, entry.located);
        // With the frame path, the frame's 2D result already reported the region's timing.
        return [analyse ? { ...placed, timings } : placed];
      };
      const clipResults$ = located$.pipe(
        tap((located: LocatedFrame) => inFlight.set(located.frame.index, { located })),
        map((located) => located.frame),
        align,
        map((aligned) => {
          if (aligned.transform) inFlight.get(aligned.frame.index)!.aligned = aligned as AlignedFrame;
          return aligned.frame;
        }),
        windowClips(step, { length, stride, end: 'shift', live, onDrop: (drop) => drop.kind === 'frame' && onDrop() }, (window) => of(window).pipe(analyseWindow)),
        mergeClipFrames(),
        concatMap(toResult),
        finalize(() => frameResults.complete()),
      );
      return merge(frameResults, clipResults$);
    });
  return { stages, lookahead: length + stride + DEFAULT_LOOKAHEAD };
}

/** Frames replay decodes ahead of the results besides what a window needs (fromVideo's default flow window). */
const DEFAULT_LOOKAHEAD = 4;
