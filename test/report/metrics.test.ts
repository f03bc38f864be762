/**
 * The report's metrics against the model factory's definitions (models/lfusion/metrics.py) on the same
 * synthetic ellipses as models/tests/test_metrics.py. Expected values with many digits were computed by the
 * factory's functions (`cd models && /usr/bin/python3 -c "from lfusion.metrics import ..."`), so any drift
 * between the two definitions fails here.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { boundary, dice, ellipseCircumference, hausdorffMm, headCircumferenceMm, type Mask } from '../../src/report/metrics.js';

/** Filled axis-aligned ellipse, semi-axes ax (columns) and ay (rows) in pixels, as the factory's test helper. */
function ellipse(ax: number, ay: number, cx = 112, cy = 112, size = 224): Mask {
  const data = new Uint8Array(size * size);
  for (let row = 0; row < size; row++) for (let col = 0; col < size; col++) data[row * size + col] = ((col - cx) / ax) ** 2 + ((row - cy) / ay) ** 2 <= 1 ? 1 : 0;
  return { width: size, height: size, data };
}

/** `np.roll(mask, shift, axis=0)`. */
function rollRows(mask: Mask, shift: number): Mask {
  const data = new Uint8Array(mask.data.length);
  for (let row = 0; row < mask.height; row++) data.set(mask.data.subarray(row * mask.width, (row + 1) * mask.width), ((row + shift) % mask.height) * mask.width);
  return { ...mask, data };
}

const close = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual} vs ${expected} (tolerance ${tolerance})`);

test('Dice: hand-computed, identical, disjoint, both empty', () => {
  const a = { width: 4, height: 4, data: new Uint8Array(16) };
  const b = { width: 4, height: 4, data: new Uint8Array(16) };
  a.data.fill(1, 0, 8); // rows 0-1
  b.data.fill(1, 4, 12); // rows 1-2: 4 shared
  assert.is(dice(a, b), 0.5);
  assert.is(dice(a, a), 1);
  assert.is(dice(a, { ...a, data: a.data.map((q) => 1 - q) }), 0);
  assert.is(dice({ width: 3, height: 3, data: new Uint8Array(9) }, { width: 3, height: 3, data: new Uint8Array(9) }), 1);
  assert.throws(() => dice(a, ellipse(3, 3)), /differ in size/);
});

test('Dice and HC of shifted, anisotropic ellipses match the factory to 1e-9', () => {
  close(dice(ellipse(50, 40), ellipse(58, 45, 100)), 0.8374827109266944, 1e-12, 'dice');
  close(headCircumferenceMm(ellipse(80, 90), { x: 0.5, y: 0.25 }), 200.15951171425843, 1e-9, 'hc 80x90');
  close(headCircumferenceMm(ellipse(58, 45, 100), { x: 0.3, y: 0.7 }), 156.71685800102992, 1e-9, 'hc 58x45');
  // And the true perimeter of the continuous ellipse (semi-axes 40 mm and 22.5 mm) within 1% (rasterisation).
  close(headCircumferenceMm(ellipse(80, 90), { x: 0.5, y: 0.25 }), ellipseCircumference(80 * 0.5, 90 * 0.25), 0.01 * 200.2, 'hc vs perimeter');
  assert.ok(Number.isNaN(headCircumferenceMm(ellipse(0.1, 0.1), { x: 1, y: 1 })), 'a one-pixel mask has no ellipse');
});

test('Ramanujan perimeter: a circle is 2πr; a flat ellipse is about 4a', () => {
  close(ellipseCircumference(3, 3), 2 * Math.PI * 3, 1e-12, 'circle');
  close(ellipseCircumference(10, 1e-9), 40, 0.02, 'degenerate ellipse (Ramanujan II is off by 0.04% there)');
});

test('Hausdorff distance in mm: concentric circles, anisotropic shift, empty masks (factory values)', () => {
  close(hausdorffMm(ellipse(30, 30), ellipse(35, 35), { x: 0.2, y: 0.2 }), 1.077032961426901, 1e-12, 'concentric');
  assert.is(hausdorffMm(ellipse(30, 30), ellipse(30, 30), { x: 0.2, y: 0.2 }), 0);
  close(hausdorffMm(ellipse(30, 30), rollRows(ellipse(30, 30), 10), { x: 0.1, y: 0.3 }), 3, 1e-12, '10 rows of 0.3 mm');
  close(hausdorffMm(ellipse(50, 40), ellipse(58, 45, 100), { x: 0.3, y: 0.7 }), 6.074537019394976, 1e-12, 'shifted ellipses');
  const empty = { width: 224, height: 224, data: new Uint8Array(224 * 224) };
  assert.is(hausdorffMm(ellipse(30, 30), empty, { x: 1, y: 1 }), Infinity);
  assert.is(hausdorffMm(empty, empty, { x: 1, y: 1 }), 0);
});

test('boundary: 4-neighbour, the image border counts as outside', () => {
  const full = { width: 3, height: 3, data: new Uint8Array(9).fill(1) };
  assert.equal(boundary(full), [0, 1, 2, 3, 5, 6, 7, 8]);
});

test.run();
