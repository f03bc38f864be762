import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ShapeError } from '../../src/runtime/errors.js';
import { defaultRange, dequantizePlane, greyLevels, maskPlane, quantizePlane } from '../../src/runtime/quantize.js';

test('bounded measures use fixed ranges, unbounded ones the frame\'s own', () => {
  assert.equal(defaultRange('laplace.total_entropy'), { min: 0, max: Math.LN2 });
  assert.equal(defaultRange('dropout.mean_prob'), { min: 0, max: 1 });
  assert.equal(defaultRange('dropout.pixel_variance'), { min: 0, max: 0.25 });
  assert.is(defaultRange('fused'), 'frame');
  assert.is(defaultRange('laplace.logit_variance'), 'frame');
});

test('a fixed range round-trips within half a step and clips outside it', () => {
  const values = Float32Array.from([0, 0.1, 0.35, Math.LN2, 0.9, -0.01, Number.NaN, 0.2]);
  const plane = quantizePlane('laplace.expected_entropy', values, 4, 2);
  assert.equal([plane.min, plane.scale, plane.width, plane.height], [0, Math.LN2 / 255, 4, 2]);
  const back = dequantizePlane(plane);
  for (const i of [0, 1, 2, 3, 7]) assert.ok(Math.abs(back[i]! - values[i]!) <= plane.scale / 2 + 1e-7, `pixel ${i}`);
  assert.equal([plane.data[4], plane.data[5], plane.data[6]], [255, 0, 0]);
});

test('a frame range spans the frame\'s min..max; a constant map gives scale 0', () => {
  const plane = quantizePlane('fused', Float32Array.from([2, 4, 3, 4]), 2, 2);
  assert.equal([plane.min, plane.scale], [2, 2 / 255]);
  assert.equal(Array.from(plane.data), [0, 255, 128, 255]);
  const flat = quantizePlane('fused', Float32Array.from([1.5, 1.5]), 2, 1);
  assert.equal([flat.min, flat.scale, ...flat.data], [1.5, 0, 0, 0]);
  assert.equal(Array.from(dequantizePlane(flat)), [1.5, 1.5]);
});

test('the mask is 1 where the mean probability exceeds 0.5', () => {
  const mask = maskPlane(Float32Array.from([0.2, 0.5, 0.51, 1]), 2, 2);
  assert.equal(Array.from(mask.data), [0, 0, 1, 1]);
  assert.equal([mask.name, mask.min, mask.scale], ['mask', 0, 1]);
});

test('grey levels undo the input normalisation, rounded and clamped to 0..255', () => {
  const normalization = { mean: 0.5, std: 0.25 };
  const image = Float32Array.from([0, 100, 254, 255, -10, 300], (level) => (level / 255 - normalization.mean) / normalization.std);
  assert.equal(Array.from(greyLevels(image, normalization)), [0, 100, 254, 255, 0, 255]);
});

test('a map of the wrong size is a ShapeError', () => {
  assert.throws(() => quantizePlane('fused', new Float32Array(3), 2, 2), (e: ShapeError) => e instanceof ShapeError && e.code === 'SHAPE_MISMATCH');
});

test.run();
