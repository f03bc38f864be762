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
/** Model pixels between the points where a ray samples the logits. */
const RAY_STEP = 1;
/** Model pixels along the normal searched for the skull echo, each side of the boundary. */
const ECHO_REACH = 3;

/** A bounding box in model pixels, inclusive. */
interface Box {
  x0: number;
  x1: number;
  y0: number;
  y1: number;
}

/** Rays from a reference head's centre and their sample points (model pixels): see {@link BoundaryTracer.planRays}. */
export interface RayPlan {
  rays: number;
  reference: Ellipse;
  band: readonly [number, number];
  /** The reference's centre in model pixels, and frame pixels per model pixel. */
  ox: number;
  oy: number;
  sx: number;
  sy: number;
  /** Per ray: its first point, its number of points, its direction (model pixels per unit of normalised radius), its step in normalised radius. */
  first: Int32Array;
  count: Int32Array;
  dx: Float64Array;
  dy: Float64Array;
  step: Float64Array;
  /** Per point: the top-left model pixel of its bilinear cell (-1 within the border margin) and its fractions across the cell. */
  pixel: Int32Array;
  fx: Float32Array;
  fy: Float32Array;
}

function emptyPlan(rays: number): RayPlan {
  const reference = { cx: 0, cy: 0, a: 0, b: 0, angle: 0 };
  const perRay = { first: new Int32Array(rays), count: new Int32Array(rays), dx: new Float64Array(rays), dy: new Float64Array(rays), step: new Float64Array(rays) };
  return { rays, reference, band: [0, 0], ox: 0, oy: 0, sx: 1, sy: 1, ...perRay, pixel: new Int32Array(0), fx: new Float32Array(0), fy: new Float32Array(0) };
}

/** Room for `points` sample points (the plan's points are rewritten after growing). */
function growPlan(plan: RayPlan, points: number): void {
  const grow = <T extends Int32Array | Float32Array>(old: T, make: (n: number) => T): T => {
    const next = make(points);
    next.set(old);
    return next;
  };
  plan.pixel = grow(plan.pixel, (n) => new Int32Array(n));
  plan.fx = grow(plan.fx, (n) => new Float32Array(n));
  plan.fy = grow(plan.fy, (n) => new Float32Array(n));
}

/** Reusable scratch for tracing maps of one size (one per operator subscription). */
export class BoundaryTracer {
  private readonly labels: Int32Array;
  private readonly stack: Int32Array;
  /** Crossings of the map being traced (at most two edges per pixel). */
  private readonly xs: Float64Array;
  private readonly ys: Float64Array;
  private readonly ws: Float64Array;
  /** The crossings of the last {@link crossingsNear} (read by one fit, then rewritten). */
  private readonly near: WeightedPoints = { x: new Float64Array(MAX_POINTS), y: new Float64Array(MAX_POINTS), weight: new Float64Array(MAX_POINTS), n: 0 };
  /** The buffers of the last {@link planRays}. */
  private plan: RayPlan = emptyPlan(0);

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.labels = new Int32Array(width * height);
    this.stack = new Int32Array(width * height);
    this.xs = new Float64Array(2 * width * height);
    this.ys = new Float64Array(2 * width * height);
    this.ws = new Float64Array(2 * width * height);
  }

  /** The candidates of `values[offset .. offset + width * height)`, largest first. */
  candidates(values: Float32Array, offset: number, frame: TraceFrame, options: TraceOptions): HeadCandidate[] {
    const { width, height, labels, stack } = this;
    labels.fill(0);
    const components: (Box & { label: number; area: number })[] = [];
    // Flood fill of the foreground, 4-connected, with each component's bounding box.
    for (let start = 0; start < width * height; start++) {
      if (labels[start] !== 0 || !(values[offset + start]! > 0)) continue;
      const label = components.length + 1;
      const box = { label, area: 0, x0: width, x1: 0, y0: height, y1: 0 };
      let top = 0;
      stack[top++] = start;
      labels[start] = label;
      while (top > 0) {
        const p = stack[--top]!;
        box.area += 1;
        const x = p % width;
        const y = (p - x) / width;
        if (x < box.x0) box.x0 = x;
        if (x > box.x1) box.x1 = x;
        if (y < box.y0) box.y0 = y;
        if (y > box.y1) box.y1 = y;
        if (x > 0 && labels[p - 1] === 0 && values[offset + p - 1]! > 0) (labels[p - 1] = label), (stack[top++] = p - 1);
        if (x < width - 1 && labels[p + 1] === 0 && values[offset + p + 1]! > 0) (labels[p + 1] = label), (stack[top++] = p + 1);
        if (p >= width && labels[p - width] === 0 && values[offset + p - width]! > 0) (labels[p - width] = label), (stack[top++] = p - width);
        if (p < width * (height - 1) && labels[p + width] === 0 && values[offset + p + width]! > 0) (labels[p + width] = label), (stack[top++] = p + width);
      }
      components.push(box);
    }
    return components
      .filter((c) => c.area >= options.minArea)
      .sort((a, b) => b.area - a.area)
      .map((c) => ({ area: c.area, ...this.crossings(values, offset, frame, options, c, c.label) }));
  }

  /**
   * The rays along which {@link crossingsNear} looks for a boundary near a reference ellipse (frame pixels): `rays`
   * rays from its centre through evenly spaced points of its outline, sampled every model pixel between normalised
   * radii `band` (1: the reference). Each point's bilinear cell and weights are worked out here, once per frame, so
   * that walking a posterior sample's map costs four reads and three blends a point. The plan reuses this tracer's
   * buffers: it is valid until the next call.
   */
  planRays(frame: { width: number; height: number }, options: Pick<TraceOptions, 'borderMargin'>, reference: Ellipse, band: readonly [number, number], rays: number): RayPlan {
    const { width, height } = this;
    const sx = frame.width / width;
    const sy = frame.height / height;
    const low = options.borderMargin;
    const highX = width - 1 - options.borderMargin;
    const highY = height - 1 - options.borderMargin;
    const c = Math.cos(reference.angle);
    const s = Math.sin(reference.angle);
    // The centre in model pixels.
    const ox = (reference.cx + 0.5) / sx - 0.5;
    const oy = (reference.cy + 0.5) / sy - 0.5;
    const plan = this.plan.rays === rays ? this.plan : (this.plan = emptyPlan(rays));
    Object.assign(plan, { reference, band, ox, oy, sx, sy });
    let total = 0;
    for (let ray = 0; ray < rays; ray++) {
      const t = (2 * Math.PI * ray) / rays;
      // The ray's direction: centre to the reference's outline, in model pixels per unit of normalised radius.
      const dx = (reference.a * Math.cos(t) * c - reference.b * Math.sin(t) * s) / sx;
      const dy = (reference.a * Math.cos(t) * s + reference.b * Math.sin(t) * c) / sy;
      const step = RAY_STEP / Math.hypot(dx, dy);
      const count = Math.floor((band[1] - band[0]) / step + 1e-9) + 1;
      if (total + count > plan.pixel.length) growPlan(plan, 2 * (total + count));
      plan.first[ray] = total;
      plan.count[ray] = count;
      plan.dx[ray] = dx;
      plan.dy[ray] = dy;
      plan.step[ray] = step;
      for (let i = 0; i < count; i++, total++) {
        const r = band[0] + i * step;
        const mx = ox + r * dx;
        const my = oy + r * dy;
        const x0 = Math.floor(mx);
        const y0 = Math.floor(my);
        const inside = x0 >= low && y0 >= low && x0 + 1 <= highX && y0 + 1 <= highY;
        plan.pixel[total] = inside ? y0 * width + x0 : -1;
        plan.fx[total] = mx - x0;
        plan.fy[total] = my - y0;
      }
    }
    return plan;
  }

  /**
   * The boundary crossings of `values` along a {@link planRays} plan: every sign change of the bilinearly
   * interpolated logits, whatever component it belongs to, in frame pixels, weighted. No component labelling and
   * no scan of the map: each posterior sample costs the plan's short line walks. The points are this tracer's
   * buffer: valid until the next call.
   */
  crossingsNear(values: Float32Array, offset: number, frame: TraceFrame, options: Pick<TraceOptions, 'logitSd'>, plan: RayPlan): WeightedPoints {
    const { width, xs, ys, ws } = this;
    const { pixel, fx, fy, ox, oy, sx, sy, reference, band } = plan;
    let total = 0;
    for (let ray = 0; ray < plan.rays; ray++) {
      const first = plan.first[ray]!;
      const dx = plan.dx[ray]!;
      const dy = plan.dy[ray]!;
      const step = plan.step[ray]!;
      let previous = NaN;
      for (let i = 0, j = first; i < plan.count[ray]!; i++, j++) {
        const q = pixel[j]!;
        if (q < 0) {
          previous = NaN;
          continue;
        }
        const p = offset + q;
        const top = values[p]! + fx[j]! * (values[p + 1]! - values[p]!);
        const bottom = values[p + width]! + fx[j]! * (values[p + width + 1]! - values[p + width]!);
        const value = top + fy[j]! * (bottom - top);
        if (previous > 0 !== value > 0 && !Number.isNaN(previous) && !Number.isNaN(value)) {
          const f = previous / (previous - value);
          const at = band[0] + (i - 1 + f) * step;
          // The crossing in model pixels, and the outward direction of the boundary along the ray.
          const cx = ox + at * dx;
          const cy = oy + at * dy;
          const length = Math.hypot(dx, dy);
          const outward = previous > 0 ? 1 : -1;
          const ux = (outward * dx) / length;
          const uy = (outward * dy) / length;
          // Against the black outside of the sector: the region's border, not the skull.
          if (this.grey(frame, cx + ux, cy + uy) <= BLACK && this.grey(frame, cx + 3 * ux, cy + 3 * uy) <= BLACK) {
            previous = value;
            continue;
          }
          const positionSd = (options.logitSd(Math.round(cy) * width + Math.round(cx)) * RAY_STEP) / Math.abs(previous - value);
          if (total === xs.length) break;
          xs[total] = reference.cx + at * dx * sx;
          ys[total] = reference.cy + at * dy * sy;
          ws[total] = 1 / (1 + positionSd * positionSd);
          total += 1;
        }
        previous = value;
      }
    }
    return this.points(total, this.near);
  }

  /** The source grey level nearest to model pixel coordinates (clamped to the frame). */
  private grey(frame: TraceFrame, mx: number, my: number): number {
    const x = Math.min(frame.width - 1, Math.max(0, Math.round(((mx + 0.5) * frame.width) / this.width - 0.5)));
    const y = Math.min(frame.height - 1, Math.max(0, Math.round(((my + 0.5) * frame.height) / this.height - 0.5)));
    return frame.data[y * frame.width + x]!;
  }

  /** The first `total` collected crossings, evenly thinned to at most `MAX_POINTS`, into `into` (default new arrays). */
  private points(total: number, into?: WeightedPoints): WeightedPoints {
    const { xs, ys, ws } = this;
    const stride = Math.max(1, total / MAX_POINTS);
    const n = Math.min(total, MAX_POINTS);
    const points: WeightedPoints = into ?? { x: new Float64Array(n), y: new Float64Array(n), weight: new Float64Array(n), n };
    points.n = n;
    for (let i = 0; i < n; i++) {
      const j = Math.floor(i * stride);
      points.x[i] = xs[j]!;
      points.y[i] = ys[j]!;
      points.weight[i] = ws[j]!;
    }
    return points;
  }

  /**
   * Sub-pixel zero crossings on the edges between a pixel of component `label` and a background 4-neighbour,
   * scanning the component's bounding `box` (model pixels) inside the border margin, in frame pixels, weighted,
   * and the mean skull echo along them.
   */
  private crossings(values: Float32Array, offset: number, frame: TraceFrame, options: TraceOptions, box: Box, label: number): { points: WeightedPoints; echo: number } {
    const { width, height, xs, ys, ws, labels } = this;
    const margin = options.borderMargin;
    const sx = frame.width / width;
    const sy = frame.height / height;
    const grey = (mx: number, my: number) => this.grey(frame, mx, my);
    let total = 0;
    let echo = 0;
    // The crossing between model pixel (x, y), inside, and its neighbour (x + dx, y + dy), outside.
    const add = (x: number, y: number, dx: number, dy: number, inside: number, outside: number) => {
      const p = y * width + x;
      if (labels[p] !== label) return;
      const t = inside / (inside - outside);
      if (!(t >= 0 && t <= 1)) return;
      // Against the black outside of the sector: the region's border, not the skull.
      const qx = x + dx;
      const qy = y + dy;
      if (grey(qx, qy) <= BLACK && grey(qx + 2 * dx, qy + 2 * dy) <= BLACK) return;
      const positionSd = options.logitSd(p) / (inside - outside);
      xs[total] = (x + t * dx + 0.5) * sx - 0.5;
      ys[total] = (y + t * dy + 0.5) * sy - 0.5;
      ws[total] = 1 / (1 + positionSd * positionSd);
      total += 1;
      let peak = 0;
      for (let step = -ECHO_REACH; step <= ECHO_REACH; step++) peak = Math.max(peak, grey(x + step * dx, y + step * dy));
      echo += peak;
    };
    // The box widened by one pixel, so that all the component's boundary edges are inside.
    const top = Math.max(margin, box.y0 - 1);
    const bottom = Math.min(height - margin - 1, box.y1 + 1);
    const from = Math.max(margin, box.x0 - 1);
    const to = Math.min(width - margin - 1, box.x1 + 1);
    for (let y = top; y <= bottom; y++) {
      const row = offset + y * width;
      // Edges along the row: (x, x + 1).
      let a = values[row + from]!;
      for (let x = from; x < to; x++) {
        const b = values[row + x + 1]!;
        if (a > 0 !== b > 0) {
          if (a > 0) add(x, y, 1, 0, a, b);
          else add(x + 1, y, -1, 0, b, a);
        }
        a = b;
      }
      // Edges down the column: (y, y + 1).
      if (y === bottom) continue;
      for (let x = from; x <= to; x++) {
        const upper = values[row + x]!;
        const lower = values[row + width + x]!;
        if (upper > 0 !== lower > 0) {
          if (upper > 0) add(x, y, 0, 1, upper, lower);
          else add(x, y + 1, 0, -1, lower, upper);
        }
      }
    }
    return { points: this.points(total), echo: total ? echo / total / 255 : 0 };
  }
}
