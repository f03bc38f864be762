import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ShapeError } from '../../src/runtime/errors.js';
import { upsample2x } from '../../src/runtime/upsample.js';

const close = (actual: Float32Array, expected: number[]) => {
  assert.is(actual.length, expected.length);
  actual.forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) < 1e-6, `pixel ${i}: ${value} vs ${expected[i]}`));
};

test("PyTorch's bilinear 2x upsampling with half-pixel centres (values printed by torch 1.13)", () => {
  // F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False) of [[0, 1, 2], [3, 4, 5]]
  close(upsample2x(Float32Array.of(0, 1, 2, 3, 4, 5), 1, 3, 2), [
    0, 0.25, 0.75, 1.25, 1.75, 2,
    0.75, 1, 1.5, 2, 2.5, 2.75,
    2.25, 2.5, 3, 3.5, 4, 4.25,
    3, 3.25, 3.75, 4.25, 4.75, 5,
  ]);
});

test('each map of a stack is upsampled on its own', () => {
  const out = upsample2x(Float32Array.of(1, 2, 3, 4, 7, 7, 7, 7), 2, 2, 2);
  close(out.subarray(0, 16), [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4]);
  close(out.subarray(16), new Array(16).fill(7));
});

test('maps of the wrong size are a ShapeError', () => {
  assert.throws(() => upsample2x(new Float32Array(10), 1, 3, 3), (error: unknown) => error instanceof ShapeError);
});

test.run();
