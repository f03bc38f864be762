/**
 * Live mode's pool aligned to the newest frame: earlier frames' sample sets resampled through the motion since
 * (alignFrames' small-motion estimate, on the heads' grid), so that pooled samples describe the same anatomy.
 */
import type { Affine } from '../alignFrames/affine.js';
import { greyLevels } from '../../runtime/quantize.js';
import type { Frame } from '../../runtime/types/frames.js';
import { workspace } from '../../runtime/workspace.js';
import { MEASURES_READ, type SampleSet } from './combine.js';

/**
 * The model input as 8-bit grey levels (`greyLevels`) on the heads' grid, averaged over each `input / grid` block:
 * what the newest frame's motion is estimated on.
 */
export function greyOnGrid(image: Float32Array, input: { width: number; height: number }, grid: { width: number; height: number }, normalization: { mean: number; std: number }, index: number): Frame {
  const levels = greyLevels(image, normalization);
  const fx = input.width / grid.width;
  const fy = input.height / grid.height;
  const data = fx === 1 && fy === 1 ? levels : new Uint8Array(grid.width * grid.height);
  if (data !== levels) {
    for (let y = 0; y < grid.height; y++) {
      for (let x = 0; x < grid.width; x++) {
        let sum = 0;
        for (let dy = 0; dy < fy; dy++) for (let dx = 0; dx < fx; dx++) sum += levels[(y * fy + dy) * input.width + x * fx + dx]!;
        data[y * grid.width + x] = Math.round(sum / (fx * fy));
      }
    }
  }
  return { index, pts: 0, captureTime: 0, width: grid.width, height: grid.height, data };
}

/** How far `matrix` moves any corner of a `width x height` grid, in pixels: below a thousandth, the sets stay as they are. */
export function largestDisplacement(matrix: Affine, width: number, height: number): number {
  let largest = 0;
  for (const [x, y] of [[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]] as const) {
    largest = Math.max(largest, Math.hypot(matrix[0] * x + matrix[1] * y + matrix[2] - x, matrix[3] * x + matrix[4] * y + matrix[5] - y));
  }
  return largest;
}

/** Where each pixel of the newest frame reads an earlier frame's maps: top-left source pixel (-1 outside) and weights. */
interface Resampling {
  at: Int32Array;
  fx: Float32Array;
  fy: Float32Array;
}

/**
 * The bilinear resampling of a `width x height` grid through `matrix` (newest pixel -> earlier pixel, centres at
 * integers; alignFrames' `sample` convention), computed once for the 12 rows of an entry rather than per row as a
 * `warpImage` call per row would.
 */
function resampling(matrix: Affine, width: number, height: number): Resampling {
  const pixels = width * height;
  const at = workspace(Int32Array, 'warpSampleSets.at', pixels);
  const fx = workspace(Float32Array, 'warpSampleSets.fx', pixels);
  const fy = workspace(Float32Array, 'warpSampleSets.fy', pixels);
  for (let y = 0, q = 0; y < height; y++) {
    for (let x = 0; x < width; x++, q++) {
      const sx = matrix[0] * x + matrix[1] * y + matrix[2];
      const sy = matrix[3] * x + matrix[4] * y + matrix[5];
      if (!(sx >= 0 && sy >= 0 && sx <= width - 1 && sy <= height - 1)) {
        at[q] = -1;
        continue;
      }
      const x0 = Math.min(Math.floor(sx), width - 2);
      const y0 = Math.min(Math.floor(sy), height - 2);
      at[q] = y0 * width + x0;
      fx[q] = sx - x0;
      fy[q] = sy - y0;
    }
  }
  return { at, fx, fy };
}

/** `source`'s row resampled into `out` (same layout), `fill`'s value where the newest pixel falls outside `source`. */
function resampleRow(source: Float32Array, fill: Float32Array, out: Float32Array, width: number, { at, fx, fy }: Resampling): void {
  for (let q = 0; q < out.length; q++) {
    const i = at[q]!;
    if (i < 0) {
      out[q] = fill[q]!;
      continue;
    }
    const top = source[i]! + fx[q]! * (source[i + 1]! - source[i]!);
    const bottom = source[i + width]! + fx[q]! * (source[i + width + 1]! - source[i + width]!);
    out[q] = top + fy[q]! * (bottom - top);
  }
}

/**
 * Earlier frames' sample sets of both paths resampled (bilinear) onto the newest frame through `matrix` (newest pixel
 * -> that frame's pixel), where the newest frame's own sets fill what the earlier frame did not see. Only the rows
 * pooling reads ({@link MEASURES_READ}) and the logit means are resampled, into working arrays named by `slot`: the
 * sets are valid until the next call with that slot (pool them at once).
 */
export function warpSampleSets<P extends string>(
  sets: Record<P, SampleSet>,
  newest: Record<P, SampleSet>,
  order: readonly string[],
  grid: { width: number; height: number },
  matrix: Affine,
  slot: number,
): Record<P, SampleSet> {
  const { width, height } = grid;
  const pixels = width * height;
  const where = resampling(matrix, width, height);
  const rows = MEASURES_READ.map((name) => order.indexOf(name));
  const warped = {} as Record<P, SampleSet>;
  for (const path of Object.keys(sets) as P[]) {
    const [set, fill] = [sets[path], newest[path]];
    const maps = workspace(Float32Array, `warpSampleSets.${slot}.${path}.maps`, order.length * pixels);
    const logitMean = workspace(Float32Array, `warpSampleSets.${slot}.${path}.logitMean`, pixels);
    const row = (values: Float32Array, index: number) => values.subarray(index * pixels, (index + 1) * pixels);
    for (const index of rows) resampleRow(row(set.maps, index), row(fill.maps, index), row(maps, index), width, where);
    resampleRow(set.logitMean, fill.logitMean, logitMean, width, where);
    warped[path] = { samples: set.samples, maps, logitMean };
  }
  return warped;
}
