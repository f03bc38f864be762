/**
 * Head biometry of the clip path (the 3D heads' posterior samples, `lfusionClipUncertainty` with `biometry`) on the
 * simulated HC18 sweeps that `make -C models clip-features` writes raw, with the 2D path on some of the same frames:
 *
 *   node --import tsx scripts/clip-biometry.ts calibrate --sweeps models/build/clips/val
 *       measures the validation sweeps with the clip heads' own intervals, finds the normalised split-conformal
 *       scale (as scripts/biometry.ts does for the 2D path) and writes it to the manifest's `biometry.clip`.
 *   node --import tsx scripts/clip-biometry.ts results --sweeps models/build/clips/test [--docs docs/results.md]
 *       measures the test sweeps and writes the clip-path biometry section of docs/results.md.
 *
 * Reference: each sweep frame's reference ellipse is fitted to its transformed annotation mask; the frame's pixel
 * spacing is set so that this ellipse measures the scan's CSV HC (the sweeps are resampled from the 224x224 scans, whose
 * pixels are not square: a per-frame isotropic spacing is the first-order equivalent). Frames whose reference ellipse
 * is less than half inside the frame are left out. Options: --package <dir>, --data <hc18>, --limit N (sweeps),
 * --frames-2d N (frames per sweep also measured by the 2D path, evenly spaced; default 4), --floor 0.005.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { firstValueFrom, of } from 'rxjs';
import { encodeFrames } from '../src/operators/encodeFrames.js';
import { lfusionClipUncertainty } from '../src/operators/lfusionClipUncertainty.js';
import { measureBiometry, type Spacing } from '../src/operators/measureBiometry.js';
import { ellipseCircumference, fitEllipse, visibleFraction } from '../src/operators/measureBiometry/ellipse.js';
import { conformalScale, type IntervalCalibration } from '../src/operators/measureBiometry/summary.js';
import { BoundaryTracer } from '../src/operators/measureBiometry/trace.js';
import { sampleHeads } from '../src/operators/sampleHeads.js';
import { parsePixelSizeCsv } from '../src/report/ground-truth.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';
import type { Biometry } from '../src/runtime/types/biometry.js';
import type { Frame } from '../src/runtime/types/frames.js';
import type { ModelManifest } from '../src/runtime/types/model.js';
import { calibrationSection, withClipCalibration } from './biometry-manifest.js';
import { openPathPools, readSweeps, runWindow } from './clip-sweeps.js';
import { fmt, intervalScores, mean, median } from './biometry-scores.js';
import { writeSection } from './docs-section.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    sweeps: { type: 'string' },
    package: { type: 'string', default: DEFAULT_MODEL_PATH },
    data: { type: 'string', default: resolve('../shared/data/hc18') },
    docs: { type: 'string', default: 'docs/results.md' },
    limit: { type: 'string' },
    'frames-2d': { type: 'string', default: '4' },
    floor: { type: 'string', default: '0.005' },
  },
});

const BEGIN = '<!-- clip-biometry: begin (written by scripts/clip-biometry.ts results) -->';
const END = '<!-- clip-biometry: end -->';
/** Frames whose reference ellipse lies less than this fraction inside the frame are not scored. */
const MIN_REFERENCE_VISIBLE = 0.5;

/** One scored frame: its reference, and each path's measurement (the 2D path on some frames only). */
interface FrameRow {
  sweep: number;
  t: number;
  scan: string;
  truth: number;
  clip: Biometry;
  twoD?: Biometry;
}

/** The reference ellipse's HC (frame pixels) and visible fraction of a 0/1 mask, null when it has no ellipse. */
function referenceOf(tracer: BoundaryTracer, mask: Uint8Array, size: number): { hc: number; visible: number } | null {
  const logits = Float32Array.from(mask, (v) => (v ? 1 : -1));
  // A white frame: no crossing is taken for the black outside of a sector.
  const frame = { width: size, height: size, data: new Uint8Array(size * size).fill(255) };
  const [largest] = tracer.candidates(logits, 0, frame, { minArea: 10, borderMargin: 1, logitSd: () => 0 });
  const fit = largest && fitEllipse(largest.points);
  return fit ? { hc: ellipseCircumference(fit.ellipse.a, fit.ellipse.b), visible: visibleFraction(fit.ellipse, size, size) } : null;
}

/** Every sweep's frames through the clip path (and some through the 2D path), against their references. */
async function measureSweeps(folder: string, manifest: ModelManifest, packagePath: string): Promise<FrameRow[]> {
  const sweepSet = readSweeps(folder, { masks: true });
  const { count, length, size } = sweepSet;
  const facts = parsePixelSizeCsv(await readFile(join(values.data!, 'training_set', 'training_set_pixel_size_and_HC.csv'), 'utf8'), 'HC18 CSV');
  const model = await loadModelPackage(packagePath);
  const { pool, clipPool, close } = await openPathPools(model);
  const tracer = new BoundaryTracer(size, size);
  const spacings = new Map<number, Spacing>();
  const pixelSpacing = (frame: Frame) => spacings.get(frame.index);
  const encode = encodeFrames(pool, manifest);
  const clip = lfusionClipUncertainty(clipPool, manifest, { biometry: { pixelSpacing } });
  const twoD = measureBiometry(manifest, { pixelSpacing });
  const every = Math.max(1, Math.round(length / Number(values['frames-2d'])));
  const sweeps = Math.min(count, values.limit ? Number(values.limit) : count);
  const rows: FrameRow[] = [];
  try {
    for (let sweep = 0; sweep < sweeps; sweep++) {
      const scan = sweepSet.names[sweep]!.endsWith('.png') ? sweepSet.names[sweep]! : `${sweepSet.names[sweep]}.png`;
      const hc = facts.get(scan)?.hcMm;
      if (hc === undefined) throw new Error(`no HC for ${scan} in the HC18 CSV`);
      const window = sweepSet.window(sweep);
      const references = window.map((frame, t) => {
        const reference = referenceOf(tracer, sweepSet.mask(sweep, t), size);
        if (reference) spacings.set(frame.index, { x: hc / reference.hc, y: hc / reference.hc });
        return reference;
      });
      const { encoded, maps } = await runWindow(window, encode, clip);
      for (let t = 0; t < length; t++) {
        const reference = references[t];
        if (!reference || reference.visible < MIN_REFERENCE_VISIBLE) continue;
        const row: FrameRow = { sweep, t, scan, truth: hc, clip: maps.biometry![t]! };
        if (t % every === Math.floor(every / 2)) row.twoD = (await firstValueFrom(of(encoded[t]!).pipe(sampleHeads(pool, manifest, {}), twoD))).biometry;
        rows.push(row);
      }
      if ((sweep + 1) % 10 === 0) process.stderr.write(`${sweep + 1}/${sweeps} sweeps\n`);
    }
  } finally {
    await close();
  }
  return rows;
}

/** The conformal cases of measured frames (their intervals as measured, misfit included only when uncalibrated). */
function cases(measured: readonly { biometry: Biometry; truth: number }[]) {
  return measured
    .filter(({ biometry }) => biometry.pooled && biometry.unit === 'mm')
    .map(({ biometry, truth }) => ({ interval: biometry.pooled!.hc, truth, outlineResidual: biometry.outlineResidual ?? 0, status: biometry.status }));
}

/** HC errors, interval coverage and width, statuses of one path's measurements. */
function summary(measured: readonly { biometry: Biometry; truth: number }[], recalibrate?: IntervalCalibration) {
  const c = cases(measured);
  const errors = c.map(({ interval, truth }) => interval.median - truth);
  const { coverage, meanWidth } = intervalScores(c, recalibrate ?? null);
  const statuses = new Map<string, number>();
  for (const { biometry } of measured) statuses.set(biometry.status, (statuses.get(biometry.status) ?? 0) + 1);
  return {
    frames: measured.length,
    measured: c.length,
    absMean: mean(errors.map(Math.abs)),
    absMedian: median(errors.map(Math.abs)),
    signed: mean(errors),
    within3: errors.filter((e) => Math.abs(e) <= 3).length / Math.max(errors.length, 1),
    coverage,
    meanWidth,
    ok: statuses.get('ok') ?? 0,
    statuses: Object.fromEntries(statuses),
  };
}

async function calibrate(): Promise<void> {
  const floor = Number(values.floor);
  const manifestPath = join(values.package!, 'manifest.json');
  const text = await readFile(manifestPath, 'utf8');
  const model = await loadModelPackage(values.package!);
  // The clip heads' own intervals: the package as if it had no clip calibration.
  const manifest: ModelManifest = { ...model.manifest, ...(model.manifest.biometry ? { biometry: { ...model.manifest.biometry, clip: undefined } } : {}) };
  const rows = await measureSweeps(values.sweeps!, manifest, values.package!);
  const measured = rows.map((row) => ({ biometry: row.clip, truth: row.truth }));
  const scale = conformalScale(cases(measured), floor);
  if (!Number.isFinite(scale)) throw new Error(`too few validation sweep frames with a measurement (${cases(measured).length}) to calibrate`);
  const raw = summary(measured);
  const calibrated = summary(measured, { scale, floor });
  const section = calibrationSection(scale, floor, {
    method: 'normalised split conformal, as the 2D path, on every frame of the validation sweeps whose reference ellipse is at least half inside the frame',
    split: 'val sweeps',
    sweeps: new Set(rows.map((row) => row.sweep)).size,
    frames: rows.length,
    measured: raw.measured,
    rawCoverage: raw.coverage,
    rawMeanWidthMm: raw.meanWidth,
    calibratedCoverage: calibrated.coverage,
    calibratedMeanWidthMm: calibrated.meanWidth,
    sampleCounts: manifest.clip ? { m: manifest.clip.sampling.m, n: manifest.clip.sampling.n, k: manifest.clip.sampling.k } : null,
  });
  await writeFile(manifestPath, withClipCalibration(text, section));
  console.log(JSON.stringify(section, null, 1));
}

async function results(): Promise<void> {
  const model = await loadModelPackage(values.package!);
  const { manifest } = model;
  const rows = await measureSweeps(values.sweeps!, manifest, values.package!);
  await writeFile(join('models', 'build', 'clip-biometry-frames.json'), JSON.stringify(rows.map(({ clip, twoD, ...row }) => ({ ...row, clip: clip.pooled?.hc ?? null, clipStatus: clip.status, twoD: twoD?.pooled?.hc ?? null, twoDStatus: twoD?.status ?? null }))));
  const withTwoD = rows.filter((row) => row.twoD);
  const calibration = manifest.biometry?.clip;
  const lines = [BEGIN, '## Head biometry on the clip path (simulated test sweeps)', ''];
  lines.push(
    `${new Set(rows.map((r) => r.sweep)).size} test sweeps of ${manifest.clip?.frames ?? '?'} frames (\`make -C models clip-features\`), each one window of the clip heads at (m, n, k) = ` +
      `(${manifest.clip?.sampling.m}, ${manifest.clip?.sampling.n}, ${manifest.clip?.sampling.k}), biometry from their posterior samples of each frame at ${manifest.clip?.outputSize}x${manifest.clip?.outputSize} ` +
      `(\`lfusionClipUncertainty\` with \`biometry\`); the 2D path (\`measureBiometry\` on \`sampleHeads\` at the manifest's counts, no OOD decision) on ${values['frames-2d']} evenly spaced frames of each sweep. ` +
      `Reference: the scan's CSV HC; each frame's spacing makes its transformed annotation ellipse measure that HC (first-order: the sweeps are resampled from the 224x224 scans, whose pixels are not square). ` +
      `Frames whose reference ellipse is less than half inside the frame are left out (${rows.length} frames scored). HC errors over every scored frame with a measurement, whatever its status.`,
    '',
    '| path | frames | measured | HC abs. error mean / median (mm) | signed mean (mm) | within 3 mm | 95% interval coverage | mean width (mm) | status ok |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  const row = (name: string, measured: { biometry: Biometry; truth: number }[], recalibrate?: IntervalCalibration) => {
    const s = summary(measured, recalibrate);
    lines.push(`| ${name} | ${s.frames} | ${s.measured} | ${fmt(s.absMean)} / ${fmt(s.absMedian)} | ${fmt(s.signed)} | ${fmt(100 * s.within3, 0)}% | ${fmt(100 * s.coverage, 1)}% | ${fmt(s.meanWidth, 1)} | ${s.ok} |`);
    return s;
  };
  const clipAll = row(calibration ? `clip path, calibrated on validation sweeps (scale ${fmt(calibration.intervalScale, 3)})` : 'clip path (posterior intervals, uncalibrated)', rows.map((r) => ({ biometry: r.clip, truth: r.truth })));
  row('clip path, the 2D path\'s frames', withTwoD.map((r) => ({ biometry: r.clip, truth: r.truth })));
  row(`2D path, same frames (scale ${fmt(manifest.biometry?.intervalScale ?? 1, 3)})`, withTwoD.map((r) => ({ biometry: r.twoD!, truth: r.truth })));
  lines.push('', `Statuses of the clip path's frames: ${Object.entries(clipAll.statuses).map(([status, n]) => `${status} ${n}`).join(', ')}.`);
  lines.push('', 'Regenerate: `make -C models clip-biometry-results` (after `make -C models clip-biometry`, which calibrates on the validation sweeps).', END);
  await writeSection(values.docs!, lines, BEGIN, END);
  console.log(lines.join('\n'));
}

const command = positionals[0];
if (!values.sweeps || (command !== 'calibrate' && command !== 'results')) {
  console.error('usage: scripts/clip-biometry.ts calibrate|results --sweeps <raw sweep folder> [--package <dir>] [--data <hc18>] [--docs docs/results.md] [--limit N] [--frames-2d 4]');
  process.exit(2);
}
await (command === 'calibrate' ? calibrate() : results());
