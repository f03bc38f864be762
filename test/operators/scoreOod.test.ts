import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, of } from 'rxjs';
import { aggregateMap, parseAggregation, scoreOod } from '../../src/operators/scoreOod.js';
import type { LfusionError } from '../../src/runtime/errors.js';
import type { FusedFrame } from '../../src/runtime/types/uncertainty.js';

const ORDER = ['mean_prob', 'mutual_information'];

test('mean and linearly interpolated quantiles (numpy/torch default)', () => {
  const values = Float32Array.from([5, 1, 4, 2, 3]);
  assert.is(aggregateMap(values, 'mean'), 3);
  assert.ok(Math.abs(aggregateMap(values, 'quantile:0.9') - 4.6) < 1e-12); // position 3.6 between 4 and 5
  assert.is(aggregateMap(values, 'quantile:0'), 1);
  assert.is(aggregateMap(values, 'quantile:1'), 5);
  assert.is(aggregateMap(values, 'quantile:0.5'), 3);
  assert.equal(Array.from(values), [5, 1, 4, 2, 3], 'the map is not reordered');
});

test('unknown aggregations are INVALID_OPTION errors', () => {
  assert.is(parseAggregation('quantile:0.95'), 0.95);
  for (const bad of ['median', 'quantile:', 'quantile:1.5', 'quantile:x', 'mean ']) {
    assert.throws(() => parseAggregation(bad), (e: LfusionError) => e.code === 'INVALID_OPTION');
  }
});

function frameWith(fused: number[], mutualInformation: number[]): FusedFrame {
  const pixels = fused.length;
  return {
    frame: { index: 3, pts: 0, captureTime: 0, width: pixels, height: 1, data: new Uint8Array(pixels) },
    counts: { m: 1, n: 1, k: 1 },
    maps: { order: ORDER, pixels, laplace: Float32Array.from([...new Array<number>(pixels).fill(0.5), ...mutualInformation]), dropout: new Float32Array(2 * pixels) },
    meanProb: new Float32Array(pixels),
    fused: Float32Array.from(fused),
    timings: {},
  };
}

test('scores with the manifest\'s map, aggregation and threshold; each is overridable', async () => {
  const manifest = { ood: { map: 'fused', aggregation: 'mean', threshold: 0.25, raiseAfter: 1, clearAfter: 1 }, measures: { order: ORDER, entropyEpsilon: 1e-6 } };
  const frame = frameWith([0, 0.2, 0.4, 0.6], [0, 0, 0, 0.1]);
  const byManifest = await firstValueFrom(of(frame).pipe(scoreOod(manifest)));
  assert.ok(Math.abs(byManifest.ood.score - 0.3) < 1e-7);
  assert.equal({ ...byManifest.ood, score: 0 }, { score: 0, threshold: 0.25, map: 'fused', above: true });
  assert.type(byManifest.timings.ood, 'number');
  const overridden = await firstValueFrom(of(frame).pipe(scoreOod(manifest, { map: 'laplace.mutual_information', aggregation: 'quantile:1', threshold: 0.2 })));
  assert.ok(Math.abs(overridden.ood.score - 0.1) < 1e-7);
  assert.is(overridden.ood.above, false);
  assert.is(overridden.ood.map, 'laplace.mutual_information');
});

test('a bad map name or threshold fails at set-up', () => {
  const manifest = { ood: { map: 'fused', aggregation: 'mean', threshold: 0.25, raiseAfter: 1, clearAfter: 1 }, measures: { order: ORDER, entropyEpsilon: 1e-6 } };
  assert.throws(() => scoreOod(manifest, { map: 'laplace.entropy' }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => scoreOod(manifest, { threshold: Number.NaN }), (e: LfusionError) => e.code === 'INVALID_OPTION');
});

test.run();
