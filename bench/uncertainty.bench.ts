/**
 * Frames per second of the encoder plus the whole L-FUSION uncertainty chain (heads, measures, fusion, OOD
 * score, planes) at the sample counts of the issue, with common random numbers as in live use. Each frame's
 * latency is measured alone (one frame in flight, as behind the live keep-latest queue); frames/s = 1000 /
 * latency. The frame is the package's in-distribution reference image.
 *
 *   npm run bench -- uncertainty
 *   BENCH_UNCERTAINTY_FRAMES=7 npm run bench -- uncertainty
 *
 * Then the common draws resident in the worker (sent once) against copied to it every frame (as before resident
 * feeds), frame by frame in alternation on one pool (BENCH_RESIDENT_PAIRS pairs per count); and exact against live mode
 * (samples amortised over frames) at the package default, frame by frame in alternation (BENCH_MODE_FRAMES each);
 * and L-FUSION's batched posterior sampling against re-running the whole network (encoder and head) per posterior
 * sample, the Laplace U-Net strategy, at m = k = 50 (the measures, the same for both, left out).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { lastValueFrom, of, type OperatorFunction } from 'rxjs';
import { encodeFrames } from '../src/operators/encodeFrames.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { drawDimensions, drawSamples } from '../src/runtime/draws.js';
import { DEFAULT_MODEL_PATH, loadModelPackage, type ModelPackage } from '../src/runtime/model-package.js';
import { loadReferenceVectors } from '../src/runtime/reference-vectors.js';
import type { EncodedFrame, Frame } from '../src/runtime/types/frames.js';
import type { GraphRunner } from '../src/runtime/types/inference.js';
import type { SampleCounts } from '../src/runtime/types/uncertainty.js';
import { lfusionUncertainty } from '../src/operators/lfusionUncertainty.js';
import { UNCERTAINTY_WORKERS } from '../src/sdk/pipeline.js';
import { percentile } from './percentile.js';
import type { BenchModule, BenchResult } from './run.js';

const FRAMES = Number(process.env.BENCH_UNCERTAINTY_FRAMES ?? 9);
const RESIDENT_PAIRS = Number(process.env.BENCH_RESIDENT_PAIRS ?? 3);
const MODE_FRAMES = Number(process.env.BENCH_MODE_FRAMES ?? 12);
/** The sample counts: minimal, the package default, the paper's maximum. */
export const SAMPLE_COUNTS: readonly SampleCounts[] = [
  { m: 1, n: 1, k: 1 },
  { m: 10, n: 4, k: 10 },
  { m: 50, n: 20, k: 50 },
];
/** Stages whose median milliseconds are reported next to the frame rate. */
const STAGES = ['encoder', 'heads', 'measures', 'fuse', 'ood', 'planes'];

/** The package's in-distribution reference image back in 8-bit grey, as a source frame. */
export async function referenceFrame(model: ModelPackage): Promise<Frame> {
  const { cases } = await loadReferenceVectors(model.path);
  const image = cases[0]!.arrays.image!.data;
  const { mean, std } = model.manifest.input.normalization;
  const data = Uint8Array.from(image, (x) => Math.round((x * std + mean) * 255));
  return { index: 0, pts: 0, captureTime: Date.now(), width: model.manifest.input.width, height: model.manifest.input.height, data };
}

/**
 * Warm-up frames through `analyse`: the common draws are drawn, resident copies sent, and every
 * worker of the pool runs every graph at these shapes once (a session's first run at a shape allocates; with two
 * workers the heads land on either).
 */
async function warmUp(frame: Frame, encode: ReturnType<typeof encodeFrames>, analyse: OperatorFunction<EncodedFrame, unknown>): Promise<void> {
  for (let i = 0; i < 2 * UNCERTAINTY_WORKERS; i++) await lastValueFrom(of(frame).pipe(encode, analyse));
}

/** What a chain benchmark runs on: the package at `modelPath`, a fresh pool as the pipeline opens it for the L-FUSION chain (closed afterwards), its reference frame and encoder. */
async function onFreshPool(
  modelPath: string,
  measure: (setup: { model: ModelPackage; pool: InferencePool; frame: Frame; encode: ReturnType<typeof encodeFrames> }) => Promise<BenchResult[]>,
): Promise<BenchResult[]> {
  const model = await loadModelPackage(modelPath);
  const pool = await InferencePool.open(model, { workers: UNCERTAINTY_WORKERS });
  try {
    return await measure({ model, pool, frame: await referenceFrame(model), encode: encodeFrames(pool, model.manifest) });
  } finally {
    await pool.close();
  }
}

/**
 * Measures `frames` frames at each sample count on a fresh pool of the package at `modelPath`.
 * @returns per count: frames/s samples and the median stage times.
 */
export function benchUncertainty(modelPath = DEFAULT_MODEL_PATH, counts: readonly SampleCounts[] = SAMPLE_COUNTS, frames = FRAMES): Promise<BenchResult[]> {
  return onFreshPool(modelPath, async ({ model, pool, frame, encode }) => {
    const results: BenchResult[] = [];
    for (const { m, n, k } of counts) {
      const analyse = lfusionUncertainty(pool, model.manifest, { m, n, k });
      const label = `(m,n,k)=(${m},${n},${k})`;
      const notes = { model: model.manifest.name, frames, draws: 'common', workers: UNCERTAINTY_WORKERS };
      await warmUp(frame, encode, analyse);
      const fps: number[] = [];
      const stages: Record<string, number[]> = Object.fromEntries(STAGES.map((stage) => [stage, []]));
      for (let i = 0; i < frames; i++) {
        const started = performance.now();
        const result = await lastValueFrom(of({ ...frame, index: i + 1 }).pipe(encode, analyse));
        fps.push(1000 / (performance.now() - started));
        for (const stage of STAGES) stages[stage]!.push(result.timings[stage] ?? Number.NaN);
      }
      results.push({ name: `${label} frames/s`, unit: 'fps', samples: fps, notes });
      for (const stage of STAGES) results.push({ name: `${label} ${stage}`, unit: 'ms', samples: stages[stage]!, notes });
    }
    return results;
  });
}

/** The pool as it was before resident feeds: a feed marked resident is copied to the worker on every run. */
function copyingResidents(pool: GraphRunner): GraphRunner {
  return { run: (graph, feeds, options = {}) => pool.run(graph, feeds, { keep: [...(options.keep ?? []), ...(options.resident ?? [])] }) };
}

/**
 * Milliseconds per frame (whole chain, and the measures stage) with the common draws resident in the worker and
 * copied every frame, alternating frame by frame on one pool, and the copied/resident ratio of each pair.
 */
export function benchResidentDraws(modelPath = DEFAULT_MODEL_PATH, counts: readonly SampleCounts[] = SAMPLE_COUNTS.slice(1), pairs = RESIDENT_PAIRS): Promise<BenchResult[]> {
  return onFreshPool(modelPath, async ({ model, pool, frame, encode }) => {
    const results: BenchResult[] = [];
    for (const { m, n, k } of counts) {
      const variants = { resident: pool, copied: copyingResidents(pool) };
      const analyses = Object.entries(variants).map(([name, runner]) => ({ name, analyse: lfusionUncertainty(runner, model.manifest, { m, n, k }), total: [] as number[], measures: [] as number[] }));
      for (const variant of analyses) await warmUp(frame, encode, variant.analyse);
      for (let i = 0; i < pairs; i++) {
        for (const variant of analyses) {
          const started = performance.now();
          const result = await lastValueFrom(of({ ...frame, index: i + 1 }).pipe(encode, variant.analyse));
          variant.total.push(performance.now() - started);
          variant.measures.push(result.timings.measures ?? Number.NaN);
        }
      }
      const label = `(m,n,k)=(${m},${n},${k})`;
      const notes = { model: model.manifest.name, pairs, draws: 'common', order: 'alternating, resident first' };
      for (const variant of analyses) {
        results.push({ name: `${label} ${variant.name} draws: frame`, unit: 'ms', samples: variant.total, notes });
        results.push({ name: `${label} ${variant.name} draws: measures`, unit: 'ms', samples: variant.measures, notes });
      }
      const [resident, copied] = analyses;
      results.push({ name: `${label} copied/resident frame time`, unit: 'x', samples: copied!.total.map((ms, i) => ms / resident!.total[i]!), notes });
    }
    return results;
  });
}

/**
 * Exact and live mode at the package's (m, n, k): encoder plus chain per frame, one frame in flight, the two modes
 * alternating frame by frame on one pool; each mode's frames are one stream (live pools across them). Frames/s is
 * 1000 / latency per frame; p50/p90/p99 of the latency; and exact/live latency per pair.
 */
export function benchModes(modelPath = DEFAULT_MODEL_PATH, frames = MODE_FRAMES): Promise<BenchResult[]> {
  return onFreshPool(modelPath, async ({ model, pool, frame, encode }) => {
    const { m, n, k } = model.manifest.sampling;
    const notes = { model: model.manifest.name, m, n, k, frames, order: 'alternating, exact first' };
    const modes = (['exact', 'live'] as const).map((mode) => ({ mode, analyse: lfusionUncertainty(pool, model.manifest, { mode }), ms: [] as number[] }));
    for (const { analyse } of modes) await warmUp(frame, encode, analyse);
    for (let i = 0; i < frames; i++) {
      for (const mode of modes) {
        const started = performance.now();
        await lastValueFrom(of({ ...frame, index: i + 1 }).pipe(encode, mode.analyse));
        mode.ms.push(performance.now() - started);
      }
    }
    const [exact, live] = modes;
    return [
      ...modes.flatMap(({ mode, ms }) => [
        { name: `${mode} mode frames/s`, unit: 'fps', samples: ms.map((value) => 1000 / value), notes },
        ...[0.5, 0.9, 0.99].map((fraction) => ({ name: `${mode} mode latency p${fraction * 100}`, unit: 'ms', samples: [percentile(ms, fraction)], notes })),
      ]),
      { name: 'exact/live latency', unit: 'x', samples: exact!.ms.map((ms, i) => ms / live!.ms[i]!), notes },
    ];
  });
}

/**
 * Milliseconds to sample m weight samples and k dropout passes of one frame: L-FUSION's way (the encoder once, each
 * head once with all samples batched) and the per-sample network's (encoder and head again for every sample), the
 * two alternating; and their ratio. n does not enter: the logit samples are drawn in the measures graph either way.
 */
export async function benchPerSampleNetwork(modelPath = DEFAULT_MODEL_PATH, m = 50, k = 50, pairs = 4): Promise<BenchResult[]> {
  const model = await loadModelPackage(modelPath);
  const pool = await InferencePool.open(model, { graphs: ['encoder', 'laplace_head', 'dropout_head'] });
  const { manifest } = model;
  const frame = await referenceFrame(model);
  const dims = drawDimensions(manifest);
  const seed = manifest.sampling.seed;
  const image = Float32Array.from(frame.data, (v) => (v / 255 - manifest.input.normalization.mean) / manifest.input.normalization.std);
  const imageDims = [1, 1, manifest.input.height, manifest.input.width];
  const scale = { data: Float32Array.of(manifest.laplace.posteriorScale), dims: [1] };
  // Drawn before timing, so that both ways are timed on inference alone.
  const draw = (mRows: number, kRows: number, first: { m: number; k: number }) => ({ mRows, kRows, draws: drawSamples(seed, { m: Math.max(mRows, 1), n: 1, k: Math.max(kRows, 1) }, dims, first) });
  const heads = async ({ mRows, kRows, draws }: ReturnType<typeof draw>) => {
    const { features } = await pool.run('encoder', { image: { data: image, dims: imageDims } }, { keep: ['image'] });
    const feeds = { features: features!, image: { data: image, dims: imageDims } };
    const keep = { keep: ['features', 'image', 'posterior_scale', 'weight_noise', 'dropout_masks'] };
    if (mRows > 0) await pool.run('laplace_head', { ...feeds, weight_noise: draws.weightNoise, posterior_scale: scale }, keep);
    if (kRows > 0) await pool.run('dropout_head', { ...feeds, dropout_masks: draws.dropoutMasks }, keep);
  };
  const allAtOnce = draw(m, k, { m: 0, k: 0 });
  const oneByOne = [...Array.from({ length: m }, (_, j) => draw(1, 0, { m: j, k: 0 })), ...Array.from({ length: k }, (_, j) => draw(0, 1, { m: 0, k: j }))];
  const batched: number[] = [];
  const perSample: number[] = [];
  try {
    for (const warmUp of [allAtOnce, oneByOne[0]!, oneByOne[m]!]) await heads(warmUp); // each graph at each shape once
    for (let pair = 0; pair < pairs; pair++) {
      let started = performance.now();
      await heads(allAtOnce);
      batched.push(performance.now() - started);
      started = performance.now();
      for (const sample of oneByOne) await heads(sample);
      perSample.push(performance.now() - started);
    }
  } finally {
    await pool.close();
  }
  const notes = { model: manifest.name, m, k, pairs, order: 'alternating, batched first', measures: 'left out (the same for both)' };
  return [
    { name: `(m,k)=(${m},${k}) L-FUSION batched sampling`, unit: 'ms', samples: batched, notes },
    { name: `(m,k)=(${m},${k}) whole network per sample`, unit: 'ms', samples: perSample, notes },
    { name: `(m,k)=(${m},${k}) per-sample/batched`, unit: 'x', samples: perSample.map((ms, i) => ms / batched[i]!), notes },
  ];
}

const bench: BenchModule = {
  title: `encoder + L-FUSION uncertainty chain: ${FRAMES} frames per (m, n, k), one frame in flight`,
  async run(): Promise<BenchResult[]> {
    if (!existsSync(join(DEFAULT_MODEL_PATH, 'manifest.json'))) {
      process.stderr.write(`uncertainty bench skipped: no model package at ${DEFAULT_MODEL_PATH}\n`);
      return [];
    }
    return [...(await benchUncertainty()), ...(await benchModes()), ...(await benchPerSampleNetwork()), ...(await benchResidentDraws())];
  },
};
export default bench;
