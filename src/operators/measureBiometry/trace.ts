/**
 * Head candidates of one logit map at model resolution: the connected foreground components (logit > 0),
 * each with its boundary as sub-pixel zero crossings of the logits, mapped to source pixels. Crossings on the
 * image border and against the black outside of the ultrasound sector are left out (they are where the image
 * ends, not where the skull is), and each crossing is weighted by how certain its position is.
 */
import type { WeightedPoints } from './ellipse.js';

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
const MAX_POINTS = 600;
/** Source grey level at or below which a pixel is the black outside of the scan sector. */
const BLACK = 2;
/** Model pixels along the normal searched for the skull echo, each side of the boundary. */
const ECHO_REACH = 3;

/** Reusable scratch for tracing maps of one size (one per operator subscription). */
export class BoundaryTracer {
  private readonly labels: Int32Array;
  private readonly stack: Int32Array;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.labels = new Int32Array(width * height);
    this.stack = new Int32Array(width * height);
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
    return kept.sort((a, b) => areas[b]! - areas[a]!).map((label) => this.boundaryOf(label, areas[label]!, values, offset, frame, options));
  }

  private boundaryOf(label: number, area: number, values: Float32Array, offset: number, frame: TraceFrame, options: TraceOptions): HeadCandidate {
    const { width, height, labels } = this;
    const margin = options.borderMargin;
    const sx = frame.width / width;
    const sy = frame.height / height;
    const grey = (mx: number, my: number) => {
      const x = Math.min(frame.width - 1, Math.max(0, Math.round((mx + 0.5) * sx - 0.5)));
      const y = Math.min(frame.height - 1, Math.max(0, Math.round((my + 0.5) * sy - 0.5)));
      return frame.data[y * frame.width + x]!;
    };
    const xs: number[] = [];
    const ys: number[] = [];
    const ws: number[] = [];
    let echo = 0;
    for (let y = margin; y < height - margin; y++) {
      for (let x = margin; x < width - margin; x++) {
        const p = y * width + x;
        if (labels[p] !== label) continue;
        const inside = values[offset + p]!;
        for (let d = 0; d < 4; d++) {
          const dx = d === 0 ? -1 : d === 1 ? 1 : 0;
          const dy = d === 2 ? -1 : d === 3 ? 1 : 0;
          const qx = x + dx;
          const qy = y + dy;
          if (qx < margin || qy < margin || qx >= width - margin || qy >= height - margin) continue;
          const outside = values[offset + qy * width + qx]!;
          if (outside > 0) continue;
          // Against the black outside of the sector: the region's border, not the skull.
          if (grey(qx, qy) <= BLACK && grey(qx + 2 * dx, qy + 2 * dy) <= BLACK) continue;
          const t = inside / (inside - outside);
          const slope = inside - outside;
          const positionSd = options.logitSd(p) / slope;
          xs.push((x + t * dx + 0.5) * sx - 0.5);
          ys.push((y + t * dy + 0.5) * sy - 0.5);
          ws.push(1 / (1 + positionSd * positionSd));
          let peak = 0;
          for (let s = -ECHO_REACH; s <= ECHO_REACH; s++) peak = Math.max(peak, grey(x + s * dx, y + s * dy));
          echo += peak;
        }
      }
    }
    const total = xs.length;
    const stride = Math.max(1, total / MAX_POINTS);
    const n = Math.min(total, MAX_POINTS);
    const points: WeightedPoints = { x: new Float64Array(n), y: new Float64Array(n), weight: new Float64Array(n), n };
    for (let i = 0; i < n; i++) {
      const j = Math.floor(i * stride);
      points.x[i] = xs[j]!;
      points.y[i] = ys[j]!;
      points.weight[i] = ws[j]!;
    }
    return { area, points, echo: total ? echo / total / 255 : 0 };
  }
}
