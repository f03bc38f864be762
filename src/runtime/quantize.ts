/**
 * Maps to `Plane`s: uint8 bytes with `value = min + q * scale`, the compact form subscribers receive.
 *
 * Scale: a measure with known bounds uses those fixed bounds on every frame, so equal bytes mean equal values
 * across frames and a display needs no per-frame normalisation. A measure without an upper bound
 * (pairwise KL, logit variance, the fused map) uses the frame's own [min, max], which keeps its full
 * resolution; its true values are still `min + q * scale` from the plane's own fields.
 */
import { ShapeError } from './errors.js';
import type { Plane } from './types/results.js';

/** Fixed `[min, max]` quantisation bounds, or `frame` for the frame's own range. */
export type QuantizeRange = { min: number; max: number } | 'frame';

/** Bounds of each bounded measure (nats for entropies; a Bernoulli probability's variance is at most 1/4). */
export const MEASURE_RANGES: Readonly<Record<string, QuantizeRange>> = {
  mean_prob: { min: 0, max: 1 },
  expected_entropy: { min: 0, max: Math.LN2 },
  mutual_information: { min: 0, max: Math.LN2 },
  total_entropy: { min: 0, max: Math.LN2 },
  pixel_variance: { min: 0, max: 0.25 },
};

/** The default range of a plane name (`fused`, `laplace.total_entropy`, ...): `MEASURE_RANGES` by measure, else `frame`. */
export function defaultRange(name: string): QuantizeRange {
  const measure = name.slice(name.indexOf('.') + 1);
  return MEASURE_RANGES[measure] ?? 'frame';
}

/**
 * Quantises a float map to a `Plane`: `q = round((value - min) / scale)` clipped to 0..255 (NaN -> 0).
 *
 * @example
 * const plane = quantizePlane('fused', fused, 224, 224);
 * const value = plane.min + plane.data[0] * plane.scale;
 */
export function quantizePlane(name: string, values: Float32Array, width: number, height: number, range: QuantizeRange = defaultRange(name)): Plane {
  if (values.length !== width * height) {
    throw new ShapeError(`plane ${name} has ${values.length} values, expected ${width}x${height}`, [width * height], [values.length]);
  }
  let min: number;
  let max: number;
  if (range === 'frame') {
    min = Infinity;
    max = -Infinity;
    // An indexed loop: `for...of` over the array boxed every value as a heap number (800 KB a frame at 224x224).
    for (let i = 0; i < values.length; i++) {
      const value = values[i]!;
      if (value < min) min = value;
      if (value > max) max = value;
    }
    if (min > max) min = max = 0; // all NaN
  } else {
    ({ min, max } = range);
  }
  const scale = (max - min) / 255;
  const data = new Uint8Array(values.length);
  if (scale > 0) {
    for (let i = 0; i < values.length; i++) {
      const q = Math.round((values[i]! - min) / scale);
      data[i] = q > 255 ? 255 : q > 0 ? q : 0; // NaN fails both tests: 0
    }
  }
  return { name, width, height, data, min, scale };
}

/** The label map `mask`: class 1 (fetal head) where the mean foreground probability exceeds 0.5. */
export function maskPlane(meanProb: Float32Array, width: number, height: number): Plane {
  const data = new Uint8Array(meanProb.length);
  for (let i = 0; i < meanProb.length; i++) data[i] = meanProb[i]! > 0.5 ? 1 : 0;
  return { name: 'mask', width, height, data, min: 0, scale: 1 };
}

/** A normalised model input back in 8-bit grey levels, `round((x * std + mean) * 255)`, clamped: the frame the model saw. */
export function greyLevels(image: Float32Array, normalization: { mean: number; std: number }): Uint8Array {
  const levels = new Uint8Array(image.length);
  for (let i = 0; i < image.length; i++) {
    const level = Math.round((image[i]! * normalization.std + normalization.mean) * 255);
    levels[i] = level < 0 ? 0 : level > 255 ? 255 : level;
  }
  return levels;
}

/** Back to float values, `min + q * scale` (for subscribers and tests). */
export function dequantizePlane(plane: Plane): Float32Array {
  const values = new Float32Array(plane.data.length); // not Float32Array.from(data, mapFn): it builds a JS array first
  for (let i = 0; i < values.length; i++) values[i] = plane.min + plane.data[i]! * plane.scale;
  return values;
}
