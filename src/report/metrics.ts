/**
 * Segmentation metrics on binary masks, the same definitions as the model factory's
 * `models/lfusion/metrics.py`: Dice, symmetric Hausdorff distance between the two boundaries in mm, and the
 * head circumference (HC18's measure) as the Ramanujan perimeter of the ellipse with the mask's area moments.
 * `spacing` is mm per pixel along x and along y, so anisotropic grids keep correct distances.
 */
import { ellipseCircumference } from '../operators/measureBiometry/ellipse.js';

export { ellipseCircumference };

/** A binary mask: `data[y * width + x]` non-zero inside. */
export interface Mask {
  width: number;
  height: number;
  data: Uint8Array;
}

/** mm per pixel along x (columns) and y (rows). */
export interface Spacing {
  x: number;
  y: number;
}

function sameSize(a: Mask, b: Mask): void {
  if (a.width !== b.width || a.height !== b.height) throw new RangeError(`masks differ in size: ${a.width}x${a.height} and ${b.width}x${b.height}`);
}

/** 2|A∩B| / (|A|+|B|); 1 when both are empty. */
export function dice(pred: Mask, truth: Mask): number {
  sameSize(pred, truth);
  let both = 0;
  let total = 0;
  for (let i = 0; i < pred.data.length; i++) {
    const p = pred.data[i] !== 0;
    const t = truth.data[i] !== 0;
    total += Number(p) + Number(t);
    if (p && t) both += 1;
  }
  return total === 0 ? 1 : (2 * both) / total;
}

/** Pixel indices of the mask with a 4-neighbour outside it (outside the image counts as outside). */
export function boundary(mask: Mask): number[] {
  const { width, height, data } = mask;
  const inside = (x: number, y: number) => x >= 0 && y >= 0 && x < width && y < height && data[y * width + x] !== 0;
  const points: number[] = [];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (inside(x, y) && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1))) points.push(y * width + x);
    }
  }
  return points;
}

/** Largest distance (mm) from a point of `from` to its nearest point of `to`. */
function directedHausdorff(from: number[], to: number[], width: number, spacing: Spacing): number {
  const toX = Float64Array.from(to, (i) => (i % width) * spacing.x);
  const toY = Float64Array.from(to, (i) => Math.floor(i / width) * spacing.y);
  let worst = 0;
  for (const i of from) {
    const x = (i % width) * spacing.x;
    const y = Math.floor(i / width) * spacing.y;
    let nearest = Infinity;
    for (let j = 0; j < toX.length && nearest > worst; j++) {
      const dx = toX[j]! - x;
      const dy = toY[j]! - y;
      const d = dx * dx + dy * dy;
      if (d < nearest) nearest = d;
    }
    if (nearest > worst) worst = nearest; // early exit above: once nearest <= worst this point cannot raise the max
  }
  return Math.sqrt(worst);
}

/** Symmetric Hausdorff distance between the two boundaries in mm; 0 when both masks are empty, Infinity when one is. */
export function hausdorffMm(pred: Mask, truth: Mask, spacing: Spacing): number {
  sameSize(pred, truth);
  const a = boundary(pred);
  const b = boundary(truth);
  if (a.length === 0 && b.length === 0) return 0;
  if (a.length === 0 || b.length === 0) return Infinity;
  return Math.max(directedHausdorff(a, b, pred.width, spacing), directedHausdorff(b, a, pred.width, spacing));
}

/**
 * Semi-axes (a >= b) in mm of the ellipse with the mask's area moments: a filled ellipse with semi-axes a, b has
 * second central moments a²/4 and b²/4 along its axes. NaN for fewer than 3 pixels.
 */
export function ellipseAxesMm(mask: Mask, spacing: Spacing): { a: number; b: number } {
  let count = 0;
  let sumX = 0;
  let sumY = 0;
  for (let i = 0; i < mask.data.length; i++) {
    if (mask.data[i] === 0) continue;
    count += 1;
    sumX += (i % mask.width) * spacing.x;
    sumY += Math.floor(i / mask.width) * spacing.y;
  }
  if (count < 3) return { a: NaN, b: NaN };
  const meanX = sumX / count;
  const meanY = sumY / count;
  let xx = 0;
  let xy = 0;
  let yy = 0;
  for (let i = 0; i < mask.data.length; i++) {
    if (mask.data[i] === 0) continue;
    const dx = (i % mask.width) * spacing.x - meanX;
    const dy = Math.floor(i / mask.width) * spacing.y - meanY;
    xx += dx * dx;
    xy += dx * dy;
    yy += dy * dy;
  }
  [xx, xy, yy] = [xx / count, xy / count, yy / count];
  // Eigenvalues of the 2x2 covariance [[xx, xy], [xy, yy]].
  const mean = (xx + yy) / 2;
  const spread = Math.sqrt(((xx - yy) / 2) ** 2 + xy * xy);
  return { a: 2 * Math.sqrt(Math.max(mean + spread, 0)), b: 2 * Math.sqrt(Math.max(mean - spread, 0)) };
}

/** Head circumference (mm) of a segmentation: the fitted ellipse's perimeter; NaN for an (almost) empty mask. */
export function headCircumferenceMm(mask: Mask, spacing: Spacing): number {
  const { a, b } = ellipseAxesMm(mask, spacing);
  return Number.isNaN(a) ? NaN : ellipseCircumference(a, b);
}
