/**
 * Quality of live mode (amortised samples) against exact mode on moving scans: each scan of a set becomes a short
 * sweep (the image shifted one more pixel every frame, as a drifting probe), run through the live chain from its
 * first frame; the last frame's result (its pool holds only shares sampled on earlier, shifted frames) is compared
 * with exact mode on that frame: Dice against the shifted reference mask (test scans), and the OOD score's AUROC of
 * each OOD set against the test scans. Reads the sets `lfusion.density --write-sets` writes and the test masks
 * (`test-masks.u8`, same order as `test.u8`).
 *
 * `--live-frames 5,3,2` compares live mode spread over each of those frame counts (`live.frames`) in one run. Each
 * live mode's AUROC loss on each set comes with a 95% bootstrap interval (`aurocLossInterval`). Each frame's record
 * keeps the fused OOD decision's evidence (`ood.evidence`), from which `python3 -m lfusion.live_decision` measures
 * the loss of the decision that raises the alert. `--biometry` adds head biometry to every mode and, on the test sweeps,
 * how often the pooled HC interval holds the reference mask's HC (frame pixels), its width and error; `--ood 0`
 * leaves out the OOD sets. `--frames 1
 * --live-reset ramp` measures a frame that empties the pool under `live.reset: 'ramp'` (its own share only).
 *
 *   node --import tsx scripts/live-quality.ts --sets models/build/ood-scores/sets --out build/live-quality.json [--test 60 --ood 15 --frames 6 --live-frames 5 --live-reset full]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { from, lastValueFrom } from 'rxjs';
import { encodeFrames } from '../src/operators/encodeFrames.js';
import { lfusionUncertainty } from '../src/operators/lfusionUncertainty.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';
import { Random } from '../src/runtime/random.js';
import { headCircumferenceMm } from '../src/report/metrics.js';
import type { Interval } from '../src/runtime/types/biometry.js';
import type { Frame } from '../src/runtime/types/frames.js';
import type { FrameResult } from '../src/runtime/types/results.js';

const { values } = parseArgs({
  options: {
    sets: { type: 'string', default: 'models/build/ood-scores/sets' },
    out: { type: 'string', default: 'build/live-quality.json' },
    model: { type: 'string', default: DEFAULT_MODEL_PATH },
    test: { type: 'string', default: '60' },
    ood: { type: 'string', default: '15' },
    frames: { type: 'string', default: '6' },
    'live-frames': { type: 'string', default: '5' },
    'live-reset': { type: 'string', default: 'full' },
    biometry: { type: 'boolean', default: false },
  },
});

/** `image` (size x size) moved by (dx, dy) pixels, zero where it moved in from outside. */
function shifted(image: Uint8Array, size: number, dx: number, dy: number): Uint8Array {
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    const sy = y - dy;
    if (sy < 0 || sy >= size) continue;
    for (let x = 0; x < size; x++) {
      const sx = x - dx;
      if (sx >= 0 && sx < size) out[y * size + x] = image[sy * size + sx]!;
    }
  }
  return out;
}

function dice(mask: Uint8Array, truth: Uint8Array): number {
  let both = 0;
  let total = 0;
  for (let i = 0; i < mask.length; i++) {
    both += mask[i]! & truth[i]!;
    total += mask[i]! + truth[i]!;
  }
  return total === 0 ? 1 : (2 * both) / total;
}

/** Probability that an OOD score exceeds an in-distribution one (ties count half). */
function auroc(inDistribution: number[], ood: number[]): number {
  let wins = 0;
  for (const a of ood) for (const b of inDistribution) wins += a > b ? 1 : a === b ? 0.5 : 0;
  return wins / (ood.length * inDistribution.length);
}

/**
 * The 95% interval of the AUROC lost (`exact - live`) on one OOD set: the in-distribution and the OOD frames drawn
 * again with replacement, the same draw for both modes (a paired difference), `resamples` times.
 */
function aurocLossInterval(inDistribution: { exact: number[]; live: number[] }, ood: { exact: number[]; live: number[] }, resamples = 500): [number, number] {
  const random = new Random(7);
  const draw = (length: number) => Array.from({ length }, () => Math.floor(random.nextFloat() * length));
  const losses: number[] = [];
  for (let r = 0; r < resamples; r++) {
    const [ids, oods] = [draw(inDistribution.exact.length), draw(ood.exact.length)];
    const pick = (values: number[], at: number[]) => at.map((i) => values[i]!);
    losses.push(auroc(pick(inDistribution.exact, ids), pick(ood.exact, oods)) - auroc(pick(inDistribution.live, ids), pick(ood.live, oods)));
  }
  losses.sort((a, b) => a - b);
  return [losses[Math.floor(0.025 * resamples)]!, losses[Math.ceil(0.975 * resamples) - 1]!];
}

const index = JSON.parse(await readFile(join(values.sets!, 'index.json'), 'utf8')) as { size: number; sets: Record<string, number> };
const size = index.size;
const pixels = size * size;
const sweepLength = Number(values.frames);
const pkg = await loadModelPackage(values.model!);
const pool = await InferencePool.open(pkg);
const encode = encodeFrames(pool, pkg.manifest);
const liveFrames = values['live-frames']!.split(',').map(Number);
if (!liveFrames.every((frames) => Number.isInteger(frames) && frames >= 1)) throw new Error(`--live-frames takes frame counts >= 1, got ${values['live-frames']}`);
// `live` is the SDK default's spread; `live-N` another.
const modeName = (frames: number) => (frames === 5 ? 'live' : `live-${frames}`);
const biometry = values.biometry ? { biometry: true } : {};
const modes: Record<string, ReturnType<typeof lfusionUncertainty>> = {
  exact: lfusionUncertainty(pool, pkg.manifest, { mode: 'exact', ...biometry }),
  ...Object.fromEntries(liveFrames.map((frames) => [modeName(frames), lfusionUncertainty(pool, pkg.manifest, { mode: 'live', live: { frames, reset: values['live-reset'] as 'full' | 'ramp' }, ...biometry })])),
};
const masks = await readFile(join(values.sets!, 'test-masks.u8'));
const sets = Object.keys(index.sets).filter((name) => name === 'test' || (Number(values.ood) > 0 && (name.startsWith('ood-test-') || name.startsWith('ood-dev-'))));
const record: Record<string, Record<string, { ood: number; evidence: Record<string, number>; dice?: number; hc?: Interval | null; truthHc?: number }[]>> = {};
const started = Date.now();
const load = [loadavg()];
try {
  for (const name of sets) {
    const data = await readFile(join(values.sets!, `${name}.u8`));
    const count = Math.min(index.sets[name]!, Number(name === 'test' ? values.test : values.ood));
    record[name] = Object.fromEntries(Object.keys(modes).map((mode) => [mode, []]));
    for (let i = 0; i < count; i++) {
      const image = new Uint8Array(data.subarray(i * pixels, (i + 1) * pixels));
      // Alternate the drift direction from scan to scan.
      const [ux, uy] = ([[1, 0], [0, 1], [-1, 0], [0, -1]] as const)[i % 4]!;
      const frameAt = (t: number): Frame => ({ index: t, pts: t, captureTime: 0, width: size, height: size, data: shifted(image, size, ux * t, uy * t) });
      const sweep = Array.from({ length: sweepLength }, (_, t) => frameAt(t));
      const last = sweepLength - 1;
      const truth = name === 'test' ? shifted(new Uint8Array(masks.subarray(i * pixels, (i + 1) * pixels)), size, ux * last, uy * last) : undefined;
      // With --biometry, the pooled HC interval (frame pixels) and the reference mask's HC (its moment ellipse).
      const truthHc = truth && values.biometry ? headCircumferenceMm({ data: truth, width: size, height: size }, { x: 1, y: 1 }) : undefined;
      const hc = (result: FrameResult) => (truthHc === undefined ? {} : { hc: result.biometry?.pooled?.hc ?? null, truthHc });
      const score = (result: FrameResult) => ({ ood: result.ood!.score, evidence: result.ood!.evidence!, ...(truth ? { dice: dice(result.planes[0]!.data, truth) } : {}), ...hc(result) });
      for (const [mode, chain] of Object.entries(modes)) {
        const frames = mode === 'exact' ? [sweep[last]!] : sweep;
        record[name][mode]!.push(score(await lastValueFrom(from(frames).pipe(encode, chain))));
      }
      process.stderr.write(`\r${name} ${i + 1}/${count}   `);
    }
  }
} finally {
  await pool.close();
}
load.push(loadavg());
const test = record.test!;
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const oodSets = sets.filter((name) => name !== 'test');
/** Over the test sweeps with a head: how often the HC interval holds the reference's HC, its mean width and error. */
function hcSummary(rows: { hc?: Interval | null; truthHc?: number }[]) {
  const measured = rows.filter((r) => r.hc);
  return {
    scans: rows.length,
    measured: measured.length,
    coverage: mean(measured.map((r) => Number(r.hc!.low <= r.truthHc! && r.truthHc! <= r.hc!.high))),
    meanWidthPx: mean(measured.map((r) => r.hc!.high - r.hc!.low)),
    meanAbsErrorPx: mean(measured.map((r) => Math.abs(r.hc!.median - r.truthHc!))),
  };
}
const summary = Object.fromEntries(
  Object.keys(modes).map((mode) => [
    mode,
    {
      dice: mean(test[mode]!.map((r) => r.dice!)) * 100,
      diceLoss: mean(test[mode]!.map((r, i) => test.exact![i]!.dice! - r.dice!)) * 100,
      ...(values.biometry ? { hc: hcSummary(test[mode]!) } : {}),
      auroc: Object.fromEntries(oodSets.map((name) => [name, auroc(test[mode]!.map((r) => r.ood), record[name]![mode]!.map((r) => r.ood))])),
      ...(mode === 'exact'
        ? {}
        : {
            aurocLossInterval: Object.fromEntries(
              oodSets.map((name) => {
                const scores = (set: string, chosen: string) => record[set]![chosen]!.map((r) => r.ood);
                return [name, aurocLossInterval({ exact: scores('test', 'exact'), live: scores('test', mode) }, { exact: scores(name, 'exact'), live: scores(name, mode) })];
              }),
            ),
          }),
    },
  ]),
);
await writeFile(values.out!, JSON.stringify({ package: pkg.manifest.name, sampling: pkg.manifest.sampling, sweepLength, liveReset: values['live-reset'], seconds: (Date.now() - started) / 1000, loadavg: load, summary, record }, null, 1) + '\n');
process.stderr.write(`\n${JSON.stringify(summary, null, 1)}\n`);
