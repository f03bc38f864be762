/**
 * Robust ellipse fitting on boundary points: Fitzgibbon's direct least squares (in Halir and Flusser's
 * numerically stable form), refined by iteratively reweighted least squares on the Sampson distance with
 * Tukey weights, so that a minority of boundary points off the skull (a cut inside a faint skull echo, a
 * neighbouring structure) does not pull the fit. Plus the quantities read off an ellipse (Ramanujan's
 * perimeter, how much of it lies inside the image) and Hadlock's gestational age from the head circumference.
 */
import type { Ellipse } from '../../runtime/types/biometry.js';

export type { Ellipse };

/** Boundary points with a weight each (`n` used entries of the arrays). */
export interface WeightedPoints {
  x: Float64Array;
  y: Float64Array;
  weight: Float64Array;
  n: number;
}

export interface EllipseFit {
  ellipse: Ellipse;
  /** Weighted RMS Sampson distance of the inliers, in the points' units. */
  residual: number;
  /** Fraction of the points' total weight the robust fit kept (Tukey weight > 0). */
  inlierFraction: number;
}

export interface FitOptions {
  /** Reweighting rounds after the first direct fit. Default 6. */
  iterations?: number;
  /** Smallest robust scale of the residuals (points' units), so that a near-perfect fit does not reject everything. Default 0.5. */
  minScale?: number;
}

/** A general conic `A x² + B xy + C y² + D x + E y + F = 0`. */
type Conic = [number, number, number, number, number, number];

const MIN_POINTS = 6;

/** Real eigenvalues of a 3x3 matrix (row-major): roots of its characteristic cubic. */
function realEigenvalues3(m: number[]): number[] {
  const [a, b, c, d, e, f, g, h, i] = m as [number, number, number, number, number, number, number, number, number];
  // det(M - λI) = -λ³ + tr λ² - s λ + det
  const tr = a + e + i;
  const s = a * e - b * d + a * i - c * g + e * i - f * h;
  const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
  // λ³ - tr λ² + s λ - det = 0, depressed with λ = t + tr/3
  const p = s - (tr * tr) / 3;
  const q = (-2 * tr ** 3) / 27 + (tr * s) / 3 - det;
  const shift = tr / 3;
  const disc = (q / 2) ** 2 + (p / 3) ** 3;
  if (disc > 0) {
    const u = Math.cbrt(-q / 2 + Math.sqrt(disc));
    const v = Math.cbrt(-q / 2 - Math.sqrt(disc));
    return [u + v + shift];
  }
  const r = Math.sqrt(Math.max(-p / 3, 0));
  if (r === 0) return [shift];
  const phi = Math.acos(Math.min(1, Math.max(-1, -q / (2 * r ** 3))));
  return [0, 1, 2].map((k) => 2 * r * Math.cos((phi - 2 * Math.PI * k) / 3) + shift);
}

/** A null vector of the 3x3 matrix `M - λI`: the largest cross product of two of its rows. */
function eigenvector3(m: number[], lambda: number): [number, number, number] {
  const r = [
    [m[0]! - lambda, m[1]!, m[2]!],
    [m[3]!, m[4]! - lambda, m[5]!],
    [m[6]!, m[7]!, m[8]! - lambda],
  ] as [number, number, number][];
  let best: [number, number, number] = [0, 0, 0];
  let bestNorm = 0;
  for (const [u, v] of [[0, 1], [0, 2], [1, 2]] as const) {
    const x = r[u]!;
    const y = r[v]!;
    const cross: [number, number, number] = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]];
    const norm = Math.hypot(...cross);
    if (norm > bestNorm) [best, bestNorm] = [cross, norm];
  }
  return best;
}

function invert3(m: number[]): number[] | null {
  const [a, b, c, d, e, f, g, h, i] = m as [number, number, number, number, number, number, number, number, number];
  const A = e * i - f * h;
  const B = -(d * i - f * g);
  const C = d * h - e * g;
  const det = a * A + b * B + c * C;
  if (!(Math.abs(det) > 1e-300)) return null;
  return [A, -(b * i - c * h), b * f - c * e, B, a * i - c * g, -(a * f - c * d), C, -(a * h - b * g), a * e - b * d].map((v) => v / det);
}

/**
 * Fitzgibbon's direct least-squares ellipse (Halir and Flusser's form) of `n` points with weights `w`, in
 * coordinates already centred and scaled to about unit size. Null when the points determine no ellipse.
 */
function directFit(x: Float64Array, y: Float64Array, w: Float64Array, n: number): Conic | null {
  // Weighted sums of the monomials up to degree 4: the scatter blocks of (x², xy, y²) and (x, y, 1).
  let m00 = 0, m10 = 0, m01 = 0, m20 = 0, m11 = 0, m02 = 0, m30 = 0, m21 = 0, m12 = 0, m03 = 0, m40 = 0, m31 = 0, m22 = 0, m13 = 0, m04 = 0;
  for (let i = 0; i < n; i++) {
    const wi = w[i]!;
    if (wi <= 0) continue;
    const xi = x[i]!;
    const yi = y[i]!;
    const xx = xi * xi;
    const xy = xi * yi;
    const yy = yi * yi;
    m00 += wi;
    m10 += wi * xi;
    m01 += wi * yi;
    m20 += wi * xx;
    m11 += wi * xy;
    m02 += wi * yy;
    m30 += wi * xx * xi;
    m21 += wi * xx * yi;
    m12 += wi * xi * yy;
    m03 += wi * yy * yi;
    m40 += wi * xx * xx;
    m31 += wi * xx * xy;
    m22 += wi * xx * yy;
    m13 += wi * xy * yy;
    m04 += wi * yy * yy;
  }
  const s1 = [m40, m31, m22, m31, m22, m13, m22, m13, m04];
  const s2 = [m30, m21, m20, m21, m12, m11, m12, m03, m02];
  const s3 = [m20, m11, m10, m11, m02, m01, m10, m01, m00];
  const s3inv = invert3(s3);
  if (!s3inv) return null;
  // T = -S3⁻¹ S2ᵀ, M = S1 + S2 T
  const t = new Array<number>(9).fill(0);
  for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) for (let k = 0; k < 3; k++) t[r * 3 + c]! -= s3inv[r * 3 + k]! * s2[c * 3 + k]!;
  const mm = s1.slice();
  for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) for (let k = 0; k < 3; k++) mm[r * 3 + c]! += s2[r * 3 + k]! * t[k * 3 + c]!;
  // Premultiply by the inverse of the constraint matrix [[0, 0, 2], [0, -1, 0], [2, 0, 0]].
  const m = [mm[6]! / 2, mm[7]! / 2, mm[8]! / 2, -mm[3]!, -mm[4]!, -mm[5]!, mm[0]! / 2, mm[1]! / 2, mm[2]! / 2];
  let best: Conic | null = null;
  let bestCondition = 0;
  for (const lambda of realEigenvalues3(m)) {
    const [a, b, c] = eigenvector3(m, lambda);
    const condition = 4 * a * c - b * b;
    if (condition > bestCondition) {
      const d = t[0]! * a + t[1]! * b + t[2]! * c;
      const e = t[3]! * a + t[4]! * b + t[5]! * c;
      const f = t[6]! * a + t[7]! * b + t[8]! * c;
      best = [a, b, c, d, e, f];
      bestCondition = condition;
    }
  }
  return best;
}

/** Centre, semi-axes and angle of an ellipse conic; null for any other conic. */
export function conicToEllipse([A, B, C, D, E, F]: Conic): Ellipse | null {
  const den = B * B - 4 * A * C;
  if (!(den < 0)) return null;
  const cx = (2 * C * D - B * E) / den;
  const cy = (2 * A * E - B * D) / den;
  // Value of the conic at the centre; the axes are sqrt(-F0 / eigenvalue) of the quadratic part.
  const f0 = A * cx * cx + B * cx * cy + C * cy * cy + D * cx + E * cy + F;
  const mean = (A + C) / 2;
  const spread = Math.hypot((A - C) / 2, B / 2);
  const l1 = mean - spread;
  const l2 = mean + spread;
  const u = -f0 / l1;
  const v = -f0 / l2;
  if (!(u > 0 && v > 0)) return null;
  // The major axis is the eigenvector of the smaller eigenvalue (l1): tan 2θ = B / (A - C), turned a quarter.
  const angle = 0.5 * Math.atan2(-B, C - A);
  return { cx, cy, a: Math.sqrt(u), b: Math.sqrt(v), angle: normaliseAngle(angle) };
}

/** An axis direction in [-π/2, π/2). */
export function normaliseAngle(angle: number): number {
  let t = angle % Math.PI;
  if (t >= Math.PI / 2) t -= Math.PI;
  if (t < -Math.PI / 2) t += Math.PI;
  return t;
}

/** Sampson distance of a point to a conic: first-order geometric distance, signed (negative inside). */
function sampson(conic: Conic, x: number, y: number): number {
  const [A, B, C, D, E, F] = conic;
  const value = A * x * x + B * x * y + C * y * y + D * x + E * y + F;
  const gx = 2 * A * x + B * y + D;
  const gy = B * x + 2 * C * y + E;
  return value / Math.max(Math.hypot(gx, gy), 1e-300);
}

/** Median of the values whose weight is positive (`scratch` holds at least n values), by quickselect. */
function medianOfWeighted(values: Float64Array, weights: Float64Array, n: number, scratch: Float64Array): number {
  let count = 0;
  for (let i = 0; i < n; i++) if (weights[i]! > 0) scratch[count++] = values[i]!;
  if (count === 0) return NaN;
  const k = count >> 1;
  let left = 0;
  let right = count - 1;
  while (left < right) {
    const pivot = scratch[(left + right) >> 1]!;
    let i = left;
    let j = right;
    while (i <= j) {
      while (scratch[i]! < pivot) i++;
      while (scratch[j]! > pivot) j--;
      if (i <= j) {
        const t = scratch[i]!;
        scratch[i++] = scratch[j]!;
        scratch[j--] = t;
      }
    }
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else break;
  }
  return scratch[k]!;
}

/** Working arrays of the fit, reused from call to call (fits are synchronous) and grown when more points come. */
let scratchArrays = { x: new Float64Array(0), y: new Float64Array(0), weight: new Float64Array(0), robust: new Float64Array(0), distance: new Float64Array(0), scratch: new Float64Array(0) };

function fitScratch(n: number): typeof scratchArrays {
  if (scratchArrays.x.length < n) {
    const size = Math.max(n, 2 * scratchArrays.x.length);
    scratchArrays = { x: new Float64Array(size), y: new Float64Array(size), weight: new Float64Array(size), robust: new Float64Array(size), distance: new Float64Array(size), scratch: new Float64Array(size) };
  }
  return scratchArrays;
}

/**
 * Robust weighted ellipse fit: the direct fit, then `iterations` rounds of Tukey reweighting of the Sampson
 * distances (scale 4.685 x 1.4826 x the weighted median absolute distance, at least `minScale`).
 * Null for fewer than 6 points or points that determine no ellipse (a line, a single pixel).
 *
 * @example
 * const fit = fitEllipse({ x, y, weight, n }); // fit?.ellipse.a, fit?.residual
 */
export function fitEllipse(points: WeightedPoints, options: FitOptions = {}): EllipseFit | null {
  const { n } = points;
  if (n < MIN_POINTS) return null;
  const iterations = options.iterations ?? 6;
  const minScale = options.minScale ?? 0.5;
  // Centre and scale the points for conditioning.
  let sw = 0;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    const w = points.weight[i]!;
    sw += w;
    mx += w * points.x[i]!;
    my += w * points.y[i]!;
  }
  if (!(sw > 0)) return null;
  mx /= sw;
  my /= sw;
  let spread = 0;
  for (let i = 0; i < n; i++) spread += points.weight[i]! * ((points.x[i]! - mx) ** 2 + (points.y[i]! - my) ** 2);
  const scale = Math.sqrt(spread / sw);
  if (!(scale > 0)) return null;
  const { x, y, weight, robust, distance, scratch } = fitScratch(n);
  for (let i = 0; i < n; i++) {
    x[i] = (points.x[i]! - mx) / scale;
    y[i] = (points.y[i]! - my) / scale;
  }
  weight.set(points.weight.subarray(0, n));
  let conic = directFit(x, y, weight, n);
  if (!conic) return null;
  for (let round = 0; round < iterations; round++) {
    const [A, B, C, D, E, F] = conic;
    for (let i = 0; i < n; i++) {
      const xi = x[i]!;
      const yi = y[i]!;
      const gx = 2 * A * xi + B * yi + D;
      const gy = B * xi + 2 * C * yi + E;
      distance[i] = Math.abs((A * xi * xi + B * xi * yi + C * yi * yi + D * xi + E * yi + F) / Math.max(Math.sqrt(gx * gx + gy * gy), 1e-300));
    }
    const cutoff = 4.685 * Math.max(1.4826 * medianOfWeighted(distance, weight, n, scratch), minScale / scale);
    for (let i = 0; i < n; i++) {
      const u = distance[i]! / cutoff;
      robust[i] = u < 1 ? points.weight[i]! * (1 - u * u) ** 2 : 0;
    }
    const next = directFit(x, y, robust, n);
    if (!next) break;
    conic = next;
    weight.set(robust);
  }
  const unit = conicToEllipse(conic);
  if (!unit || !(unit.b > 1e-6)) return null;
  let kept = 0;
  let squares = 0;
  let keptWeight = 0;
  for (let i = 0; i < n; i++) {
    if (weight[i]! <= 0) continue;
    const d = sampson(conic, x[i]!, y[i]!) * scale;
    squares += weight[i]! * d * d;
    keptWeight += weight[i]!;
    kept += points.weight[i]!;
  }
  return {
    ellipse: { cx: unit.cx * scale + mx, cy: unit.cy * scale + my, a: unit.a * scale, b: unit.b * scale, angle: unit.angle },
    residual: keptWeight > 0 ? Math.sqrt(squares / keptWeight) : Infinity,
    inlierFraction: kept / sw,
  };
}

/** Ramanujan's second approximation of the perimeter of an ellipse with semi-axes a, b. */
export function ellipseCircumference(a: number, b: number): number {
  const h = ((a - b) / (a + b)) ** 2;
  return Math.PI * (a + b) * (1 + (3 * h) / (10 + Math.sqrt(4 - 3 * h)));
}

/** Point of the ellipse at parameter t (radians). */
export function ellipsePoint(e: Ellipse, t: number): { x: number; y: number } {
  const c = Math.cos(e.angle);
  const s = Math.sin(e.angle);
  const u = e.a * Math.cos(t);
  const v = e.b * Math.sin(t);
  return { x: e.cx + u * c - v * s, y: e.cy + u * s + v * c };
}

/** Fraction of the ellipse's outline (sampled at `samples` points) inside `[margin, width-1-margin] x [margin, height-1-margin]`. */
export function visibleFraction(e: Ellipse, width: number, height: number, margin = 0, samples = 180): number {
  let inside = 0;
  for (let i = 0; i < samples; i++) {
    const { x, y } = ellipsePoint(e, (2 * Math.PI * i) / samples);
    if (x >= margin && y >= margin && x <= width - 1 - margin && y <= height - 1 - margin) inside += 1;
  }
  return inside / samples;
}

/** Hadlock's HC formula holds for the gestational ages of its cohort, 14 to 42 weeks (HC ≈ 89 to 356 mm). */
export const HADLOCK_WEEKS = { min: 14, max: 42 } as const;

/**
 * Gestational age in weeks from head circumference (Hadlock et al., Radiology 1984;152:497):
 * `GA = 8.96 + 0.540 HC + 0.0003 HC³`, HC in cm. `inRange` is false outside the formula's valid range.
 *
 * @example
 * hadlockGestationalAge(175); // { weeks: 20.0..., inRange: true }
 */
export function hadlockGestationalAge(hcMm: number): { weeks: number; inRange: boolean } {
  const cm = hcMm / 10;
  const weeks = 8.96 + 0.54 * cm + 0.0003 * cm ** 3;
  return { weeks, inRange: weeks >= HADLOCK_WEEKS.min && weeks <= HADLOCK_WEEKS.max };
}

/** The filled ellipse as a `width x height` mask (1 inside), pixel centres at integer coordinates. */
export function rasteriseEllipse(e: Ellipse, width: number, height: number): Uint8Array {
  const mask = new Uint8Array(width * height);
  const c = Math.cos(e.angle);
  const s = Math.sin(e.angle);
  const reach = Math.ceil(e.a) + 1;
  for (let y = Math.max(0, Math.floor(e.cy - reach)); y <= Math.min(height - 1, Math.ceil(e.cy + reach)); y++) {
    for (let x = Math.max(0, Math.floor(e.cx - reach)); x <= Math.min(width - 1, Math.ceil(e.cx + reach)); x++) {
      const u = ((x - e.cx) * c + (y - e.cy) * s) / e.a;
      const v = (-(x - e.cx) * s + (y - e.cy) * c) / e.b;
      if (u * u + v * v <= 1) mask[y * width + x] = 1;
    }
  }
  return mask;
}
