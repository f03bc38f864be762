/**
 * A helper the bench modules share. Not in run.ts: a bench module importing a value from the runner, which imports
 * it, would wait on the runner's own top-level await (only types may come from run.ts).
 */

/** The value below which `fraction` of `values` lie (nearest rank); NaN for none. */
export function percentile(values: readonly number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] ?? Number.NaN;
}
