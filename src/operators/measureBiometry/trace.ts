/**
 * Head candidates of one logit map at model resolution: the connected foreground components (logit > 0),
 * each with its boundary as sub-pixel zero crossings of the logits, mapped to source pixels. Crossings on the
 * image border and against the black outside of the ultrasound sector are left out (they are where the image
 * ends, not where the skull is), and each crossing is weighted by how certain its position is.
 */
import type { Ellipse, WeightedPoints } from './ellipse.js';

/** One connected foreground component and its boundary. */
export interface HeadCandidate {
  /** Pixels at model resolution. */
  area: number;
  /** Boundary crossings in source pixels, weighted. */
  points: WeightedPoints;
  /** Mean peak brightness (0..1) of the source image across the boundary: the skull echo. */
  echo: number;
}

/** What the tracer needs to know about the frame. */
export interface TraceFrame {
  /** The source frame (grey, row-major) whose crop the model saw. */
  width: number;
  height: number;
  data: Uint8Array;
}

export interface TraceOptions {
  /** Components smaller than this many model pixels are not candidates. */
  minArea: number;
  /** Crossings within this many model pixels of the image border are left out. */
  borderMargin: number;
  /**
   * Standard deviation of the logit at a model pixel across the posterior samples; with the logit's slope it
   * gives the crossing's positional uncertainty `sd / slope` (pixels) and the weight `1 / (1 + (sd / slope)²)`.
   */
  logitSd: (pixel: number) => number;
}

/** At most this many crossings per component enter a fit (evenly thinned beyond). */
const MAX_POINTS = 400;
/** Source grey level at or below which a pixel is the black outside of the scan sector. */
const BLACK = 2;
/** Model pixels along the normal searched for the skull echo, each side of the boundary. */
const ECHO_REACH = 3;
/** The 4-neighbours' offsets. */
const DX = Int32Array.of(-1, 1, 0, 0);
const DY = Int32Array.of(0, 0, -1, 1);
/** The whole map. */
const FULL_BOX = { x0: 0, x1: Infinity, y0: 0, y1: Infinity };

/** Reusable scratch for tracing maps of one size (one per operator subscription). */
export class BoundaryTracer {
  private readonly labels: Int32Array;
  private readonly stack: Int32Array;
  /** Crossings of the map being traced (at most four per pixel). */
  private readonly xs: Float64Array;
  private readonly ys: Float64Array;
  private readonly ws: Float64Array;
  /** Per model row, the first and last column to scan. */
  private readonly columns: Int32Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.labels = new Int32Array(width * height);
    this.stack = new Int32Array(width * height);
    this.xs = new Float64Array(4 * width * height);
    this.ys = new Float64Array(4 * width * height);
    this.ws = new Float64Array(4 * width * height);
    this.columns = new Int32Array(2 * height);
  }

  /** The candidates of `values[offset .. offset + width * height)`, largest first. */
  candidates(values: Float32Array, offset: number, frame: TraceFrame, options: TraceOptions): HeadCandidate[] {
    const { width, height, labels, stack } = this;
    labels.fill(0);
    const areas: number[] = [0];
    // Flood fill of the foreground, 4-connected.
    for (let start = 0; start < width * height; start++) {
      if (labels[start] !== 0 || !(values[offset + start]! > 0)) continue;
      const label = areas.length;
      let area = 0;
      let top = 0;
      stack[top++] = start;
      labels[start] = label;
      while (top > 0) {
        const p = stack[--top]!;
        area += 1;
        const x = p % width;
        if (x > 0 && labels[p - 1] === 0 && values[offset + p - 1]! > 0) (labels[p - 1] = label), (stack[top++] = p - 1);
        if (x < width - 1 && labels[p + 1] === 0 && values[offset + p + 1]! > 0) (labels[p + 1] = label), (stack[top++] = p + 1);
        if (p >= width && labels[p - width] === 0 && values[offset + p - width]! > 0) (labels[p - width] = label), (stack[top++] = p - width);
        if (p < width * (height - 1) && labels[p + width] === 0 && values[offset + p + width]! > 0) (labels[p + width] = label), (stack[top++] = p + width);
      }
      areas.push(area);
    }
    const kept = areas.map((area, label) => (label > 0 && area >= options.minArea ? label : -1)).filter((label) => label > 0);
    return kept
      .sort((a, b) => areas[b]! - areas[a]!)
      .map((label) => ({ area: areas[label]!, ...this.crossings(values, offset, frame, options, FULL_BOX, label, true) }));
  }

  /**
   * The boundary crossings of `values` near a reference ellipse (frame pixels): those whose normalised radius
   * `((u / a)² + (v / b)²)^½` lies in `band`, whatever component they belong to. Only the reference's bounding box
   * (widened to the band) is scanned: no component labelling, so each posterior sample costs one pass over it.
   */
  crossingsNear(values: Float32Array, offset: number, frame: TraceFrame, options: TraceOptions, reference: Ellipse, band: readonly [number, number]): WeightedPoints {
    const { width, height } = this;
    const sx = frame.width / width;
    const sy = frame.height / height;
    const reach = reference.a * band[1];
    const box = {
      x0: Math.floor((reference.cx - reach + 0.5) / sx - 0.5),
      x1: Math.ceil((reference.cx + reach + 0.5) / sx - 0.5),
      y0: Math.floor((reference.cy - reach + 0.5) / sy - 0.5),
      y1: Math.ceil((reference.cy + reach + 0.5) / sy - 0.5),
    };
    const c = Math.cos(reference.angle);
    const s = Math.sin(reference.angle);
    const [low, high] = [band[0] ** 2, band[1] ** 2];
    const near = (x: number, y: number) => {
      const u = ((x - reference.cx) * c + (y - reference.cy) * s) / reference.a;
      const v = (-(x - reference.cx) * s + (y - reference.cy) * c) / reference.b;
      const r = u * u + v * v;
      return r >= low && r <= high;
    };
    // Per model row, the columns inside the outer ellipse of the band (the x extent of an ellipse at height y).
    const outerA = reference.a * band[1];
    const outerB = reference.b * band[1];
    const columns = this.columns;
    for (let my = 0; my < height; my++) {
      const dy = (my + 0.5) * sy - 0.5 - reference.cy;
      // x² (c²/A² + s²/B²) + 2 x dy c s (1/A² - 1/B²) + dy² (s²/A² + c²/B²) = 1
      const qa = (c * c) / outerA ** 2 + (s * s) / outerB ** 2;
      const qb = 2 * dy * c * s * (1 / outerA ** 2 - 1 / outerB ** 2);
      const qc = dy * dy * ((s * s) / outerA ** 2 + (c * c) / outerB ** 2) - 1;
      const disc = qb * qb - 4 * qa * qc;
      const root = Math.sqrt(Math.max(disc, 0));
      columns[2 * my] = disc < 0 ? 1 : Math.floor((reference.cx + (-qb - root) / (2 * qa) + 0.5) / sx - 0.5) - 1;
      columns[2 * my + 1] = disc < 0 ? 0 : Math.ceil((reference.cx + (-qb + root) / (2 * qa) + 0.5) / sx - 0.5) + 1;
    }
    return this.crossings(values, offset, frame, options, box, 0, false, near, columns).points;
  }

  /**
   * Sub-pixel zero crossings from a foreground pixel (`keepPixel`) to a background 4-neighbour inside `box` (model
   * pixels) and the border margin, in frame pixels, weighted; with `echo`, the mean skull echo along them.
   */
  private crossings(
    values: Float32Array,
    offset: number,
    frame: TraceFrame,
    options: TraceOptions,
    box: { x0: number; x1: number; y0: number; y1: number },
    label: number,
    withEcho: boolean,
    keepPoint?: (x: number, y: number) => boolean,
    columns?: Int32Array,
  ): { points: WeightedPoints; echo: number } {
    const { width, height, xs, ys, ws, labels } = this;
    const margin = options.borderMargin;
    const sx = frame.width / width;
    const sy = frame.height / height;
    const grey = (mx: number, my: number) => {
      const x = Math.min(frame.width - 1, Math.max(0, Math.round((mx + 0.5) * sx - 0.5)));
      const y = Math.min(frame.height - 1, Math.max(0, Math.round((my + 0.5) * sy - 0.5)));
      return frame.data[y * frame.width + x]!;
    };
    const x0 = Math.max(margin, box.x0);
    const x1 = Math.min(width - margin - 1, box.x1);
    const y0 = Math.max(margin, box.y0);
    const y1 = Math.min(height - margin - 1, box.y1);
    let total = 0;
    let echo = 0;
    for (let y = y0; y <= y1; y++) {
      const from = columns ? Math.max(x0, columns[2 * y]!) : x0;
      const to = columns ? Math.min(x1, columns[2 * y + 1]!) : x1;
      for (let x = from; x <= to; x++) {
        const p = y * width + x;
        const inside = values[offset + p]!;
        if (!(inside > 0) || (label !== 0 && labels[p] !== label)) continue;
        for (let d = 0; d < 4; d++) {
          const dx = DX[d]!;
          const dy = DY[d]!;
          const qx = x + dx;
          const qy = y + dy;
          if (qx < x0 || qy < y0 || qx > x1 || qy > y1) continue;
          const outside = values[offset + qy * width + qx]!;
          if (outside > 0) continue;
          const t = inside / (inside - outside);
          const px = (x + t * dx + 0.5) * sx - 0.5;
          const py = (y + t * dy + 0.5) * sy - 0.5;
          if (keepPoint && !keepPoint(px, py)) continue;
          // Against the black outside of the sector: the region's border, not the skull.
          if (grey(qx, qy) <= BLACK && grey(qx + 2 * dx, qy + 2 * dy) <= BLACK) continue;
          const positionSd = options.logitSd(p) / (inside - outside);
          if (total === xs.length) break;
          xs[total] = px;
          ys[total] = py;
          ws[total] = 1 / (1 + positionSd * positionSd);
          total += 1;
          if (withEcho) {
            let peak = 0;
            for (let step = -ECHO_REACH; step <= ECHO_REACH; step++) peak = Math.max(peak, grey(x + step * dx, y + step * dy));
            echo += peak;
          }
        }
      }
    }
    const stride = Math.max(1, total / MAX_POINTS);
    const n = Math.min(total, MAX_POINTS);
    const points: WeightedPoints = { x: new Float64Array(n), y: new Float64Array(n), weight: new Float64Array(n), n };
    for (let i = 0; i < n; i++) {
      const j = Math.floor(i * stride);
      points.x[i] = xs[j]!;
      points.y[i] = ys[j]!;
      points.weight[i] = ws[j]!;
    }
    return { points, echo: total ? echo / total / 255 : 0 };
  }
}
