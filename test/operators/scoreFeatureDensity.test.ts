import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, of } from 'rxjs';
import { featureDensity, scoreFeatureDensity } from '../../src/operators/scoreFeatureDensity.js';
import type { LfusionError } from '../../src/runtime/errors.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';
import { loadReferenceVectors } from '../../src/runtime/reference-vectors.js';
import type { DensityManifest } from '../../src/runtime/types/model.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';

/** Two channels of four tokens: channel 0 = [1, 2, 3, 4] (mean 2.5, std sqrt(1.25)), channel 1 = [0, 0, 2, 2] (mean 1, std 1). */
const FEATURES = Float32Array.from([1, 2, 3, 4, 0, 0, 2, 2]);

function densityOf(pooling: 'mean' | 'mean_std', mean: number[], precision: number[], precisionBlocks = 1): DensityManifest {
  return { file: 'density.bin', sha256: '0'.repeat(64), dtype: 'float32', dimension: mean.length, pooling, precisionBlocks, statistics: { mean: Float64Array.from(mean), precision: Float64Array.from(precision) } };
}

test('mean pooling: the squared Mahalanobis distance of the per-channel token means', () => {
  // v - mean = [2.5 - 0.5, 1 - 2] = [2, -1]; precision [[2, 1], [1, 3]]: 2*4 + 2*1*(2*-1) + 3*1 = 7.
  assert.is(featureDensity(FEATURES, densityOf('mean', [0.5, 2], [2, 1, 1, 3])), 7);
});

test('mean_std pooling appends the per-channel population std (numpy std)', () => {
  const identity = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  const score = featureDensity(FEATURES, densityOf('mean_std', [2.5, 1, 0, 0], identity));
  assert.ok(Math.abs(score - (1.25 + 1)) < 1e-12, `got ${score}`);
});

test('block-diagonal precision: each block holds its channels\' means then stds, one quadratic form per block', () => {
  // Blocks: [mean0, std0] = [2.5, sqrt(1.25)] with diag(1, 2); [mean1, std1] = [1, 1] with diag(3, 4).
  const score = featureDensity(FEATURES, densityOf('mean_std', [0, 0, 0, 0], [1, 0, 0, 2, 3, 0, 0, 4], 2));
  assert.ok(Math.abs(score - (6.25 + 2 * 1.25 + 3 + 4)) < 1e-12, `got ${score}`);
  assert.is(featureDensity(FEATURES, densityOf('mean_std', [2.5, Math.sqrt(1.25), 1, 1], [1, 0, 0, 2, 3, 0, 0, 4], 2)), 0);
});

test('features that do not split into the channels are a ShapeError; missing statistics an INVALID_OPTION', () => {
  assert.throws(() => featureDensity(FEATURES.subarray(0, 7), densityOf('mean', [0, 0], [1, 0, 0, 1])), (e: LfusionError) => e.code === 'SHAPE_MISMATCH');
  const { statistics: _statistics, ...unloaded } = densityOf('mean', [0, 0], [1, 0, 0, 1]);
  assert.throws(() => scoreFeatureDensity({ density: unloaded }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => scoreFeatureDensity({}), (e: LfusionError) => e.code === 'INVALID_OPTION');
});

test('the operator adds the score and its timing to each encoded frame', async () => {
  const frame = { index: 0, pts: 0, captureTime: 0, width: 1, height: 1, data: new Uint8Array(1) };
  const scored = await firstValueFrom(of({ frame, image: new Float32Array(1), features: FEATURES, timings: { encoder: 1 } }).pipe(scoreFeatureDensity({ density: densityOf('mean', [0.5, 2], [2, 1, 1, 3]) })));
  assert.is(scored.density, 7);
  assert.is(scored.timings.encoder, 1);
  assert.type(scored.timings.density, 'number');
});

test('the shipped package: pooled vectors and scores reproduce PyTorch\'s float64 references', async () => {
  if (!shippedPackagePresent('density parity')) return;
  const pkg = await loadModelPackage(SHIPPED_PACKAGE);
  if (!pkg.manifest.density) throw new assert.Assertion({ message: 'the shipped package has no density section' } as never);
  const { cases } = await loadReferenceVectors(SHIPPED_PACKAGE);
  const withDensity = cases.filter((c) => c.arrays.density_score);
  assert.ok(withDensity.length >= 2, 'reference cases with density scores');
  for (const reference of withDensity) {
    const expected = reference.arrays.density_score!.data[0]!;
    const actual = featureDensity(reference.arrays.features!.data as Float32Array, pkg.manifest.density);
    assert.ok(Math.abs(actual - expected) <= 1e-6 * Math.abs(expected) + 1e-9, `${reference.name}: SDK ${actual} vs PyTorch ${expected}`);
  }
});

test.run();
