/**
 * Values flowing between the uncertainty operators (sampleHeads -> measureUncertainty -> fuseUncertainty -> scoreOod), 2D and clip. Maps are float32, row-major.
 */
import type { ClipWindow, Frame, StageTimings } from './frames.js';
import type { TensorData } from './inference.js';
import type { Biometry } from './biometry.js';
import type { ClipOodScore, OodScore } from './results.js';

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
  /** Head biometry of each frame of the window from the clip heads' samples (with `biometry` asked for), window order. */
  biometry?: Biometry[];
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
  /** Head biometry from the window in which the frame sat nearest the middle (most context on both sides), when measured. */
  biometry?: Biometry;
  timings: StageTimings;
}
