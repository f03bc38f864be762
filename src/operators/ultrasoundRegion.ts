import { Observable, type OperatorFunction } from 'rxjs';
import { LfusionError, ShapeError } from '../runtime/errors.js';
import type { Frame, Region, ScreenSize } from '../runtime/types.js';

export type { Region } from '../runtime/types.js';

/** A frame cut to its ultrasound region, with what it takes to map results back to the screen. */
export interface RegionFrame {
  /** The cropped pixels; `index`, `pts` and `captureTime` are the screen frame's. */
  frame: Frame;
  /** Where the crop lies on the screen. */
  region: Region;
  /** `manual`: the configured region; `detected`: found in the image; `full-frame`: nothing found yet, nothing cut. */
  origin: 'manual' | 'detected' | 'full-frame';
  screen: ScreenSize;
}

export interface UltrasoundRegionOptions {
  /** Manual override: always crop this region, never detect (e.g. from a vendor's layout file). */
  region?: Region;
  /** Detect again every this many frames even when the layout looks unchanged. Default 30. */
  redetectEvery?: number;
  /**
   * A changed region is adopted only when this many consecutive detections agree on it (IoU >= `stableIou`), so a
   * single odd frame (probe lifted, a menu opened over the image) does not move the crop. Default 2.
   */
  confirmations?: number;
  /** A detection this close to the current region (intersection over union) keeps the current one: no jitter. Default 0.9. */
  stableIou?: number;
  /** Smallest region, as a fraction of the screen area, that counts as an ultrasound image. Default 0.02. */
  minAreaFraction?: number;
}

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
/** A layout check that finds more than this fraction of the blocks around the region's border changed detects again. */
const LAYOUT_CHANGE_FRACTION = 0.2;

const DEFAULTS = { redetectEvery: 30, confirmations: 2, stableIou: 0.9, minAreaFraction: 0.02 };

/** Intersection over union of two rectangles; 0 when they do not meet. */
export function regionIou(a: Region, b: Region): number {
  const w = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const h = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = w * h;
  return inter === 0 ? 0 : inter / (a.width * a.height + b.width * b.height - inter);
}

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
class RegionDetector {
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
export function detectUltrasoundRegion(frame: Frame, options: Pick<UltrasoundRegionOptions, 'minAreaFraction'> = {}): Region | null {
  checkFrame(frame);
  return new RegionDetector(frame.width, frame.height, options.minAreaFraction ?? DEFAULTS.minAreaFraction).detect(frame);
}

function checkFrame(frame: Frame): void {
  if (frame.data.length !== frame.width * frame.height) {
    throw new ShapeError(`frame ${frame.index} has ${frame.data.length} pixels, expected ${frame.width}x${frame.height}`, [frame.width, frame.height], [frame.data.length]);
  }
}

/** Copies `region` out of `frame`, keeping the frame's index and times. */
function cropFrame(frame: Frame, region: Region): Frame {
  const data = new Uint8Array(region.width * region.height);
  for (let y = 0; y < region.height; y++) {
    const start = (region.y + y) * frame.width + region.x;
    data.set(frame.data.subarray(start, start + region.width), y * region.width);
  }
  return { index: frame.index, pts: frame.pts, captureTime: frame.captureTime, width: region.width, height: region.height, data };
}

/**
 * Cuts each scanner screen to its ultrasound image, so that the model sees the image and not the menus, text and
 * graphics around it (HDMI capture gives the whole screen). The region is detected automatically, or given.
 *
 * Detection: the screen is cut into 8x8 blocks; a block is image-like when it is neither flat (background, panels)
 * nor two-level (text, lines, calipers: strokes on a flat background). The largest connected area of such blocks
 * (one-block gaps bridged, thin protrusions trimmed) gives the box, refined to the pixel. About one full pass over
 * the screen: see `bench/ultrasoundRegion.bench.ts` for its cost.
 *
 * Re-detection: on every frame a cheap check compares the blocks along the region's border with those seen when it
 * was adopted; when many changed (zoom, depth or layout change), or every `redetectEvery` frames, it detects again.
 * A new region replaces the current one only if it differs (IoU below `stableIou`) and `confirmations` detections
 * in a row agree on it: no jitter from frame to frame, and a probe lifted off for a moment does not move the crop.
 * Until a region is found, frames pass whole (`origin: 'full-frame'`); a frame of another size starts afresh.
 *
 * @example
 * fromVideo('/dev/video0', { v4l2: { inputFormat: 'mjpeg', videoSize: '1920x1080' } })
 *   .pipe(ultrasoundRegion())
 *   .subscribe(({ frame, region }) => console.log(frame.index, region));
 *
 * @param options See {@link UltrasoundRegionOptions}; invalid values throw an `INVALID_OPTION` error here, a manual
 * region outside the screen errors the stream.
 * @return One {@link RegionFrame} per screen frame, in order.
 */
export function ultrasoundRegion(options: UltrasoundRegionOptions = {}): OperatorFunction<Frame, RegionFrame> {
  const settings = { ...DEFAULTS, ...options };
  validate(settings);
  const manual = options.region;
  return (source) =>
    new Observable<RegionFrame>((subscriber) => {
      let detector: RegionDetector | undefined;
      let current: Region | null = null;
      /** The border blocks as they were when `current` was adopted. */
      let border: Uint8Array = new Uint8Array(0);
      let candidate: { region: Region; agreements: number } | null = null;
      let sinceDetection = 0;

      const adopt = (frame: Frame, region: Region): void => {
        current = region;
        candidate = null;
        border = (detector as RegionDetector).borderBlocks(frame, region);
      };

      const layoutChanged = (frame: Frame, region: Region): boolean => {
        const now = (detector as RegionDetector).borderBlocks(frame, region);
        let changed = 0;
        now.forEach((state, i) => (changed += state === border[i] ? 0 : 1));
        return changed > LAYOUT_CHANGE_FRACTION * now.length;
      };

      /** Weighs a detection against the current region and the pending candidate. */
      const consider = (frame: Frame, found: Region | null): void => {
        if (!found || (current && regionIou(found, current) >= settings.stableIou)) {
          // Nothing new (or no image at all for now): what the border looks like now is the new normal.
          candidate = null;
          if (current) border = (detector as RegionDetector).borderBlocks(frame, current);
          return;
        }
        if (!current) {
          adopt(frame, found);
          return;
        }
        candidate = candidate && regionIou(found, candidate.region) >= settings.stableIou ? { region: found, agreements: candidate.agreements + 1 } : { region: found, agreements: 1 };
        if (candidate.agreements >= settings.confirmations) adopt(frame, candidate.region);
      };

      const locate = (frame: Frame): RegionFrame => {
        checkFrame(frame);
        const screen = { width: frame.width, height: frame.height };
        if (manual) {
          if (manual.x + manual.width > frame.width || manual.y + manual.height > frame.height) {
            throw new LfusionError('INVALID_OPTION', `region ${JSON.stringify(manual)} does not fit in a ${frame.width}x${frame.height} frame`, { region: manual, screen });
          }
          return { frame: cropFrame(frame, manual), region: manual, origin: 'manual', screen };
        }
        if (detector?.width !== frame.width || detector.height !== frame.height) {
          detector = new RegionDetector(frame.width, frame.height, settings.minAreaFraction);
          current = null;
          candidate = null;
        }
        sinceDetection += 1;
        if (!current || candidate || sinceDetection >= settings.redetectEvery || layoutChanged(frame, current)) {
          sinceDetection = 0;
          consider(frame, detector.detect(frame));
        }
        const region: Region | null = current;
        return region
          ? { frame: cropFrame(frame, region), region, origin: 'detected', screen }
          : { frame, region: { x: 0, y: 0, ...screen }, origin: 'full-frame', screen };
      };

      return source.subscribe({
        next: (frame) => {
          let located: RegionFrame;
          try {
            located = locate(frame);
          } catch (error) {
            subscriber.error(error);
            return;
          }
          subscriber.next(located);
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}

function validate(settings: Required<Omit<UltrasoundRegionOptions, 'region'>> & Pick<UltrasoundRegionOptions, 'region'>): void {
  const fail = (name: string, rule: string, value: unknown): never => {
    throw new LfusionError('INVALID_OPTION', `${name} must be ${rule}, got ${JSON.stringify(value)}`, { [name]: value });
  };
  const { region } = settings;
  if (region) {
    const whole = [region.x, region.y, region.width, region.height].every(Number.isInteger);
    if (!whole || region.x < 0 || region.y < 0 || region.width < 1 || region.height < 1) fail('region', 'whole pixels inside the screen, width and height >= 1', region);
  }
  if (!(Number.isInteger(settings.redetectEvery) && settings.redetectEvery >= 1)) fail('redetectEvery', 'a whole number >= 1', settings.redetectEvery);
  if (!(Number.isInteger(settings.confirmations) && settings.confirmations >= 1)) fail('confirmations', 'a whole number >= 1', settings.confirmations);
  if (!(settings.stableIou > 0 && settings.stableIou <= 1)) fail('stableIou', 'in (0, 1]', settings.stableIou);
  if (!(settings.minAreaFraction > 0 && settings.minAreaFraction <= 1)) fail('minAreaFraction', 'in (0, 1]', settings.minAreaFraction);
}

// ---------------------------------------------------------------------------------------------
// Back to the screen: results computed on the crop (at any resolution, e.g. a 224x224 mask) mapped onto the screen.
// ---------------------------------------------------------------------------------------------

/**
 * The affine map from a `plane`'s coordinates (continuous: pixel `i` covers `[i, i + 1)`) over the cropped region
 * to screen coordinates: `screenX = offsetX + x * scaleX`, `screenY = offsetY + y * scaleY`. A canvas draws a plane
 * in place with `setTransform(scaleX, 0, 0, scaleY, offsetX, offsetY)`.
 */
export function regionTransform(region: Region, plane: { width: number; height: number }): { scaleX: number; scaleY: number; offsetX: number; offsetY: number } {
  return { scaleX: region.width / plane.width, scaleY: region.height / plane.height, offsetX: region.x, offsetY: region.y };
}

/**
 * Maps a point from a plane over the crop (e.g. a contour vertex on the 224x224 mask) to the screen.
 *
 * @example
 * const onScreen = toScreenPoint({ x: 112, y: 112 }, region, { width: 224, height: 224 }); // the crop's centre
 */
export function toScreenPoint(point: { x: number; y: number }, region: Region, plane: { width: number; height: number }): { x: number; y: number } {
  const t = regionTransform(region, plane);
  return { x: t.offsetX + point.x * t.scaleX, y: t.offsetY + point.y * t.scaleY };
}

/**
 * Resamples a plane over the crop (a mask or a quantised map) onto the whole screen, nearest neighbour by pixel
 * centres; screen pixels outside the region are `outside`.
 *
 * @example
 * const screenMask = planeToScreen(maskPlane, region, { width: 1920, height: 1080 });
 */
export function planeToScreen(plane: { width: number; height: number; data: Uint8Array }, region: Region, screen: { width: number; height: number }, outside = 0): Uint8Array {
  if (plane.data.length !== plane.width * plane.height) {
    throw new ShapeError(`plane has ${plane.data.length} values, expected ${plane.width}x${plane.height}`, [plane.width, plane.height], [plane.data.length]);
  }
  const t = regionTransform(region, plane);
  const out = new Uint8Array(screen.width * screen.height).fill(outside);
  const x0 = Math.max(0, region.x);
  const y0 = Math.max(0, region.y);
  const x1 = Math.min(screen.width, region.x + region.width);
  const y1 = Math.min(screen.height, region.y + region.height);
  const columns = new Int32Array(x1 - x0);
  for (let x = x0; x < x1; x++) columns[x - x0] = Math.min(plane.width - 1, Math.floor((x + 0.5 - t.offsetX) / t.scaleX));
  for (let y = y0; y < y1; y++) {
    const row = Math.min(plane.height - 1, Math.floor((y + 0.5 - t.offsetY) / t.scaleY)) * plane.width;
    for (let x = x0; x < x1; x++) out[y * screen.width + x] = plane.data[row + (columns[x - x0] as number)] as number;
  }
  return out;
}
