/**
 * Types for every value that crosses a thread or a socket. Each side imports them from here.
 */

/** A decoded video frame, 8-bit grey. */
export interface Frame {
  /** 0-based index in the source, counting every decoded frame (dropped ones included). */
  index: number;
  /** Presentation timestamp in seconds, from the source's own clock. */
  pts: number;
  /** Wall-clock time (ms since the epoch) when the frame left the decoder. */
  captureTime: number;
  width: number;
  height: number;
  /** `width * height` grey pixels, row-major. */
  data: Uint8Array;
}

/** Milliseconds spent per named pipeline stage for one frame. */
export type StageTimings = Record<string, number>;

/** A frame after the encoder (one encoder run per frame, whatever the sample counts). */
export interface EncodedFrame {
  frame: Frame;
  /** Normalised model input `[1, 1, 224, 224]`. */
  image: Float32Array;
  /** Encoder output `[1, F, 14, 14]`. */
  features: Float32Array;
  timings: StageTimings;
}

/**
 * A named 2-D map carried to subscribers, quantised to uint8:
 * `value = min + q * scale` for each byte `q`.
 */
export interface Plane {
  name: string;
  width: number;
  height: number;
  data: Uint8Array;
  min: number;
  scale: number;
}

/** Image-level out-of-distribution score of one frame. */
export interface OodScore {
  score: number;
  threshold: number;
  /** The map the score aggregates, e.g. `fused` or `laplace.mutual_information`. */
  map: string;
  above: boolean;
}

/** The clip path's OOD score of the window a frame's clip result came from (frame indices `first..last`). */
export interface ClipOodScore extends OodScore {
  window: { first: number; last: number };
}

/** Everything the pipeline produced for one frame. */
export interface FrameResult {
  frame: Omit<Frame, 'data'>;
  /** `mask` first (class indices), then `fused` and any per-path maps requested. */
  planes: Plane[];
  ood?: OodScore;
  /** With the clip path: the OOD score of the window the clip planes (`clip.*`) came from. */
  clipOod?: ClipOodScore;
  timings: StageTimings;
  /**
   * Where `frame` (the crop the model saw) lies on the source screen, when the pipeline cut the frame to its
   * ultrasound region. A plane pixel `(x, y)` of a `W x H` plane lies at screen
   * `(region.x + x * region.width / W, region.y + y * region.height / H)`.
   */
  region?: ScreenRegion;
  /** Size of the source screen (the full decoded frame), with `region`. */
  screen?: ScreenSize;
}

/** A tensor as it crosses the worker boundary. */
export interface TensorData {
  data: Float32Array;
  dims: number[];
}

/** An OOD alert. `raised` when the score stays above threshold long enough; `cleared` when it stays below. */
export interface Alert {
  kind: 'raised' | 'cleared';
  /** Which path's scores raised it: `frame` (2D, counts frames) or `clip` (counts windows). */
  path: 'frame' | 'clip';
  /** Same id for the `raised` and the `cleared` of one episode (ids count per path). */
  id: number;
  /** First frame index of the episode (the first frame above threshold). */
  startFrame: number;
  /** Last frame index above threshold seen so far (for `cleared`: the episode's last one). */
  endFrame: number;
  peakScore: number;
  peakFrame: number;
  map: string;
  threshold: number;
  /** Wall-clock time (ms epoch) the alert was emitted. */
  time: number;
}

/** Pipeline statistics, emitted periodically. Latencies in ms. */
export interface PipelineStats {
  fpsIn: number;
  fpsOut: number;
  framesIn: number;
  framesOut: number;
  dropped: number;
  latency: Record<string, { p50: number; p90: number; p99: number; max: number; count: number }>;
  time: number;
}

// ---------------------------------------------------------------------------------------------
// Model package (docs/model-format.md) and inference pool, added by the SDK runtime.
// ---------------------------------------------------------------------------------------------

/** A tensor dimension in a manifest: fixed size, or a symbolic name such as `"batch"`, `"m"`, `"n"`, `"k"`. */
export type Dimension = number | string;

/** One ONNX graph of a model package, as declared by `manifest.json`. */
export interface GraphSpec {
  file: string;
  sha256: string;
  inputs: Record<string, Dimension[]>;
  outputs: Record<string, Dimension[]>;
}

/** `manifest.json` of a model package, format version 1 (docs/model-format.md). */
export interface ModelManifest {
  format: 'lfusion-model-package';
  formatVersion: 1;
  name: string;
  classes: string[];
  input: {
    width: number;
    height: number;
    channels: number;
    resize: 'stretch';
    normalization: { mean: number; std: number };
  };
  pixelSpacing: 'carried';
  graphs: Record<string, GraphSpec>;
  files: Record<string, string>;
  laplace: { rank: number; weightCount: number; priorPrecision: number; posteriorScale: number; covered: string };
  dropout: { rate: number; maskCount: number };
  /** Default sample counts, the largest tested, and the seed of the draws the OOD threshold was calibrated with. */
  sampling: { m: number; n: number; k: number; maxM: number; maxN: number; maxK: number; seed: number };
  measures: { order: string[]; entropyEpsilon: number };
  fusion: { auxiliary: string };
  ood: { map: string; aggregation: string; threshold: number; raiseAfter: number; clearAfter: number };
  provenance: Record<string, unknown>;
  metrics: Record<string, unknown>;
  /** The clip (3D) heads, when the package has them (graphs `clip_laplace_head`, `clip_dropout_head`, `clip_measures`). */
  clip?: ClipManifest;
}

/** The settings of one set of L-FUSION heads: the 2D ones at the manifest's root, the clip ones in `clip`. */
export type HeadSettings = Pick<ModelManifest, 'laplace' | 'dropout' | 'sampling' | 'fusion' | 'ood'>;

/**
 * `manifest.clip`: heads on windows of `frames` consecutive frames (per-frame encoder features stacked over time).
 * Their maps are `frames` grids of `outputSize x outputSize`, frame-major; `ood.raiseAfter`/`clearAfter` count windows.
 */
export interface ClipManifest extends HeadSettings {
  frames: number;
  outputSize: number;
  metrics?: Record<string, unknown>;
}

/** ONNX Runtime execution provider the inference workers ask for; `cpu` is always available. */
export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

// ---------------------------------------------------------------------------------------------
// Uncertainty runtime: values flowing between the uncertainty operators (sampleHeads ->
// measureUncertainty -> fuseUncertainty -> scoreOod), added by the uncertainty runtime.
// Maps are float32, `HW = 224 * 224` pixels, row-major.
// ---------------------------------------------------------------------------------------------

/**
 * Runs a named graph of the loaded model package: the `InferencePool` satisfies it, tests may pass a fake.
 * Feeds not named in `keep` may be transferred to a worker and become unusable to the caller.
 */
export interface GraphRunner {
  run(graph: string, feeds: Record<string, TensorData>, options?: { keep?: readonly string[] }): Promise<Record<string, TensorData>>;
}

/** Weight samples m, logit samples per weight sample n, dropout passes k. */
export interface SampleCounts {
  m: number;
  n: number;
  k: number;
}

/** The graph inputs that carry randomness, named as in docs/model-format.md. */
export interface Draws {
  counts: SampleCounts;
  /** True when the same draws serve other frames too (common random numbers): consumers must copy, never transfer or modify them. */
  reused: boolean;
  /** `weight_noise [m, Pw]`, standard normal. */
  weightNoise: TensorData;
  /** `dropout_masks [k, Md]`, entries 0 or `1 / (1 - rate)`. */
  dropoutMasks: TensorData;
  /** `factor_noise [m, n, r]`, standard normal. */
  factorNoise: TensorData;
  /** `diag_noise [m, n, HW]`, standard normal. */
  diagNoise: TensorData;
}

/** One frame's head outputs: one `laplace_head` run for all m weight samples, one `dropout_head` run for all k passes. */
export interface HeadSamples {
  frame: Frame;
  draws: Draws;
  /** `logit_mean [m, HW]`, `cov_factor [m, r, HW]`, `cov_diag [m, HW]`. */
  laplace: { logitMean: TensorData; covFactor: TensorData; covDiag: TensorData };
  /** `logits [k, HW]` of the dropout head. */
  dropoutLogits: TensorData;
  timings: StageTimings;
}

/** Per-path measure maps `[order.length, HW]`, rows in manifest `measures.order`. */
export interface MeasureMaps {
  order: readonly string[];
  pixels: number;
  laplace: Float32Array;
  dropout: Float32Array;
}

/** A frame after the `measures` graph. */
export interface MeasuredFrame {
  frame: Frame;
  counts: SampleCounts;
  maps: MeasureMaps;
  timings: StageTimings;
}

/** A frame after fusion. */
export interface FusedFrame extends MeasuredFrame {
  /** `0.5 * (mean_prob_L + mean_prob_D)` per pixel: the prediction the fused map's entropy and the mask use. */
  meanProb: Float32Array;
  /** `U_fused` per pixel (docs/model-format.md). */
  fused: Float32Array;
}

/** A frame with its image-level OOD score. */
export interface ScoredFrame extends FusedFrame {
  ood: OodScore;
}

/** An error as it crosses a thread boundary (class identity does not survive structured clone). */
export interface SerializedError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/** `workerData` of an inference worker. */
export interface InferenceWorkerData {
  packagePath: string;
  /** The graphs this worker opens, as declared by the manifest. */
  graphs: Record<string, GraphSpec>;
  executionProvider: ExecutionProvider;
  /** ONNX Runtime intra-op threads per session; `undefined` lets the runtime choose. */
  threads?: number;
}

/** Main thread -> inference worker. */
export type InferenceWorkerRequest =
  | { type: 'run'; id: number; graph: string; feeds: Record<string, TensorData> }
  | { type: 'close' };

/** Inference worker -> main thread. */
export type InferenceWorkerReply =
  | { type: 'ready'; executionProvider: ExecutionProvider; warning?: string }
  | { type: 'init-failed'; error: SerializedError }
  | { type: 'result'; id: number; outputs: Record<string, TensorData> }
  | { type: 'failed'; id: number; error: SerializedError };

// ---------------------------------------------------------------------------------------------
// WebSocket protocol (docs/protocol.md), added by the SDK runtime. `seq` is one counter per server.
// ---------------------------------------------------------------------------------------------

/** Where a plane's bytes lie in the body of a binary frame message. */
export interface PlaneDescriptor {
  name: string;
  width: number;
  height: number;
  min: number;
  scale: number;
  /** Byte offset from the start of the body (the first byte after the JSON header). */
  offset: number;
  length: number;
}

/** JSON header of a binary frame message. */
export interface FrameHeader {
  type: 'frame';
  seq: number;
  frame: Omit<Frame, 'data'>;
  planes: PlaneDescriptor[];
  ood?: OodScore;
  clipOod?: ClipOodScore;
  timings: StageTimings;
  /** As in {@link FrameResult}: where the processed crop lies on the source screen. */
  region?: ScreenRegion;
  screen?: ScreenSize;
}

/** Model facts a client needs, sent in `hello`. */
export interface ModelInfo {
  name: string;
  classes: string[];
  input: { width: number; height: number };
}

/** Server -> client text messages (JSON). */
export type TextMessage =
  | {
      type: 'hello';
      seq: number;
      protocol: 1;
      model: ModelInfo;
      streams: string[];
      subscribed: string[];
      time: number;
      /** The latest source event, i.e. the source's current state; absent while none has happened (all well since start). */
      source?: SourceEvent;
    }
  | { type: 'subscribed'; seq: number; streams: string[] }
  | { type: 'stats'; seq: number; stats: PipelineStats }
  | { type: 'alert'; seq: number; alert: Alert }
  | { type: 'source'; seq: number; event: SourceEvent }
  | { type: 'error'; seq: number; code: string; message: string };

/** Client -> server messages (JSON text). */
export type ClientMessage = { type: 'subscribe'; streams: string[] };

// ---------------------------------------------------------------------------------------------
// Scanner integration: live source events (`reconnecting`) and the ultrasound region
// (`ultrasoundRegion`). Both cross the WebSocket.
// ---------------------------------------------------------------------------------------------

/** A rectangle in screen pixels: the ultrasound image inside the scanner's full frame. */
export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Width and height in pixels of a full source frame (the scanner's screen). */
export interface ScreenSize {
  width: number;
  height: number;
}

/**
 * A region as applied to one frame. `origin`: `manual` (configured), `detected` (found in the image), or
 * `full-frame` (detection found nothing yet: the frame passed whole, and the region is the whole screen).
 */
export interface ScreenRegion extends Region {
  origin: 'manual' | 'detected' | 'full-frame';
}

/** A live source stopped (or could not be reached) and a reconnection is scheduled. */
export interface SourceLostEvent {
  type: 'source-lost';
  /** The source as given to the decoder (file, URL or device), when the error named it. */
  source?: string;
  /** `SOURCE_LOST`: it was delivering and stopped; `SOURCE_NOT_FOUND`: the attempt could not open it. */
  code: 'SOURCE_LOST' | 'SOURCE_NOT_FOUND';
  message: string;
  /** ffmpeg's last lines of output, for diagnosing why. */
  stderrTail: string;
  /** 1-based number of the reconnection attempt scheduled: consecutive failures so far. */
  attempt: number;
  /** When that attempt starts, in ms from now. */
  retryInMs: number;
  /** Index of the last frame delivered before the loss; -1 when none ever was. */
  lastIndex: number;
  /** Wall-clock time (ms epoch) of the event. */
  time: number;
}

/** Frames flow again after one or more `source-lost` events. Emitted just before the first of them. */
export interface SourceRestoredEvent {
  type: 'source-restored';
  source?: string;
  /** Reconnection attempts it took. */
  attempts: number;
  /** From the first `source-lost` of this outage to now. */
  downtimeMs: number;
  /** Index of the frame that follows: indices continue across the outage. */
  firstIndex: number;
  time: number;
}

/** What `reconnecting` reports about a live source between the frames, and `source` messages carry. */
export type SourceEvent = SourceLostEvent | SourceRestoredEvent;

// ---------------------------------------------------------------------------------------------
// Clip path (issue 6): frame alignment (`alignFrames`) and sliding windows of encoded frames (`windowClips`).
// ---------------------------------------------------------------------------------------------

/**
 * A similarity transform from a frame's pixel coordinates to its reference's, about the image centre
 * `c = ((width - 1) / 2, (height - 1) / 2)` (pixel centres at integer coordinates):
 * `p_reference = scale * R(rotation) * (p - c) + c + (tx, ty)`.
 */
export interface SimilarityTransform {
  scale: number;
  /** Radians, positive from +x towards +y (clockwise on screen, y pointing down). */
  rotation: number;
  /** Translation in pixels of the frame's centre. */
  tx: number;
  ty: number;
  /** The same map as a row-major 2x3 affine matrix `[a, b, c, d, e, f]`: `x' = a x + b y + c`, `y' = d x + e y + f`. */
  matrix: readonly [number, number, number, number, number, number];
}

/** A frame after `alignFrames`. */
export interface AlignedFrame {
  /** The frame resampled onto its reference's geometry (same size, index and timestamps as the source frame). */
  frame: Frame;
  /** The source frame as decoded, for overlays in its own geometry. */
  original: Frame;
  /** Source frame -> reference coordinates; the identity when the estimate was rejected (`quality < minQuality`). */
  transform: SimilarityTransform;
  /** `index` of the reference frame. */
  referenceIndex: number;
  /**
   * Normalised cross-correlation of the aligned, smoothed frame with the reference over their overlap, times
   * `min(1, overlap / 0.5)`: 0 (nothing in common) to 1 (identical up to the transform).
   */
  quality: number;
  /** Whether `transform` is the estimate (`quality >= minQuality`) rather than the identity fallback. */
  aligned: boolean;
}

/** A window of consecutive encoded frames from `windowClips`. */
export interface ClipWindow {
  frames: Frame[];
  /** One entry per frame, the same `EncodedFrame` objects for every window sharing a frame (encoded once). */
  features: EncodedFrame[];
  /**
   * Positions `[start, end)` of the window in the stream of frames the operator processed (0-based,
   * `end - start === frames.length`): the frame indices when no frame was dropped before it.
   */
  start: number;
  end: number;
  /** Fewer than `length` frames: the stream ended first (see `WindowClipsOptions.end`). */
  partial: boolean;
}

/**
 * The clip heads' results for one window (`lfusionClipUncertainty`), per frame, before overlapping windows are
 * merged: each map is `size x size`, one per frame of the window.
 */
export interface ClipWindowMaps {
  /** Stream position of the window's first frame (see {@link ClipWindow}). */
  start: number;
  frames: Frame[];
  size: number;
  /**
   * `mean_prob` (the mean of the two paths' mean foreground probabilities), `fused`, and the per-path maps asked
   * for (`laplace.<measure>`, `dropout.<measure>`), each one map per frame in window order.
   */
  maps: Record<string, Float32Array[]>;
  ood: ClipOodScore;
  timings: StageTimings;
}

/** One frame's clip result: the mean of its maps over every window that contained it (`mergeClipFrames`). */
export interface ClipFrame {
  frame: Frame;
  /** Stream position (the frame index when no frame was dropped before windowing). */
  position: number;
  size: number;
  /** The names of {@link ClipWindowMaps.maps}, one `size x size` map each. */
  maps: Record<string, Float32Array>;
  /** How many windows the maps average. */
  windows: number;
  /** The OOD score of the last window that contained the frame. */
  ood: ClipOodScore;
  timings: StageTimings;
}
