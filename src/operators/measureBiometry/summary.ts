/**
 * Credible intervals from posterior samples of a measurement: the median and the central 95% interval, and
 * their calibration on validation scans (normalised split conformal).
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
 * Median and central 95% interval of `samples` (the posterior's own interval). Null for no samples.
 *
 * @example
 * credibleInterval([170, 172, 175, 178]); // { median: 173.5, low: 170.15, high: 177.775 }
 */
export function credibleInterval(samples: readonly number[]): Interval | null {
  if (samples.length === 0) return null;
  const sorted = Float64Array.from(samples).sort();
  return { median: quantileSorted(sorted, 0.5), low: quantileSorted(sorted, 0.025), high: quantileSorted(sorted, 0.975) };
}

/**
 * A calibration of posterior intervals (normalised conformal): `median ± scale × difficulty`, the difficulty
 * combining the posterior's half-width (at least `floor × |median|`) and the head outline's misfit.
 */
export interface IntervalCalibration {
  scale: number;
  /** Smallest half-width as a fraction of the median, so that a posterior whose samples all agree still gets an interval. */
  floor: number;
}

/**
 * A frame's difficulty: the half-width of its posterior interval (at least `floor × |median|`) and the head outline's
 * misfit `outlineResidual × |median|` combined as independent errors (root sum of squares). The misfit is what the
 * measurement would change by if the outline moved by its RMS distance from the ellipse (for HC, 2π × that distance):
 * the samples of a blob that is not one clean head (a head merged with a body, a mask cut inside the skull) may agree
 * with one another, but its boundary does not fit an ellipse. `outlineResidual`: the biometry's `outlineResidual`.
 */
export function intervalDifficulty(raw: Interval, floor: number, outlineResidual = 0): number {
  const posterior = Math.max((raw.high - raw.low) / 2, floor * Math.abs(raw.median));
  return Math.hypot(posterior, outlineResidual * Math.abs(raw.median));
}

/**
 * The calibrated interval: symmetric about the posterior median, its half-width the frame's difficulty times the
 * conformal scale, so that frames whose posterior spreads more get proportionally wider intervals.
 *
 * @example
 * calibratedInterval({ median: 170, low: 168, high: 173 }, { scale: 3, floor: 0.005 }); // { median: 170, low: 162.5, high: 177.5 }
 */
export function calibratedInterval(raw: Interval, calibration: IntervalCalibration, outlineResidual = 0): Interval {
  const half = calibration.scale * intervalDifficulty(raw, calibration.floor, outlineResidual);
  return { median: raw.median, low: raw.median - half, high: raw.median + half };
}

/** Maps each end of an interval through an increasing function (e.g. HC to gestational age). */
export function mapInterval(interval: Interval, f: (value: number) => number): Interval {
  return { median: f(interval.median), low: f(interval.low), high: f(interval.high) };
}

/**
 * The normalised split-conformal scale (Papadopoulos et al. 2002; Lei et al. 2018): the smallest `s` such that
 * `median ± s × difficulty` covers the truth on at least `ceil(coverage (N + 1))` of N calibration cases, with the
 * nonconformity score `|truth - median| / difficulty`. Infinity when too few cases.
 */
export function conformalScale(cases: readonly { interval: Interval; truth: number; outlineResidual?: number }[], floor: number, coverage = 0.95): number {
  const scores = cases
    .map(({ interval, truth, outlineResidual }) => {
      const difficulty = intervalDifficulty(interval, floor, outlineResidual);
      const distance = Math.abs(truth - interval.median);
      return difficulty > 0 ? distance / difficulty : distance > 0 ? Infinity : 0;
    })
    .sort((a, b) => a - b);
  const rank = Math.ceil(coverage * (scores.length + 1));
  return rank > scores.length ? Infinity : scores[rank - 1]!;
}
