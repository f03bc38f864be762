/**
 * Acoustic-shadow evidence: how much of the head lies in a dark band that runs along the beam to the far edge
 * of the image. A shadow behind a strong reflector darkens everything deeper along the beam, so on a ray from
 * the transducer it is a dark run that reaches the image's far end; dark fluid around a normal head is bounded
 * by tissue below it. The transducer is not known: beams are tried from a few apexes above the image (convex
 * probes) and straight down (linear probes), and the worst is kept.
 */

/** Grey level (0..1) under which a pixel counts as dark. */
export const SHADOW_DARK_LEVEL = 0.1;
/** Non-dark pixels a dark run may jump (speckle, an attenuated skull echo) before it ends. */
const RUN_GAP = 3;
/** Pixels between neighbouring beams at the head (a shadow is wider than a few pixels). */
const BEAM_SPACING = 2;
/** Candidate transducer apexes, as fractions of the frame: rows above the top edge, columns across it. */
const APEX_ROWS = [-0.3, -0.6, -1.0];
const APEX_COLUMNS = [0.3, 0.5, 0.7];

/** Walks one beam from its far end back to the transducer and adds its head pixels to the counts. */
class BeamCounter {
  covered = 0;
  total = 0;
  private running = true;
  private misses = 0;
  private pending = 0;

  constructor(private readonly level: number) {}

  /** The next pixel towards the transducer: its grey level and whether it lies in the head. */
  step(grey: number, head: boolean): void {
    // Exactly black is no image (overlay boxes, the region outside the fan): neither dark tissue nor a break.
    if (grey === 0) return;
    if (head) this.total += 1;
    if (!this.running) return;
    if (grey < this.level) {
      this.covered += this.pending + (head ? 1 : 0);
      this.pending = 0;
      this.misses = 0;
    } else {
      if (head) this.pending += 1;
      this.misses += 1;
      if (this.misses > RUN_GAP) this.running = false;
    }
  }

  /** Back to a fresh beam; the counts add up over beams. */
  next(): void {
    this.running = true;
    this.misses = 0;
    this.pending = 0;
  }
}

/**
 * Fraction (0..1) of the head's pixels, counted along the beams that cross it, that lie in a dark run reaching
 * the far edge of the image, for the worst of the candidate beam geometries. 0 without a head.
 *
 * @param grey grey levels 0..1, row-major `width x height`.
 * @param head per pixel: inside the head (the moment ellipse of the mask).
 * @example
 * const shadow = beamShadow(grey, segmentation.ellipse, 224, 224); // > its threshold: `acquisition`
 */
export function beamShadow(grey: Float32Array, head: Uint8Array, width: number, height: number, level = SHADOW_DARK_LEVEL): number {
  // Each row's leftmost and rightmost head pixel: the head's angular extent from any apex (the ellipse is convex).
  let headPixels = 0;
  let sumX = 0;
  let sumY = 0;
  const edges: number[] = [];
  let top = height;
  let left = width;
  let right = -1;
  for (let y = 0, i = 0; y < height; y++) {
    let first = -1;
    let last = -1;
    for (let x = 0; x < width; x++, i++) {
      if (head[i]) {
        headPixels += 1;
        sumX += x;
        sumY += y;
        if (first < 0) first = x;
        last = x;
      }
    }
    if (first >= 0) {
      edges.push(first, y, last, y);
      top = Math.min(top, y);
      left = Math.min(left, first);
      right = Math.max(right, last);
    }
  }
  if (headPixels === 0) return 0;
  const counter = new BeamCounter(level);
  let worst = 0;
  const keep = () => {
    if (counter.total > 0) worst = Math.max(worst, counter.covered / counter.total);
    counter.covered = 0;
    counter.total = 0;
  };
  // Beams are followed to a gap's length above the head's top row: no head pixel is left beyond it to count.
  const stop = Math.max(0, top - RUN_GAP - 1);
  // Straight down: a beam every BEAM_SPACING columns through the head, from the bottom row up.
  for (let x = left; x <= right; x += BEAM_SPACING) {
    counter.next();
    for (let y = height - 1; y >= stop; y--) counter.step(grey[y * width + x]!, head[y * width + x] === 1);
  }
  keep();
  // Fans from apexes above the frame: beams through the head BEAM_SPACING pixels apart at the head's centre.
  const centreX = sumX / headPixels;
  const centreY = sumY / headPixels;
  for (const row of APEX_ROWS) {
    for (const column of APEX_COLUMNS) {
      const apexY = row * height;
      const apexX = column * width;
      let lowest = Infinity;
      let highest = -Infinity;
      for (let e = 0; e < edges.length; e += 2) {
        const angle = Math.atan2(edges[e]! - apexX, edges[e + 1]! - apexY);
        if (angle < lowest) lowest = angle;
        if (angle > highest) highest = angle;
      }
      const spacing = BEAM_SPACING / Math.hypot(centreX - apexX, centreY - apexY);
      for (let angle = lowest; angle <= highest; angle += spacing) {
        counter.next();
        const dx = Math.sin(angle);
        const dy = Math.cos(angle);
        // The beam's last step inside the frame (dy > 0: it travels down), then back towards the apex.
        const sideExit = dx > 0 ? (width - 1 - apexX) / dx : dx < 0 ? -apexX / dx : Infinity;
        for (let d = Math.floor(Math.min((height - 1 - apexY) / dy, sideExit)); d >= 0; d--) {
          const x = Math.round(apexX + d * dx);
          const y = Math.round(apexY + d * dy);
          if (y < stop) break;
          if (x < 0 || x >= width) continue;
          counter.step(grey[y * width + x]!, head[y * width + x] === 1);
        }
      }
      keep();
    }
  }
  return worst;
}
