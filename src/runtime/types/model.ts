/**
 * A model package as `manifest.json` declares it (docs/model-format.md).
 */

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
  /** Head biometry calibration (written by `make -C models biometry`); absent: raw posterior intervals. */
  biometry?: BiometryManifest;
  /** Feature-density statistics of the encoder's features (the `wrong-anatomy` evidence), when the package has them. */
  density?: DensityManifest;
  /** The fused OOD decision's evidence and thresholds, when the package has them (docs/model-format.md). */
  oodDecision?: OodDecisionManifest;
}

/**
 * `manifest.biometry`: the calibration of the posterior intervals (normalised split conformal on validation scans):
 * each is `median ± intervalScale × hypot(max(posterior half-width, intervalFloor × median), outlineResidual × median)`.
 */
export interface BiometryManifest {
  interval: 'normalised-conformal-outline';
  intervalScale: number;
  /** Smallest half-width before scaling, as a fraction of the median. */
  intervalFloor: number;
  /** How it was calibrated: split, scans, raw and calibrated coverage. */
  calibration: Record<string, unknown>;
  /** The same calibration for the clip heads' biometry (on validation sweeps); absent: their posterior's own intervals. */
  clip?: Omit<BiometryManifest, 'clip'>;
}

/**
 * `manifest.density`: a Gaussian of the encoder's pooled features fitted on the training scans.
 * `score = (v - mean)^T precision (v - mean)` for the pooled vector `v` of a frame's `features [F, g, g]`.
 */
export interface DensityManifest {
  /**
   * Raw float32 little-endian: `mean [dimension]`, then the precision's `precisionBlocks` diagonal blocks
   * `[d, d]` row-major (`d = dimension / precisionBlocks`), in block order (see `pooling`).
   */
  file: string;
  sha256: string;
  dtype: 'float32';
  dimension: number;
  /**
   * `mean`: per-channel token mean (dimension = F); `mean_std`: also the per-channel token std (2F). In block order:
   * the F channels split into `precisionBlocks` equal groups; group b's means, then (`mean_std`) its stds.
   */
  pooling: 'mean' | 'mean_std';
  /** Diagonal blocks of the precision (1: a full matrix). */
  precisionBlocks: number;
  /** Filled by `loadModelPackage` from `file` (not in manifest.json). */
  statistics?: DensityStatistics;
}

/** The contents of the density statistics file, widened to float64. */
export interface DensityStatistics {
  mean: Float64Array;
  /** The diagonal blocks, each row-major `[d, d]`, one after the other. */
  precision: Float64Array;
}

/** The evidence a fused OOD decision can cite (docs/uncertainty.md). */
export type OodReasonName = 'wrong-anatomy' | 'no-head' | 'acquisition' | 'uncertain-shape';

/**
 * `manifest.oodDecision`: one threshold per evidence score, chosen on validation in-distribution scans so that
 * the decision (any score strictly above its threshold) raises on at most `falseAlarmRate` of new heads.
 */
export interface OodDecisionManifest {
  falseAlarmRate: number;
  /** How the thresholds were calibrated (docs/model-format.md); absent in packages calibrated before it. */
  conformal?: OodConformalCalibration;
  /** Evidence score name (`density`, `uncertainty`, `head-area-low`, ...) -> its reason and threshold. */
  thresholds: Record<string, { reason: OodReasonName; threshold: number }>;
}

/**
 * The conformal min-p calibration of the thresholds: every threshold is where its score's p-value against the
 * `calibrationScans` in-distribution calibration heads reaches `level`, the `rank`-th of their leave-one-out min-p values, so the
 * decision fires on `(calibrationScans + 1 - rank) / (calibrationScans + 1)` of new heads on average.
 */
export interface OodConformalCalibration {
  level: number;
  calibrationScans: number;
  rank: number;
  /** Calibration scans in each score's exponential tail. */
  tailSize: number;
  expectedFalseAlarmRate: number;
  /**
   * With a training-conditional rank: the probability that the realised false-alarm rate is at most
   * `falseAlarmRate`; `chanceAbove` = P(Binomial(calibrationScans, falseAlarmRate) <= calibrationScans - rank), at most 1 - confidence.
   */
  confidence?: number;
  chanceAbove?: number;
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
  /**
   * The fused OOD decision per window, its thresholds chosen on validation sweeps' windows (evidence: the window's
   * median frame `density`, `brightness-high`/`-low`, `head-area-low`/`-high` and `ellipse-misfit` of the clip heads'
   * masks, and the clip score as `uncertainty`). Absent: the 2D decision's density and brightness thresholds and the
   * clip score's own threshold.
   */
  oodDecision?: OodDecisionManifest;
}

/** ONNX Runtime execution provider the inference workers ask for; `cpu` is always available. */
export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';
