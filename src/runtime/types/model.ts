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
}

/** `manifest.biometry`: the scale of the raw 95% posterior HC intervals that covers 95% of validation scans (split conformal). */
export interface BiometryManifest {
  intervalScale: number;
  /** How it was calibrated: split, scans, raw and calibrated coverage. */
  calibration: Record<string, unknown>;
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
