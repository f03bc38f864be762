import { concatMap, type OperatorFunction } from 'rxjs';
import { ShapeError } from '../runtime/errors.js';
import { nativeKernels } from '../runtime/native-kernels.js';
import type { EncodedFrame, Frame } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';

/** Fixed-point precision of Pillow's 8-bit resampler, reproduced so that frames match training exactly. */
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF = 2 ** (PRECISION_BITS - 1);

/** For each output pixel: first input pixel and fixed-point weights of a 1-D triangle (bilinear) filter. */
interface Coefficients {
  first: Int32Array;
  count: Int32Array;
  /** Non-negative and summing to about {@link ONE}, so that a weighted sum of 8-bit pixels fits an int32. */
  weights: Int32Array;
  kernelSize: number;
}

/**
 * Pillow's `Image.resize(..., BILINEAR)` coefficients (ImagingResample's `precompute_coeffs`): a triangle
 * filter widened by the scale when shrinking (antialiasing), pixel centres at +0.5, weights normalised then
 * rounded to 22-bit fixed point.
 */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const kernelSize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * kernelSize);
  const raw = new Float64Array(kernelSize);
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xcount = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let total = 0;
    for (let x = 0; x < xcount; x++) {
      const distance = Math.abs((x + xmin - center + 0.5) / filterScale);
      raw[x] = distance < 1 ? 1 - distance : 0;
      total += raw[x]!;
    }
    for (let x = 0; x < xcount; x++) weights[out * kernelSize + x] = Math.trunc(0.5 + (total === 0 ? 0 : raw[x]! / total) * ONE);
    first[out] = xmin;
    count[out] = xcount;
  }
  return { first, count, weights, kernelSize };
}

/** The 8-bit value of a fixed-point sum: its integer part (an arithmetic shift, as Pillow's), clamped. */
function clip8(sum: number): number {
  const value = sum >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/** A coefficient table as the native resize takes it: `[kernelSize, first[], count[], weights[]]`. */
function packed({ first, count, weights, kernelSize }: Coefficients): Int32Array {
  const table = new Int32Array(1 + first.length + count.length + weights.length);
  table[0] = kernelSize;
  table.set(first, 1);
  table.set(count, 1 + first.length);
  table.set(weights, 1 + first.length + count.length);
  return table;
}

/**
 * Resizes grey pixels without keeping the aspect ratio, as Pillow's bilinear resize does (horizontal pass,
 * then vertical, each rounded to 8 bits): the model sees frames resized exactly as in training.
 * Returns a function reusing its coefficient tables and scratch rows, one per source size.
 *
 * @param kernels `auto` (default): the native addon's loops where it is built (`native/`, about 3x faster, the same
 * bytes), else JavaScript; `javascript` to force the JavaScript loops (tests compare the two).
 */
export function greyResizer(inWidth: number, inHeight: number, outWidth: number, outHeight: number, kernels: 'auto' | 'javascript' = 'auto'): (pixels: Uint8Array, out: Uint8Array) => void {
  const columns = coefficients(inWidth, outWidth);
  const lines = coefficients(inHeight, outHeight);
  const rows = new Uint8Array(outWidth * inHeight);
  const native = kernels === 'auto' ? nativeKernels : undefined;
  if (native) {
    const [columnTable, lineTable] = [packed(columns), packed(lines)];
    return (pixels, out) => native.resizeGrey(pixels, inWidth, inHeight, out, outWidth, outHeight, columnTable, lineTable, rows);
  }
  const { first: columnFirst, count: columnCount, weights: columnWeights, kernelSize: columnKernel } = columns;
  const { first: rowFirst, count: rowCount, weights: rowWeights, kernelSize: rowKernel } = lines;
  return (pixels, out) => {
    for (let y = 0; y < inHeight; y++) {
      const line = y * inWidth;
      const target = y * outWidth;
      for (let x = 0; x < outWidth; x++) {
        const start = line + columnFirst[x]!;
        const base = x * columnKernel;
        const taps = columnCount[x]!;
        let sum = HALF;
        for (let k = 0; k < taps; k++) sum += pixels[start + k]! * columnWeights[base + k]!;
        rows[target + x] = clip8(sum);
      }
    }
    for (let y = 0; y < outHeight; y++) {
      const start = rowFirst[y]!;
      const base = y * rowKernel;
      const taps = rowCount[y]!;
      const target = y * outWidth;
      for (let x = 0; x < outWidth; x++) {
        let sum = HALF;
        for (let k = 0; k < taps; k++) sum += rows[(start + k) * outWidth + x]! * rowWeights[base + k]!;
        out[target + x] = clip8(sum);
      }
    }
  };
}

/** The encoder's input from 8-bit grey pixels already at the input size: (grey / 255 - mean) / std. */
export function normaliseGrey(pixels: Uint8Array, normalization: { mean: number; std: number }): Float32Array {
  const image = new Float32Array(pixels.length);
  for (let i = 0; i < image.length; i++) image[i] = (pixels[i]! / 255 - normalization.mean) / normalization.std;
  return image;
}

/**
 * Prepares each grey frame for the model and runs the package's `encoder` once per frame, in order.
 *
 * The frame is stretched to the manifest's input size (224x224, aspect ratio not kept, Pillow-bilinear as in
 * training) and normalised `x = (pixel / 255 - mean) / std` with the manifest's mean and std. The
 * normalised image travels on with the features, because the heads take it too.
 *
 * @example
 * fromVideo('assets/sample.mp4').pipe(encodeFrames(pool, pkg.manifest), segmentFrames(pool, pkg.manifest));
 *
 * @param pool runs the package's graphs (an `InferencePool`).
 * @param manifest the package's manifest: input size and normalisation.
 * @return Encoded frames with `timings.preprocess` and `timings.encoder` in ms. A frame whose pixel count
 * is not `width * height` ends the stream with a `ShapeError`.
 */
export function encodeFrames(pool: GraphRunner, manifest: ModelManifest): OperatorFunction<Frame, EncodedFrame> {
  const { width, height, normalization } = manifest.input;
  const features = manifest.graphs.encoder!.outputs.features!;
  // Shared by every subscription: the pipeline applies this operator to one frame at a time (keepLatest),
  // and the resize is synchronous, so the tables and the scratch image are built once per source size.
  let resizer: { key: string; resize: ReturnType<typeof greyResizer> } | undefined;
  const resized = new Uint8Array(width * height);
  return concatMap(async (frame): Promise<EncodedFrame> => {
    const started = performance.now();
    if (frame.data.length !== frame.width * frame.height || frame.width < 1 || frame.height < 1) {
      throw new ShapeError(`frame ${frame.index} has ${frame.data.length} pixels, expected ${frame.width}x${frame.height}`, [frame.width, frame.height], [frame.data.length]);
    }
    const key = `${frame.width}x${frame.height}`;
    if (resizer?.key !== key) resizer = { key, resize: greyResizer(frame.width, frame.height, width, height) };
    resizer.resize(frame.data, resized);
    const image = normaliseGrey(resized, normalization);
    const encoding = performance.now();
    const outputs = await pool.run('encoder', { image: { data: image, dims: [1, 1, height, width] } }, { keep: ['image'] });
    const result = outputs.features;
    if (!result || result.dims.length !== features.length || result.dims[0] !== 1) {
      throw new ShapeError(`encoder returned features of shape [${result?.dims.join(', ')}]`, features, result?.dims ?? []);
    }
    return {
      frame,
      image,
      features: result.data,
      timings: { preprocess: encoding - started, encoder: performance.now() - encoding },
    };
  });
}
