/**
 * Back to the screen: results computed on an ultrasound-region crop (at any resolution, e.g. a 224x224 mask) mapped
 * onto the whole scanner screen.
 */
import { ShapeError } from '../../runtime/errors.js';
import type { Region } from '../../runtime/types/frames.js';

/**
 * The affine map from a `plane`'s coordinates (continuous: pixel `i` covers `[i, i + 1)`) over the cropped region
 * to screen coordinates: `screenX = offsetX + x * scaleX`, `screenY = offsetY + y * scaleY`. A canvas draws a plane
 * in place with `setTransform(scaleX, 0, 0, scaleY, offsetX, offsetY)`.
 */
export function regionTransform(region: Region, plane: { width: number; height: number }): { scaleX: number; scaleY: number; offsetX: number; offsetY: number } {
  return { scaleX: region.width / plane.width, scaleY: region.height / plane.height, offsetX: region.x, offsetY: region.y };
}

/**
 * Maps a point from a plane over the crop (e.g. a contour vertex on the 224x224 mask) to the screen.
 *
 * @example
 * const onScreen = toScreenPoint({ x: 112, y: 112 }, region, { width: 224, height: 224 }); // the crop's centre
 */
export function toScreenPoint(point: { x: number; y: number }, region: Region, plane: { width: number; height: number }): { x: number; y: number } {
  const t = regionTransform(region, plane);
  return { x: t.offsetX + point.x * t.scaleX, y: t.offsetY + point.y * t.scaleY };
}

/**
 * Resamples a plane over the crop (a mask or a quantised map) onto the whole screen, nearest neighbour by pixel
 * centres; screen pixels outside the region are `outside`.
 *
 * @example
 * const screenMask = planeToScreen(maskPlane, region, { width: 1920, height: 1080 });
 */
export function planeToScreen(plane: { width: number; height: number; data: Uint8Array }, region: Region, screen: { width: number; height: number }, outside = 0): Uint8Array {
  if (plane.data.length !== plane.width * plane.height) {
    throw new ShapeError(`plane has ${plane.data.length} values, expected ${plane.width}x${plane.height}`, [plane.width, plane.height], [plane.data.length]);
  }
  const t = regionTransform(region, plane);
  const out = new Uint8Array(screen.width * screen.height).fill(outside);
  const x0 = Math.max(0, region.x);
  const y0 = Math.max(0, region.y);
  const x1 = Math.min(screen.width, region.x + region.width);
  const y1 = Math.min(screen.height, region.y + region.height);
  const columns = new Int32Array(x1 - x0);
  for (let x = x0; x < x1; x++) columns[x - x0] = Math.min(plane.width - 1, Math.floor((x + 0.5 - t.offsetX) / t.scaleX));
  for (let y = y0; y < y1; y++) {
    const row = Math.min(plane.height - 1, Math.floor((y + 0.5 - t.offsetY) / t.scaleY)) * plane.width;
    for (let x = x0; x < x1; x++) out[y * screen.width + x] = plane.data[row + (columns[x - x0] as number)] as number;
  }
  return out;
}
