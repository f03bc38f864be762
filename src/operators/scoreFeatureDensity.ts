/**
 * The feature-density score: how far a frame's encoder features lie from those of the training scans.
 */
import { map, type OperatorFunction } from 'rxjs';
import { LfusionError, ShapeError } from '../runtime/errors.js';
import type { EncodedFrame } from '../runtime/types/frames.js';
import type { DensityManifest, ModelManifest } from '../runtime/types/model.js';

/** An encoded frame with its feature-density score (squared Mahalanobis distance; higher = less like training). */
export interface DensityScoredFrame extends EncodedFrame {
  density: number;
}

/**
 * Squared Mahalanobis distance of the pooled features `[F, tokens]` (float64 throughout): the per-channel token
 * mean (and, for `mean_std`, the population std) minus the training mean, through the stored block-diagonal
 * precision, as `density_score` in models/lfusion/density.py. The pooled vector is built in block order
 * (docs/model-format.md), so each block is one contiguous quadratic form.
 *
 * @example
 * const score = featureDensity(encoded.features, pkg.manifest.density!);
 */
export function featureDensity(features: Float32Array, density: DensityManifest, scratch = new Float64Array(density.dimension)): number {
  const { statistics, dimension, pooling, precisionBlocks } = density;
  if (!statistics) throw new LfusionError('INVALID_OPTION', 'density statistics are not loaded: load the package with loadModelPackage', { file: density.file });
  const channels = pooling === 'mean' ? dimension : dimension / 2;
  const tokens = features.length / channels;
  if (!Number.isInteger(tokens) || tokens < 1) throw new ShapeError(`encoder features of ${features.length} values do not split into ${channels} channels`, [channels, 'tokens'], [features.length]);
  const perBlock = channels / precisionBlocks;
  const size = dimension / precisionBlocks;
  const centred = scratch;
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    let squares = 0;
    for (let t = c * tokens, end = t + tokens; t < end; t++) {
      const value = features[t]!;
      sum += value;
      squares += value * value;
    }
    const mean = sum / tokens;
    const block = Math.floor(c / perBlock);
    const at = block * size + (c - block * perBlock);
    centred[at] = mean - statistics.mean[at]!;
    if (pooling === 'mean_std') centred[at + perBlock] = Math.sqrt(Math.max(squares / tokens - mean * mean, 0)) - statistics.mean[at + perBlock]!;
  }
  const { precision } = statistics;
  let score = 0;
  for (let block = 0; block < precisionBlocks; block++) {
    const first = block * size;
    const matrix = block * size * size;
    for (let i = 0; i < size; i++) {
      let row = 0;
      for (let j = 0, offset = matrix + i * size; j < size; j++) row += precision[offset + j]! * centred[first + j]!;
      score += centred[first + i]! * row;
    }
  }
  return score;
}

/**
 * Adds the feature-density score to each encoded frame, from the features the encoder already computed
 * (no extra graph run). Needs a package with a `density` section, loaded by `loadModelPackage`.
 *
 * @example
 * fromVideo('scan.mp4').pipe(encodeFrames(pool, pkg.manifest), scoreFeatureDensity(pkg.manifest)).subscribe((f) => console.log(f.density));
 *
 * @param manifest the loaded package's manifest (`density` with its statistics).
 * @return Encoded frames with `density` and `timings.density` in ms.
 * @throws LfusionError `INVALID_OPTION` at set-up when the package has no density statistics.
 */
export function scoreFeatureDensity(manifest: Pick<ModelManifest, 'density'>): OperatorFunction<EncodedFrame, DensityScoredFrame> {
  const density = manifest.density;
  if (!density?.statistics) throw new LfusionError('INVALID_OPTION', 'this model package has no loaded density statistics (manifest "density")', {});
  const scratch = new Float64Array(density.dimension);
  return map((encoded) => {
    const started = performance.now();
    const score = featureDensity(encoded.features, density, scratch);
    return { ...encoded, density: score, timings: { ...encoded.timings, density: performance.now() - started } };
  });
}
