import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, of } from 'rxjs';
import { binaryEntropy, fuseMaps, fuseUncertainty, populationVariance } from '../../src/operators/fuseUncertainty.js';
import type { LfusionError } from '../../src/runtime/errors.js';
import type { MeasureMaps, MeasuredFrame } from '../../src/runtime/types/uncertainty.js';

const ORDER = ['mean_prob', 'expected_entropy', 'mutual_information', 'expected_pairwise_kl', 'pixel_variance', 'total_entropy', 'logit_variance'];
const EPS = 1e-6;

/** Maps over 2 pixels; unnamed rows hold 0. */
function mapsOf(laplace: Record<string, number[]>, dropout: Record<string, number[]>): MeasureMaps {
  const pack = (rows: Record<string, number[]>) => Float32Array.from(ORDER.flatMap((name) => rows[name] ?? [0, 0]));
  return { order: ORDER, pixels: 2, laplace: pack(laplace), dropout: pack(dropout) };
}

const frameOf = (maps: MeasureMaps): MeasuredFrame => ({
  frame: { index: 0, pts: 0, captureTime: 0, width: 2, height: 1, data: new Uint8Array(2) },
  counts: { m: 1, n: 1, k: 1 },
  maps,
  timings: { encode: 1 },
});

test('binary entropy has both terms, peaks at ln 2 and is finite at 0 and 1', () => {
  assert.ok(Math.abs(binaryEntropy(0.5, EPS) - Math.LN2) < 1e-15);
  assert.ok(Math.abs(binaryEntropy(0.2, EPS) - binaryEntropy(0.8, EPS)) < 1e-15);
  assert.ok(Math.abs(binaryEntropy(0.2, EPS) - 0.5004024235381879) < 1e-12);
  assert.ok(binaryEntropy(0, EPS) > 0 && binaryEntropy(1, EPS) > 0 && Number.isFinite(binaryEntropy(0, EPS)));
});

test('population variance divides by the count', () => {
  assert.is(populationVariance([0, 2]), 1);
  assert.is(populationVariance([3, 3, 3]), 0);
});

test('fused = sqrt(var_L + var_D) * H(mean of the paths\' probabilities) * pixel variance of the auxiliary map', () => {
  const maps = mapsOf(
    { logit_variance: [3, 0.5], mean_prob: [0.5, 0.1], mutual_information: [0, 2] },
    { logit_variance: [1, 0.5], mean_prob: [0.5, 0.3] },
  );
  const { fused, meanProb } = fuseMaps(maps, 'laplace.mutual_information', EPS);
  // pixel 0: sqrt(4) * ln 2 * Var([0, 2]) = 2 ln 2; pixel 1: sqrt(1) * H(0.2) * 1
  assert.ok(Math.abs(fused[0]! - 2 * Math.LN2) < 1e-6);
  assert.ok(Math.abs(fused[1]! - 0.5004024235381879) < 1e-6);
  assert.ok(Math.abs(meanProb[1]! - 0.2) < 1e-7);
  const flatAuxiliary = fuseMaps(maps, 'dropout.mutual_information', EPS).fused;
  assert.equal(Array.from(flatAuxiliary), [0, 0], 'a constant auxiliary map has no variance');
});

test('the operator fuses with the manifest\'s auxiliary map unless overridden, and times itself', async () => {
  const maps = mapsOf({ logit_variance: [1, 1], mean_prob: [0.5, 0.5], mutual_information: [0, 2] }, { expected_entropy: [0, 4], mean_prob: [0.5, 0.5] });
  const manifest = { fusion: { auxiliary: 'laplace.mutual_information' }, measures: { order: ORDER, entropyEpsilon: EPS } };
  const byManifest = await firstValueFrom(of(frameOf(maps)).pipe(fuseUncertainty(manifest)));
  const overridden = await firstValueFrom(of(frameOf(maps)).pipe(fuseUncertainty(manifest, { auxiliary: 'dropout.expected_entropy' })));
  assert.ok(Math.abs(byManifest.fused[0]! - Math.LN2) < 1e-6);
  assert.ok(Math.abs(overridden.fused[0]! - 4 * Math.LN2) < 1e-6);
  assert.is(byManifest.timings.encode, 1);
  assert.type(byManifest.timings.fuse, 'number');
});

test('an unknown or circular auxiliary map is an INVALID_OPTION error at set-up', () => {
  const manifest = { fusion: { auxiliary: 'laplace.mutual_informaton' }, measures: { order: ORDER, entropyEpsilon: EPS } };
  assert.throws(() => fuseUncertainty(manifest), (e: LfusionError) => e.code === 'INVALID_OPTION' && /mutual_informaton/.test(e.message));
  assert.throws(() => fuseUncertainty(manifest, { auxiliary: 'fused' }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => fuseUncertainty(manifest, { auxiliary: 'ensemble.mean_prob' }), (e: LfusionError) => e.code === 'INVALID_OPTION');
});

test.run();
