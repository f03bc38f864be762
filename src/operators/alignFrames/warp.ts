/** Resampling for frame alignment: bilinear warps of images, and of results back onto the frame as shown. */
import { ShapeError } from '../../runtime/errors.js';
import type { Frame, SimilarityTransform } from '../../runtime/types/frames.js';
import { compose, invert, type Affine } from './affine.js';
import { javascriptKernels, type AlignKernels } from './kernels.js';

/** The frame resampled (bilinear) onto the reference geometry through `transform` (frame -> reference). */
export function resampleFrame(frame: Frame, transform: SimilarityTransform, kernels: AlignKernels = javascriptKernels): Frame {
  const source = Float32Array.from(frame.data);
  const warped = kernels.warpImage(source, frame.width, frame.height, invert([...transform.matrix]), frame.width, frame.height, 0);
  // A loop, not Uint8Array.from(warped, mapFn), which first builds a JS array of every pixel (about 45 bytes each).
  const data = new Uint8Array(warped.length);
  for (let i = 0; i < warped.length; i++) data[i] = Math.round(warped[i]!);
  return { ...frame, data };
}

/**
 * Maps a per-pixel map computed on an aligned frame (a label map, any resolution covering the whole frame)
 * back onto the original frame's geometry, nearest neighbour: `out(p) = map(transform(p))`, `fill` where
 * that falls outside. Same size as `map`.
 *
 * @example
 * const maskOnScreen = warpToOriginal(maskPlane, aligned.transform, aligned.original);
 */
export function warpToOriginal<T extends Uint8Array | Float32Array>(
  map: { width: number; height: number; data: T },
  transform: SimilarityTransform,
  frame: { width: number; height: number },
  fill = 0,
): T {
  if (map.data.length !== map.width * map.height) throw new ShapeError(`map has ${map.data.length} values for ${map.width}x${map.height}`, [map.width, map.height], [map.data.length]);
  // map pixel -> frame pixel -> reference (aligned) frame pixel -> map pixel
  const fx = map.width / frame.width, fy = map.height / frame.height;
  const frameToMap: Affine = [fx, 0, fx / 2 - 0.5, 0, fy, fy / 2 - 0.5];
  const lookup = compose(frameToMap, compose([...transform.matrix], invert(frameToMap)));
  const out = new (map.data.constructor as new (length: number) => T)(map.data.length);
  for (let y = 0; y < map.height; y++) {
    for (let x = 0; x < map.width; x++) {
      const sx = Math.round(lookup[0] * x + lookup[1] * y + lookup[2]), sy = Math.round(lookup[3] * x + lookup[4] * y + lookup[5]);
      out[y * map.width + x] = sx >= 0 && sy >= 0 && sx < map.width && sy < map.height ? map.data[sy * map.width + sx]! : fill;
    }
  }
  return out;
}
