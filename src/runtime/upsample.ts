/**
 * Doubling the size of head output maps, for packages whose 2D heads leave out their final upsampling
 * (docs/model-format.md, "Heads at half resolution"): the measure maps (`measureUncertainty`, after live mode's
 * pooling) and the segmentation-only path's MAP logits are brought to the model input's grid with it.
 */

import { ShapeError } from './errors.js';
import { headGrid } from './model-package.js';
import { workspace } from './workspace.js';
import type { ModelManifest } from './types/model.js';

/**
 * For `manifest`'s heads at half resolution: `(maps, rows) => maps` at the input's grid, `rows` maps of the heads'
 * grid upsampled with {@link upsample2x}. `undefined` when there is nothing to upsample (heads at the input's
 * grid, or clip heads, whose frame-major maps keep their own size).
 *
 * @example
 * const logits = headMapsOnInputGrid(manifest)?.(logitMean, 1) ?? logitMean; // 224 * 224 values
 */
export function headMapsOnInputGrid(manifest: Pick<ModelManifest, 'input' | 'graphs'>): ((maps: Float32Array, rows: number) => Float32Array) | undefined {
  const grid = headGrid(manifest);
  if (grid.width === manifest.input.width && grid.height === manifest.input.height) return undefined;
  return (maps, rows) => upsample2x(maps, rows, grid.width, grid.height);
}

/**
 * `rows` row-major maps of `width x height` -> `rows` maps of `2 width x 2 height`, bilinear with half-pixel centres
 * and clamped edges: PyTorch's `interpolate(scale_factor=2, mode='bilinear', align_corners=False)`, the heads' own
 * final upsampling. Each output pixel is 0.75 of its nearest input pixel and 0.25 of the next one out, per axis.
 *
 * @example
 * upsample2x(Float32Array.of(1, 2), 1, 2, 1); // 2 x 4 -> 1, 1.25, 1.75, 2 on both rows
 * @throws ShapeError when `maps` does not hold `rows` maps of `width x height`.
 */
export function upsample2x(maps: Float32Array, rows: number, width: number, height: number): Float32Array {
  if (maps.length !== rows * width * height) throw new ShapeError(`${maps.length} values are not ${rows} maps of ${width}x${height}`, [rows, height, width], [maps.length]);
  const wide = workspace(Float32Array, 'upsample2x.wide', rows * height * 2 * width);
  for (let line = 0; line < rows * height; line++) {
    const from = line * width;
    const to = line * 2 * width;
    for (let x = 0; x < width; x++) {
      const here = maps[from + x]!;
      wide[to + 2 * x] = 0.75 * here + 0.25 * maps[from + Math.max(x - 1, 0)]!;
      wide[to + 2 * x + 1] = 0.75 * here + 0.25 * maps[from + Math.min(x + 1, width - 1)]!;
    }
  }
  const outWidth = 2 * width;
  const out = new Float32Array(rows * 4 * width * height);
  for (let row = 0; row < rows; row++) {
    const source = row * height * outWidth;
    const target = row * 4 * width * height;
    for (let y = 0; y < height; y++) {
      const here = source + y * outWidth;
      const above = source + Math.max(y - 1, 0) * outWidth;
      const below = source + Math.min(y + 1, height - 1) * outWidth;
      const even = target + 2 * y * outWidth;
      const odd = even + outWidth;
      for (let x = 0; x < outWidth; x++) {
        out[even + x] = 0.75 * wide[here + x]! + 0.25 * wide[above + x]!;
        out[odd + x] = 0.75 * wide[here + x]! + 0.25 * wide[below + x]!;
      }
    }
  }
  return out;
}
