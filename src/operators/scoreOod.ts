/**
 * The image-level out-of-distribution score: one number per frame from one map.
 */
import { map, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { FusedFrame, ScoredFrame } from '../runtime/types/uncertainty.js';
import { checkMapName, selectMap } from './measureUncertainty.js';

export interface OodOptions {
  /** `fused` or `<laplace|dropout>.<measure>`; default manifest `ood.map`. */
  map?: string;
  /** `mean` or `quantile:q` (0 <= q <= 1); default manifest `ood.aggregation`. */
  aggregation?: string;
  /** A frame is `above` when its score is strictly greater; default manifest `ood.threshold`. */
  threshold?: number;
}

/** `null` for `mean`, `q` for `quantile:q`; throws `INVALID_OPTION` otherwise (as `parse_aggregation` in models/lfusion/measures.py). */
export function parseAggregation(aggregation: string): number | null {
  if (aggregation === 'mean') return null;
  const match = /^quantile:(.+)$/.exec(aggregation);
  const q = match ? Number(match[1]) : NaN;
  if (!(q >= 0 && q <= 1)) {
    throw new LfusionError('INVALID_OPTION', `unknown aggregation "${aggregation}": expected "mean" or "quantile:q" with 0 <= q <= 1`, { aggregation });
  }
  return q;
}

/**
 * Aggregates a map to one number: the mean (float64 sum), or the `q` quantile interpolated linearly between
 * the sorted values at position `q * (N - 1)` (numpy's and torch's default).
 *
 * @example
 * aggregateMap(fused, 'quantile:0.95');
 */
export function aggregateMap(values: Float32Array, aggregation: string): number {
  const q = parseAggregation(aggregation);
  if (q === null) {
    let sum = 0;
    for (let i = 0; i < values.length; i++) sum += values[i]!;
    return sum / values.length;
  }
  const sorted = Float32Array.from(values).sort();
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
}

/**
 * Scores each frame for out-of-distribution input with the map, aggregation and threshold chosen at
 * calibration (manifest `ood`), each overridable.
 *
 * @example
 * fused$.pipe(scoreOod(manifest, { threshold: 0.02 })).subscribe((f) => f.ood.above && console.warn('OOD', f.frame.index));
 */
export function scoreOod(manifest: Pick<ModelManifest, 'ood' | 'measures'>, options: OodOptions = {}): OperatorFunction<FusedFrame, ScoredFrame> {
  const mapName = options.map ?? manifest.ood.map;
  const aggregation = options.aggregation ?? manifest.ood.aggregation;
  const threshold = options.threshold ?? manifest.ood.threshold;
  checkMapName(mapName, manifest.measures.order);
  parseAggregation(aggregation);
  if (!Number.isFinite(threshold)) throw new LfusionError('INVALID_OPTION', `OOD threshold must be a finite number, got ${threshold}`, { threshold });
  return map((frame) => {
    const started = performance.now();
    const score = aggregateMap(selectMap(frame.maps, mapName, frame.fused), aggregation);
    return {
      ...frame,
      ood: { score, threshold, map: mapName, above: score > threshold },
      timings: { ...frame.timings, ood: performance.now() - started },
    };
  });
}
