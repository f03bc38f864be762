/**
 * Scanner-like screens for testing region detection: an ultrasound image placed inside a UI with a menu bar,
 * text panels, thumbnails, a grey bar, depth ticks, a focus marker and calipers, like a scanner's HDMI output.
 */
import type { Region as Rect } from '../../src/operators/ultrasoundRegion.js';
import { Random } from '../../src/runtime/random.js';
import type { Frame } from '../../src/runtime/types/frames.js';

export interface ScreenLayout {
  /** Where the scan goes; the scan must already have this size. */
  place: Rect;
  /** Cut the scan to a sector (fan) with its apex above the image, as a curved probe shows it. */
  fan?: boolean;
  width?: number;
  height?: number;
  /** Seed of the text and the thumbnails' placement. */
  seed?: number;
  /** Video levels 16-235 instead of 0-255, as from a capture card or scanner set to limited range. */
  limitedRange?: boolean;
}

class Canvas {
  readonly data: Uint8Array;
  constructor(readonly width: number, readonly height: number, background: number) {
    this.data = new Uint8Array(width * height).fill(background);
  }

  set(x: number, y: number, value: number): void {
    if (x >= 0 && y >= 0 && x < this.width && y < this.height) this.data[y * this.width + x] = value;
  }

  fill(r: Rect, value: number): void {
    for (let y = r.y; y < r.y + r.height; y++) for (let x = r.x; x < r.x + r.width; x++) this.set(x, y, value);
  }

  /** A line of `count` random 5x7 glyphs, drawn at `scale`, like UI text. */
  text(x: number, y: number, count: number, value: number, rng: Random, scale = 2): void {
    for (let c = 0; c < count; c++) {
      if (rng.nextFloat() < 0.15) continue; // a space
      for (let gy = 0; gy < 7; gy++) {
        for (let gx = 0; gx < 5; gx++) {
          if (rng.nextFloat() < 0.45) this.fill({ x: x + (c * 6 + gx) * scale, y: y + gy * scale, width: scale, height: scale }, value);
        }
      }
    }
  }

  /** Copies `image` (its own size) at (x, y), only where `keep` says so. */
  paste(image: Frame, x: number, y: number, keep: (ix: number, iy: number) => boolean = () => true): void {
    for (let iy = 0; iy < image.height; iy++) {
      for (let ix = 0; ix < image.width; ix++) if (keep(ix, iy)) this.set(x + ix, y + iy, image.data[iy * image.width + ix] as number);
    }
  }

  cross(cx: number, cy: number, value: number): void {
    for (let d = -6; d <= 6; d++) {
      this.set(cx + d, cy, value);
      this.set(cx, cy + d, value);
    }
  }
}

/** Nearest-neighbour shrink, for thumbnails. */
function shrink(image: Frame, width: number, height: number): Frame {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data[y * width + x] = image.data[Math.floor((y * image.height) / height) * image.width + Math.floor((x * image.width) / width)] as number;
  }
  return { ...image, width, height, data };
}

function overlaps(a: Rect, b: Rect, margin: number): boolean {
  return a.x < b.x + b.width + margin && b.x < a.x + a.width + margin && a.y < b.y + b.height + margin && b.y < a.y + a.height + margin;
}

/**
 * Composes a screen around `scan`. Returns the frame and the true image region: the placed rectangle, or the
 * bounding box of the sector when `fan` is set.
 */
export function scannerScreen(scan: Frame, layout: ScreenLayout): { frame: Frame; truth: Rect } {
  const { place } = layout;
  if (scan.width !== place.width || scan.height !== place.height) throw new Error(`scan is ${scan.width}x${scan.height}, place is ${place.width}x${place.height}`);
  const width = layout.width ?? 1920;
  const height = layout.height ?? 1080;
  const rng = new Random(layout.seed ?? 1);
  const screen = new Canvas(width, height, 0);

  // Menu bar with two lines of text, a status bar, a parameter panel on the left.
  screen.fill({ x: 0, y: 0, width, height: 64 }, 38);
  for (const y of [10, 36]) for (let x = 16; x < width - 200; x += 260) screen.text(x, y, 14, 230, rng);
  screen.fill({ x: 0, y: height - 24, width, height: 24 }, 30);
  screen.text(20, height - 20, 40, 200, rng);
  for (let y = 100; y < height - 120; y += 30) {
    const line = { x: 20, y, width: 12 * 18, height: 14 };
    if (!overlaps(line, place, 12)) screen.text(line.x, line.y, 6 + Math.floor(rng.nextFloat() * 12), 190, rng);
  }

  // Thumbnails of earlier images wherever they do not touch the live image.
  for (const spot of [{ x: width - 250, y: 100 }, { x: width - 250, y: 280 }, { x: 20, y: height - 170 }]) {
    const thumb = { ...spot, width: 200, height: 135 };
    if (!overlaps(thumb, place, 16)) screen.paste(shrink(scan, thumb.width, thumb.height), thumb.x, thumb.y);
  }

  // The image itself, cut to a sector if asked.
  const apexX = place.width / 2;
  const apexY = -0.3 * place.height;
  const inner = 0.3 * place.height;
  const outer = 1.3 * place.height;
  const halfAngle = Math.atan2(place.width / 2, outer) * 0.92;
  const inFan = (ix: number, iy: number): boolean => {
    const dx = ix + 0.5 - apexX;
    const dy = iy + 0.5 - apexY;
    const r = Math.hypot(dx, dy);
    return r >= inner && r <= outer && Math.abs(Math.atan2(dx, dy)) <= halfAngle;
  };
  const keep = layout.fan ? inFan : () => true;
  screen.paste(scan, place.x, place.y, keep);
  const truth = contentBox(scan, place, keep);

  // Graphics around and on the image: grey bar, depth ticks with labels, focus marker, calipers, a result line.
  const right = place.x + place.width;
  for (let y = 0; y < 200; y++) for (let x = 0; x < 14; x++) screen.set(right + 40 + x, place.y + 10 + y, 255 - Math.round((y * 255) / 199));
  for (let y = place.y + 20; y < place.y + place.height; y += 50) {
    screen.fill({ x: right + 6, y, width: 8, height: 2 }, 210);
    screen.text(right + 18, y - 6, 2, 210, rng, 1);
  }
  for (let d = 0; d < 8; d++) screen.fill({ x: place.x - 20 + d, y: place.y + Math.round(place.height * 0.4) - d, width: 1, height: 2 * d + 1 }, 220);
  const a = { x: place.x + Math.round(place.width * 0.3), y: place.y + Math.round(place.height * 0.55) };
  const b = { x: place.x + Math.round(place.width * 0.7), y: place.y + Math.round(place.height * 0.5) };
  screen.cross(a.x, a.y, 255);
  screen.cross(b.x, b.y, 255);
  for (let t = 0; t <= 1; t += 0.01) if (Math.round(t * 100) % 4 < 2) screen.set(Math.round(a.x + (b.x - a.x) * t), Math.round(a.y + (b.y - a.y) * t), 255);
  screen.text(place.x + 12, place.y + 12, 10, 240, rng);

  if (layout.limitedRange) screen.data.forEach((v, i) => (screen.data[i] = 16 + Math.round((v * 219) / 255)));
  return { frame: { index: scan.index, pts: scan.pts, captureTime: scan.captureTime, width, height, data: screen.data }, truth };
}

/**
 * The true image region: the box of the rows and columns of the placed (and cut) scan with at least 8 pixels
 * brighter than 3 (the black outside HC18 sectors is 0 to 3), in runs of at least 16 lines. A scan is not image to its borders: HC18 scans are cut from a
 * sector, with black corners, black rectangles where annotations were erased, and a thin depth bar at the left edge
 * that is scanner graphics, not image.
 */
function contentBox(scan: Frame, place: Rect, keep: (ix: number, iy: number) => boolean): Rect {
  const RUN = 16;
  const rows = new Int32Array(scan.height);
  const cols = new Int32Array(scan.width);
  for (let iy = 0; iy < scan.height; iy++) {
    for (let ix = 0; ix < scan.width; ix++) {
      if (keep(ix, iy) && (scan.data[iy * scan.width + ix] as number) > 3) {
        rows[iy]! += 1;
        cols[ix]! += 1;
      }
    }
  }
  const span = (counts: Int32Array): [number, number] => {
    const runFrom = (i: number, step: number): boolean => {
      for (let k = 0; k < RUN; k++) if ((counts[i + k * step] ?? 0) < 8) return false;
      return true;
    };
    let first = 0;
    while (first < counts.length && !runFrom(first, 1)) first++;
    let last = counts.length - 1;
    while (last >= first && !runFrom(last, -1)) last--;
    return [first, last];
  };
  const [x0, x1] = span(cols);
  const [y0, y1] = span(rows);
  return { x: place.x + x0, y: place.y + y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}
