import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, from, lastValueFrom, of, toArray } from 'rxjs';
import { sampleHeads } from '../../src/operators/sampleHeads.js';
import { LfusionError, ShapeError } from '../../src/runtime/errors.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { loadModelPackage, type ModelPackage } from '../../src/runtime/model-package.js';
import { Random } from '../../src/runtime/random.js';
import type { EncodedFrame } from '../../src/runtime/types/frames.js';
import type { GraphRunner, TensorData } from '../../src/runtime/types/inference.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

const HW = 224 * 224;
let pkg: ModelPackage;
let pool: InferencePool;
const calls: string[] = [];
/** The pool, counting runs per graph. */
const counting: GraphRunner = { run: (graph, feeds, options) => (calls.push(graph), pool.run(graph, feeds, options)) };

test.before(async () => {
  pkg = await loadModelPackage(TINY_PACKAGE);
  pool = await InferencePool.open(pkg, { graphs: ['laplace_head', 'dropout_head'], threadsPerWorker: 1 });
});
test.after(() => pool.close());

function encodedFrame(index: number, seed = 1): EncodedFrame {
  const rng = new Random(seed);
  const features = pkg.manifest.graphs.laplace_head!.inputs.features![1] as number;
  return {
    frame: { index, pts: index / 25, captureTime: 0, width: 4, height: 4, data: new Uint8Array(16) },
    image: rng.fillNormal(new Float32Array(HW)),
    features: rng.fillNormal(new Float32Array(features * 14 * 14)),
    timings: { encode: 2 },
  };
}

const run = (frames: EncodedFrame[], options: Parameters<typeof sampleHeads>[2]) => lastValueFrom(from(frames).pipe(sampleHeads(counting, pkg.manifest, options), toArray()));
const rows = (tensor: TensorData, row: number) => tensor.data.subarray(row * HW, (row + 1) * HW);
/** Largest elementwise difference (uvu's diff of two 50k-element arrays would take minutes). */
function maxDifference(a: Float32Array, b: Float32Array): number {
  assert.is(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
const same = (a: Float32Array, b: Float32Array, message?: string) => assert.is(maxDifference(a, b), 0, message);
const differ = (a: Float32Array, b: Float32Array, message?: string) => assert.ok(maxDifference(a, b) > 0, message);
/**
 * Equal up to float32 round-off: a logit is a sum of O(1) terms, each rounded to 2^-24 relative, and a batch
 * of another size may sum them in another order, so allow 1e-5 (absolute and relative).
 */
function sameUpToRoundOff(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) {
    if (Math.abs(a[i]! - b[i]!) > 1e-5 * (1 + Math.abs(b[i]!))) assert.unreachable(`element ${i}: ${a[i]} vs ${b[i]}`);
  }
}

test('sample counts above the manifest maxima or the memory estimate are INVALID_OPTION before any run', () => {
  calls.length = 0;
  const invalid = (manifest: typeof pkg.manifest, options: Parameters<typeof sampleHeads>[2]): LfusionError => {
    try {
      sampleHeads(counting, manifest, options);
    } catch (error) {
      assert.instance(error, LfusionError);
      assert.is((error as LfusionError).code, 'INVALID_OPTION');
      return error as LfusionError;
    }
    return assert.unreachable('accepted') as never;
  };
  assert.match(invalid(pkg.manifest, { m: 5 }).message, /sample count m = 5 exceeds the model package's maximum of 4 \(sampling\.maxM\)/);
  assert.match(invalid(pkg.manifest, { k: 1e9 }).message, /sample count k = 1000000000 exceeds .* maximum of 4/);
  const unbounded = { ...pkg.manifest, sampling: { ...pkg.manifest.sampling, maxM: 1e12, maxN: 1e12, maxK: 1e12 } };
  assert.match(invalid(unbounded, { m: 1e9 }).message, /\(m, n, k\) = \(1000000000, 2, 2\) need about \d+\.\d GiB per frame, more than half this machine's memory/);
  assert.equal(calls, [], 'nothing ran');
});

test('one laplace_head and one dropout_head run per frame, whatever m and k', async () => {
  calls.length = 0;
  const [samples] = await run([encodedFrame(0)], { m: 4, n: 3, k: 3 });
  assert.equal(calls.sort(), ['dropout_head', 'laplace_head']);
  assert.equal(samples!.laplace.logitMean.dims, [4, HW]);
  assert.equal(samples!.laplace.covFactor.dims, [4, pkg.manifest.laplace.rank, HW]);
  assert.equal(samples!.laplace.covDiag.dims, [4, HW]);
  assert.equal(samples!.dropoutLogits.dims, [3, HW]);
  assert.equal(samples!.draws.diagNoise.dims, [4, 3, HW]);
  assert.is(samples!.timings.encode, 2);
  assert.type(samples!.timings.heads, 'number');
  differ(rows(samples!.laplace.logitMean, 0), rows(samples!.laplace.logitMean, 1), 'weight samples differ');
  differ(rows(samples!.dropoutLogits, 0), rows(samples!.dropoutLogits, 1), 'dropout passes differ');
});

test('the same seed gives identical outputs; fresh draws change per frame, common ones do not', async () => {
  const frames = [encodedFrame(0), encodedFrame(1)]; // same pixels, different indices
  const fresh = await run(frames, { m: 2, k: 2, seed: 5, draws: 'fresh' });
  const freshAgain = await run([encodedFrame(0), encodedFrame(1)], { m: 2, k: 2, seed: 5, draws: 'fresh' });
  same(fresh[1]!.laplace.logitMean.data, freshAgain[1]!.laplace.logitMean.data);
  same(fresh[1]!.dropoutLogits.data, freshAgain[1]!.dropoutLogits.data);
  differ(fresh[0]!.laplace.logitMean.data, fresh[1]!.laplace.logitMean.data);
  const common = await run([encodedFrame(0), encodedFrame(1)], { m: 2, k: 2, seed: 5 });
  same(common[0]!.laplace.logitMean.data, common[1]!.laplace.logitMean.data);
  same(common[0]!.dropoutLogits.data, common[1]!.dropoutLogits.data);
  assert.is(common[0]!.draws, common[1]!.draws);
  assert.is(common[1]!.draws.weightNoise.data.length, 2 * pkg.manifest.laplace.weightCount, 'reused draws stay usable (resident in the worker, not transferred)');
});

test('with posterior scale 0 every weight sample is the MAP head, whatever the seed', async () => {
  const [a] = await run([encodedFrame(0)], { m: 3, k: 1, seed: 1, posteriorScale: 0 });
  const [b] = await run([encodedFrame(0)], { m: 1, k: 1, seed: 2, posteriorScale: 0 });
  same(rows(a!.laplace.logitMean, 0), rows(a!.laplace.logitMean, 2));
  sameUpToRoundOff(rows(a!.laplace.logitMean, 0), rows(b!.laplace.logitMean, 0)); // m = 3 and m = 1 batches
  const [sampled] = await run([encodedFrame(0)], { m: 1, k: 1, seed: 2 });
  differ(rows(sampled!.laplace.logitMean, 0), rows(b!.laplace.logitMean, 0));
});

test('the encoded frame stays usable after sampling', async () => {
  const frame = encodedFrame(0);
  await run([frame], { m: 1, k: 1 });
  assert.is(frame.image.length, HW);
  assert.ok(frame.features.length > 0);
});

test('wrong-shaped features are a ShapeError; bad options fail at set-up', async () => {
  const frame = { ...encodedFrame(0), features: new Float32Array(10) };
  try {
    await firstValueFrom(of(frame).pipe(sampleHeads(counting, pkg.manifest)));
    assert.unreachable('should fail');
  } catch (error) {
    assert.instance(error, ShapeError);
    assert.is((error as ShapeError).code, 'SHAPE_MISMATCH');
    assert.match((error as Error).message, /EncodedFrame\.features/);
    assert.equal((error as ShapeError).actual, [10]);
  }
  assert.throws(() => sampleHeads(counting, pkg.manifest, { m: 0 }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => sampleHeads(counting, pkg.manifest, { posteriorScale: -1 }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => sampleHeads(counting, pkg.manifest, { seed: -3 }), (e: LfusionError) => e.code === 'INVALID_OPTION');
});

test.run();
