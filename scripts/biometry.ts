/**
 * Head biometry on an HC18 split with the SDK's own code (`replayReport`, i.e. `lfusion replay --report`):
 *
 *   node --import tsx scripts/biometry.ts calibrate --split val [--report <dir>] [--floor 0.005]
 *       replays the validation scans without a calibration (or reads an existing report), finds the normalised
 *       split-conformal scale of the posterior HC intervals (`median ± scale × max(half-width, floor × median)`)
 *       and writes it to the package manifest's `biometry` section (only that section).
 *   node --import tsx scripts/biometry.ts results --split test [--report <dir>] [--docs docs/results.md]
 *       replays the test scans and writes the biometry section of docs/results.md (ellipse vs pixel output,
 *       by HC band, interval coverage and width, raw and calibrated).
 *
 * Options: --data <hc18 folder> (default ../shared/data/hc18), --package <dir>, --m/--n/--k (default the
 * manifest's). `make -C models biometry` runs the calibration; `make -C models biometry-results` the results.
 */
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { conformalScale, type IntervalCalibration } from '../src/operators/measureBiometry/summary.js';
import { replayReport } from '../src/report/replay.js';
import { calibrationSection, withBiometrySection, withoutBiometrySection } from './biometry-manifest.js';
import { fmt, intervalScores, mean, median } from './biometry-scores.js';
import { writeSection } from './docs-section.js';
import { DEFAULT_MODEL_PATH } from '../src/runtime/model-package.js';
import type { FrameRecord } from '../src/report/records.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    split: { type: 'string' },
    report: { type: 'string' },
    data: { type: 'string', default: resolve('../shared/data/hc18') },
    package: { type: 'string', default: DEFAULT_MODEL_PATH },
    docs: { type: 'string', default: 'docs/results.md' },
    m: { type: 'string' },
    n: { type: 'string' },
    k: { type: 'string' },
    floor: { type: 'string', default: '0.005' },
  },
});

const BEGIN = '<!-- biometry: begin (written by scripts/biometry.ts results) -->';
const END = '<!-- biometry: end -->';
/** HC bands (mm, reference HC): early (about first trimester and early second), mid, large heads (often clipped by the image border). */
const BANDS = [
  { name: 'HC < 120 mm (early)', low: 0, high: 120 },
  { name: '120-260 mm (mid)', low: 120, high: 260 },
  { name: 'HC >= 260 mm (large)', low: 260, high: Infinity },
] as const;

/** A folder of symlinks to the split's scans (replay takes a folder); the annotations stay in training_set. */
async function splitFolder(split: string, data: string): Promise<string> {
  const plan = JSON.parse(await readFile('models/splits/hc18_split.json', 'utf8')) as { subjects: Record<string, string[]> };
  const subjects = new Set(plan.subjects[split] ?? []);
  if (subjects.size === 0) throw new Error(`no subjects in split "${split}" of models/splits/hc18_split.json`);
  const training = join(data, 'training_set');
  if (!existsSync(training)) throw new Error(`HC18 training_set not found at ${training} (--data)`);
  const { readdir } = await import('node:fs/promises');
  const folder = join('models', 'build', `biometry-${split}-scans`);
  await rm(folder, { recursive: true, force: true });
  await mkdir(folder, { recursive: true });
  for (const file of await readdir(training)) {
    if (/^\d+_\d*HC\.png$/.test(file) && subjects.has(file.split('_')[0]!)) await symlink(resolve(training, file), join(folder, file));
  }
  return folder;
}

/** The split's replay report: the one given, or a fresh replay into models/build/biometry-<split>. */
async function reportOf(split: string): Promise<string> {
  if (values.report) return values.report;
  const report = join('models', 'build', `biometry-${split}`);
  const counts = Object.fromEntries((['m', 'n', 'k'] as const).filter((key) => values[key]).map((key) => [key, Number(values[key])]));
  const summary = await replayReport({
    source: await splitFolder(split, values.data!),
    report,
    modelPath: values.package!,
    groundTruth: join(values.data!, 'training_set'),
    ...counts,
    command: ['node', 'scripts/biometry.ts', ...process.argv.slice(2)],
  });
  if (summary.partial || summary.errors.length) throw new Error(`replay of ${split} incomplete: ${JSON.stringify(summary.errors)}`);
  return report;
}

/** The calibration a report's replay applied (its package's manifest `biometry`), null for none. */
type AppliedCalibration = { interval?: string; intervalScale: number; intervalFloor?: number } | null;

async function readRecords(report: string): Promise<{ records: FrameRecord[]; applied: AppliedCalibration }> {
  const lines = (await readFile(join(report, 'frames.jsonl'), 'utf8')).split('\n').filter(Boolean);
  const run = JSON.parse(await readFile(join(report, 'run.json'), 'utf8')) as { biometry?: AppliedCalibration };
  const records = lines.map((line) => JSON.parse(line, (_key, value: unknown) => (value === 'Infinity' ? Infinity : value)) as FrameRecord);
  const applied = run.biometry ?? null;
  if (applied && applied.interval !== 'normalised-conformal-outline') throw new Error(`${report} was replayed with an older interval calibration: replay it again`);
  return { records, applied };
}

/**
 * Interval cases of the records with a measurement and a reference HC: the posterior interval before calibration
 * and the outline misfit (as replayed without one; after a normalised calibration, its whole difficulty
 * `half-width / scale` about the median, misfit included).
 */
function intervalCases(records: readonly FrameRecord[], applied: AppliedCalibration) {
  return records
    .filter((r) => r.hcFit !== null && r.hcLow !== null && r.hcHigh !== null && r.hcTrueMm !== null && r.biometryUnit === 'mm')
    .map((r) => {
      const half = (r.hcHigh! - r.hcLow!) / 2 / (applied?.intervalScale ?? 1);
      const interval = applied ? { median: r.hcFit!, low: r.hcFit! - half, high: r.hcFit! + half } : { median: r.hcFit!, low: r.hcLow!, high: r.hcHigh! };
      return { interval, truth: r.hcTrueMm!, status: r.biometryStatus, outlineResidual: applied ? 0 : (r.outlineResidual ?? 0) };
    });
}

async function calibrate(): Promise<void> {
  const split = values.split ?? 'val';
  const floor = Number(values.floor);
  if (!(floor >= 0 && floor < 1)) throw new Error(`--floor must be in [0, 1), got ${values.floor}`);
  const manifestPath = join(values.package!, 'manifest.json');
  const original = await readFile(manifestPath, 'utf8');
  // The replay measures the posterior's own intervals: the package without a calibration (restored on failure).
  if (!values.report) await writeFile(manifestPath, withoutBiometrySection(original));
  let report: string;
  try {
    report = await reportOf(split);
  } catch (error) {
    await writeFile(manifestPath, original);
    throw error;
  }
  const { records, applied } = await readRecords(report);
  const cases = intervalCases(records, applied);
  const scale = conformalScale(cases, floor);
  if (!Number.isFinite(scale)) {
    await writeFile(manifestPath, original);
    throw new Error(`too few validation scans with a measurement (${cases.length}) to calibrate`);
  }
  const raw = intervalScores(cases, null);
  const calibrated = intervalScores(cases, { scale, floor });
  const section = calibrationSection(scale, floor, {
    method:
      'normalised split conformal: the smallest scale s such that median ± s × hypot(max(posterior 95% half-width, floor × median), outlineResidual × median) covers ceil(0.95 (N + 1)) of N validation scans',
    split,
    scans: records.length,
    measured: cases.length,
    rawCoverage: raw.coverage,
    rawMeanWidthMm: raw.meanWidth,
    calibratedCoverage: calibrated.coverage,
    calibratedMeanWidthMm: calibrated.meanWidth,
    sampleCounts: { m: values.m ? Number(values.m) : 'manifest', n: values.n ? Number(values.n) : 'manifest', k: values.k ? Number(values.k) : 'manifest' },
  });
  // The clip heads' calibration (scripts/clip-biometry.ts) is theirs: kept as it was.
  const clip = (JSON.parse(original) as { biometry?: { clip?: unknown } }).biometry?.clip;
  await writeFile(manifestPath, withBiometrySection(withoutBiometrySection(original), clip === undefined ? section : { ...section, clip }));
  console.log(JSON.stringify(section, null, 1));
}

async function results(): Promise<void> {
  const split = values.split ?? 'test';
  const report = await reportOf(split);
  const { records, applied } = await readRecords(report);
  const manifest = JSON.parse(await readFile(join(values.package!, 'manifest.json'), 'utf8')) as { biometry?: { intervalScale: number; intervalFloor: number; calibration: { split: string } } };
  const calibration = manifest.biometry ? { scale: manifest.biometry.intervalScale, floor: manifest.biometry.intervalFloor } : null;
  const truth = records.filter((r) => r.hcTrueMm !== null);
  const lines: string[] = [BEGIN, '## Head biometry on the HC18 test split (original resolution)', ''];
  lines.push(
    `${truth.length} test scans, \`lfusion replay --report\` (the SDK's own biometry, m, n, k from the run: see run.json of the report), ` +
      'reference HC from the HC18 CSV, reference masks from the annotation ellipses. Pixel output: the mean probability thresholded at 0.5, ' +
      'its HC from the mask\'s area moments; ellipse output: the posterior-median ellipse of `measureBiometry`, HC the median of the ' +
      'per-sample HCs. A scan without a head ellipse (`no-head`) scores Dice 0 and an infinite HD for the ellipse output and is left out of the HC rows.',
    '',
  );
  const rows = (subset: FrameRecord[]) => {
    const ellipseHc = subset.filter((r) => r.hcFit !== null && r.biometryUnit === 'mm');
    const pixelHc = subset.filter((r) => r.pixelsHcMm !== null);
    const finite = (values: (number | null)[]) => values.filter((v): v is number => v !== null && Number.isFinite(v));
    const absE = ellipseHc.map((r) => Math.abs(r.hcFit! - r.hcTrueMm!));
    const absP = pixelHc.map((r) => Math.abs(r.pixelsHcMm! - r.hcTrueMm!));
    return {
      n: subset.length,
      ellipse: {
        dice: mean(finite(subset.map((r) => r.ellipseDice))),
        hd: mean(finite(subset.map((r) => r.ellipseHausdorffMm))),
        hdInf: subset.filter((r) => r.ellipseHausdorffMm === Infinity).length,
        absMean: mean(absE),
        absMedian: median(absE),
        signed: mean(ellipseHc.map((r) => r.hcFit! - r.hcTrueMm!)),
        within3: absE.filter((e) => e <= 3).length / Math.max(absE.length, 1),
        measured: ellipseHc.length,
      },
      pixels: {
        dice: mean(finite(subset.map((r) => r.pixelsDice))),
        hd: mean(finite(subset.map((r) => r.pixelsHausdorffMm))),
        hdInf: subset.filter((r) => r.pixelsHausdorffMm === Infinity).length,
        absMean: mean(absP),
        absMedian: median(absP),
        signed: mean(pixelHc.map((r) => r.pixelsHcMm! - r.hcTrueMm!)),
        within3: absP.filter((e) => e <= 3).length / Math.max(absP.length, 1),
        measured: pixelHc.length,
      },
    };
  };
  lines.push('| scans | output | Dice | HD mean (mm) | HC abs. error mean / median (mm) | HC signed error mean (mm) | within 3 mm | scans measured |', '|---|---|---|---|---|---|---|---|');
  for (const [name, subset] of [['all', truth], ...BANDS.map((band) => [band.name, truth.filter((r) => r.hcTrueMm! >= band.low && r.hcTrueMm! < band.high)] as const)] as const) {
    const r = rows(subset as FrameRecord[]);
    for (const output of ['ellipse', 'pixels'] as const) {
      const o = r[output];
      lines.push(
        `| ${name} (${r.n}) | ${output} | ${fmt(o.dice, 3)} | ${fmt(o.hd)}${o.hdInf ? ` (+${o.hdInf} empty)` : ''} | ${fmt(o.absMean)} / ${fmt(o.absMedian)} | ${fmt(o.signed)} | ${fmt(100 * o.within3, 0)}% | ${o.measured} |`,
      );
    }
  }
  const statuses = new Map<string, number>();
  for (const r of truth) statuses.set(r.biometryStatus ?? 'none', (statuses.get(r.biometryStatus ?? 'none') ?? 0) + 1);
  lines.push('', `Status of the test scans: ${[...statuses].map(([status, count]) => `${status} ${count}`).join(', ')}.`, '');
  const cases = intervalCases(truth, applied);
  lines.push(
    '### 95% HC interval (pooled: Laplace weight samples and dropout passes)',
    '',
    'Calibrated: `median ± scale × hypot(max(posterior half-width, floor × median), outlineResidual × median)`, the scale found on the validation scans ' +
      '(normalised split conformal, `make -C models biometry`), so that a frame whose posterior spreads more, or whose head outline fits an ellipse worse ' +
      '(`outlineResidual`: RMS misfit relative to the head\'s size), gets a proportionally wider interval.',
    '',
    '| interval | scans | coverage | mean width (mm) | median width (mm) |',
    '|---|---|---|---|---|',
  );
  const row = (name: string, subset: typeof cases, with_: IntervalCalibration | null) => {
    const r = intervalScores(subset, with_);
    lines.push(`| ${name} | ${subset.length} | ${fmt(100 * r.coverage, 1)}% | ${fmt(r.meanWidth, 1)} | ${fmt(r.medianWidth, 1)} |`);
  };
  row(applied ? 'difficulty about the median (scale 1: posterior half-width with the outline misfit)' : 'raw posterior', cases, null);
  if (calibration) {
    row(`calibrated on ${manifest.biometry!.calibration.split} (scale ${fmt(calibration.scale, 3)}, floor ${calibration.floor})`, cases, calibration);
    const ok = cases.filter((c) => c.status === 'ok');
    if (ok.length) row('calibrated, status ok only (interval at most 15 mm wide, head inside the image, not OOD)', ok, calibration);
  }
  lines.push('', 'Regenerate: `make -C models biometry-results` (replays the test scans), or `node --import tsx scripts/biometry.ts results --split test --report <an existing replay report of them>`.', END);
  await writeSection(values.docs!, lines, BEGIN, END);
  console.log(lines.join('\n'));
}

const command = positionals[0];
if (command === 'calibrate') await calibrate();
else if (command === 'results') await results();
else {
  console.error('usage: scripts/biometry.ts calibrate|results [--split val|test] [--report <dir>] [--data <hc18>] [--package <dir>] [--docs docs/results.md]');
  process.exit(2);
}
