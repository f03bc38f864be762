/**
 * Ground truth for a replay: HC18-style annotations (an ellipse outline PNG per scan plus the pixel-size CSV)
 * or a mask video, turned into filled masks at the source resolution.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { firstValueFrom } from 'rxjs';
import { fromVideo } from '../operators/fromVideo.js';
import { LfusionError } from '../runtime/errors.js';
import type { Frame } from '../runtime/types/frames.js';
import type { Mask } from './metrics.js';

/** One row of an HC18 CSV: pixel size (mm, isotropic) and, in the training set, the reference head circumference. */
export interface ScanFacts {
  pixelSizeMm: number;
  hcMm?: number;
}

/** `filename -> facts` from `training_set_pixel_size_and_HC.csv` or `test_set_pixel_size.csv` (header row first). */
export function parsePixelSizeCsv(text: string, path: string): Map<string, ScanFacts> {
  const rows = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const header = rows.shift()?.toLowerCase() ?? '';
  if (!header.includes('pixel size')) throw new LfusionError('INVALID_OPTION', `${path} is not an HC18 pixel-size CSV (header "${header}")`, { path });
  const facts = new Map<string, ScanFacts>();
  for (const row of rows) {
    const [name, size, hc] = row.split(',').map((cell) => cell.trim());
    const pixelSizeMm = Number(size);
    if (!name || !(pixelSizeMm > 0)) throw new LfusionError('INVALID_OPTION', `${path}: malformed row "${row}"`, { path });
    facts.set(name, hc === undefined || hc === '' ? { pixelSizeMm } : { pixelSizeMm, hcMm: Number(hc) });
  }
  return facts;
}

/** HC18 annotations: facts per scan file name and, where one exists, its outline PNG (`NNN_HC_Annotation.png`). */
export interface Hc18Annotations {
  csv: string;
  facts: Map<string, ScanFacts>;
  outlineOf(scanFile: string): string | undefined;
}

/** `--ground-truth`: an HC18 folder (its CSV found inside) or the CSV itself (outlines looked up next to it). */
export async function loadHc18Annotations(path: string): Promise<Hc18Annotations> {
  if (!existsSync(path)) throw new LfusionError('INVALID_OPTION', `ground truth ${path} does not exist`, { path });
  let csv = path;
  if (statSync(path).isDirectory()) {
    const found = readdirSync(path).filter((file) => /pixel_size.*\.csv$/i.test(file));
    if (found.length !== 1) throw new LfusionError('INVALID_OPTION', `expected one HC18 pixel-size CSV in ${path}, found ${found.length}`, { path });
    csv = join(path, found[0]!);
  }
  const facts = parsePixelSizeCsv(await readFile(csv, 'utf8'), csv);
  const folder = dirname(csv);
  return {
    csv,
    facts,
    outlineOf: (scanFile) => {
      const outline = join(folder, `${basename(scanFile, extname(scanFile))}_Annotation.png`);
      return existsSync(outline) ? outline : undefined;
    },
  };
}

/** The first frame of an image (or video) file as 8-bit grey, decoded by ffmpeg. */
export function readGreyImage(path: string): Promise<Frame> {
  return firstValueFrom(fromVideo(path));
}

/**
 * The filled ellipse of an HC18 outline (pixels > 127), rasterised at pixel centres. The conic
 * `A x² + B xy + C y² + D x + E y = 1` is fitted by least squares to the outline pixels in coordinates centred
 * on their mean (inside the ellipse, so the constant can be fixed to -1); fitting rather than hole-filling
 * also handles ellipses clipped by the image border, where the outline is open.
 */
export function outlineToMask(outline: { width: number; height: number; data: Uint8Array }): Mask {
  const { width, height, data } = outline;
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < data.length; i++) {
    if (data[i]! > 127) {
      xs.push(i % width);
      ys.push(Math.floor(i / width));
    }
  }
  if (xs.length < 6) throw new LfusionError('INVALID_OPTION', `an outline needs at least 6 pixels to fit an ellipse, got ${xs.length}`);
  const mean = (values: number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;
  const mx = mean(xs);
  const my = mean(ys);
  const std = (values: number[], m: number) => Math.sqrt(mean(values.map((v) => (v - m) ** 2)));
  const scale = Math.max(std(xs, mx), std(ys, my));
  const terms = (x: number, y: number) => [x * x, x * y, y * y, x, y];
  // Normal equations M c = v of the least-squares problem.
  const normal = Array.from({ length: 5 }, () => new Float64Array(6));
  for (let i = 0; i < xs.length; i++) {
    const t = terms((xs[i]! - mx) / scale, (ys[i]! - my) / scale);
    for (let r = 0; r < 5; r++) {
      for (let c = 0; c < 5; c++) normal[r]![c]! += t[r]! * t[c]!;
      normal[r]![5]! += t[r]!;
    }
  }
  const [A, B, C, D, E] = solve(normal) as [number, number, number, number, number];
  if (!(4 * A * C - B * B > 0)) throw new LfusionError('INVALID_OPTION', 'the outline pixels do not describe an ellipse');
  const mask = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const v = (y - my) / scale;
    for (let x = 0; x < width; x++) {
      const u = (x - mx) / scale;
      if (A * u * u + B * u * v + C * v * v + D * u + E * v <= 1) mask[y * width + x] = 1;
    }
  }
  return { width, height, data: mask };
}

/** Gauss-Jordan elimination with partial pivoting of an augmented n x (n+1) system. */
function solve(augmented: Float64Array[]): number[] {
  const n = augmented.length;
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) if (Math.abs(augmented[row]![col]!) > Math.abs(augmented[pivot]![col]!)) pivot = row;
    [augmented[col], augmented[pivot]] = [augmented[pivot]!, augmented[col]!];
    const lead = augmented[col]!;
    if (lead[col] === 0) throw new LfusionError('INVALID_OPTION', 'the outline pixels do not determine an ellipse');
    for (let row = 0; row < n; row++) {
      if (row === col) continue;
      const factor = augmented[row]![col]! / lead[col]!;
      for (let c = col; c <= n; c++) augmented[row]![c]! -= factor * lead[c]!;
    }
  }
  return augmented.map((row, i) => row[n]! / row[i]!);
}

/** A grey mask frame (e.g. from a mask video, lossy or not) as a binary mask: foreground above mid-grey. */
export function thresholdMask(frame: { width: number; height: number; data: Uint8Array }): Mask {
  return { width: frame.width, height: frame.height, data: frame.data.map((q) => (q > 127 ? 1 : 0)) };
}
