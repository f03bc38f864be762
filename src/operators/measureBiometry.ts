/**
 * Head biometry from the L-FUSION posterior: a robust ellipse on the skull boundary of every posterior
 * sample, and from their spread the credible intervals of HC, BPD, OFD and gestational age.
 */
import { map, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import { headGrid } from '../runtime/model-package.js';
import type { Biometry, BiometryStatus, Ellipse, HeadMeasures, Interval } from '../runtime/types/biometry.js';
import type { Frame, SimilarityTransform } from '../runtime/types/frames.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { OodScore } from '../runtime/types/results.js';
import type { HeadSamples } from '../runtime/types/uncertainty.js';
import { ellipseCircumference, fitEllipse, hadlockGestationalAge, normaliseAngle, visibleFraction, type EllipseFit } from './measureBiometry/ellipse.js';
import { calibratedInterval, credibleInterval, mapInterval, type IntervalCalibration } from './measureBiometry/summary.js';
import { BoundaryTracer, type HeadCandidate, type TraceFrame } from './measureBiometry/trace.js';

/** mm per pixel along x (columns) and y (rows). */
export interface Spacing {
  x: number;
  y: number;
}

export interface BiometryOptions {
  /**
   * mm per pixel of the frame along x and y, or a function giving each frame's (e.g. from a DICOM tag or a CSV);
   * without one the measurements are in pixels and there is no GA.
   */
  pixelSpacing?: Spacing | ((frame: Frame) => Spacing | undefined);
  /** Status `uncertain` when the pooled 95% HC interval is wider than this (mm). Default 15. */
  maxHcWidthMm?: number;
  /** Without a pixel spacing: `uncertain` when the HC interval is wider than this fraction of HC. Default 0.1. */
  maxHcWidthFraction?: number;
  /** Status `clipped` when less than this fraction of the ellipse's outline lies inside the image. Default 0.5. */
  minVisible?: number;
  /** Status `no-head` when fewer than this fraction of the posterior samples give a head ellipse. Default 0.5. */
  minFitted?: number;
  /**
   * Conformal scale of the intervals: each is `median ± intervalScale × hypot(max(posterior half-width, floor × median),
   * outlineResidual × median)` (floor: manifest `biometry.intervalFloor`, else 0.005; `outlineResidual`: the head
   * outline's misfit to its ellipse, {@link Biometry}). Default manifest `biometry.intervalScale`; without
   * either, the posterior's own 95% intervals.
   */
  intervalScale?: number;
}

/** What the operator reads of the manifest: the model's input size, its graphs when given (the heads' map size) and the interval calibration. */
export type BiometryManifestPart = { input: { width: number; height: number } } & Partial<Pick<ModelManifest, 'graphs'>> & Pick<ModelManifest, 'biometry'>;

/** What a biometry measurement reads of a frame's head samples: the frame, each weight sample's logit mean, each dropout pass's logits. */
export type BiometryInput = Pick<HeadSamples, 'frame' | 'dropoutLogits'> & { laplace: Pick<HeadSamples['laplace'], 'logitMean'> };

/** Head samples with the frame's biometry (status `ood` is decided later, from the OOD score). */
export type BiometrySamples = HeadSamples & { biometry: Biometry };

/** Components smaller than this fraction of the model's pixels are not head candidates. */
const MIN_AREA_FRACTION = 0.004;
/** Crossings this close to the image border are left out: a fraction of the map's width (2 pixels of a 224 map, at least 1). */
const BORDER_MARGIN_FRACTION = 2 / 224;
/** Heads have BPD/OFD well above this. */
const MIN_AXIS_RATIO = 0.4;
/** Angular bins of the boundary coverage in the head-likeness score. */
const COVERAGE_BINS = 36;
/** A sample's boundary crossings count between these normalised radii of the head on the posterior mean. */
const SAMPLE_BAND = [0.7, 1.4] as const;
/** Smallest calibrated half-width, as a fraction of the median, when the manifest does not give one. */
const DEFAULT_INTERVAL_FLOOR = 0.005;
/** Pairs of this many largest candidates are also tried as one head. */
const JOINED_CANDIDATES = 4;
/** Rays along which each sample's boundary is found (one every 5 degrees of the reference's outline). */
const SAMPLE_RAYS = 72;

/** Per-pixel buffers reused from frame to frame (one set per operator, like its tracer: frames are measured one at a time). */
interface Scratch {
  mean: Float32Array;
  squares: Float32Array;
}

interface Measured {
  fit: EllipseFit;
  visible: number;
}

/** Fraction of angular bins about the ellipse's centre that hold a boundary point the robust fit kept. */
function angularCoverage(points: HeadCandidate['points'], e: Ellipse): number {
  const bins = new Uint8Array(COVERAGE_BINS);
  for (let i = 0; i < points.n; i++) {
    const angle = Math.atan2(points.y[i]! - e.cy, points.x[i]! - e.cx);
    bins[Math.min(COVERAGE_BINS - 1, Math.floor(((angle + Math.PI) / (2 * Math.PI)) * COVERAGE_BINS))] = 1;
  }
  return bins.reduce((sum, bin) => sum + bin, 0) / COVERAGE_BINS;
}

/**
 * How head-like a candidate's fit is, 0..1-ish: kept boundary weight x closeness of the boundary to an ellipse
 * (residual relative to the ellipse's size) x angular coverage of its boundary x skull echo along it.
 */
export function headLikeness(candidate: HeadCandidate, fit: EllipseFit): number {
  const size = Math.sqrt(fit.ellipse.a * fit.ellipse.b);
  return fit.inlierFraction * Math.exp(-fit.residual / (0.02 * size)) * angularCoverage(candidate.points, fit.ellipse) * (0.25 + candidate.echo);
}

/**
 * Whether a fitted ellipse can be a head: not many times the frame (a fit to a nearly straight boundary) and not
 * thin (a line, a limb; heads have BPD/OFD about 0.7-0.85).
 */
function plausibleHead(e: Ellipse, frame: { width: number; height: number }): boolean {
  return e.a <= 2 * Math.hypot(frame.width, frame.height) && e.b >= MIN_AXIS_RATIO * e.a;
}

/** Two candidates as one: their boundary points together, the echo their points' mean. */
function joined(first: HeadCandidate, second: HeadCandidate): HeadCandidate {
  const n = first.points.n + second.points.n;
  const join = (key: 'x' | 'y' | 'weight') => {
    const values = new Float64Array(n);
    values.set(first.points[key].subarray(0, first.points.n));
    values.set(second.points[key].subarray(0, second.points.n), first.points.n);
    return values;
  };
  return {
    area: first.area + second.area,
    points: { x: join('x'), y: join('y'), weight: join('weight'), n },
    echo: (first.echo * first.points.n + second.echo * second.points.n) / Math.max(n, 1),
  };
}

/**
 * Head hypotheses: each candidate, and each pair of the largest few joined (a head whose mask a midline echo or
 * a dark ventricle splits in two halves is two components; their outer arcs together are its skull, the cut
 * between them the robust fit's outliers).
 */
function hypotheses(candidates: readonly HeadCandidate[]): HeadCandidate[] {
  const largest = candidates.slice(0, JOINED_CANDIDATES);
  return [...candidates, ...largest.flatMap((first, i) => largest.slice(i + 1).map((second) => joined(first, second)))];
}

/** The most head-like candidate's (or pair of candidates') ellipse, or null when none fits one. */
export function headEllipse(candidates: readonly HeadCandidate[], frame: { width: number; height: number }): Measured | null {
  let best: Measured | null = null;
  let bestScore = 0;
  for (const candidate of hypotheses(candidates)) {
    const fit = fitEllipse(candidate.points);
    if (!fit || !plausibleHead(fit.ellipse, frame)) continue;
    const score = headLikeness(candidate, fit);
    if (score > bestScore) [best, bestScore] = [{ fit, visible: visibleFraction(fit.ellipse, frame.width, frame.height) }, score];
  }
  return best;
}

/**
 * The ellipse in mm. Exact for square pixels; for anisotropic ones each axis is scaled along its own direction, which
 * is exact for axis-aligned ellipses and a first-order approximation for rotated ones.
 */
function ellipseInMm(e: Ellipse, spacing: { x: number; y: number }): Ellipse {
  if (spacing.x === spacing.y) return { cx: e.cx * spacing.x, cy: e.cy * spacing.y, a: e.a * spacing.x, b: e.b * spacing.x, angle: e.angle };
  const c = Math.cos(e.angle);
  const s = Math.sin(e.angle);
  const a = e.a * Math.hypot(c * spacing.x, s * spacing.y);
  const b = e.b * Math.hypot(s * spacing.x, c * spacing.y);
  return { cx: e.cx * spacing.x, cy: e.cy * spacing.y, a: Math.max(a, b), b: Math.min(a, b), angle: Math.atan2(s * spacing.y, c * spacing.x) };
}

/** The posterior-median ellipse: medians of centre and axes, the axis direction as the circular mean of 2θ. */
function medianEllipse(ellipses: readonly Ellipse[]): Ellipse {
  const median = (values: number[]) => credibleInterval(values)!.median;
  const sin = ellipses.reduce((sum, e) => sum + Math.sin(2 * e.angle), 0);
  const cos = ellipses.reduce((sum, e) => sum + Math.cos(2 * e.angle), 0);
  return {
    cx: median(ellipses.map((e) => e.cx)),
    cy: median(ellipses.map((e) => e.cy)),
    a: median(ellipses.map((e) => e.a)),
    b: median(ellipses.map((e) => e.b)),
    angle: Math.atan2(sin, cos) / 2,
  };
}

/** The posterior's 95% interval of `values`, calibrated (with the head outline's misfit) when a calibration is given. */
function interval(values: number[], calibration: IntervalCalibration | null, outlineResidual: number): Interval {
  const raw = credibleInterval(values)!;
  return calibration ? calibratedInterval(raw, calibration, outlineResidual) : raw;
}

function measuresOf(ellipses: readonly Ellipse[], samples: number, calibration: IntervalCalibration | null, outlineResidual: number): HeadMeasures | null {
  if (ellipses.length === 0) return null;
  return {
    hc: interval(ellipses.map((e) => ellipseCircumference(e.a, e.b)), calibration, outlineResidual),
    bpd: interval(ellipses.map((e) => 2 * e.b), calibration, outlineResidual),
    ofd: interval(ellipses.map((e) => 2 * e.a), calibration, outlineResidual),
    fitted: ellipses.length,
    samples,
  };
}

/** Validated options with their defaults. */
function settings(manifest: BiometryManifestPart, options: BiometryOptions) {
  const resolved = {
    maxHcWidthMm: options.maxHcWidthMm ?? 15,
    maxHcWidthFraction: options.maxHcWidthFraction ?? 0.1,
    minVisible: options.minVisible ?? 0.5,
    minFitted: options.minFitted ?? 0.5,
    intervalScale: options.intervalScale ?? manifest.biometry?.intervalScale ?? null,
    intervalFloor: manifest.biometry?.intervalFloor ?? DEFAULT_INTERVAL_FLOOR,
    spacing: options.pixelSpacing ?? null,
  };
  const spacingOf = (frame: Frame): Spacing | null => {
    const spacing = typeof resolved.spacing === 'function' ? resolved.spacing(frame) : resolved.spacing;
    if (spacing && !(positive(spacing.x) && positive(spacing.y))) throw new LfusionError('INVALID_OPTION', `pixel spacing must be positive, got ${spacing.x} x ${spacing.y} mm`, { spacing });
    return spacing ?? null;
  };
  const positive = (value: number) => Number.isFinite(value) && value > 0;
  const fraction = (value: number) => Number.isFinite(value) && value >= 0 && value <= 1;
  const bad = [
    ['maxHcWidthMm', positive(resolved.maxHcWidthMm)],
    ['maxHcWidthFraction', positive(resolved.maxHcWidthFraction)],
    ['minVisible', fraction(resolved.minVisible)],
    ['minFitted', fraction(resolved.minFitted)],
    ['intervalScale', resolved.intervalScale === null || positive(resolved.intervalScale)],
  ].find(([, ok]) => !ok);
  if (bad) throw new LfusionError('INVALID_OPTION', `biometry option ${String(bad[0])} is out of range`, { option: bad[0], options });
  if (typeof resolved.spacing === 'object' && resolved.spacing) spacingOf({} as Frame);
  const calibration: IntervalCalibration | null = resolved.intervalScale === null ? null : { scale: resolved.intervalScale, floor: resolved.intervalFloor };
  return { ...resolved, spacingOf, calibration };
}

/**
 * Measures the head on one frame's posterior samples: each Laplace weight sample (its logit-mean map, i.e. the
 * mean of its logit samples, so that per-pixel logit noise does not drive the spread) and each dropout pass.
 * Work is at model resolution; boundary points are mapped to the frame's pixels before fitting.
 *
 * @example
 * const b = biometryOfSamples(samples, tracer, scratch, settings); // b.pooled?.hc.median
 */
function biometryOfSamples(samples: BiometryInput, tracer: BoundaryTracer, scratch: Scratch, s: ReturnType<typeof settings>): Biometry {
  const { frame } = samples;
  const pixels = tracer.width * tracer.height;
  const logitMean = samples.laplace.logitMean.data;
  const dropout = samples.dropoutLogits.data;
  const m = logitMean.length / pixels;
  const k = dropout.length / pixels;
  // The posterior mean and mean square of the logits (both paths weighing equally), for choosing the head and for the
  // logit SD where a boundary asks for it, in one sequential pass over the samples (an SD read sample by sample at
  // each crossing would jump across all the maps).
  const { mean: meanLogits, squares } = scratch;
  meanLogits.fill(0);
  squares.fill(0);
  const accumulate = (rows: Float32Array, count: number) => {
    const share = 1 / (2 * count);
    let i = 0;
    // Four rows per pass: a quarter of the writes.
    for (; i + 4 <= count; i += 4) {
      const r0 = i * pixels;
      const r1 = r0 + pixels;
      const r2 = r1 + pixels;
      const r3 = r2 + pixels;
      for (let p = 0; p < pixels; p++) {
        const v0 = rows[r0 + p]!;
        const v1 = rows[r1 + p]!;
        const v2 = rows[r2 + p]!;
        const v3 = rows[r3 + p]!;
        meanLogits[p]! += share * (v0 + v1 + v2 + v3);
        squares[p]! += share * (v0 * v0 + v1 * v1 + v2 * v2 + v3 * v3);
      }
    }
    for (; i < count; i++) {
      for (let p = 0, row = i * pixels; p < pixels; p++) {
        const v = rows[row + p]!;
        meanLogits[p]! += share * v;
        squares[p]! += share * v * v;
      }
    }
  };
  accumulate(logitMean, m);
  accumulate(dropout, k);
  const logitSd = (p: number) => Math.sqrt(Math.max(squares[p]! - meanLogits[p]! * meanLogits[p]!, 0));
  const trace: TraceFrame = frame;
  const traceOptions = { minArea: MIN_AREA_FRACTION * pixels, borderMargin: Math.max(1, Math.round(BORDER_MARGIN_FRACTION * tracer.width)), logitSd };
  // The head is chosen once, on the posterior mean; each sample is then fitted on its crossings near that head,
  // so that every sample measures the same structure and none is relabelled.
  const head = headEllipse(tracer.candidates(meanLogits, 0, trace, traceOptions), frame)?.fit;
  const reference = head?.ellipse;
  // How far the head's boundary on the posterior mean is from an ellipse, relative to its size (0 for a clean skull).
  const outlineResidual = head ? head.residual / Math.sqrt(head.ellipse.a * head.ellipse.b) : 0;
  const plan = reference ? tracer.planRays(frame, traceOptions, reference, SAMPLE_BAND, SAMPLE_RAYS) : null;
  const fitRows = (values: Float32Array, rows: number): EllipseFit[] => {
    if (!plan) return [];
    const fits: EllipseFit[] = [];
    for (let row = 0; row < rows; row++) {
      const fit = fitEllipse(tracer.crossingsNear(values, row * pixels, trace, traceOptions, plan));
      if (fit && plausibleHead(fit.ellipse, frame)) fits.push(fit);
    }
    return fits;
  };
  const laplace = fitRows(logitMean, m);
  const drop = fitRows(dropout, k);
  const all = [...laplace, ...drop];
  const spacing = s.spacingOf(frame);
  const inUnit = (e: Ellipse) => (spacing ? ellipseInMm(e, spacing) : e);
  const empty: Biometry = {
    status: 'no-head',
    unit: spacing ? 'mm' : 'px',
    spacing,
    ellipse: null,
    ellipseMm: null,
    residual: null,
    visible: null,
    pooled: null,
    laplace: null,
    dropout: null,
    ga: null,
    intervalScale: s.intervalScale ?? 1,
    outlineResidual: head ? outlineResidual : null,
  };
  const measures = (fits: readonly EllipseFit[], samples: number) => measuresOf(fits.map((x) => inUnit(x.ellipse)), samples, s.calibration, outlineResidual);
  if (all.length === 0 || all.length < s.minFitted * (m + k)) return { ...empty, laplace: measures(laplace, m), dropout: measures(drop, k) };
  const ellipse = medianEllipse(all.map((x) => x.ellipse));
  const pooled = measures(all, m + k)!;
  const visible = visibleFraction(ellipse, frame.width, frame.height);
  const hc = pooled.hc;
  const width = hc.high - hc.low;
  const ga = spacing ? gestationalAge(hc) : null;
  const status: BiometryStatus = visible < s.minVisible ? 'clipped' : width > (spacing ? s.maxHcWidthMm : s.maxHcWidthFraction * hc.median) ? 'uncertain' : 'ok';
  return {
    ...empty,
    status,
    ellipse,
    ellipseMm: spacing ? ellipseInMm(ellipse, spacing) : null,
    residual: credibleInterval(all.map((x) => x.residual))!.median,
    visible,
    pooled,
    laplace: measures(laplace, m),
    dropout: measures(drop, k),
    ga,
  };
}

/** GA (Hadlock) of an HC interval in mm. */
function gestationalAge(hc: Interval): Biometry['ga'] {
  return { ...mapInterval(hc, (value) => hadlockGestationalAge(value).weeks), inRange: hadlockGestationalAge(hc.median).inRange };
}

/**
 * A biometry measured on an aligned frame (`alignFrames`: source -> reference by `transform`), in the source frame's
 * geometry: the ellipse mapped back, lengths divided by the transform's scale (the spacing is the source frame's).
 *
 * @example
 * const onScreen = biometryOnSource(clipFrame.biometry, aligned.transform); // onScreen.ellipse in the frame as decoded
 */
export function biometryOnSource(biometry: Biometry, transform: SimilarityTransform): Biometry {
  const [a, b, c, d, e, f] = transform.matrix;
  const det = a * e - b * d;
  const shrink = 1 / transform.scale;
  const scaled = (interval: Interval): Interval => mapInterval(interval, (value) => value * shrink);
  const measures = (m: HeadMeasures | null): HeadMeasures | null => m && { ...m, hc: scaled(m.hc), bpd: scaled(m.bpd), ofd: scaled(m.ofd) };
  const fitted = biometry.ellipse;
  const ellipse = fitted && {
    cx: (e * (fitted.cx - c) - b * (fitted.cy - f)) / det,
    cy: (-d * (fitted.cx - c) + a * (fitted.cy - f)) / det,
    a: fitted.a * shrink,
    b: fitted.b * shrink,
    angle: normaliseAngle(fitted.angle - transform.rotation),
  };
  const pooled = measures(biometry.pooled);
  return {
    ...biometry,
    ellipse,
    ellipseMm: ellipse && biometry.spacing ? ellipseInMm(ellipse, biometry.spacing) : null,
    residual: biometry.residual === null ? null : biometry.residual * shrink,
    pooled,
    laplace: measures(biometry.laplace),
    dropout: measures(biometry.dropout),
    ga: biometry.ga && pooled ? gestationalAge(pooled.hc) : null,
  };
}

/** A frame's biometry with the OOD verdict applied: an OOD frame's measurement is not to be trusted, whatever its fit. */
export function withOod(biometry: Biometry, ood: OodScore | undefined): Biometry {
  return ood?.above && biometry.status !== 'no-head' ? { ...biometry, status: 'ood' } : biometry;
}

/**
 * Adds the frame's head biometry to each frame's head samples (before `measureUncertainty`, which releases them).
 * The head is chosen once per frame on the posterior-mean logits: its connected foreground components, each fitted
 * with a robust ellipse on its boundary crossings (points on the image border or the sector's black border left
 * out, each weighted by how certain its position is across the samples), and each pair of the four largest joined (a
 * head split in halves by a midline echo), the most head-like one kept (fit quality, boundary coverage, skull echo;
 * not size); how far its boundary is from its ellipse (`outlineResidual`) widens the calibrated intervals. Each posterior sample is then fitted on its crossings along rays from
 * that head's centre, between 0.7 and 1.4 times its outline. Medians and 95% intervals per path and pooled; status `ok`,
 * `no-head`, `clipped` or `uncertain` (apply {@link withOod} once the OOD score is known).
 *
 * @param manifest input size, and `biometry` (the intervals' calibration: `intervalScale`, `intervalFloor`).
 * @param options pixel spacing, status thresholds, interval scale.
 * @throws LfusionError `INVALID_OPTION` at set-up for an option out of range.
 * @example
 * samples$.pipe(measureBiometry(manifest, { pixelSpacing: { x: 0.15, y: 0.15 } })).subscribe((s) => console.log(s.biometry.pooled?.hc));
 */
export function measureBiometry(manifest: BiometryManifestPart, options: BiometryOptions = {}): OperatorFunction<HeadSamples, BiometrySamples> {
  const measure = biometryMeasurer(manifest, options);
  return map((samples) => {
    const started = performance.now();
    const biometry = measure(samples);
    return { ...samples, biometry, timings: { ...samples.timings, biometry: performance.now() - started } };
  });
}

/**
 * The measurement {@link measureBiometry} makes, as a function of one frame's samples (maps of the manifest's input
 * size), for callers that hold the samples of several frames at once (the clip path: one window's frames). It keeps
 * per-pixel buffers from call to call: call it for one frame at a time.
 *
 * @throws LfusionError `INVALID_OPTION` at set-up for an option out of range.
 * @example
 * const measure = biometryMeasurer({ input: { width: 56, height: 56 } }, { pixelSpacing: { x: 0.15, y: 0.15 } });
 * const biometry = measure(frameSamples); // biometry.pooled?.hc
 */
export function biometryMeasurer(manifest: BiometryManifestPart, options: BiometryOptions = {}): (samples: BiometryInput) => Biometry {
  const resolved = settings(manifest, options);
  // The logits' own grid: the heads' maps (half the input's size for heads at half resolution; `input` when the
  // caller gives no graphs, as the clip path does for its maps).
  const grid = headGrid(manifest);
  const tracer = new BoundaryTracer(grid.width, grid.height);
  const pixels = grid.width * grid.height;
  const scratch: Scratch = { mean: new Float32Array(pixels), squares: new Float32Array(pixels) };
  return (samples) => biometryOfSamples(samples, tracer, scratch, resolved);
}
