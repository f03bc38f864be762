import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Random, deriveSeed } from '../../src/runtime/random.js';

const sequence = (seed: number, count: number): number[] => {
  const rng = new Random(seed);
  return Array.from({ length: count }, () => rng.nextUint32());
};

test('the same seed gives the same sequence; another seed a different one', () => {
  assert.equal(sequence(42, 8), sequence(42, 8));
  assert.not.equal(sequence(42, 8), sequence(43, 8));
  assert.not.equal(sequence(0, 8), sequence(2 ** 32, 8), 'seeds differing only above bit 32 stay distinct');
});

test('known answers, computed by an independent Python port (so the model factory can draw the same numbers)', () => {
  assert.equal(sequence(0, 4), [4040328573, 766560300, 3233569545, 3077719474]);
  assert.equal(sequence(42, 4), [2475684579, 2739248900, 1570677243, 4207500844]);
  assert.is(deriveSeed(18, 4, 0, 0), 298997808);
  const normals = new Random(298997808).fillNormal(new Float64Array(4));
  const expected = [-2.32336328622158, 1.4971185198538386, 0.7598221371401959, -1.4002493220066492];
  normals.forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) < 1e-12, `normal ${i}: ${value}`));
});

test('deriveSeed is deterministic and separates keys and their order', () => {
  assert.is(deriveSeed(7, 1, 2), deriveSeed(7, 1, 2));
  const seeds = new Set([deriveSeed(7), deriveSeed(7, 0), deriveSeed(7, 1), deriveSeed(7, 1, 2), deriveSeed(7, 2, 1), deriveSeed(8, 1, 2)]);
  assert.is(seeds.size, 6);
});

test('bad seeds are rejected', () => {
  assert.throws(() => new Random(-1), RangeError);
  assert.throws(() => new Random(1.5), RangeError);
  assert.throws(() => deriveSeed(1, Number.NaN), RangeError);
});

test('uniform floats lie in [0, 1) and fill ten buckets evenly', () => {
  const rng = new Random(1);
  const buckets = new Array<number>(10).fill(0);
  const count = 100_000;
  for (let i = 0; i < count; i++) {
    const u = rng.nextFloat();
    assert.ok(u >= 0 && u < 1);
    buckets[Math.floor(u * 10)]! += 1;
  }
  // chi-square with 9 degrees of freedom: P(> 27.9) = 0.001
  const chiSquare = buckets.reduce((sum, observed) => sum + (observed - count / 10) ** 2 / (count / 10), 0);
  assert.ok(chiSquare < 27.9, `chi-square ${chiSquare}`);
});

test('normal draws have mean 0, variance 1 and the 68% rule', () => {
  const values = new Random(3).fillNormal(new Float64Array(200_001)); // odd length: the last pair is cut
  let sum = 0;
  let squares = 0;
  let withinOne = 0;
  for (const v of values) {
    sum += v;
    squares += v * v;
    if (Math.abs(v) < 1) withinOne += 1;
  }
  const mean = sum / values.length;
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(squares / values.length - mean * mean - 1) < 0.015, `variance ${squares / values.length}`);
  assert.ok(Math.abs(withinOne / values.length - 0.6827) < 0.005, `P(|z| < 1) = ${withinOne / values.length}`);
  assert.ok(Number.isFinite(values[values.length - 1]!));
});

test('dropout masks hold 0 with probability rate and 1/(1-rate) otherwise', () => {
  const rate = 0.2;
  const mask = new Random(5).fillDropoutMask(new Float32Array(100_000), rate);
  const kept = Math.fround(1 / (1 - rate));
  let zeros = 0;
  for (const v of mask) {
    assert.ok(v === 0 || v === kept, `unexpected mask value ${v}`);
    if (v === 0) zeros += 1;
  }
  assert.ok(Math.abs(zeros / mask.length - rate) < 0.005, `dropped fraction ${zeros / mask.length}`);
  assert.throws(() => new Random(5).fillDropoutMask(new Float32Array(1), 1), RangeError);
});

test.run();
