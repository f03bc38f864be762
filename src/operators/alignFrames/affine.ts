/** Affine maps of the plane as used by frame alignment: composition, inversion, similarities and their description. */
import type { SimilarityTransform } from '../../runtime/types/frames.js';

/** A 3x3 affine matrix, row-major, last row implied `[0, 0, 1]`: `[a, b, c, d, e, f]`. */
export type Affine = [number, number, number, number, number, number];

export const compose = (m: Affine, n: Affine): Affine => [
  m[0] * n[0] + m[1] * n[3], m[0] * n[1] + m[1] * n[4], m[0] * n[2] + m[1] * n[5] + m[2],
  m[3] * n[0] + m[4] * n[3], m[3] * n[1] + m[4] * n[4], m[3] * n[2] + m[4] * n[5] + m[5],
];

export function invert(m: Affine): Affine {
  const det = m[0] * m[4] - m[1] * m[3];
  const a = m[4] / det, b = -m[1] / det, d = -m[3] / det, e = m[0] / det;
  return [a, b, -(a * m[2] + b * m[5]), d, e, -(d * m[2] + e * m[5])];
}

/** `scale * R(rotation) * (p - c) + c + t`. */
export function similarity(scale: number, rotation: number, tx: number, ty: number, cx: number, cy: number): Affine {
  const a = scale * Math.cos(rotation), d = scale * Math.sin(rotation);
  return [a, -d, cx + tx - a * cx + d * cy, d, a, cy + ty - d * cx - a * cy];
}

/** `m` as a {@link SimilarityTransform} of a `width x height` frame: scale and rotation about its centre, and shift. */
export function describe(m: Affine, width: number, height: number): SimilarityTransform {
  const cx = (width - 1) / 2, cy = (height - 1) / 2;
  const sc = (m[0] + m[4]) / 2, ss = (m[3] - m[1]) / 2;
  return {
    scale: Math.hypot(sc, ss),
    rotation: Math.atan2(ss, sc),
    tx: m[0] * cx + m[1] * cy + m[2] - cx,
    ty: m[3] * cx + m[4] * cy + m[5] - cy,
    matrix: [...m],
  };
}
