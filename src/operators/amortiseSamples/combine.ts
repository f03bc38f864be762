/**
 * The measures of a union of sample sets from the measures of each set (docs/uncertainty.md's formulas), so that
 * the samples of the last frames can be pooled without running the `measures` graph on all of them again.
 */
import { LfusionError } from '../../runtime/errors.js';
import type { HeadSamples } from '../../runtime/types/uncertainty.js';
import { workspace } from '../../runtime/workspace.js';

/** The measures pooling needs, by name; `manifest.measures.order` must list exactly these. */
export const POOLED_MEASURES = ['mean_prob', 'expected_entropy', 'mutual_information', 'expected_pairwise_kl', 'pixel_variance', 'total_entropy', 'logit_variance'] as const;

/** The measures of each set that pooling reads (the others follow from them). */
export const MEASURES_READ = ['mean_prob', 'expected_entropy', 'pixel_variance', 'logit_variance', 'expected_pairwise_kl'] as const;

/** One sample set of one path: how many logit samples, its measure maps and the mean of its logit samples. */
export interface SampleSet {
  samples: number;
  /** `[order.length, HW]`, rows in `order`. */
  maps: Float32Array;
  /** `[HW]`: the mean of the set's logit samples. */
  logitMean: Float32Array;
}

/** Row of each pooled measure in `order`. @throws LfusionError `INVALID_OPTION` unless `order` lists exactly {@link POOLED_MEASURES}. */
export function measureRows(order: readonly string[]): Record<(typeof POOLED_MEASURES)[number], number> {
  const known = [...order].sort().join(',') === [...POOLED_MEASURES].sort().join(',');
  if (!known) throw new LfusionError('INVALID_OPTION', `live mode pools the measures ${POOLED_MEASURES.join(', ')}; this model package has ${order.join(', ')}`, { order });
  return Object.fromEntries(POOLED_MEASURES.map((name) => [name, order.indexOf(name)])) as Record<(typeof POOLED_MEASURES)[number], number>;
}

function binaryEntropy(p: number, eps: number): number {
  const q = Math.min(Math.max(p, eps), 1 - eps);
  return -(q * Math.log(q) + (1 - q) * Math.log1p(-q));
}

/**
 * The measure maps of the union of `sets` (`[order.length, HW]`). Exact for every measure but
 * `expected_pairwise_kl`, whose between-set term uses the sets' mean probability and mean logit in place of their
 * clamped counterparts (they differ only where logits pass +-log((1 - eps) / eps)).
 */
export function combineSampleSets(sets: readonly SampleSet[], order: readonly string[], pixels: number, eps: number): Float32Array {
  if (sets.length === 0) throw new LfusionError('INVALID_OPTION', 'no sample sets to pool');
  const row = measureRows(order);
  if (sets.length === 1) return sets[0]!.maps.slice();
  const total = sets.reduce((sum, set) => sum + set.samples, 0);
  const out = new Float32Array(order.length * pixels);
  const plane = (maps: Float32Array, name: keyof typeof row) => maps.subarray(row[name] * pixels, (row[name] + 1) * pixels);
  const read = (set: SampleSet, name: (typeof MEASURES_READ)[number]) => plane(set.maps, name);
  // Set by set over whole rows (typed-array views, no per-pixel lookups), summing each pixel in the same order as
  // pixel by pixel, in doubles: the same values, several times faster.
  const meanProb = workspace(Float64Array, 'combineSampleSets.meanProb', pixels).fill(0);
  const expectedEntropy = workspace(Float64Array, 'combineSampleSets.expectedEntropy', pixels).fill(0);
  const logitMean = workspace(Float64Array, 'combineSampleSets.logitMean', pixels).fill(0);
  for (const set of sets) {
    const weight = set.samples / total;
    const [prob, entropy, logit] = [read(set, 'mean_prob'), read(set, 'expected_entropy'), set.logitMean];
    for (let p = 0; p < pixels; p++) {
      meanProb[p]! += weight * prob[p]!;
      expectedEntropy[p]! += weight * entropy[p]!;
      logitMean[p]! += weight * logit[p]!;
    }
  }
  const pixelVariance = workspace(Float64Array, 'combineSampleSets.pixelVariance', pixels).fill(0);
  const logitVariance = workspace(Float64Array, 'combineSampleSets.logitVariance', pixels).fill(0);
  const pairwise = workspace(Float64Array, 'combineSampleSets.pairwise', pixels).fill(0);
  for (const set of sets) {
    const weight = set.samples / total;
    const [prob, probVariance, logit, variance, kl] = [read(set, 'mean_prob'), read(set, 'pixel_variance'), set.logitMean, read(set, 'logit_variance'), read(set, 'expected_pairwise_kl')];
    for (let p = 0; p < pixels; p++) {
      const dProb = prob[p]! - meanProb[p]!;
      const dLogit = logit[p]! - logitMean[p]!;
      pixelVariance[p]! += weight * (probVariance[p]! + dProb * dProb);
      logitVariance[p]! += weight * (variance[p]! + dLogit * dLogit);
      pairwise[p]! += (set.samples - 1) * kl[p]! + set.samples * dProb * dLogit;
    }
  }
  const pairs = Math.max(total - 1, 1);
  out.set(meanProb, row.mean_prob * pixels);
  out.set(expectedEntropy, row.expected_entropy * pixels);
  out.set(pixelVariance, row.pixel_variance * pixels);
  out.set(logitVariance, row.logit_variance * pixels);
  const [totalEntropy, information, kl] = [plane(out, 'total_entropy'), plane(out, 'mutual_information'), plane(out, 'expected_pairwise_kl')];
  for (let p = 0; p < pixels; p++) {
    const entropy = binaryEntropy(meanProb[p]!, eps);
    totalEntropy[p] = entropy;
    information[p] = entropy - expectedEntropy[p]!;
    kl[p] = pairwise[p]! / pairs;
  }
  return out;
}

/**
 * The mean of the m x n Laplacian logit samples the `measures` graph forms from these head outputs and noise
 * (`eta = logit_mean + cov_factor^T factor_noise + sqrt(cov_diag) * diag_noise`), `[HW]`.
 */
export function laplaceSampleMean(samples: Pick<HeadSamples, 'laplace' | 'draws'>, pixels: number): Float32Array {
  const { m, n } = samples.draws.counts;
  const { logitMean, covFactor, covDiag } = samples.laplace;
  const factorNoise = samples.draws.factorNoise.data;
  const diagNoise = samples.draws.diagNoise.data;
  const rank = factorNoise.length / (m * n);
  const sum = workspace(Float64Array, 'laplaceSampleMean.sum', pixels).fill(0);
  const diagSum = workspace(Float64Array, 'laplaceSampleMean.diagSum', pixels);
  for (let j = 0; j < m; j++) {
    for (let p = 0; p < pixels; p++) sum[p]! += n * logitMean.data[j * pixels + p]!;
    for (let r = 0; r < rank; r++) {
      let factorSum = 0;
      for (let s = 0; s < n; s++) factorSum += factorNoise[(j * n + s) * rank + r]!;
      const factor = covFactor.data.subarray((j * rank + r) * pixels, (j * rank + r + 1) * pixels);
      for (let p = 0; p < pixels; p++) sum[p]! += factorSum * factor[p]!;
    }
    diagSum.fill(0);
    for (let s = 0; s < n; s++) {
      const noise = diagNoise.subarray((j * n + s) * pixels, (j * n + s + 1) * pixels);
      for (let p = 0; p < pixels; p++) diagSum[p]! += noise[p]!;
    }
    for (let p = 0; p < pixels; p++) sum[p]! += Math.sqrt(covDiag.data[j * pixels + p]!) * diagSum[p]!;
  }
  return divided(sum, m * n);
}

/** The mean over rows of `[rows, HW]` logits. */
export function rowMean(logits: Float32Array, pixels: number): Float32Array {
  const rows = logits.length / pixels;
  const sum = workspace(Float64Array, 'rowMean.sum', pixels).fill(0);
  for (let row = 0; row < rows; row++) for (let p = 0; p < pixels; p++) sum[p]! += logits[row * pixels + p]!;
  return divided(sum, rows);
}

/** `values / divisor` in float32 (a loop: `Float32Array.from` with a map function goes through a JS array). */
function divided(values: Float64Array, divisor: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i]! / divisor;
  return out;
}

/** Mean absolute difference of two model inputs: how far the scene moved between frames. */
export function meanAbsoluteDifference(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}
