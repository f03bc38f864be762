/** Summaries shared by the biometry scripts (scripts/biometry.ts, scripts/clip-biometry.ts): interval coverage and width, and their number formatting. */
import { calibratedInterval, type IntervalCalibration } from '../src/operators/measureBiometry/summary.js';
import type { Interval } from '../src/runtime/types/biometry.js';

export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export const fmt = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : value === Infinity ? 'inf' : 'n/a');

/** Coverage of the truth and width of the cases' intervals: as they are (`calibration` null) or calibrated. */
export function intervalScores(cases: readonly { interval: Interval; truth: number; outlineResidual?: number }[], calibration: IntervalCalibration | null) {
  const intervals = cases.map(({ interval, outlineResidual }) => (calibration ? calibratedInterval(interval, calibration, outlineResidual) : interval));
  const covered = intervals.filter(({ low, high }, i) => cases[i]!.truth >= low && cases[i]!.truth <= high);
  const widths = intervals.map(({ low, high }) => high - low);
  return { coverage: covered.length / cases.length, meanWidth: mean(widths), medianWidth: median(widths) };
}
