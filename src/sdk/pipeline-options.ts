/**
 * The contract of {@link createPipeline}: its options and what it returns. The implementation is in pipeline.ts.
 */
import type { Observable, OperatorFunction } from 'rxjs';
import type { AlignFramesOptions } from '../operators/alignFrames.js';
import type { FromVideoOptions } from '../operators/fromVideo.js';
import type { UncertaintyOptions } from '../operators/lfusionUncertainty.js';
import type { AlertOptions } from '../operators/raiseAlerts.js';
import type { ReconnectingOptions } from '../operators/reconnecting.js';
import type { UltrasoundRegionOptions } from '../operators/ultrasoundRegion.js';
import type { InferencePool, InferencePoolOptions } from '../runtime/inference-pool.js';
import type { ModelPackage } from '../runtime/model-package.js';
import type { StatsOptions, StatsRecorder } from '../runtime/stats.js';
import type { EncodedFrame, SourceEvent } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { Alert, FrameResult } from '../runtime/types/results.js';

/**
 * What runs after the encoder: an operator from encoded frames to results. It must leave each encoded frame
 * usable (name its `image` and `features` in the runner's `keep`): the clip path stacks the same frames into windows.
 */
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
  /** Inference workers and execution provider. Default: 2 workers for `analysis: 'uncertainty'` (the two heads side by side), else 1. */
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
  /**
   * Which results each frame gets: `frame` (default), the 2D heads on the frame alone (`analysis`); `clip`, the
   * clip (3D) heads on sliding windows of frames (`clip`, needs a package with clip heads; planes `clip.*`, score
   * `clipOod`); or both. A clip result needs the frames after it: it comes about `length + stride` frames late, as
   * an item of its own (`path: 'clip'`); with both paths a frame's 2D result is delivered as soon as it is computed,
   * never held back by a window, and the clip heads run in an inference worker of their own.
   */
  paths?: readonly PathName[];
  /** Windows, alignment and sampling of the clip path. */
  clip?: ClipPathOptions;
  /** Hysteresis of OOD alerts (defaults from the manifest; the clip path's count windows, from `manifest.clip`). */
  alerts?: AlertOptions;
  stats?: StatsOptions;
}

/** The two analysis paths of a pipeline. */
export type PathName = 'frame' | 'clip';

/** Options of the clip path ({@link PipelineOptions.clip}). */
export interface ClipPathOptions {
  /** Frames between window starts, 1 to the window length (manifest `clip.frames`). Default: half the window length. */
  stride?: number;
  /**
   * Align each frame to a reference (`alignFrames`) before the clip heads see it, so that probe motion does not
   * smear the window; the clip maps are mapped back onto the frame as decoded. `true` for the defaults. Default off.
   */
  align?: boolean | AlignFramesOptions;
  /** Sample counts, seed, fusion, OOD and per-path planes of the clip heads (defaults from `manifest.clip`). */
  uncertainty?: UncertaintyOptions;
  /** Hysteresis of the clip path's alerts, in windows (defaults from `manifest.clip.ood`). */
  alerts?: AlertOptions;
}

/** A running pipeline's parts. */
export interface Pipeline {
  readonly model: ModelPackage;
  /** The frame path's inference worker(s); the clip path has its own (one worker, one intra-op thread by default). */
  readonly pool: InferencePool;
  readonly live: boolean;
  /** Plane names the results carry (`clip.*` on the clip path's items). */
  readonly streams: readonly string[];
  /**
   * The results, in frame order per path: each frame's 2D result (`path` absent or `frame`) and, with the clip
   * path, its clip result (`path: 'clip'`) when its last window is done. Subscribing starts decoding (one ffmpeg
   * shared by all current subscribers); unsubscribing every subscriber stops it.
   */
  readonly results$: Observable<FrameResult>;
  /** Which analysis paths run. */
  readonly paths: readonly PathName[];
  /** OOD alerts raised and cleared from the results (`path` says which: none from the frame path with `analysis: 'segment'`). Never dropped. */
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
