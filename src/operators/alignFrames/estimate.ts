/** Alignment estimation: Fourier–Mellin for the coarse similarity, then Gauss–Newton on intensities to refine it. */
import { ShapeError } from '../../runtime/errors.js';
import type { Frame, SimilarityTransform } from '../../runtime/types/frames.js';
import { compose, describe, invert, similarity, type Affine } from './affine.js';
import { alignKernels, sample, type AlignKernels, type KernelChoice, type Spectrum } from './kernels.js';

/** Side of the Fourier–Mellin grid (power of two). */
const GRID = 128;
/** Log-polar grid of the magnitude spectrum: radii (log-spaced) x angles over half a turn. */
const RADII = 64;
const ANGLES = 128;
const MIN_RADIUS = 2;
const MAX_RADIUS = GRID * 0.45;
/** The refinement runs on the frame scaled so that its longer side is at most this. */
const REFINE_SIDE = 256;
/** Gaussian sigma (refinement-level pixels) smoothing speckle before any estimate. */
const SPECKLE_SIGMA = 1.5;
/** Gauss–Newton stops here if no pixel has stopped moving by 0.01 px (a frame that is not a similarity of the reference). */
const MAX_ITERATIONS = 15;

/** Frame pixel -> pixel of a level scaled by `f` and placed at `(ox, oy)`, pixel centres at integers. */
const toLevel = (f: number, ox = 0, oy = 0): Affine => [f, 0, f / 2 - 0.5 + ox, 0, f, f / 2 - 0.5 + oy];

/** Normalised Gaussian kernel of `sigma`, truncated at 3 sigma. */
function gaussian(sigma: number): Float32Array {
  const radius = Math.ceil(3 * sigma);
  const kernel = Float32Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((sum, w) => sum + w, 0);
  for (let k = 0; k < kernel.length; k++) kernel[k]! /= total;
  return kernel;
}

/**
 * Phase correlation: the cyclic shift `d` (rows, cols) with `moving(x) ≈ reference(x - d)`, to sub-pixel
 * precision (parabola through the peak and its neighbours), and the peak's height (1 for a pure shift).
 */
function phaseCorrelate(kernels: AlignKernels, reference: Spectrum, moving: Spectrum, rows: number, cols: number): { dy: number; dx: number; peak: number } {
  const { re, im } = kernels.crossPower(reference, moving);
  const surface = kernels.fft2(re, rows, cols, true, im).re;
  let best = 0;
  for (let i = 1; i < surface.length; i++) if (surface[i]! > surface[best]!) best = i;
  const py = Math.floor(best / cols), px = best % cols;
  const at = (y: number, x: number) => surface[((y + rows) % rows) * cols + ((x + cols) % cols)]!;
  const offset = (minus: number, centre: number, plus: number) => {
    const curvature = minus - 2 * centre + plus;
    return curvature < 0 ? Math.max(-0.5, Math.min(0.5, (minus - plus) / (2 * curvature))) : 0;
  };
  const dy = py + offset(at(py - 1, px), at(py, px), at(py + 1, px));
  const dx = px + offset(at(py, px - 1), at(py, px), at(py, px + 1));
  return { dy: dy > rows / 2 ? dy - rows : dy, dx: dx > cols / 2 ? dx - cols : dx, peak: surface[best]! / (rows * cols) };
}

const hann = (n: number) => Float64Array.from({ length: n }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * (i + 0.5)) / n));
const GRID_WINDOW = hann(GRID);
const RADIUS_WINDOW = hann(RADII);
const LOG_RADIUS_STEP = Math.log(MAX_RADIUS / MIN_RADIUS) / RADII;

/** The analysis grid image, mean-free and Hann-windowed, and its spectrum. */
function gridSpectrum(kernels: AlignKernels, grid: Float32Array): Spectrum {
  let mean = 0;
  for (const v of grid) mean += v;
  mean /= grid.length;
  const windowed = new Float64Array(grid.length);
  for (let y = 0; y < GRID; y++) for (let x = 0; x < GRID; x++) windowed[y * GRID + x] = (grid[y * GRID + x]! - mean) * GRID_WINDOW[y]! * GRID_WINDOW[x]!;
  return kernels.fft2(windowed, GRID, GRID);
}

/** Where the log-polar grid samples the centred magnitude spectrum: x then y, (radius, angle) row-major. */
const POLAR_POINTS = (() => {
  const points = new Float64Array(2 * RADII * ANGLES);
  for (let r = 0; r < RADII; r++) {
    const radius = MIN_RADIUS * Math.exp(r * LOG_RADIUS_STEP);
    for (let a = 0; a < ANGLES; a++) {
      const angle = (Math.PI * a) / ANGLES;
      points[2 * (r * ANGLES + a)] = GRID / 2 + radius * Math.cos(angle);
      points[2 * (r * ANGLES + a) + 1] = GRID / 2 + radius * Math.sin(angle);
    }
  }
  return points;
})();

/** Spectrum of the log-polar log-magnitude spectrum: its phase correlation gives rotation and log-scale. */
function logPolarSpectrum(kernels: AlignKernels, spectrum: Spectrum): Spectrum {
  const magnitude = new Float32Array(GRID * GRID);
  for (let y = 0; y < GRID; y++) {
    for (let x = 0; x < GRID; x++) {
      const i = ((y + GRID / 2) % GRID) * GRID + ((x + GRID / 2) % GRID); // centred: zero frequency at (GRID/2, GRID/2)
      const re = spectrum.re[i]!, im = spectrum.im[i]!;
      magnitude[y * GRID + x] = Math.log1p(Math.sqrt(re * re + im * im));
    }
  }
  const polar = new Float64Array(RADII * ANGLES);
  for (let r = 0; r < RADII; r++) {
    for (let a = 0; a < ANGLES; a++) {
      const p = r * ANGLES + a;
      const value = sample(magnitude, GRID, GRID, POLAR_POINTS[2 * p]!, POLAR_POINTS[2 * p + 1]!);
      polar[p] = (Number.isNaN(value) ? 0 : value) * RADIUS_WINDOW[r]!;
    }
  }
  return kernels.fft2(polar, RADII, ANGLES);
}

/** A frame smoothed (speckle) at the refinement level, where Gauss–Newton runs. */
interface Refinement {
  /** Frame -> refinement level. */
  refineMap: Affine;
  refine: Float32Array;
  refineWidth: number;
  refineHeight: number;
}

/** A frame prepared for estimation: at the refinement level, and on the Fourier–Mellin grid. */
interface Prepared extends Refinement {
  /** Frame -> grid. */
  gridMap: Affine;
  grid: Float32Array;
  spectrum: Spectrum;
}

function prepareRefinement(kernels: AlignKernels, frame: Frame): Refinement & { smoothed: Float32Array } {
  const { width, height } = frame;
  const f = Math.min(1, REFINE_SIDE / Math.max(width, height));
  const refineWidth = Math.max(2, Math.round(width * f)), refineHeight = Math.max(2, Math.round(height * f));
  const smoothed = kernels.blur(Float32Array.from(frame.data), width, height, gaussian(SPECKLE_SIGMA / f));
  const refineMap = toLevel(f);
  const refine = f === 1 ? smoothed : kernels.warpImage(smoothed, width, height, invert(refineMap), refineWidth, refineHeight, 0);
  return { refineMap, refine, refineWidth, refineHeight, smoothed };
}

function prepare(kernels: AlignKernels, frame: Frame): Prepared {
  const { width, height } = frame;
  const { smoothed, ...refinement } = prepareRefinement(kernels, frame);
  const g = GRID / Math.max(width, height);
  const gridMap = toLevel(g, (GRID - g * width) / 2, (GRID - g * height) / 2);
  const grid = kernels.warpImage(smoothed, width, height, invert(gridMap), GRID, GRID, 0);
  return { ...refinement, gridMap, grid, spectrum: gridSpectrum(kernels, grid) };
}

/** What Gauss–Newton keeps of a frame it aligns others to: its refinement level and that level's gradients. */
export interface MotionTemplate {
  frame: Frame;
  /** The kernels it was prepared with, and estimates against it use. */
  kernels: AlignKernels;
  prepared: Refinement;
  gradientX: Float32Array;
  gradientY: Float32Array;
}

/** What estimation keeps of a reference: a {@link MotionTemplate} also on the Fourier–Mellin grid, with its log-polar spectrum. */
export interface Reference extends MotionTemplate {
  prepared: Prepared;
  logPolar: Spectrum;
}

/** Central-difference gradients of the refinement level (zero on its border). */
function gradients({ refine, refineWidth: w, refineHeight: h }: Refinement): { gradientX: Float32Array; gradientY: Float32Array } {
  const gradientX = new Float32Array(w * h), gradientY = new Float32Array(w * h);
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      gradientX[i] = (refine[i + 1]! - refine[i - 1]!) / 2;
      gradientY[i] = (refine[i + w]! - refine[i - w]!) / 2;
    }
  }
  return { gradientX, gradientY };
}

/** Prepares `frame` as a reference: the operator keeps one per reference frame. */
export function makeReference(frame: Frame, kernels: AlignKernels): Reference {
  const prepared = prepare(kernels, frame);
  return { frame, kernels, prepared, logPolar: logPolarSpectrum(kernels, prepared.spectrum), ...gradients(prepared) };
}

/** Prepares `frame` for {@link estimateSmallMotion}: as the frame aligned, then as the next frame's template. */
export function motionTemplate(frame: Frame, kernels: AlignKernels): MotionTemplate {
  checkFrame(frame);
  const { smoothed: _smoothed, ...prepared } = prepareRefinement(kernels, frame);
  return { frame, kernels, prepared, ...gradients(prepared) };
}

/**
 * The transform taking `frame` onto `reference` when they differ by a small motion (consecutive frames of a
 * video: a few pixels, a few degrees): Gauss–Newton from the identity alone, without the Fourier–Mellin search
 * for any rotation, scale or large shift, with {@link estimate}'s quality. A larger motion does not converge and
 * shows as a low quality. Both frames must have one size.
 */
export function estimateSmallMotion(reference: MotionTemplate, frame: MotionTemplate, rigid = false): { transform: SimilarityTransform; quality: number } {
  const { width, height } = frame.frame;
  if (reference.frame.width !== width || reference.frame.height !== height) {
    throw new ShapeError(`frame ${frame.frame.index} is ${width}x${height}, its template ${reference.frame.width}x${reference.frame.height}`, [reference.frame.width, reference.frame.height], [width, height]);
  }
  const { warp, quality } = refineWarp(reference, frame.prepared, [1, 0, 0, 0, 1, 0], rigid);
  return { transform: describe(toFrame(warp, reference.prepared, frame.prepared), width, height), quality };
}

/** A refinement-level warp (reference level -> frame level) as the transform frame -> reference, in frame pixels. */
function toFrame(warp: Affine, reference: Refinement, moving: Refinement): Affine {
  return invert(compose(invert(moving.refineMap), compose(warp, reference.refineMap)));
}

/**
 * Fourier–Mellin on the grid: rotation (two candidates, half a turn apart, since a magnitude spectrum is
 * symmetric) and scale from the log-polar phase correlation, then translation by phase correlation of the
 * frame unrotated and unscaled; the candidate with the higher peak wins. Returns reference grid -> frame grid.
 */
function coarseWarp(reference: Reference, moving: Prepared, rigid: boolean): Affine {
  const { kernels } = reference;
  const { dy, dx } = phaseCorrelate(kernels, reference.logPolar, logPolarSpectrum(kernels, moving.spectrum), RADII, ANGLES);
  const scale = rigid ? 1 : Math.exp(dy * LOG_RADIUS_STEP);
  const rotation = (-dx * Math.PI) / ANGLES;
  const centre = (GRID - 1) / 2;
  let best: { warp: Affine; peak: number } | undefined;
  for (const turn of [0, Math.PI]) {
    const unrotate = invert(similarity(scale, rotation + turn, 0, 0, centre, centre)); // reference grid -> frame grid, no shift
    const shift = phaseCorrelate(kernels, reference.prepared.spectrum, gridSpectrum(kernels, kernels.warpImage(moving.grid, GRID, GRID, unrotate, GRID, GRID, 0)), GRID, GRID);
    if (!best || shift.peak > best.peak) best = { warp: compose(unrotate, [1, 0, shift.dx, 0, 1, shift.dy]), peak: shift.peak };
  }
  return best!.warp;
}

/** Solves the small symmetric system `H x = g` by Gaussian elimination with partial pivoting; null when singular. */
function solve(h: number[][], g: number[]): number[] | null {
  const n = g.length;
  const a = h.map((row, i) => [...row, g[i]!]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    if (Math.abs(a[pivot]![col]!) < 1e-12) return null;
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    for (let r = col + 1; r < n; r++) {
      const factor = a[r]![col]! / a[col]![col]!;
      for (let c = col; c <= n; c++) a[r]![c]! -= factor * a[col]![c]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let sum = a[r]![n]!;
    for (let c = r + 1; c < n; c++) sum -= a[r]![c]! * x[c]!;
    x[r] = sum / a[r]![r]!;
  }
  return x;
}

/**
 * Inverse-compositional Gauss–Newton on the smoothed intensities at the refinement level (Baker & Matthews),
 * over the pixels whose warped position falls inside the frame. `warp`: reference level -> frame level.
 * Returns the refined warp and its quality (NCC over the overlap, times `min(1, overlap / 0.5)`).
 */
function refineWarp(reference: MotionTemplate, moving: Refinement, start: Affine, rigid: boolean): { warp: Affine; quality: number } {
  const { refine: template, refineWidth: w, refineHeight: h } = reference.prepared;
  const { gradientX, gradientY } = reference;
  const cx = (w - 1) / 2, cy = (h - 1) / 2;
  let warp = start;
  for (let iteration = 0; iteration < MAX_ITERATIONS; iteration++) {
    // Normal equations over (rotation b, tx, ty, scale a): the 4x4 Hessian's lower triangle and the gradient.
    const [hbb, hxb, hxx, hyb, hyx, hyy, hab, hax, hay, haa, gb, gx, gy, ga] = reference.kernels.gaussNewtonSums(template, gradientX, gradientY, w, h, moving.refine, moving.refineWidth, moving.refineHeight, warp, cx, cy);
    const hessian = [[hbb, hxb, hyb, hab], [hxb, hxx, hyx, hax], [hyb, hyx, hyy, hay], [hab, hax, hay, haa]];
    const unknowns = rigid ? 3 : 4;
    const step = solve(hessian.slice(0, unknowns).map((row) => row.slice(0, unknowns)), [gb, gx, gy, ga].slice(0, unknowns));
    if (!step) break;
    const [b, tx, ty, a = 0] = step;
    const increment = rigid ? similarity(1, Math.atan(b!), tx!, ty!, cx, cy) : similarity(Math.hypot(1 + a, b!), Math.atan2(b!, 1 + a), tx!, ty!, cx, cy);
    warp = compose(warp, invert(increment));
    // Converged when no pixel moves by more than ~0.01.
    if ((Math.abs(a) + Math.abs(b!)) * Math.max(w, h) + Math.hypot(tx!, ty!) < 0.01) break;
  }
  return { warp, quality: overlapQuality(reference, moving, warp) };
}

/** NCC of the reference with the warped frame over their overlap, times `min(1, overlap / 0.5)`; 0 when negative. */
function overlapQuality(reference: MotionTemplate, moving: Refinement, warp: Affine): number {
  const { refine: template, refineWidth: w, refineHeight: h } = reference.prepared;
  const [n, sa, sb, saa, sbb, sab] = reference.kernels.overlapSums(template, w, h, moving.refine, moving.refineWidth, moving.refineHeight, warp);
  if (n < 16) return 0;
  const covariance = sab - (sa * sb) / n;
  const variance = Math.sqrt(Math.max(0, saa - (sa * sa) / n) * Math.max(0, sbb - (sb * sb) / n));
  const ncc = variance > 0 ? covariance / variance : 0;
  return Math.max(0, ncc) * Math.min(1, n / (w * h) / 0.5);
}

/**
 * Estimates the transform taking `frame` onto `reference`. Exported for the benchmark and tests; the operator
 * caches the reference's preparation, which this recomputes.
 */
export function estimateAlignment(reference: Frame, frame: Frame, model: 'similarity' | 'rigid' = 'similarity', kernels: KernelChoice = 'auto'): { transform: SimilarityTransform; quality: number } {
  checkFrame(frame);
  checkFrame(reference);
  return estimate(makeReference(reference, alignKernels(kernels)), frame, model === 'rigid');
}

/** The transform taking `frame` onto a prepared reference, and its quality (see {@link estimateAlignment}). */
export function estimate(reference: Reference, frame: Frame, rigid: boolean): { transform: SimilarityTransform; quality: number } {
  const moving = prepare(reference.kernels, frame);
  const ref = reference.prepared;
  // Grid and refinement levels are both scalings of the frame: carry the coarse warp over by their maps.
  const coarse = compose(compose(moving.refineMap, invert(moving.gridMap)), compose(coarseWarp(reference, moving, rigid), compose(ref.gridMap, invert(ref.refineMap))));
  const { warp, quality } = refineWarp(reference, moving, coarse, rigid);
  return { transform: describe(toFrame(warp, ref, moving), frame.width, frame.height), quality };
}

/** Throws a `ShapeError` for a frame whose pixel count is not `width * height`, or smaller than 8x8. */
export function checkFrame(frame: Frame): void {
  if (frame.width < 8 || frame.height < 8 || frame.data.length !== frame.width * frame.height) {
    throw new ShapeError(`frame ${frame.index} has ${frame.data.length} pixels for ${frame.width}x${frame.height}; alignment needs at least 8x8`, [frame.width, frame.height], [frame.data.length]);
  }
}
