import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, of } from 'rxjs';
import { checkMapName, measureUncertainty, selectMap, toInputGrid } from '../../src/operators/measureUncertainty.js';
import { upsample2x } from '../../src/runtime/upsample.js';
import { createDrawSource, drawSamples } from '../../src/runtime/draws.js';
import { LfusionError, ShapeError } from '../../src/runtime/errors.js';
import type { GraphRunner, TensorData } from '../../src/runtime/types/inference.js';
import type { HeadSamples, MeasureMaps } from '../../src/runtime/types/uncertainty.js';

const ORDER = ['mean_prob', 'mutual_information', 'logit_variance'];
const manifest = { measures: { order: ORDER, entropyEpsilon: 1e-6 }, input: { width: 2, height: 2 } as never, graphs: {} };
const PIXELS = 4;
const dims = { weightCount: 3, rank: 2, maskCount: 2, dropoutRate: 0.5, pixels: PIXELS };

function headSamples(reused: boolean): HeadSamples {
  const counts = { m: 2, n: 3, k: 2 };
  const draws = reused ? createDrawSource({ seed: 1, mode: 'common', dims })(0, counts) : drawSamples(1, counts, dims);
  const tensor = (shape: number[]): TensorData => ({ data: new Float32Array(shape.reduce((a, b) => a * b, 1)), dims: shape });
  return {
    frame: { index: 4, pts: 0, captureTime: 0, width: 2, height: 2, data: new Uint8Array(4) },
    draws,
    laplace: { logitMean: tensor([2, PIXELS]), covFactor: tensor([2, 2, PIXELS]), covDiag: tensor([2, PIXELS]) },
    dropoutLogits: tensor([2, PIXELS]),
    timings: { heads: 3 },
  };
}

/** A stand-in for the pool: records the call and answers with maps whose value is row * 10 + pixel. */
function fakeRunner(outputShape = [ORDER.length, PIXELS]) {
  const calls: { graph: string; feeds: Record<string, TensorData>; keep: readonly string[]; resident: readonly string[] }[] = [];
  const runner: GraphRunner = {
    run: async (graph, feeds, options) => {
      calls.push({ graph, feeds, keep: options?.keep ?? [], resident: options?.resident ?? [] });
      const maps = (offset: number): TensorData => ({
        data: Float32Array.from({ length: outputShape.reduce((a, b) => a * b, 1) }, (_, i) => offset + Math.floor(i / PIXELS) * 10 + (i % PIXELS)),
        dims: outputShape,
      });
      return { laplace_maps: maps(0), dropout_maps: maps(100) };
    },
  };
  return { runner, calls };
}

test('one measures run per frame with the head outputs and the logit noise; maps by name', async () => {
  const { runner, calls } = fakeRunner();
  const samples = headSamples(false);
  const measured = await firstValueFrom(of(samples).pipe(measureUncertainty(runner, manifest)));
  assert.is(calls.length, 1);
  assert.is(calls[0]!.graph, 'measures');
  assert.equal(Object.keys(calls[0]!.feeds).sort(), ['cov_diag', 'cov_factor', 'diag_noise', 'dropout_logits', 'factor_noise', 'logit_mean']);
  assert.is(calls[0]!.feeds.diag_noise, samples.draws.diagNoise);
  assert.equal([...calls[0]!.keep, ...calls[0]!.resident], [], 'fresh draws may be moved to the worker');
  assert.equal(measured.counts, { m: 2, n: 3, k: 2 });
  assert.is(measured.frame.index, 4);
  assert.is(measured.timings.heads, 3);
  assert.type(measured.timings.measures, 'number');
  assert.equal(Array.from(selectMap(measured.maps, 'laplace.mutual_information')), [10, 11, 12, 13]);
  assert.equal(Array.from(selectMap(measured.maps, 'dropout.logit_variance')), [120, 121, 122, 123]);
});

test('reused (common) draws are resident, so the pool sends them to each worker once rather than moving them', async () => {
  const { runner, calls } = fakeRunner();
  await firstValueFrom(of(headSamples(true)).pipe(measureUncertainty(runner, manifest)));
  assert.equal([...calls[0]!.resident].sort(), ['diag_noise', 'factor_noise']);
  assert.equal(calls[0]!.keep, []);
});

test('a measures output of the wrong shape is a ShapeError', async () => {
  const { runner } = fakeRunner([ORDER.length - 1, PIXELS]);
  try {
    await firstValueFrom(of(headSamples(false)).pipe(measureUncertainty(runner, manifest)));
    assert.unreachable('should fail');
  } catch (error) {
    assert.instance(error, ShapeError);
    assert.match((error as Error).message, /laplace_maps/);
    assert.equal((error as ShapeError).expected, [3, 4]);
  }
});

test('toInputGrid on heads at half resolution: selectMap upsamples one row, the whole maps on reading them, the same values', () => {
  // A 4x4 input, heads and measures at 2x2 (the shipped package's layout at 224 and 112).
  const half = {
    input: { width: 4, height: 4 },
    graphs: {
      laplace_head: { file: 'l.onnx', inputs: { image: [1, 1, 4, 4] }, outputs: { logit_mean: ['m', 4] } },
      measures: { file: 'm.onnx', inputs: {}, outputs: { laplace_maps: [ORDER.length, 4] } },
    },
  } as never;
  const small: MeasureMaps = { order: ORDER, pixels: 4, laplace: Float32Array.from({ length: 12 }, (_, i) => i * i), dropout: Float32Array.from({ length: 12 }, (_, i) => -i) };
  const placed = toInputGrid(half)(small);
  assert.is(placed.pixels, 16);
  const information = selectMap(placed, 'laplace.mutual_information');
  assert.equal(Array.from(information), Array.from(upsample2x(small.laplace.subarray(4, 8), 1, 2, 2)));
  assert.is(selectMap(placed, 'laplace.mutual_information'), information, 'a row is upsampled once');
  assert.equal(Array.from(placed.laplace), Array.from(upsample2x(small.laplace, 3, 2, 2)));
  assert.equal(Array.from(placed.dropout.subarray(32, 48)), Array.from(selectMap(placed, 'dropout.logit_variance')));
  assert.equal(Array.from(information), Array.from(placed.laplace.subarray(16, 32)));
  const spread = { ...placed };
  assert.equal(Array.from(selectMap(spread, 'dropout.mean_prob')), Array.from(upsample2x(small.dropout.subarray(0, 4), 1, 2, 2)), 'a copy of the maps reads the same');
});

test('map names are checked: fused, or a path and a known measure', () => {
  const maps: MeasureMaps = { order: ORDER, pixels: 1, laplace: Float32Array.of(1, 2, 3), dropout: Float32Array.of(4, 5, 6) };
  for (const good of ['fused', 'laplace.mean_prob', 'dropout.logit_variance']) checkMapName(good, ORDER);
  for (const bad of ['laplace', 'laplace.', 'ensemble.mean_prob', 'laplace.total_entropy', 'laplace.mean_prob.x', 'Fused']) {
    assert.throws(() => checkMapName(bad, ORDER), (e: LfusionError) => e.code === 'INVALID_OPTION', bad);
  }
  assert.equal(Array.from(selectMap(maps, 'dropout.mutual_information')), [5]);
  assert.throws(() => selectMap(maps, 'fused'), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.equal(Array.from(selectMap(maps, 'fused', Float32Array.of(9))), [9]);
});

test.run();
