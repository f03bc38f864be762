/**
 * Ultrasound-region detection: pure functions on a screen frame's pixels that find the ultrasound image among the
 * scanner's menus, text and graphics (see the `ultrasoundRegion` operator for how detections are weighed over time).
 */
import { ShapeError } from '../../runtime/errors.js';
import type { Frame, Region } from '../../runtime/types/frames.js';

/** Smallest region, as a fraction of the screen area, that counts as an ultrasound image, unless configured. */
export const DEFAULT_MIN_AREA_FRACTION = 0.02;

/** Side of the square blocks the image map is computed on, in screen pixels. */
const BLOCK = 8;
/** Standard deviation (grey levels) below which a block is flat: background, panels. */
const MIN_STD = 1;
/** A block with at least this range (grey levels) may be UI graphics: strokes on a flat background. */
const GRAPHICS_RANGE = 32;
/** ...and it is, when this fraction of its pixels lies in the bottom or top quarter of its range (two levels, few between). */
const GRAPHICS_EXTREME_FRACTION = 0.8;
/** Rows or columns at the edge of the found component with fewer image blocks are trimmed (thin protrusions). */
const MIN_EDGE_BLOCKS = 2;

/**
 * Whether the `BLOCK`-square block at (bx, by) looks like ultrasound image: not flat (background, panels) and not
 * two-level (UI text, lines, calipers: strokes on a flat background). Speckle, and even dark fluid, has a spread of
 * grey levels.
 */
function isImageBlock(data: Uint8Array, width: number, bx: number, by: number): boolean {
  const n = BLOCK * BLOCK;
  const origin = by * BLOCK * width + bx * BLOCK;
  let min = 255;
  let max = 0;
  let sum = 0;
  let sumSq = 0;
  for (let row = origin, last = origin + BLOCK * width; row < last; row += width) {
    for (let i = row, end = row + BLOCK; i < end; i++) {
      const v = data[i] as number;
      sum += v;
      sumSq += v * v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (sumSq * n - sum * sum < MIN_STD * MIN_STD * n * n) return false;
  if (max - min < GRAPHICS_RANGE) return true;
  const low = min + (max - min) / 4;
  const high = max - (max - min) / 4;
  let extreme = 0;
  for (let row = origin, last = origin + BLOCK * width; row < last; row += width) {
    for (let i = row, end = row + BLOCK; i < end; i++) {
      const v = data[i] as number;
      if (v <= low || v >= high) extreme++;
    }
  }
  return extreme < GRAPHICS_EXTREME_FRACTION * n;
}

/** Whether `count` pixels starting at `start`, `step` apart, are all about the same grey (no image on that line). */
function isFlatLine(data: Uint8Array, start: number, step: number, count: number): boolean {
  let sum = 0;
  let sumSq = 0;
  for (let k = 0, i = start; k < count; k++, i += step) {
    const v = data[i] as number;
    sum += v;
    sumSq += v * v;
  }
  return sumSq * count - sum * sum < MIN_STD * MIN_STD * count * count;
}

/** Scratch buffers of one detector, reused frame after frame (one screen size). */
export class RegionDetector {
  readonly gridWidth: number;
  readonly gridHeight: number;
  private readonly image: Uint8Array;
  private readonly grown: Uint8Array;
  private readonly label: Int32Array;
  private readonly queue: Int32Array;

  constructor(readonly width: number, readonly height: number, private readonly minAreaFraction: number) {
    this.gridWidth = Math.floor(width / BLOCK);
    this.gridHeight = Math.floor(height / BLOCK);
    const cells = this.gridWidth * this.gridHeight;
    this.image = new Uint8Array(cells);
    this.grown = new Uint8Array(cells);
    this.label = new Int32Array(cells);
    this.queue = new Int32Array(cells);
  }

  /**
   * The bounding box of the largest connected area of image blocks (after bridging one-block gaps), trimmed of
   * thin protrusions and refined to pixels; `null` when it is smaller than `minAreaFraction` of the screen.
   */
  detect(frame: Frame): Region | null {
    const { gridWidth: gw, gridHeight: gh, image, grown, label, queue } = this;
    for (let by = 0; by < gh; by++) for (let bx = 0; bx < gw; bx++) image[by * gw + bx] = isImageBlock(frame.data, frame.width, bx, by) ? 1 : 0;

    // Bridge gaps of one block (calipers, text over the image) by growing the map by one block.
    grown.fill(0);
    for (let by = 0; by < gh; by++) {
      for (let bx = 0; bx < gw; bx++) {
        if (!image[by * gw + bx]) continue;
        for (let y = Math.max(0, by - 1); y <= Math.min(gh - 1, by + 1); y++) {
          for (let x = Math.max(0, bx - 1); x <= Math.min(gw - 1, bx + 1); x++) grown[y * gw + x] = 1;
        }
      }
    }

    // Largest 4-connected component of the grown map, counted in image blocks.
    label.fill(0);
    let best = 0;
    let bestCount = 0;
    let next = 0;
    for (let start = 0; start < grown.length; start++) {
      if (!grown[start] || label[start]) continue;
      next += 1;
      let head = 0;
      let tail = 0;
      let count = 0;
      queue[tail++] = start;
      label[start] = next;
      while (head < tail) {
        const cell = queue[head++] as number;
        count += image[cell] as number;
        const x = cell % gw;
        if (x > 0 && grown[cell - 1] && !label[cell - 1]) (label[cell - 1] = next), (queue[tail++] = cell - 1);
        if (x < gw - 1 && grown[cell + 1] && !label[cell + 1]) (label[cell + 1] = next), (queue[tail++] = cell + 1);
        if (cell >= gw && grown[cell - gw] && !label[cell - gw]) (label[cell - gw] = next), (queue[tail++] = cell - gw);
        if (cell + gw < grown.length && grown[cell + gw] && !label[cell + gw]) (label[cell + gw] = next), (queue[tail++] = cell + gw);
      }
      if (count > bestCount) {
        bestCount = count;
        best = next;
      }
    }
    if (bestCount * BLOCK * BLOCK < this.minAreaFraction * this.width * this.height) return null;

    // Row and column counts of the component's image blocks, then the box without thin edges.
    const rows = new Int32Array(gh);
    const cols = new Int32Array(gw);
    for (let cell = 0; cell < label.length; cell++) {
      if (label[cell] !== best || !image[cell]) continue;
      rows[Math.floor(cell / gw)]! += 1;
      cols[cell % gw]! += 1;
    }
    const [by0, by1] = trimmedSpan(rows);
    const [bx0, bx1] = trimmedSpan(cols);
    return refineToPixels(frame, { x: bx0 * BLOCK, y: by0 * BLOCK, width: (bx1 - bx0 + 1) * BLOCK, height: (by1 - by0 + 1) * BLOCK });
  }

  /** The states of the blocks one inside and one outside the border of `region`, to tell a layout change cheaply. */
  borderBlocks(frame: Frame, region: Region): Uint8Array {
    const cells = ringCells(region, this.gridWidth, this.gridHeight);
    const states = new Uint8Array(cells.length);
    cells.forEach((cell, i) => (states[i] = isImageBlock(frame.data, frame.width, cell % this.gridWidth, Math.floor(cell / this.gridWidth)) ? 1 : 0));
    return states;
  }
}

/** Grid cells of the rings of blocks just inside and just outside the border of `region`. */
function ringCells(region: Region, gridWidth: number, gridHeight: number): number[] {
  const bx0 = Math.floor(region.x / BLOCK);
  const by0 = Math.floor(region.y / BLOCK);
  const bx1 = Math.floor((region.x + region.width - 1) / BLOCK);
  const by1 = Math.floor((region.y + region.height - 1) / BLOCK);
  const cells = new Set<number>();
  const add = (bx: number, by: number): void => {
    if (bx >= 0 && by >= 0 && bx < gridWidth && by < gridHeight) cells.add(by * gridWidth + bx);
  };
  for (const inset of [1, -1]) {
    const [x0, y0, x1, y1] = [bx0 + inset, by0 + inset, bx1 - inset, by1 - inset];
    for (let bx = x0; bx <= x1; bx++) (add(bx, y0), add(bx, y1));
    for (let by = y0; by <= y1; by++) (add(x0, by), add(x1, by));
  }
  return [...cells];
}

/** First and last index whose count reaches `MIN_EDGE_BLOCKS`. */
function trimmedSpan(counts: Int32Array): [number, number] {
  let first = 0;
  while (first < counts.length - 1 && (counts[first] as number) < MIN_EDGE_BLOCKS) first++;
  let last = counts.length - 1;
  while (last > first && (counts[last] as number) < MIN_EDGE_BLOCKS) last--;
  return [first, last];
}

/**
 * Moves each side of a block-aligned box to the pixel: inwards past flat lines (less than a block); the left and
 * right sides also outwards over lines that are not flat (up to two blocks), since a sector's lower corners are
 * slivers too thin to make image blocks. Top and bottom do not grow: text is often written just above the image.
 */
function refineToPixels(frame: Frame, box: Region): Region {
  const { data, width } = frame;
  let top = box.y;
  let bottom = box.y + box.height - 1;
  let left = box.x;
  let right = box.x + box.width - 1;
  const rowFlat = (y: number): boolean => isFlatLine(data, y * width + left, 1, right - left + 1);
  const colFlat = (x: number): boolean => isFlatLine(data, top * width + x, width, bottom - top + 1);
  const settle = (edge: number, inward: number, flat: (line: number) => boolean, grow: boolean): number => {
    if (flat(edge)) {
      for (let k = 1; k < BLOCK && flat(edge + inward); k++) edge += inward;
      return edge + inward;
    }
    if (grow) for (let k = 0; k < 2 * BLOCK && edge - inward >= 0 && edge - inward < width && !flat(edge - inward); k++) edge -= inward;
    return edge;
  };
  top = settle(top, 1, rowFlat, false);
  bottom = settle(bottom, -1, rowFlat, false);
  left = settle(left, 1, colFlat, true);
  right = settle(right, -1, colFlat, true);
  // Every line flat (a block whose rows are each uniform, e.g. a vertical gradient): keep the block box.
  if (top > bottom || left > right) return box;
  return { x: left, y: top, width: right - left + 1, height: bottom - top + 1 };
}

/**
 * Finds the ultrasound image in one scanner screen (a sector or a rectangle among menus, text and graphics):
 * the bounding box of the largest connected area of image-like blocks (see {@link ultrasoundRegion}), refined to the
 * pixel. `null` when there is none as large as `minAreaFraction` of the screen.
 *
 * @example
 * const region = detectUltrasoundRegion(screenFrame); // e.g. { x: 520, y: 120, width: 880, height: 600 }
 */
export function detectUltrasoundRegion(frame: Frame, options: { minAreaFraction?: number } = {}): Region | null {
  checkFrame(frame);
  return new RegionDetector(frame.width, frame.height, options.minAreaFraction ?? DEFAULT_MIN_AREA_FRACTION).detect(frame);
}

/** Throws a `ShapeError` for a frame whose pixel count is not `width * height`. */
export function checkFrame(frame: Frame): void {
  if (frame.data.length !== frame.width * frame.height) {
    throw new ShapeError(`frame ${frame.index} has ${frame.data.length} pixels, expected ${frame.width}x${frame.height}`, [frame.width, frame.height], [frame.data.length]);
  }
}
