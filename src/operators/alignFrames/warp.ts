/** Resampling for frame alignment: bilinear warps of images, and of results back onto the frame as shown. */
import { ShapeError } from '../../runtime/errors.js';
import type { Frame, SimilarityTransform } from '../../runtime/types/frames.js';
import { compose, invert, type Affine } from './affine.js';

/** Bilinear sample; NaN outside the image. */
export function sample(image: Float32Array, width: number, height: number, x: number, y: number): number {
  if (!(x >= 0 && y >= 0 && x <= width - 1 && y <= height - 1)) return NaN;
  const x0 = Math.min(Math.floor(x), width - 2), y0 = Math.min(Math.floor(y), height - 2);
  const fx = x - x0, fy = y - y0, i = y0 * width + x0;
  const top = image[i]! + fx * (image[i + 1]! - image[i]!);
  const bottom = image[i + width]! + fx * (image[i + width + 1]! - image[i + width]!);
  return top + fy * (bottom - top);
}

/** `out(q) = image(warp q)` on a `width x height` grid; `fill` where `warp q` falls outside. */
export function warpImage(image: Float32Array, width: number, height: number, warp: Affine, outWidth: number, outHeight: number, fill: number): Float32Array {
  const out = new Float32Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const value = sample(image, width, height, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
      out[y * outWidth + x] = Number.isNaN(value) ? fill : value;
    }
  }
  return out;
}

/** The frame resampled (bilinear) onto the reference geometry through `transform` (frame -> reference). */
export function resampleFrame(frame: Frame, transform: SimilarityTransform): Frame {
  const source = Float32Array.from(frame.data);
  const warped = warpImage(source, frame.width, frame.height, invert([...transform.matrix]), frame.width, frame.height, 0);
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
