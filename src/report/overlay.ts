/**
 * Maps between the model's 224x224 planes and the source resolution, and the overlay thumbnails of the report:
 * the frame in grey, the fused uncertainty as a heat map, the head contour in green (the live viewer's look).
 */
import type { Mask } from './metrics.js';
import type { FrameRecord } from './records.js';

/** A float map on a grid. */
export interface FloatMap {
  width: number;
  height: number;
  data: Float32Array;
}

/** Bilinear resampling with pixel centres aligned (`u = (x + 0.5) * inW / outW - 0.5`), edges clamped. */
export function resample(map: FloatMap, width: number, height: number): Float32Array {
  const out = new Float32Array(width * height);
  const sx = map.width / width;
  const sy = map.height / height;
  for (let y = 0; y < height; y++) {
    const v = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), map.height - 1);
    const y0 = Math.floor(v);
    const y1 = Math.min(y0 + 1, map.height - 1);
    const fy = v - y0;
    for (let x = 0; x < width; x++) {
      const u = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), map.width - 1);
      const x0 = Math.floor(u);
      const x1 = Math.min(x0 + 1, map.width - 1);
      const fx = u - x0;
      const top = map.data[y0 * map.width + x0]! * (1 - fx) + map.data[y0 * map.width + x1]! * fx;
      const bottom = map.data[y1 * map.width + x0]! * (1 - fx) + map.data[y1 * map.width + x1]! * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/** The label map at `width x height`: class 1 where the resampled foreground probability exceeds 0.5. */
export function labelMapAt(probability: FloatMap, width: number, height: number): Mask {
  return { width, height, data: Uint8Array.from(resample(probability, width, height), (p) => (p > 0.5 ? 1 : 0)) };
}

/** Grey pixels resampled (bilinear) to `width x height`. */
export function resizeGrey(frame: { width: number; height: number; data: Uint8Array }, width: number, height: number): Uint8Array {
  const resized = resample({ width: frame.width, height: frame.height, data: Float32Array.from(frame.data) }, width, height);
  return Uint8Array.from(resized, (v) => Math.round(v));
}

/**
 * The live viewer's "hot" colour map (src/viewer/viewer.js): red, orange, yellow, white; transparent over the
 * lower part of the range, at most 60% opaque. Returns [r, g, b, alpha 0..1] for t in [0, 1].
 */
export function heatColour(t: number): [number, number, number, number] {
  const clamp = (v: number) => Math.max(0, Math.min(1, v));
  const fade = clamp((t - 0.35) / 0.5);
  return [255, clamp(2 * t - 0.6) * 255, clamp(3 * t - 2) * 255, fade * fade * (3 - 2 * fade) * 0.6];
}

const CONTOUR: [number, number, number] = [0, 255, 0];
/** Ground truth in cyan: apart from the green contour and from the heat map's reds and yellows. */
const TRUTH_CONTOUR: [number, number, number] = [0, 200, 255];

/**
 * An RGB thumbnail `width` pixels wide (aspect ratio of the source kept): the grey frame, the heat map of
 * `uncertainty` normalised by `uncertaintyMax` (the same scale for every thumbnail of a report), the boundary of
 * the ground truth `truth` in cyan when given, and the boundary of `mask` (any resolution) in green on top.
 */
export function renderThumbnail(
  frame: { width: number; height: number; data: Uint8Array },
  mask: Mask,
  uncertainty: FloatMap,
  uncertaintyMax: number,
  width: number,
  truth?: Mask,
): { width: number; height: number; rgb: Uint8Array } {
  const height = Math.max(1, Math.round((width * frame.height) / frame.width));
  const grey = resizeGrey(frame, width, height);
  const heat = resample(uncertainty, width, height);
  const shrink = (m: Mask) => resample({ width: m.width, height: m.height, data: Float32Array.from(m.data) }, width, height);
  const onBoundary = (labels: Float32Array, x: number, y: number) => {
    const inside = (u: number, v: number) => u >= 0 && v >= 0 && u < width && v < height && labels[v * width + u]! > 0.5;
    return inside(x, y) && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1));
  };
  const predicted = shrink(mask);
  const reference = truth ? shrink(truth) : undefined;
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const [r, g, b, alpha] = heatColour(uncertaintyMax > 0 ? heat[i]! / uncertaintyMax : 0);
      let colour = [r * alpha + grey[i]! * (1 - alpha), g * alpha + grey[i]! * (1 - alpha), b * alpha + grey[i]! * (1 - alpha)];
      if (reference && onBoundary(reference, x, y)) colour = TRUTH_CONTOUR;
      if (onBoundary(predicted, x, y)) colour = CONTOUR;
      rgb.set(colour.map(Math.round), i * 3);
    }
  }
  return { width, height, rgb };
}

/**
 * Keeps in `kept` (most uncertain first) the `count` frames of highest mean uncertainty, at most one per window of
 * `window` frames of a source (0..window-1, window..2*window-1, ...): neighbouring frames look alike, and the gallery
 * should show different moments. Called once per frame, so the frames kept are the only ones held in memory.
 */
export function keepMostUncertain<T extends { record: Pick<FrameRecord, 'source' | 'index' | 'meanUncertainty'> }>(kept: T[], candidate: T, count: number, window: number): void {
  const score = candidate.record.meanUncertainty;
  if (score === null || count === 0) return;
  const windowOf = (item: T) => `${item.record.source}\u0000${Math.floor(item.record.index / window)}`;
  const rival = kept.findIndex((item) => windowOf(item) === windowOf(candidate));
  if (rival >= 0) {
    if (kept[rival]!.record.meanUncertainty! >= score) return;
    kept.splice(rival, 1);
  }
  kept.push(candidate);
  kept.sort((a, b) => b.record.meanUncertainty! - a.record.meanUncertainty!);
  kept.length = Math.min(kept.length, count);
}
