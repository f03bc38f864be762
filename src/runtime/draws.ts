/**
 * The random draws one frame's posterior sampling consumes, and where they come from frame after frame.
 *
 * Every row (one weight sample, one dropout pass, one logit sample) has its own stream derived from the seed
 * and the row's index, so the draws for (m, n, k) are exactly the first rows of the draws for any larger
 * (M, N, K): raising a count adds samples instead of replacing them.
 */
import { LfusionError } from './errors.js';
import { headPixels } from './model-package.js';
import { Random, deriveSeed } from './random.js';
import type { TensorData } from './types/inference.js';
import type { ModelManifest } from './types/model.js';
import type { Draws, SampleCounts } from './types/uncertainty.js';

/** Sizes fixed by the model package (manifest `laplace`, `dropout`, input size). */
export interface DrawDimensions {
  /** `laplace.weightCount` (Pw): weights covered by the Laplace posterior. */
  weightCount: number;
  /** `laplace.rank` (r): rank of the low-rank logit covariance. */
  rank: number;
  /** `dropout.maskCount` (Md): dropout channel-mask entries per pass. */
  maskCount: number;
  /** `dropout.rate` (p). */
  dropoutRate: number;
  /** Pixels per head output map (`diag_noise`'s last dimension): `224 * 224`, or `112 * 112` for heads at half resolution. */
  pixels: number;
}

/** Stream ids, one per input tensor, so the tensors never share random numbers. */
const STREAM = { weightNoise: 1, dropoutMasks: 2, factorNoise: 3, diagNoise: 4 } as const;

/** Throws `INVALID_OPTION` unless m, n and k are positive integers. */
export function checkSampleCounts(counts: SampleCounts): void {
  for (const key of ['m', 'n', 'k'] as const) {
    const value = counts[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new LfusionError('INVALID_OPTION', `sample count ${key} must be a positive integer, got ${value}`, { [key]: value });
    }
  }
}

/**
 * Draws every random input of one frame from `seed`: weight samples `first.m` to `first.m + m - 1` and dropout
 * passes `first.k` to `first.k + k - 1` (default from 0), so consecutive slices together are the draws of the
 * whole range.
 *
 * @example
 * const draws = drawSamples(7, { m: 10, n: 4, k: 10 }, { weightCount: 2048, rank: 10, maskCount: 256, dropoutRate: 0.2, pixels: 224 * 224 });
 */
export function drawSamples(seed: number, counts: SampleCounts, dims: DrawDimensions, first: { m: number; k: number } = { m: 0, k: 0 }): Draws {
  checkSampleCounts(counts);
  const { m, n, k } = counts;
  /** `rows x subRows` standard-normal rows of `width`, each from its own stream; shape `dims`. */
  const normalRows = (stream: number, rows: number, subRows: number, width: number, dims: number[]): TensorData => {
    const data = new Float32Array(rows * subRows * width);
    for (let row = 0; row < rows; row++) {
      for (let sub = 0; sub < subRows; sub++) {
        const offset = (row * subRows + sub) * width;
        new Random(deriveSeed(seed, stream, first.m + row, sub)).fillNormal(data.subarray(offset, offset + width));
      }
    }
    return { data, dims };
  };
  const masks = new Float32Array(k * dims.maskCount);
  for (let pass = 0; pass < k; pass++) {
    const row = masks.subarray(pass * dims.maskCount, (pass + 1) * dims.maskCount);
    new Random(deriveSeed(seed, STREAM.dropoutMasks, first.k + pass, 0)).fillDropoutMask(row, dims.dropoutRate);
  }
  return {
    counts: { m, n, k },
    reused: false,
    weightNoise: normalRows(STREAM.weightNoise, m, 1, dims.weightCount, [m, dims.weightCount]),
    dropoutMasks: { data: masks, dims: [k, dims.maskCount] },
    factorNoise: normalRows(STREAM.factorNoise, m, n, dims.rank, [m, n, dims.rank]),
    diagNoise: normalRows(STREAM.diagNoise, m, n, dims.pixels, [m, n, dims.pixels]),
  };
}

/**
 * `common`: the same draws for every frame ("common random numbers"), so the overlay changes only when the
 * image does; the live default. `fresh`: new draws per frame from the frame index, reproducible from the seed.
 */
export type DrawMode = 'common' | 'fresh';

export interface DrawSourceOptions {
  seed: number;
  mode: DrawMode;
  dims: DrawDimensions;
}

/**
 * Returns a function giving the draws for a frame. In `common` mode they are generated once per (m, n, k) and
 * the same object (`reused: true`) is returned every frame: callers must not modify or transfer its buffers. In `fresh` mode
 * frame `i` gets the draws of seed `deriveSeed(seed, i)`, whatever frames were dropped before it.
 *
 * @example
 * const drawsFor = createDrawSource({ seed: 0, mode: 'common', dims });
 * const draws = drawsFor(frame.index, { m: 10, n: 4, k: 10 });
 */
export function createDrawSource(options: DrawSourceOptions): (frameIndex: number, counts: SampleCounts) => Draws {
  const { seed, mode, dims } = options;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new LfusionError('INVALID_OPTION', `seed must be a non-negative safe integer, got ${seed}`, { seed });
  if (mode === 'fresh') {
    return (frameIndex, counts) => drawSamples(deriveSeed(seed, frameIndex), counts, dims);
  }
  if (mode !== 'common') throw new LfusionError('INVALID_OPTION', `draw mode must be 'common' or 'fresh', got ${String(mode)}`, { mode });
  let cached: Draws | undefined;
  return (_frameIndex, counts) => {
    if (!cached || cached.counts.m !== counts.m || cached.counts.n !== counts.n || cached.counts.k !== counts.k) {
      cached = { ...drawSamples(seed, counts, dims), reused: true };
    }
    return cached;
  };
}

/**
 * Bytes one frame's sampling holds at once, roughly: its draws, both heads' outputs and the m x n logit samples of
 * the `measures` graph, doubled for ONNX Runtime's intermediates. Checked before anything is allocated.
 */
export function sampleMemoryBytes({ m, n, k }: SampleCounts, dims: DrawDimensions): number {
  const draws = m * dims.weightCount + m * n * (dims.rank + dims.pixels) + k * dims.maskCount;
  const headOutputs = (m * (dims.rank + 2) + k) * dims.pixels;
  const logitSamples = m * n * dims.pixels;
  return 2 * Float32Array.BYTES_PER_ELEMENT * (draws + headOutputs + logitSamples);
}

/** The draw sizes a model package fixes. */
export function drawDimensions(manifest: Pick<ModelManifest, 'laplace' | 'dropout' | 'input' | 'graphs'>): DrawDimensions {
  return {
    weightCount: manifest.laplace.weightCount,
    rank: manifest.laplace.rank,
    maskCount: manifest.dropout.maskCount,
    dropoutRate: manifest.dropout.rate,
    pixels: headPixels(manifest),
  };
}
