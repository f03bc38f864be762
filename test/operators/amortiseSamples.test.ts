import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import { amortiseSamples } from '../../src/operators/amortiseSamples.js';
import { combineSampleSets, laplaceSampleMean, POOLED_MEASURES } from '../../src/operators/amortiseSamples/combine.js';
import { measureUncertainty } from '../../src/operators/measureUncertainty.js';
import { sampleHeads } from '../../src/operators/sampleHeads.js';
import { LfusionError } from '../../src/runtime/errors.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { headGrid, loadModelPackage } from '../../src/runtime/model-package.js';
import { Random } from '../../src/runtime/random.js';
import type { EncodedFrame } from '../../src/runtime/types/frames.js';
import type { GraphRunner, TensorData } from '../../src/runtime/types/inference.js';
import type { ModelManifest } from '../../src/runtime/types/model.js';
import type { MeasuredFrame } from '../../src/runtime/types/uncertainty.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';

const SIDE = 16; // at least 8x8: live mode estimates the motion between frames
const HW = SIDE * SIDE;
const RANK = 2;
const WEIGHTS = 3;
const MASKS = 4;
const EPS = 1e-6;
const ORDER = [...POOLED_MEASURES].reverse(); // any order of the known measures

const manifest = {
  name: 'fake',
  input: { width: SIDE, height: SIDE, normalization: { mean: 0.5, std: 0.25 } },
  sampling: { m: 4, n: 3, k: 4, maxM: 50, maxN: 20, maxK: 50, seed: 3 },
  laplace: { weightCount: WEIGHTS, rank: RANK, posteriorScale: 1 },
  dropout: { maskCount: MASKS, rate: 0.5 },
  measures: { order: ORDER, entropyEpsilon: EPS },
  graphs: {
    laplace_head: { inputs: { features: [1, 2, 1, 1] } },
    measures: { outputs: { laplace_maps: [ORDER.length, HW] } },
  },
} as unknown as ModelManifest;

/** docs/uncertainty.md's measures of logit samples [S, HW], in ORDER (models/lfusion/measures.py in JS). */
function sampleMeasures(logits: Float64Array[], eps = EPS): Float32Array {
  const limit = Math.log((1 - eps) / eps);
  const out = new Float32Array(ORDER.length * HW);
  const set = (name: string, p: number, value: number) => (out[ORDER.indexOf(name as never) * HW + p] = value);
  const entropy = (q: number) => -(q * Math.log(q) + (1 - q) * Math.log1p(-q));
  const S = logits.length;
  for (let p = 0; p < HW; p++) {
    const z = logits.map((row) => row[p]!);
    const probs = z.map((x) => 1 / (1 + Math.exp(-x)));
    const clamped = z.map((x) => Math.min(Math.max(x, -limit), limit));
    const q = clamped.map((x) => 1 / (1 + Math.exp(-x)));
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const meanProb = mean(probs);
    const total = entropy(Math.min(Math.max(meanProb, eps), 1 - eps));
    const expected = mean(q.map(entropy));
    const [mq, mz, mp, ml] = [mean(q), mean(clamped), meanProb, mean(z)];
    set('mean_prob', p, meanProb);
    set('expected_entropy', p, expected);
    set('mutual_information', p, total - expected);
    set('total_entropy', p, total);
    set('expected_pairwise_kl', p, q.reduce((acc, qi, i) => acc + (qi - mq) * (clamped[i]! - mz), 0) / Math.max(S - 1, 1));
    set('pixel_variance', p, mean(probs.map((x) => (x - mp) ** 2)));
    set('logit_variance', p, mean(z.map((x) => (x - ml) ** 2)));
  }
  return out;
}

/** Fake heads (logits from the image, the noise rows and the masks) and the measures graph in JS. */
const runner: GraphRunner = {
  async run(graph, feeds): Promise<Record<string, TensorData>> {
    const image = feeds.image?.data ?? new Float32Array(HW);
    if (graph === 'laplace_head') {
      const noise = feeds.weight_noise!.data;
      const m = feeds.weight_noise!.dims[0]!;
      const tensor = (rows: number, value: (row: number, p: number) => number): TensorData => ({ data: Float32Array.from({ length: rows * HW }, (_, i) => value(Math.floor(i / HW), i % HW)), dims: [rows, HW] });
      const mean = tensor(m, (j, p) => image[p]! * 2 + noise[j * WEIGHTS + (p % WEIGHTS)]!);
      const factor = tensor(m * RANK, (jr, p) => 0.3 * Math.sin(noise[Math.floor(jr / RANK) * WEIGHTS]! + (jr % RANK) + p));
      return { logit_mean: mean, cov_factor: { ...factor, dims: [m, RANK, HW] }, cov_diag: tensor(m, (_, p) => 0.1 + 0.01 * p) };
    }
    if (graph === 'dropout_head') {
      const masks = feeds.dropout_masks!.data;
      const k = feeds.dropout_masks!.dims[0]!;
      return { logits: { data: Float32Array.from({ length: k * HW }, (_, i) => image[i % HW]! * 2 + masks[Math.floor(i / HW) * MASKS + (i % MASKS)]! - 1), dims: [k, HW] } };
    }
    const [m, n] = feeds.diag_noise!.dims as [number, number];
    const { logit_mean: mean, cov_factor: factor, cov_diag: diag, factor_noise: fn, diag_noise: dn, dropout_logits: dropout } = feeds as Record<string, TensorData>;
    const eta: Float64Array[] = [];
    for (let j = 0; j < m; j++) {
      for (let s = 0; s < n; s++) {
        eta.push(Float64Array.from({ length: HW }, (_, p) => {
          let low = 0;
          for (let r = 0; r < RANK; r++) low += fn!.data[(j * n + s) * RANK + r]! * factor!.data[(j * RANK + r) * HW + p]!;
          return mean!.data[j * HW + p]! + low + Math.sqrt(diag!.data[j * HW + p]!) * dn!.data[(j * n + s) * HW + p]!;
        }));
      }
    }
    const k = dropout!.dims[0]!;
    const dropoutRows = Array.from({ length: k }, (_, i) => Float64Array.from(dropout!.data.subarray(i * HW, (i + 1) * HW)));
    return { laplace_maps: { data: sampleMeasures(eta), dims: [ORDER.length, HW] }, dropout_maps: { data: sampleMeasures(dropoutRows), dims: [ORDER.length, HW] } };
  },
};

function encoded(index: number, scene = 1): EncodedFrame {
  const image = new Random(scene).fillNormal(new Float32Array(HW));
  return { frame: { index, pts: index, captureTime: 0, width: SIDE, height: SIDE, data: new Uint8Array(HW) }, image, features: new Float32Array(2), timings: {} };
}

function maxDifference(a: Float32Array, b: Float32Array, rows: readonly string[] = ORDER): number {
  let worst = 0;
  for (const name of rows) {
    const row = ORDER.indexOf(name as never);
    for (let p = row * HW; p < (row + 1) * HW; p++) worst = Math.max(worst, Math.abs(a[p]! - b[p]!));
  }
  return worst;
}

const live = (frames: EncodedFrame[], spread = 2) => lastValueFrom(from(frames).pipe(amortiseSamples(runner, manifest, {}, { frames: spread }), toArray()));
const exact = (frame: EncodedFrame) => lastValueFrom(of(frame).pipe(sampleHeads(runner, manifest), measureUncertainty(runner, manifest)));
const EXACT_ROWS = ORDER.filter((name) => name !== 'expected_pairwise_kl');

test('pooling two sample sets gives the measures of their union', () => {
  const rng = new Random(9);
  const rows = Array.from({ length: 7 }, () => Float64Array.from(rng.fillNormal(new Float32Array(HW)), (x) => 3 * x));
  const setOf = (part: Float64Array[]) => ({ samples: part.length, maps: sampleMeasures(part), logitMean: Float32Array.from({ length: HW }, (_, p) => part.reduce((a, row) => a + row[p]!, 0) / part.length) });
  const pooled = combineSampleSets([setOf(rows.slice(0, 3)), setOf(rows.slice(3, 4)), setOf(rows.slice(4))], ORDER, HW, EPS);
  assert.ok(maxDifference(pooled, sampleMeasures(rows)) < 1e-5, `differs by ${maxDifference(pooled, sampleMeasures(rows))}`);
});

test('the mean Laplacian logit sample from head outputs and noise is what the measures graph samples', async () => {
  const samples = await lastValueFrom(of(encoded(0)).pipe(sampleHeads(runner, manifest, { m: 2, n: 3 })));
  const mean = laplaceSampleMean(samples, HW);
  const { m, n } = samples.draws.counts;
  const p = 5;
  let direct = 0;
  for (let j = 0; j < m; j++) {
    for (let s = 0; s < n; s++) {
      let low = 0;
      for (let r = 0; r < RANK; r++) low += samples.draws.factorNoise.data[(j * n + s) * RANK + r]! * samples.laplace.covFactor.data[(j * RANK + r) * HW + p]!;
      direct += samples.laplace.logitMean.data[j * HW + p]! + low + Math.sqrt(samples.laplace.covDiag.data[j * HW + p]!) * samples.draws.diagNoise.data[(j * n + s) * HW + p]!;
    }
  }
  assert.ok(Math.abs(mean[p]! - direct / (m * n)) < 1e-5);
});

test('on a still scene the pooled shares are exactly the common draws of (m, n, k): same maps as exact mode', async () => {
  const results = await live([encoded(0), encoded(1), encoded(2), encoded(3)]);
  const reference = await exact(encoded(0));
  assert.equal(results.map((r) => r.counts), [{ m: 4, n: 3, k: 4 }, { m: 6, n: 3, k: 6 }, { m: 4, n: 3, k: 4 }, { m: 4, n: 3, k: 4 }]);
  for (const result of [results[0]!, results[2]!, results[3]!]) {
    assert.ok(maxDifference(result.maps.laplace, reference.maps.laplace, EXACT_ROWS) < 1e-5, 'laplace maps as exact');
    assert.ok(maxDifference(result.maps.dropout, reference.maps.dropout, EXACT_ROWS) < 1e-5, 'dropout maps as exact');
  }
  assert.ok(maxDifference(results[2]!.maps.laplace, reference.maps.laplace, ['expected_pairwise_kl']) < 1e-3, 'pairwise KL close');
});

test('the pool outlives a subscription: one subscription per frame (as the pipeline does) pools as one stream', async () => {
  const operator = amortiseSamples(runner, manifest, {}, { frames: 2 });
  const results: MeasuredFrame[] = [];
  for (let t = 0; t < 3; t++) results.push(await lastValueFrom(of(encoded(t)).pipe(operator)));
  assert.equal(results.map((r) => r.counts.m), [4, 6, 4]);
});

test('a scene cut empties the pool: that frame samples all of (m, n, k) itself, then shares resume', async () => {
  const calls: number[] = [];
  const counting: GraphRunner = { run: (graph, feeds, options) => (graph === 'laplace_head' && calls.push(feeds.weight_noise!.dims[0]!), runner.run(graph, feeds, options)) };
  const frames = [encoded(0), encoded(1), encoded(2), encoded(3, 2), encoded(4, 2)];
  const results: MeasuredFrame[] = await lastValueFrom(from(frames).pipe(amortiseSamples(counting, manifest, {}, { frames: 2 }), toArray()));
  assert.equal(calls, [4, 2, 2, 4, 2], 'weight samples per frame');
  const cut = await exact(encoded(3, 2));
  assert.ok(maxDifference(results[3]!.maps.laplace, cut.maps.laplace) < 1e-6, 'nothing of the old scene in the pool');
  assert.equal(results[4]!.counts, { m: 6, n: 3, k: 6 });
});

test('reset: ramp: the frame that empties the pool samples its share, as every frame does, and the pool refills', async () => {
  const calls: number[] = [];
  const counting: GraphRunner = { run: (graph, feeds, options) => (graph === 'laplace_head' && calls.push(feeds.weight_noise!.dims[0]!), runner.run(graph, feeds, options)) };
  const frames = [encoded(0), encoded(1), encoded(2), encoded(3, 2), encoded(4, 2)];
  const ramp = (runs: GraphRunner, of: EncodedFrame[]) => lastValueFrom(from(of).pipe(amortiseSamples(runs, manifest, {}, { frames: 2, reset: 'ramp' }), toArray()));
  const results = await ramp(counting, frames);
  assert.equal(calls, [2, 2, 2, 2, 2], 'weight samples per frame');
  assert.equal(results.map((r) => r.counts), [{ m: 2, n: 3, k: 2 }, { m: 4, n: 3, k: 4 }, { m: 4, n: 3, k: 4 }, { m: 2, n: 3, k: 2 }, { m: 4, n: 3, k: 4 }]);
  const [fresh] = await ramp(runner, [encoded(3, 2)]);
  assert.ok(maxDifference(results[3]!.maps.laplace, fresh!.maps.laplace) < 1e-6, 'nothing of the old scene in the pool');
  const cut = await exact(encoded(4, 2));
  assert.ok(maxDifference(results[4]!.maps.laplace, cut.maps.laplace, EXACT_ROWS) < 1e-5, "refilled: the new scene's (m, n, k), as exact mode");
});

/** A smooth scene (a few waves) seen through a SIDE x SIDE window moved by (dx, dy) pixels: content moves by (-dx, -dy). */
function view(index: number, dx: number, dy: number): EncodedFrame {
  const image = Float32Array.from({ length: HW }, (_, p) => {
    const x = (p % SIDE) + dx, y = Math.floor(p / SIDE) + dy;
    return Math.sin(0.45 * x + 0.2 * y) + 0.6 * Math.cos(0.3 * x - 0.55 * y) + 0.3 * Math.sin(0.9 * y + 1);
  });
  return { ...encoded(index), image };
}

test('a moving scene: earlier frames\' samples resampled onto the newest frame pool closer to exact mode than where they were taken', async () => {
  // The window drifts a pixel a frame; the pool of the last frame holds shares of the 3 before it (frames: 4).
  const frames = [0, 1, 2, 3, 4].map((t) => view(t, t, 0));
  const pooled = (align: boolean) => lastValueFrom(from(frames).pipe(amortiseSamples(runner, manifest, {}, { frames: 4, resetDifference: 10, align }), toArray()));
  const [aligned, unaligned] = [(await pooled(true)).at(-1)!, (await pooled(false)).at(-1)!];
  assert.equal(aligned.counts, unaligned.counts);
  const reference = await exact(frames.at(-1)!);
  // Away from the left and right borders, where the earlier frames saw other content. The fake heads add noise that
  // depends on the pixel's place, not its content, so even aligned samples differ from exact mode's (10.3 vs 16.2).
  const error = (maps: Float32Array) => {
    let sum = 0;
    const row = ORDER.indexOf('mean_prob');
    for (let y = 0; y < SIDE; y++) for (let x = 4; x < SIDE - 4; x++) sum += Math.abs(maps[row * HW + y * SIDE + x]! - reference.maps.laplace[row * HW + y * SIDE + x]!);
    return sum;
  };
  assert.ok(error(aligned.maps.laplace) < 0.75 * error(unaligned.maps.laplace), `aligned ${error(aligned.maps.laplace)} vs unaligned ${error(unaligned.maps.laplace)}`);
});

test('a motion the estimate cannot follow empties the pool as a cut does', async () => {
  const calls: number[] = [];
  const counting: GraphRunner = { run: (graph, feeds, options) => (graph === 'laplace_head' && calls.push(feeds.weight_noise!.dims[0]!), runner.run(graph, feeds, options)) };
  // Frame 2 is a flat image: nothing to align to (quality 0); MAD resets are off.
  const flat = { ...encoded(2), image: new Float32Array(HW) };
  await lastValueFrom(from([view(0, 0, 0), view(1, 1, 0), flat, view(3, 3, 0)]).pipe(amortiseSamples(counting, manifest, {}, { frames: 2, resetDifference: 10, align: true }), toArray()));
  assert.equal(calls, [4, 2, 4, 4], 'weight samples per frame: a reset at the flat frame and after it');
});

test('bad live options are INVALID_OPTION at set-up', () => {
  for (const [options, liveOptions] of [[{ draws: 'fresh' }, {}], [{}, { frames: 0 }], [{}, { frames: 1.5 }], [{}, { resetDifference: -1 }], [{}, { reset: 'half' }], [{}, { minQuality: 2 }]] as const) {
    try {
      amortiseSamples(runner, manifest, options as never, liveOptions as never);
      assert.unreachable(`accepted ${JSON.stringify([options, liveOptions])}`);
    } catch (error) {
      assert.instance(error, LfusionError);
      assert.is((error as LfusionError).code, 'INVALID_OPTION');
    }
  }
  const unknown = { ...manifest, measures: { order: ['mean_prob'], entropyEpsilon: EPS } } as ModelManifest;
  assert.throws(() => amortiseSamples(runner, unknown), /live mode pools the measures/);
});

if (shippedPackagePresent('live mode on the shipped package (heads at half resolution)')) {
  test('with heads at half resolution (the shipped package) a still scene pools to what exact mode gives', async () => {
    const pkg = await loadModelPackage(SHIPPED_PACKAGE);
    const { manifest: shipped } = pkg;
    const pixels = shipped.input.width * shipped.input.height;
    assert.equal(headGrid(shipped), { width: 112, height: 112 }, 'the shipped heads are at half resolution');
    const pool = await InferencePool.open(pkg, { graphs: ['laplace_head', 'dropout_head', 'measures'], threadsPerWorker: 1 });
    try {
      const rng = new Random(4);
      const frame: EncodedFrame = {
        frame: { index: 0, pts: 0, captureTime: 0, width: 224, height: 224, data: new Uint8Array(pixels) },
        image: rng.fillNormal(new Float32Array(pixels)),
        features: rng.fillNormal(new Float32Array(shipped.graphs.laplace_head!.inputs.features!.reduce<number>((a, d) => a * (d as number), 1))),
        timings: {},
      };
      const counts = { m: 2, n: 2, k: 2 };
      // Frame 0 samples all of (m, n, k) (nothing pooled yet), frames 1 and 2 one share each: frame 2 pools the two shares.
      const still = [0, 1, 2].map((index) => ({ ...frame, frame: { ...frame.frame, index } }));
      const results = await lastValueFrom(from(still).pipe(amortiseSamples(pool, shipped, counts, { frames: 2 }), toArray()));
      const reference = await lastValueFrom(of(frame).pipe(sampleHeads(pool, shipped, counts), measureUncertainty(pool, shipped)));
      const pooled = results[2]!;
      assert.equal(pooled.counts, counts);
      const order = shipped.measures.order;
      const row = (maps: Float32Array, name: string) => maps.subarray(order.indexOf(name) * pixels, (order.indexOf(name) + 1) * pixels);
      const worst = (name: string) => {
        let difference = 0;
        for (const path of ['laplace', 'dropout'] as const) {
          const [a, b] = [row(pooled.maps[path], name), row(reference.maps[path], name)];
          for (let p = 0; p < pixels; p++) difference = Math.max(difference, Math.abs(a[p]! - b[p]!));
        }
        return difference;
      };
      // Pooled at the heads' resolution and upsampled afterwards, as exact mode upsamples its maps: the same maps
      // (expected_pairwise_kl pools approximately, see combineSampleSets).
      for (const name of order.filter((name) => name !== 'expected_pairwise_kl')) assert.ok(worst(name) < 1e-5, `${name} differs by ${worst(name)}`);
      assert.ok(worst('expected_pairwise_kl') < 1e-2, `expected_pairwise_kl differs by ${worst('expected_pairwise_kl')}`);
    } finally {
      await pool.close();
    }
  });
}

test.run();
