/**
 * The per-pixel kernels of frame alignment, in two implementations with bit-identical results: JavaScript,
 * and the native addon (native/lfusion_native.cc) where it was built. The profile of `npm run bench --
 * alignFrames` put about 80% of an estimate in these loops (FFTs, speckle blur, Gauss–Newton sums, warps).
 */
import { LfusionError } from '../../runtime/errors.js';
import { nativeKernels, nativeKernelsStatus, type NativeKernels } from '../../runtime/native-kernels.js';
import type { Affine } from './affine.js';

export interface Spectrum {
  re: Float64Array;
  im: Float64Array;
}

/** Normal equations of a Gauss–Newton step: Hessian lower triangle, then gradient (see {@link AlignKernels.gaussNewtonSums}). */
export type NormalEquations = [hbb: number, hxb: number, hxx: number, hyb: number, hyx: number, hyy: number, hab: number, hax: number, hay: number, haa: number, gb: number, gx: number, gy: number, ga: number];
/** Pixel count and sums over an overlap of template `t` and warped frame `m`. */
export type OverlapSums = [n: number, t: number, m: number, tt: number, mm: number, tm: number];

export interface AlignKernels {
  readonly name: 'javascript' | 'native';
  /** Separable blur of a `width x height` image with an odd-length `kernel`, edges clamped. */
  blur(image: Float32Array, width: number, height: number, kernel: Float32Array): Float32Array;
  /** `out(q) = image(warp q)` (bilinear) on an `outWidth x outHeight` grid; `fill` where `warp q` falls outside. */
  warpImage(image: Float32Array, width: number, height: number, warp: Affine, outWidth: number, outHeight: number, fill: number): Float32Array;
  /** 2-D FFT of a `rows x cols` image (sides powers of two), real or with imaginary part `imag`; `inverse` without the 1/n factor. */
  fft2(image: Float32Array | Float64Array, rows: number, cols: number, inverse?: boolean, imag?: Float64Array): Spectrum;
  /** `moving * conj(reference)` normalised to unit modulus (phase correlation's cross-power spectrum). */
  crossPower(reference: Spectrum, moving: Spectrum): Spectrum;
  /**
   * One inverse-compositional Gauss–Newton step's normal equations over the template's inner pixels whose warped
   * position falls inside `moving`: Hessian `[hbb, hxb, hxx, hyb, hyx, hyy, hab, hax, hay, haa]` then gradient
   * `[gb, gx, gy, ga]` over (rotation b, tx, ty, scale a) about `(cx, cy)`.
   */
  gaussNewtonSums(template: Float32Array, gradientX: Float32Array, gradientY: Float32Array, width: number, height: number, moving: Float32Array, movingWidth: number, movingHeight: number, warp: Affine, cx: number, cy: number): NormalEquations;
  /** Over the template pixels whose warped position falls inside `moving`: `[n, Σt, Σm, Σt², Σm², Σtm]`. */
  overlapSums(template: Float32Array, width: number, height: number, moving: Float32Array, movingWidth: number, movingHeight: number, warp: Affine): OverlapSums;
}

/** Bilinear sample; NaN outside the image. */
export function sample(image: Float32Array, width: number, height: number, x: number, y: number): number {
  if (!(x >= 0 && y >= 0 && x <= width - 1 && y <= height - 1)) return NaN;
  const x0 = Math.min(Math.floor(x), width - 2), y0 = Math.min(Math.floor(y), height - 2);
  const fx = x - x0, fy = y - y0, i = y0 * width + x0;
  const top = image[i]! + fx * (image[i + 1]! - image[i]!);
  const bottom = image[i + width]! + fx * (image[i + width + 1]! - image[i + width]!);
  return top + fy * (bottom - top);
}

const twiddleCache = new Map<string, Float64Array>();
/**
 * The twiddle factors of an `n`-point radix-2 FFT, stage after stage (sizes 2, 4, ... n): for a stage of size
 * `2h`, `h` pairs (cos, sin) of `k * step`, k = 0..h-1, by the recurrence from the step's cos and sin. Both
 * implementations read these numbers, so their butterflies agree to the last bit.
 */
function twiddles(n: number, inverse: boolean): Float64Array {
  const key = `${n}${inverse ? 'i' : 'f'}`;
  let table = twiddleCache.get(key);
  if (!table) {
    table = new Float64Array(2 * (n - 1));
    for (let size = 2, at = 0; size <= n; size <<= 1) {
      const angle = ((inverse ? 2 : -2) * Math.PI) / size;
      const wr = Math.cos(angle), wi = Math.sin(angle);
      let cr = 1, ci = 0;
      for (let k = 0; k < size >> 1; k++, at += 2) {
        table[at] = cr;
        table[at + 1] = ci;
        const next = cr * wr - ci * wi;
        ci = cr * wi + ci * wr;
        cr = next;
      }
    }
    twiddleCache.set(key, table);
  }
  return table;
}

/** In-place radix-2 FFT of `re + i im` (length a power of two), twiddle factors from {@link twiddles}. */
function fft(re: Float64Array, im: Float64Array, table: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      const r = re[i]!, m = im[i]!;
      re[i] = re[j]!;
      im[i] = im[j]!;
      re[j] = r;
      im[j] = m;
    }
  }
  for (let size = 2, at = 0; size <= n; at += size, size <<= 1) {
    const half = size >> 1;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < half; k++) {
        const cr = table[at + 2 * k]!, ci = table[at + 2 * k + 1]!;
        const a = start + k, b = a + half;
        const tr = re[b]! * cr - im[b]! * ci, ti = re[b]! * ci + im[b]! * cr;
        re[b] = re[a]! - tr;
        im[b] = im[a]! - ti;
        re[a] = re[a]! + tr;
        im[a] = im[a]! + ti;
      }
    }
  }
}

export const javascriptKernels: AlignKernels = {
  name: 'javascript',
  blur(image, width, height, kernel) {
    const radius = (kernel.length - 1) / 2;
    const rows = new Float32Array(image.length);
    const out = new Float32Array(image.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (let k = -radius; k <= radius; k++) sum += kernel[k + radius]! * image[y * width + Math.min(width - 1, Math.max(0, x + k))]!;
        rows[y * width + x] = sum;
      }
    }
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (let k = -radius; k <= radius; k++) sum += kernel[k + radius]! * rows[Math.min(height - 1, Math.max(0, y + k)) * width + x]!;
        out[y * width + x] = sum;
      }
    }
    return out;
  },
  warpImage(image, width, height, warp, outWidth, outHeight, fill) {
    const out = new Float32Array(outWidth * outHeight);
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < outWidth; x++) {
        const value = sample(image, width, height, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
        out[y * outWidth + x] = Number.isNaN(value) ? fill : value;
      }
    }
    return out;
  },
  fft2(image, rows, cols, inverse = false, imag) {
    const re = Float64Array.from(image);
    const im = imag ? Float64Array.from(imag) : new Float64Array(re.length);
    const rowSteps = twiddles(cols, inverse), colSteps = twiddles(rows, inverse);
    for (let r = 0; r < rows; r++) fft(re.subarray(r * cols, (r + 1) * cols), im.subarray(r * cols, (r + 1) * cols), rowSteps);
    const colRe = new Float64Array(rows), colIm = new Float64Array(rows);
    for (let c = 0; c < cols; c++) {
      for (let r = 0; r < rows; r++) {
        colRe[r] = re[r * cols + c]!;
        colIm[r] = im[r * cols + c]!;
      }
      fft(colRe, colIm, colSteps);
      for (let r = 0; r < rows; r++) {
        re[r * cols + c] = colRe[r]!;
        im[r * cols + c] = colIm[r]!;
      }
    }
    return { re, im };
  },
  crossPower(reference, moving) {
    const re = new Float64Array(reference.re.length), im = new Float64Array(reference.re.length);
    for (let i = 0; i < re.length; i++) {
      const r = moving.re[i]! * reference.re[i]! + moving.im[i]! * reference.im[i]!;
      const j = moving.im[i]! * reference.re[i]! - moving.re[i]! * reference.im[i]!;
      const norm = Math.sqrt(r * r + j * j) + 1e-12; // not Math.hypot: slower, and sqrt rounds the same everywhere
      re[i] = r / norm;
      im[i] = j / norm;
    }
    return { re, im };
  },
  gaussNewtonSums(template, gradientX, gradientY, w, h, moving, movingWidth, movingHeight, warp, cx, cy) {
    let hbb = 0, hxb = 0, hxx = 0, hyb = 0, hyx = 0, hyy = 0, hab = 0, hax = 0, hay = 0, haa = 0;
    let gb = 0, gx = 0, gy = 0, ga = 0;
    for (let y = 1; y < h - 1; y++) {
      for (let x = 1; x < w - 1; x++) {
        const i = y * w + x;
        const value = sample(moving, movingWidth, movingHeight, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
        if (Number.isNaN(value)) continue;
        const error = value - template[i]!;
        const dx = gradientX[i]!, dy = gradientY[i]!, u = x - cx, v = y - cy;
        const sb = -dx * v + dy * u, sa = dx * u + dy * v;
        hbb += sb * sb; hxb += dx * sb; hxx += dx * dx; hyb += dy * sb; hyx += dy * dx; hyy += dy * dy;
        hab += sa * sb; hax += sa * dx; hay += sa * dy; haa += sa * sa;
        gb += sb * error; gx += dx * error; gy += dy * error; ga += sa * error;
      }
    }
    return [hbb, hxb, hxx, hyb, hyx, hyy, hab, hax, hay, haa, gb, gx, gy, ga];
  },
  overlapSums(template, w, h, moving, movingWidth, movingHeight, warp) {
    let n = 0, sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const value = sample(moving, movingWidth, movingHeight, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
        if (Number.isNaN(value)) continue;
        const t = template[y * w + x]!;
        n++;
        sa += t;
        sb += value;
        saa += t * t;
        sbb += value * value;
        sab += t * value;
      }
    }
    return [n, sa, sb, saa, sbb, sab];
  },
};

/** The same kernels through the addon: allocation here, the loops in C++. */
function wrap(addon: NativeKernels): AlignKernels {
  return {
    name: 'native',
    blur(image, width, height, kernel) {
      const out = new Float32Array(width * height);
      addon.blur(image, width, height, kernel, out);
      return out;
    },
    warpImage(image, width, height, warp, outWidth, outHeight, fill) {
      const out = new Float32Array(outWidth * outHeight);
      addon.warpImage(image, width, height, Float64Array.from(warp), out, outWidth, outHeight, fill);
      return out;
    },
    fft2(image, rows, cols, inverse = false, imag) {
      const re = Float64Array.from(image);
      const im = imag ? Float64Array.from(imag) : new Float64Array(re.length);
      addon.fft2(re, im, rows, cols, twiddles(cols, inverse), twiddles(rows, inverse));
      return { re, im };
    },
    crossPower(reference, moving) {
      const re = new Float64Array(reference.re.length), im = new Float64Array(reference.re.length);
      addon.crossPower(reference.re, reference.im, moving.re, moving.im, re, im);
      return { re, im };
    },
    gaussNewtonSums(template, gradientX, gradientY, width, height, moving, movingWidth, movingHeight, warp, cx, cy) {
      const out = new Float64Array(14);
      addon.gaussNewtonSums(template, gradientX, gradientY, width, height, moving, movingWidth, movingHeight, Float64Array.from(warp), cx, cy, out);
      return [...out] as NormalEquations;
    },
    overlapSums(template, width, height, moving, movingWidth, movingHeight, warp) {
      const out = new Float64Array(6);
      addon.overlapSums(template, width, height, moving, movingWidth, movingHeight, Float64Array.from(warp), out);
      return [...out] as OverlapSums;
    },
  };
}

/** The native kernels, or `undefined` when the addon is not available (see {@link nativeKernelsStatus}). */
export const nativeAlignKernels: AlignKernels | undefined = nativeKernels && wrap(nativeKernels);

/** Which kernels: `auto` (native when built, else JavaScript), or one of them; `native` without the addon throws `INVALID_OPTION`. */
export type KernelChoice = 'auto' | 'javascript' | 'native';

export function alignKernels(choice: KernelChoice = 'auto'): AlignKernels {
  if (choice === 'javascript') return javascriptKernels;
  if (choice === 'native' && !nativeAlignKernels) throw new LfusionError('INVALID_OPTION', `alignFrames kernels "native" requested, but the native addon is ${nativeKernelsStatus}`);
  if (choice !== 'auto' && choice !== 'native') throw new LfusionError('INVALID_OPTION', `alignFrames kernels must be "auto", "javascript" or "native", got ${JSON.stringify(choice)}`);
  return nativeAlignKernels ?? javascriptKernels;
}
