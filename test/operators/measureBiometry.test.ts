import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, of } from 'rxjs';
import { biometryOnSource, headEllipse, measureBiometry, withOod } from '../../src/operators/measureBiometry.js';
import { ellipseCircumference, ellipsePoint, fitEllipse, hadlockGestationalAge, rasteriseEllipse, visibleFraction, type WeightedPoints } from '../../src/operators/measureBiometry/ellipse.js';
import { calibratedInterval, conformalScale, credibleInterval } from '../../src/operators/measureBiometry/summary.js';
import { BoundaryTracer } from '../../src/operators/measureBiometry/trace.js';
import { Random } from '../../src/runtime/random.js';
import type { Ellipse } from '../../src/runtime/types/biometry.js';
import type { HeadSamples } from '../../src/runtime/types/uncertainty.js';

const SIZE = 64;

function pointsOn(e: Ellipse, count: number, options: { noise?: number; outliers?: number; keep?: (x: number, y: number) => boolean; seed?: number } = {}): WeightedPoints {
  const generator = new Random(options.seed ?? 1);
  const random = () => generator.nextFloat();
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < count; i++) {
    const p = ellipsePoint(e, (2 * Math.PI * i) / count);
    const x = p.x + (options.noise ?? 0) * gaussian();
    const y = p.y + (options.noise ?? 0) * gaussian();
    if (!options.keep || options.keep(x, y)) xs.push(x), ys.push(y);
  }
  // Outliers: a wavy cut inside the ellipse, like a mask that stops short of a faint skull echo.
  for (let i = 0; i < (options.outliers ?? 0); i++) {
    const t = (Math.PI * i) / (options.outliers ?? 1);
    const p = ellipsePoint({ ...e, a: e.a * (0.7 + 0.1 * Math.sin(5 * t)), b: e.b * 0.7 }, t);
    xs.push(p.x), ys.push(p.y);
  }
  return { x: Float64Array.from(xs), y: Float64Array.from(ys), weight: new Float64Array(xs.length).fill(1), n: xs.length };
}

function assertClose(actual: Ellipse, expected: Ellipse, tolerance: { centre: number; axis: number; angle: number }): void {
  assert.ok(Math.hypot(actual.cx - expected.cx, actual.cy - expected.cy) <= tolerance.centre, `centre ${actual.cx},${actual.cy}`);
  assert.ok(Math.abs(actual.a - expected.a) <= tolerance.axis, `a ${actual.a} vs ${expected.a}`);
  assert.ok(Math.abs(actual.b - expected.b) <= tolerance.axis, `b ${actual.b} vs ${expected.b}`);
  const dAngle = Math.abs(((actual.angle - expected.angle + Math.PI / 2) % Math.PI + Math.PI) % Math.PI - Math.PI / 2);
  assert.ok(dAngle <= tolerance.angle, `angle ${actual.angle} vs ${expected.angle}`);
}

const HEAD: Ellipse = { cx: 300, cy: 220, a: 160, b: 120, angle: 0.5 };

test('recovers an exact ellipse, and any rotation, to 1e-6', () => {
  for (const angle of [-1.2, -0.4, 0, 0.3, 1.1]) {
    const e = { ...HEAD, angle };
    assertClose(fitEllipse(pointsOn(e, 100))!.ellipse, e, { centre: 1e-6, axis: 1e-6, angle: 1e-6 });
  }
  const circle = { cx: 10, cy: -5, a: 7, b: 7, angle: 0 };
  const fit = fitEllipse(pointsOn(circle, 50))!.ellipse;
  assert.ok(Math.abs(fit.a - 7) < 1e-6 && Math.abs(fit.b - 7) < 1e-6);
});

test('noisy points (sd 2 px): centre within 1 px, axes within 1.5 px, angle within 0.03 rad; residual about the noise', () => {
  const fit = fitEllipse(pointsOn(HEAD, 400, { noise: 2 }))!;
  assertClose(fit.ellipse, HEAD, { centre: 1, axis: 1.5, angle: 0.03 });
  assert.ok(fit.residual > 1 && fit.residual < 3, `residual ${fit.residual}`);
});

test('25% outliers (an inner cut) are rejected by the reweighting: axes within 1.5 px', () => {
  const points = pointsOn(HEAD, 300, { noise: 1, outliers: 100 });
  const fit = fitEllipse(points)!;
  assertClose(fit.ellipse, HEAD, { centre: 1.5, axis: 1.5, angle: 0.03 });
  assert.ok(fit.inlierFraction < 0.85 && fit.inlierFraction > 0.6, `inliers ${fit.inlierFraction}`);
  // Without reweighting the cut drags the fit inwards.
  const plain = fitEllipse(points, { iterations: 0 })!;
  assert.ok(HEAD.a - plain.ellipse.a > 5, `plain fit a ${plain.ellipse.a}`);
});

test('clipped by the image border: 60% of the outline inside still gives axes within 2 px', () => {
  const clipped = { ...HEAD, cx: 60 };
  const keep = (x: number, y: number) => x >= 0 && y >= 0 && x < 640 && y < 480;
  const fit = fitEllipse(pointsOn(clipped, 400, { noise: 1, keep }))!;
  assertClose(fit.ellipse, clipped, { centre: 2, axis: 2, angle: 0.05 });
  const visible = visibleFraction(clipped, 640, 480);
  assert.ok(visible > 0.5 && visible < 0.7, `visible ${visible}`);
});

test('degenerate input gives null, never an exception: no points, one pixel, a line, a repeated point', () => {
  const of = (xs: number[], ys: number[]) => ({ x: Float64Array.from(xs), y: Float64Array.from(ys), weight: new Float64Array(xs.length).fill(1), n: xs.length });
  assert.is(fitEllipse(of([], [])), null);
  assert.is(fitEllipse(of([3], [4])), null);
  assert.is(fitEllipse(of([1, 2, 3, 4, 5, 6, 7, 8], [2, 4, 6, 8, 10, 12, 14, 16])), null);
  assert.is(fitEllipse(of(new Array(10).fill(5), new Array(10).fill(5))), null);
  assert.is(fitEllipse({ ...of([1, 2, 3, 4, 5, 6], [1, 5, 2, 7, 3, 1]), weight: new Float64Array(6) }), null);
});

test('Ramanujan perimeter: a circle exactly, a 2:1 ellipse to 1e-5 of the elliptic integral', () => {
  assert.ok(Math.abs(ellipseCircumference(10, 10) - 20 * Math.PI) < 1e-9);
  assert.ok(Math.abs(ellipseCircumference(2, 1) - 9.688448220547675) < 1e-4);
});

test('Hadlock GA from HC within 1.2 weeks of the published HC table (Hadlock 1982), valid range 14-42 weeks', () => {
  // (HC cm, menstrual weeks) from Hadlock et al., AJR 1982;138:649.
  for (const [hcCm, weeks] of [[11.0, 15], [17.7, 20], [24.6, 26], [28.4, 30], [34.6, 40]] as const) {
    const ga = hadlockGestationalAge(hcCm * 10);
    assert.ok(Math.abs(ga.weeks - weeks) <= 1.2, `HC ${hcCm} cm: ${ga.weeks} weeks, table ${weeks}`);
    assert.ok(ga.inRange);
  }
  assert.ok(Math.abs(hadlockGestationalAge(175).weeks - 20.02) < 0.01); // the formula itself
  assert.is(hadlockGestationalAge(60).inRange, false);
  assert.is(hadlockGestationalAge(380).inRange, false);
});

test('credible intervals cover a synthetic posterior\'s truth about 95% of the time; the normalised conformal scale restores coverage of a too-narrow posterior, frame by frame', () => {
  const generator = new Random(7);
  const random = () => generator.nextFloat();
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  // Truth ~ N(mu, sd_i); posterior samples ~ N(mu, shrink x sd_i), sd_i varying from frame to frame (0.5 to 5):
  // calibrated for shrink = 1, overconfident for shrink = 0.5.
  const cases = (shrink: number, count: number) =>
    Array.from({ length: count }, () => {
      const mu = 100 + 100 * random();
      const sd = 0.5 + 4.5 * random();
      const samples = Array.from({ length: 400 }, () => mu + shrink * sd * gaussian());
      return { interval: credibleInterval(samples)!, truth: mu + sd * gaussian(), sd };
    });
  const coverage = (list: ReturnType<typeof cases>, calibration?: { scale: number; floor: number }) =>
    list.filter(({ interval, truth }) => {
      const { low, high } = calibration ? calibratedInterval(interval, calibration) : interval;
      return truth >= low && truth <= high;
    }).length / list.length;
  const calibrated = coverage(cases(1, 2000));
  assert.ok(calibrated > 0.93 && calibrated < 0.97, `coverage ${calibrated}`);
  const narrow = cases(0.5, 1000);
  assert.ok(coverage(narrow) < 0.75);
  const scale = conformalScale(narrow, 0);
  assert.ok(Math.abs(scale - 2) < 0.25, `scale ${scale}`);
  const held = cases(0.5, 2000);
  const recovered = coverage(held, { scale, floor: 0 });
  assert.ok(recovered > 0.93 && recovered < 0.97, `coverage after scaling ${recovered}`);
  // Normalised: the coverage holds for hard and easy frames alike, and widths follow each frame's spread.
  const hard = held.filter((c) => c.sd > 3);
  const easy = held.filter((c) => c.sd < 2);
  for (const subset of [hard, easy]) assert.ok(Math.abs(coverage(subset, { scale, floor: 0 }) - 0.95) < 0.03);
  const width = (c: (typeof held)[number]) => calibratedInterval(c.interval, { scale, floor: 0 }).high - calibratedInterval(c.interval, { scale, floor: 0 }).low;
  assert.ok(hard.reduce((sum, c) => sum + width(c), 0) / hard.length > 2 * (easy.reduce((sum, c) => sum + width(c), 0) / easy.length));
  // The floor: a posterior whose samples all agree still gets an interval, floor x median wide each side.
  assert.equal(calibratedInterval({ median: 200, low: 200, high: 200 }, { scale: 2, floor: 0.005 }), { median: 200, low: 198, high: 202 });
  assert.is(credibleInterval([]), null);
  assert.is(conformalScale([], 0), Infinity);
});

test('the outline misfit widens a calibrated interval as an independent error: hypot(posterior half-width, misfit x median)', () => {
  const raw = { median: 170, low: 168, high: 173 };
  // Half-width 2.5, misfit 0.02 x 170 = 3.4: difficulty hypot(2.5, 3.4) = 4.22, times the scale 3.
  const widened = calibratedInterval(raw, { scale: 3, floor: 0.005 }, 0.02);
  assert.ok(Math.abs(widened.high - 170 - 3 * Math.hypot(2.5, 3.4)) < 1e-9 && Math.abs(170 - widened.low - 3 * Math.hypot(2.5, 3.4)) < 1e-9);
  assert.equal(calibratedInterval(raw, { scale: 3, floor: 0.005 }, 0), calibratedInterval(raw, { scale: 3, floor: 0.005 }));
  // Cases whose errors grow with their misfit, not with their posterior spread: the scale with the misfit is smaller.
  const cases = [0.01, 0.02, 0.05, 0.1, 0.15].flatMap((misfit) => [-1, 1].map((sign) => ({ interval: raw, truth: 170 + sign * 170 * misfit, outlineResidual: misfit })));
  assert.ok(conformalScale(cases, 0.005, 0.8) < conformalScale(cases.map(({ interval, truth }) => ({ interval, truth })), 0.005, 0.8));
});

/** Logits of a filled ellipse (positive inside), `SIZE x SIZE`, plus optional extra blobs. */
function logitMap(e: Ellipse | null, extra: (x: number, y: number) => boolean = () => false): Float32Array {
  const map = new Float32Array(SIZE * SIZE);
  const inside = e ? rasteriseEllipse(e, SIZE, SIZE) : new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) map[y * SIZE + x] = inside[y * SIZE + x] || extra(x, y) ? 4 : -4;
  return map;
}

function samplesOf(rows: Float32Array[], frameSize = SIZE * 4): HeadSamples {
  const pixels = SIZE * SIZE;
  const stack = (list: Float32Array[]) => {
    const data = new Float32Array(list.length * pixels);
    list.forEach((row, i) => data.set(row, i * pixels));
    return { data, dims: [list.length, pixels] };
  };
  const half = Math.ceil(rows.length / 2);
  return {
    frame: { index: 0, pts: 0, captureTime: 0, width: frameSize, height: frameSize, data: new Uint8Array(frameSize * frameSize).fill(60) },
    draws: {} as HeadSamples['draws'],
    laplace: { logitMean: stack(rows.slice(0, half)), covFactor: { data: new Float32Array(0), dims: [0] }, covDiag: { data: new Float32Array(0), dims: [0] } },
    dropoutLogits: stack(rows.slice(half)),
    timings: {},
  };
}

const MANIFEST = { input: { width: SIZE, height: SIZE } } as const;

test('the operator measures a head from its samples: HC, BPD, OFD in mm and GA with intervals, status ok', async () => {
  const head = { cx: 32, cy: 30, a: 20, b: 15, angle: 0.3 };
  // Samples differ in size by +-1 model pixel: an interval that contains the truth.
  const rows = [-1, -0.5, 0, 0.5, 1, -1, -0.5, 0, 0.5, 1].map((d) => logitMap({ ...head, a: head.a + d, b: head.b + d }));
  const spacing = { x: 0.1, y: 0.1 };
  const { biometry } = await firstValueFrom(of(samplesOf(rows)).pipe(measureBiometry(MANIFEST, { pixelSpacing: spacing, maxHcWidthMm: 50 })));
  assert.is(biometry.status, 'ok');
  assert.is(biometry.unit, 'mm');
  // Frame pixels are 4 model pixels; the truth in mm: axes x 4 x 0.1.
  const truthHc = ellipseCircumference(head.a * 0.4, head.b * 0.4);
  const hc = biometry.pooled!.hc;
  assert.ok(Math.abs(hc.median - truthHc) < 0.03 * truthHc, `HC ${hc.median} vs ${truthHc}`);
  assert.ok(hc.low < truthHc && truthHc < hc.high);
  assert.ok(Math.abs(biometry.pooled!.bpd.median - 2 * head.b * 0.4) < 0.5);
  assert.ok(Math.abs(biometry.pooled!.ofd.median - 2 * head.a * 0.4) < 0.5);
  assert.is(biometry.pooled!.fitted, 10);
  assert.is(biometry.laplace!.fitted, 5);
  assert.ok(biometry.ga && biometry.ga.low <= biometry.ga.median && biometry.ga.median <= biometry.ga.high);
  assert.ok(Math.abs(biometry.ellipse!.cx - (head.cx + 0.5) * 4 + 0.5) < 2);
});

test('biometryOnSource: a head measured on an aligned frame, mapped back through the similarity transform', async () => {
  const head = { cx: 32, cy: 30, a: 20, b: 15, angle: 0.3 };
  const rows = [-1, 0, 1, -1, 0, 1].map((d) => logitMap({ ...head, a: head.a + d, b: head.b + d }));
  const { biometry } = await firstValueFrom(of(samplesOf(rows)).pipe(measureBiometry(MANIFEST, { pixelSpacing: { x: 0.1, y: 0.1 }, maxHcWidthMm: 50 })));
  // Source -> reference: scale 2, rotation 0.5 rad, then a shift.
  const [scale, rotation] = [2, 0.5];
  const [c, s] = [scale * Math.cos(rotation), scale * Math.sin(rotation)];
  const transform = { scale, rotation, tx: 0, ty: 0, matrix: [c, -s, 10, s, c, -4] as const };
  const source = biometryOnSource(biometry, transform);
  const back = source.ellipse!;
  const mapped = { x: c * back.cx - s * back.cy + 10, y: s * back.cx + c * back.cy - 4 };
  assert.ok(Math.abs(mapped.x - biometry.ellipse!.cx) < 1e-9 && Math.abs(mapped.y - biometry.ellipse!.cy) < 1e-9, 'the centre maps onto the aligned one');
  assert.ok(Math.abs(back.a - biometry.ellipse!.a / 2) < 1e-9 && Math.abs(back.angle - (biometry.ellipse!.angle - rotation)) < 1e-9);
  assert.ok(Math.abs(source.pooled!.hc.median - biometry.pooled!.hc.median / 2) < 1e-9 && Math.abs(source.pooled!.hc.high - biometry.pooled!.hc.high / 2) < 1e-9);
  assert.ok(Math.abs(source.ellipseMm!.a - back.a * 0.1) < 1e-9);
  assert.ok(source.ga!.median < biometry.ga!.median, 'GA follows the smaller head');
  assert.equal(biometryOnSource(biometry, { scale: 1, rotation: 0, tx: 0, ty: 0, matrix: [1, 0, 0, 0, 1, 0] }).pooled, biometry.pooled, 'the identity changes nothing');
});

test('the head is chosen by how head-like it is, not by size', () => {
  const tracer = new BoundaryTracer(SIZE, SIZE);
  const head = { cx: 20, cy: 32, a: 12, b: 10, angle: 0 };
  // A larger, ragged non-elliptic blob (an L-shaped band) beside the head.
  const blob = (x: number, y: number) => (x >= 38 && x < 60 && y >= 6 && y < 60 && (x < 44 || y > 52)) || (x >= 38 && x < 60 && y >= 6 && y < 12);
  const frame = { width: SIZE, height: SIZE, data: new Uint8Array(SIZE * SIZE).fill(60) };
  const candidates = tracer.candidates(logitMap(head, blob), 0, frame, { minArea: 10, borderMargin: 2, logitSd: () => 0 });
  assert.is(candidates.length, 2);
  assert.ok(candidates[0]!.area > candidates[1]!.area, 'the blob is the larger');
  const chosen = headEllipse(candidates, frame)!.fit.ellipse;
  assert.ok(Math.abs(chosen.cx - head.cx) < 1 && Math.abs(chosen.a - head.a) < 1, `chose ${JSON.stringify(chosen)}`);
});

test('a head whose mask a midline gap splits in two halves is measured whole, not as one half', () => {
  const tracer = new BoundaryTracer(SIZE, SIZE);
  const head = { cx: 32, cy: 32, a: 22, b: 17, angle: 0 };
  const gap = logitMap(head);
  for (let x = 0; x < SIZE; x++) gap[32 * SIZE + x] = -4; // the midline echo, one model pixel, across the head
  const frame = { width: SIZE, height: SIZE, data: new Uint8Array(SIZE * SIZE).fill(60) };
  const candidates = tracer.candidates(gap, 0, frame, { minArea: 10, borderMargin: 2, logitSd: () => 0 });
  assert.is(candidates.length, 2);
  const chosen = headEllipse(candidates, frame)!.fit.ellipse;
  assertClose(chosen, { ...head, cx: head.cx, cy: head.cy }, { centre: 1, axis: 1, angle: 0.05 });
});

test('outlineResidual: small for a clean head, large for a head merged with a blob, whose calibrated interval is then wider', async () => {
  const head = { cx: 26, cy: 32, a: 14, b: 11, angle: 0 };
  const body = (x: number, y: number) => x >= 30 && x < 56 && y >= 24 && y < 44; // a body segmented with the head as one blob
  const rows = (extra?: (x: number, y: number) => boolean) => [-0.5, 0, 0.5, 0, -0.5, 0.5].map((d) => logitMap({ ...head, a: head.a + d, b: head.b + d }, extra));
  const measure = (list: Float32Array[]) => firstValueFrom(of(samplesOf(list)).pipe(measureBiometry({ ...MANIFEST, biometry: { interval: 'normalised-conformal-outline', intervalScale: 2, intervalFloor: 0.005, calibration: {} } }, { pixelSpacing: { x: 0.1, y: 0.1 } })));
  const clean = (await measure(rows())).biometry;
  const merged = (await measure(rows(body))).biometry;
  assert.ok(clean.outlineResidual! < 0.03, `clean ${clean.outlineResidual}`);
  assert.ok(merged.outlineResidual! > 2 * clean.outlineResidual!, `merged ${merged.outlineResidual} vs clean ${clean.outlineResidual}`);
  const width = (b: typeof clean) => (b.pooled!.hc.high - b.pooled!.hc.low) / b.pooled!.hc.median;
  assert.ok(width(merged) > width(clean), `relative widths ${width(merged)} vs ${width(clean)}`);
  assert.is((await measure([logitMap(null), logitMap(null)])).biometry.outlineResidual, null);
});

test('crossings along rays: on a smooth logit map, within 0.3 frame px of the true outline; none in the border margin or against a black sector', () => {
  const tracer = new BoundaryTracer(SIZE, SIZE);
  // Signed distance-like logits of an ellipse at model resolution (positive inside), seen in a frame 4x larger.
  const head = { cx: 30, cy: 34, a: 20, b: 14, angle: 0.4 };
  const values = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const u = ((x - head.cx) * Math.cos(head.angle) + (y - head.cy) * Math.sin(head.angle)) / head.a;
      const v = (-(x - head.cx) * Math.sin(head.angle) + (y - head.cy) * Math.cos(head.angle)) / head.b;
      values[y * SIZE + x] = 4 * (1 - Math.hypot(u, v));
    }
  }
  const toFrame = (e: Ellipse): Ellipse => ({ cx: (e.cx + 0.5) * 4 - 0.5, cy: (e.cy + 0.5) * 4 - 0.5, a: e.a * 4, b: e.b * 4, angle: e.angle });
  const frame = { width: SIZE * 4, height: SIZE * 4, data: new Uint8Array(SIZE * SIZE * 16).fill(60) };
  const options = { minArea: 10, borderMargin: 2, logitSd: () => 0 };
  // The reference is off by 10% in size and 2 px in centre: the rays still find the true outline.
  const reference = { ...toFrame(head), cx: toFrame(head).cx + 8, a: toFrame(head).a * 1.1 };
  const points = tracer.crossingsNear(values, 0, frame, options, tracer.planRays(frame, options, reference, [0.7, 1.4], 72));
  assert.ok(points.n >= 72, `${points.n} crossings`);
  const truth = toFrame(head);
  for (let i = 0; i < points.n; i++) {
    const u = ((points.x[i]! - truth.cx) * Math.cos(truth.angle) + (points.y[i]! - truth.cy) * Math.sin(truth.angle)) / truth.a;
    const v = (-(points.x[i]! - truth.cx) * Math.sin(truth.angle) + (points.y[i]! - truth.cy) * Math.cos(truth.angle)) / truth.b;
    assert.ok(Math.abs(Math.hypot(u, v) - 1) * truth.b < 0.3, `point ${points.x[i]},${points.y[i]}`);
  }
  assertClose(fitEllipse(points)!.ellipse, truth, { centre: 0.3, axis: 0.3, angle: 0.01 });
  // A head cut by the left border: no crossings within the margin; a black sector on the right: none against it.
  const shifted = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) shifted[y * SIZE + x] = values[y * SIZE + Math.min(SIZE - 1, x + 20)]!;
  const clipped = tracer.crossingsNear(shifted, 0, frame, options, tracer.planRays(frame, options, { ...truth, cx: truth.cx - 80 }, [0.7, 1.4], 72));
  for (let i = 0; i < clipped.n; i++) assert.ok(clipped.x[i]! > 2 * 4, `x ${clipped.x[i]}`);
  const sector = { ...frame, data: frame.data.map((value, p) => (p % (SIZE * 4) >= 30 * 4 ? 0 : value)) };
  const beside = tracer.crossingsNear(values, 0, sector, options, tracer.planRays(sector, options, truth, [0.7, 1.4], 72));
  assert.ok(beside.n > 10);
  for (let i = 0; i < beside.n; i++) assert.ok(beside.x[i]! < 30 * 4 + 4, `x ${beside.x[i]} against the black sector`);
});

test('bad input gives a status, never an exception: empty map, one pixel, a line, a head mostly outside', async () => {
  const measure = (rows: Float32Array[]) => firstValueFrom(of(samplesOf(rows)).pipe(measureBiometry(MANIFEST)));
  const onePixel = logitMap(null, (x, y) => x === 30 && y === 30);
  const line = logitMap(null, (x, y) => y === 30 && x > 5 && x < 60);
  for (const rows of [[logitMap(null), logitMap(null)], [onePixel, onePixel], [line, line]]) {
    const { biometry } = await measure(rows);
    assert.is(biometry.status, 'no-head');
    assert.is(biometry.pooled, null);
    assert.is(biometry.ellipse, null);
  }
  const outside = { cx: -4, cy: 32, a: 24, b: 20, angle: 0 };
  const { biometry } = await measure(Array.from({ length: 4 }, () => logitMap(outside)));
  assert.is(biometry.status, 'clipped');
  assert.is(biometry.unit, 'px');
  assert.is(biometry.ga, null);
});

test('a wide interval is uncertain; an OOD frame is ood; bad options are INVALID_OPTION', async () => {
  const rows = [10, 12, 14, 16, 18, 20].map((a) => logitMap({ cx: 32, cy: 32, a, b: 9, angle: 0 }));
  const { biometry } = await firstValueFrom(of(samplesOf(rows)).pipe(measureBiometry(MANIFEST)));
  assert.is(biometry.status, 'uncertain');
  assert.is(withOod(biometry, { score: 1, threshold: 0.5, map: 'fused', above: true }).status, 'ood');
  assert.is(withOod(biometry, { score: 0, threshold: 0.5, map: 'fused', above: false }).status, 'uncertain');
  for (const bad of [{ maxHcWidthMm: -1 }, { minVisible: 2 }, { intervalScale: 0 }, { pixelSpacing: { x: 0, y: 1 } }]) {
    assert.throws(() => measureBiometry(MANIFEST, bad), (e: { code?: string }) => e.code === 'INVALID_OPTION');
  }
});

test.run();
