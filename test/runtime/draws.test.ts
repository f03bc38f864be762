import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDrawSource, drawSamples, type DrawDimensions } from '../../src/runtime/draws.js';
import { LfusionError } from '../../src/runtime/errors.js';

const dims: DrawDimensions = { weightCount: 6, rank: 2, maskCount: 5, dropoutRate: 0.5, pixels: 16 };

test('draws have the graph input shapes', () => {
  const draws = drawSamples(1, { m: 3, n: 2, k: 4 }, dims);
  assert.equal(draws.weightNoise.dims, [3, 6]);
  assert.equal(draws.dropoutMasks.dims, [4, 5]);
  assert.equal(draws.factorNoise.dims, [3, 2, 2]);
  assert.equal(draws.diagNoise.dims, [3, 2, 16]);
  assert.is(draws.diagNoise.data.length, 3 * 2 * 16);
  assert.ok(draws.dropoutMasks.data.every((v) => v === 0 || v === 2));
  const single = drawSamples(1, { m: 1, n: 1, k: 1 }, dims);
  assert.equal([single.weightNoise.dims, single.dropoutMasks.dims, single.factorNoise.dims, single.diagNoise.dims], [[1, 6], [1, 5], [1, 1, 2], [1, 1, 16]]);
});

test('the same seed gives identical draws, another seed different ones', () => {
  const counts = { m: 2, n: 3, k: 2 };
  assert.equal(drawSamples(9, counts, dims), drawSamples(9, counts, dims));
  assert.not.equal(drawSamples(9, counts, dims).diagNoise.data, drawSamples(10, counts, dims).diagNoise.data);
});

test('smaller counts draw exactly the first rows of larger ones', () => {
  const small = drawSamples(4, { m: 2, n: 2, k: 1 }, dims);
  const large = drawSamples(4, { m: 3, n: 5, k: 3 }, dims);
  assert.equal(small.weightNoise.data, large.weightNoise.data.subarray(0, 2 * 6));
  assert.equal(small.dropoutMasks.data, large.dropoutMasks.data.subarray(0, 5));
  for (let j = 0; j < 2; j++) {
    for (let s = 0; s < 2; s++) {
      const row = (data: Float32Array, n: number, width: number) => data.subarray((j * n + s) * width, (j * n + s + 1) * width);
      assert.equal(row(small.diagNoise.data, 2, 16), row(large.diagNoise.data, 5, 16));
      assert.equal(row(small.factorNoise.data, 2, 2), row(large.factorNoise.data, 5, 2));
    }
  }
});

test('slices from `first` on are the matching rows of the whole range', () => {
  const whole = drawSamples(4, { m: 5, n: 2, k: 4 }, dims);
  const slice = drawSamples(4, { m: 2, n: 2, k: 3 }, dims, { m: 3, k: 1 });
  assert.equal(slice.weightNoise.data, whole.weightNoise.data.subarray(3 * 6, 5 * 6));
  assert.equal(slice.dropoutMasks.data, whole.dropoutMasks.data.subarray(1 * 5, 4 * 5));
  assert.equal(slice.factorNoise.data, whole.factorNoise.data.subarray(3 * 2 * 2, 5 * 2 * 2));
  assert.equal(slice.diagNoise.data, whole.diagNoise.data.subarray(3 * 2 * 16, 5 * 2 * 16));
});

test('common mode reuses one set of draws per (m, n, k); fresh mode draws per frame, reproducibly', () => {
  const counts = { m: 2, n: 2, k: 2 };
  const common = createDrawSource({ seed: 3, mode: 'common', dims });
  assert.is(common(0, counts), common(1, counts));
  assert.is.not(common(2, { m: 1, n: 2, k: 2 }), common(2, counts));
  assert.equal(common(5, counts), { ...drawSamples(3, counts, dims), reused: true });
  assert.is(drawSamples(3, counts, dims).reused, false);

  const fresh = createDrawSource({ seed: 3, mode: 'fresh', dims });
  const again = createDrawSource({ seed: 3, mode: 'fresh', dims });
  assert.not.equal(fresh(0, counts).weightNoise.data, fresh(1, counts).weightNoise.data);
  assert.equal(fresh(7, counts), again(7, counts), 'a frame index maps to the same draws whatever came before');
});

test('bad counts and modes are INVALID_OPTION errors', () => {
  for (const counts of [{ m: 0, n: 1, k: 1 }, { m: 1, n: 1.5, k: 1 }, { m: 1, n: 1, k: -2 }]) {
    try {
      drawSamples(1, counts, dims);
      assert.unreachable('should throw');
    } catch (error) {
      assert.instance(error, LfusionError);
      assert.is((error as LfusionError).code, 'INVALID_OPTION');
    }
  }
  assert.throws(() => createDrawSource({ seed: 1, mode: 'sometimes' as 'common', dims }), (e: LfusionError) => e.code === 'INVALID_OPTION');
});

test.run();
