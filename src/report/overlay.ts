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

/** Any grid of numbers: float maps, grey pixels, 0/1 masks (read in place, never copied to floats). */
interface Grid {
  width: number;
  height: number;
  data: ArrayLike<number>;
}

/**
 * Bilinear resampling with pixel centres aligned (`u = (x + 0.5) * inW / outW - 0.5`), edges clamped: calls
 * `write(i, value)` for each output pixel `i`, so that callers choose the output type and allocate nothing else.
 */
function resampleEach(map: Grid, width: number, height: number, write: (i: number, value: number) => void): void {
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
      write(y * width + x, top * (1 - fy) + bottom * fy);
    }
  }
}

/** Bilinear resampling (see `resampleEach`) to a float map. */
export function resample(map: Grid, width: number, height: number): Float32Array {
  const out = new Float32Array(width * height);
  resampleEach(map, width, height, (i, value) => (out[i] = value));
  return out;
}

/**
 * The label map at `width x height`: class 1 where the resampled foreground probability exceeds 0.5. One byte per
 * output pixel: no float map at the source resolution (a report on 8000x8000 frames would need 256 MB for it).
 */
export function labelMapAt(probability: Grid, width: number, height: number): Mask {
  const data = new Uint8Array(width * height);
  resampleEach(probability, width, height, (i, p) => (data[i] = p > 0.5 ? 1 : 0));
  return { width, height, data };
}

/** Grey pixels resampled (bilinear) to `width x height`. */
export function resizeGrey(frame: { width: number; height: number; data: Uint8Array }, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height);
  resampleEach(frame, width, height, (i, value) => (out[i] = Math.round(value)));
  return out;
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
 * What a thumbnail `width` pixels wide (aspect ratio of the source kept) is drawn from, already at that size: the
 * grey frame, `uncertainty` resampled, and the masks shrunk to label maps. The report keeps these for its candidate
 * frames instead of the frames themselves, so its memory does not grow with the source resolution.
 */
export interface ThumbnailLayers {
  width: number;
  height: number;
  grey: Uint8Array;
  heat: Float32Array;
  predicted: Uint8Array;
  reference?: Uint8Array;
}

/** The layers of a thumbnail (see {@link ThumbnailLayers}) of a frame, its `mask` and `truth` (any resolution). */
export function thumbnailLayers(frame: { width: number; height: number; data: Uint8Array }, mask: Mask, uncertainty: FloatMap, width: number, truth?: Mask): ThumbnailLayers {
  const height = Math.max(1, Math.round((width * frame.height) / frame.width));
  return {
    width,
    height,
    grey: resizeGrey(frame, width, height),
    heat: resample(uncertainty, width, height),
    predicted: labelMapAt(mask, width, height).data,
    ...(truth ? { reference: labelMapAt(truth, width, height).data } : {}),
  };
}

/**
 * An RGB thumbnail: the grey frame, the heat map normalised by `uncertaintyMax` (the same scale for every
 * thumbnail of a report), the boundary of the ground truth in cyan when given, and the boundary of the mask in
 * green on top.
 */
export function paintThumbnail(layers: ThumbnailLayers, uncertaintyMax: number): { width: number; height: number; rgb: Uint8Array } {
  const { width, height, grey, heat, predicted, reference } = layers;
  const onBoundary = (labels: Uint8Array, x: number, y: number) => {
    const inside = (u: number, v: number) => u >= 0 && v >= 0 && u < width && v < height && labels[v * width + u] === 1;
    return inside(x, y) && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1));
  };
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
 * should show different moments. Called once per frame.
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
