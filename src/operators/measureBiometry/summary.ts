/**
 * Credible intervals from posterior samples of a measurement: the median and the central 95% interval,
 * optionally widened or narrowed about the median by a calibrated scale.
 */

import type { Interval } from '../../runtime/types/biometry.js';

/** Quantile `q` of sorted values, linearly interpolated (numpy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const position = q * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below]! + (position - below) * (sorted[above]! - sorted[below]!);
}

/**
 * Median and 95% interval of `samples`, each end moved from the median by `scale` times its distance
 * (1: the posterior's own spread; a conformal scale calibrated on validation scans otherwise). Null for no samples.
 *
 * @example
 * credibleInterval([170, 172, 175, 178], 1.2); // { median: 173.5, low: ..., high: ... }
 */
export function credibleInterval(samples: readonly number[], scale = 1): Interval | null {
  if (samples.length === 0) return null;
  const sorted = Float64Array.from(samples).sort();
  const median = quantileSorted(sorted, 0.5);
  return {
    median,
    low: median - scale * (median - quantileSorted(sorted, 0.025)),
    high: median + scale * (quantileSorted(sorted, 0.975) - median),
  };
}

/** Maps each end of an interval through an increasing function (e.g. HC to gestational age). */
export function mapInterval(interval: Interval, f: (value: number) => number): Interval {
  return { median: f(interval.median), low: f(interval.low), high: f(interval.high) };
}

/**
 * The conformal scale of 95% intervals: the smallest `s` such that scaling each interval about its median by `s`
 * covers the truth on at least `ceil(0.95 (N + 1))` of N calibration cases (split conformal, Romano et al. 2019
 * style nonconformity `|truth - median| / half-width on the truth's side`). Infinity when too few cases.
 */
export function conformalScale(cases: readonly { interval: Interval; truth: number }[], coverage = 0.95): number {
  const scores = cases
    .map(({ interval, truth }) => {
      const half = truth >= interval.median ? interval.high - interval.median : interval.median - interval.low;
      const distance = Math.abs(truth - interval.median);
      return half > 0 ? distance / half : distance > 0 ? Infinity : 0;
    })
    .sort((a, b) => a - b);
  const rank = Math.ceil(coverage * (scores.length + 1));
  return rank > scores.length ? Infinity : scores[rank - 1]!;
}
