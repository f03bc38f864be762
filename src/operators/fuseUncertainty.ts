/**
 * The fused uncertainty map of the paper, computed in JS from both paths' measure maps.
 */
import { map, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { FusedFrame, MeasureMaps, MeasuredFrame } from '../runtime/types/uncertainty.js';
import { checkMapName, selectMap } from './measureUncertainty.js';

export interface FuseOptions {
  /** Map whose pixel variance weights the fused map; default manifest `fusion.auxiliary`. */
  auxiliary?: string;
}

/** Binary entropy in nats, both terms, `p` clamped to `[eps, 1 - eps]` (as `binary_entropy` in models/lfusion/measures.py). */
export function binaryEntropy(p: number, eps: number): number {
  const q = Math.min(Math.max(p, eps), 1 - eps);
  return -(q * Math.log(q) + (1 - q) * Math.log1p(-q));
}

/** Population variance (divide by the count) over all values, accumulated in float64. */
export function populationVariance(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  const mean = sum / values.length;
  let squares = 0;
  for (let i = 0; i < values.length; i++) squares += (values[i]! - mean) ** 2;
  return squares / values.length;
}

/**
 * `U_fused = sqrt(logit_variance_L + logit_variance_D) * H(meanProb) * Var_pixels(U_aux)` with
 * `meanProb = 0.5 * (mean_prob_L + mean_prob_D)` (docs/model-format.md), per pixel in float64, stored as float32.
 *
 * @example
 * const { fused, meanProb } = fuseMaps(frame.maps, 'laplace.mutual_information', 1e-6);
 */
export function fuseMaps(maps: MeasureMaps, auxiliary: string, eps: number): { meanProb: Float32Array; fused: Float32Array } {
  const weight = populationVariance(selectMap(maps, auxiliary));
  const varianceL = selectMap(maps, 'laplace.logit_variance');
  const varianceD = selectMap(maps, 'dropout.logit_variance');
  const probL = selectMap(maps, 'laplace.mean_prob');
  const probD = selectMap(maps, 'dropout.mean_prob');
  const meanProb = new Float32Array(maps.pixels);
  const fused = new Float32Array(maps.pixels);
  for (let i = 0; i < maps.pixels; i++) {
    const p = 0.5 * (probL[i]! + probD[i]!);
    meanProb[i] = p;
    fused[i] = Math.sqrt(varianceL[i]! + varianceD[i]!) * binaryEntropy(p, eps) * weight;
  }
  return { meanProb, fused };
}

/**
 * Adds the fused map (and the averaged prediction it uses) to each measured frame.
 *
 * @param manifest supplies `fusion.auxiliary` and `measures.entropyEpsilon`.
 * @param options overrides the auxiliary map.
 * @example
 * measured$.pipe(fuseUncertainty(manifest, { auxiliary: 'dropout.mutual_information' }));
 */
export function fuseUncertainty(manifest: Pick<ModelManifest, 'fusion' | 'measures'>, options: FuseOptions = {}): OperatorFunction<MeasuredFrame, FusedFrame> {
  const auxiliary = options.auxiliary ?? manifest.fusion.auxiliary;
  checkMapName(auxiliary, manifest.measures.order);
  if (auxiliary === 'fused') throw new LfusionError('INVALID_OPTION', 'the auxiliary map must be a per-path measure, not "fused" itself', { auxiliary });
  const eps = manifest.measures.entropyEpsilon;
  return map((frame) => {
    const started = performance.now();
    const { meanProb, fused } = fuseMaps(frame.maps, auxiliary, eps);
    return { ...frame, meanProb, fused, timings: { ...frame.timings, fuse: performance.now() - started } };
  });
}
