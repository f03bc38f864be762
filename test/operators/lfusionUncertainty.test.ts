import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { LfusionError } from '../../src/runtime/errors.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';
import type { GraphRunner } from '../../src/runtime/types/inference.js';
import type { ModelManifest } from '../../src/runtime/types/model.js';
import type { ScoredFrame } from '../../src/runtime/types/uncertainty.js';
import { lfusionUncertainty, toFrameResult } from '../../src/operators/lfusionUncertainty.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

const ORDER = ['mean_prob', 'mutual_information', 'logit_variance'];

function scoredFrame(): ScoredFrame {
  return {
    frame: { index: 7, pts: 0.28, captureTime: 5, width: 640, height: 480, data: new Uint8Array(640 * 480) },
    counts: { m: 1, n: 1, k: 1 },
    maps: { order: ORDER, pixels: 4, laplace: Float32Array.of(0, 0, 0, 0, 0, Math.LN2, 0, 0, 1, 2, 3, 4), dropout: new Float32Array(12) },
    meanProb: Float32Array.of(0.1, 0.5, 0.7, 0.9),
    fused: Float32Array.of(0, 1, 2, 3),
    ood: { score: 1.5, threshold: 1, map: 'fused', above: true },
    timings: { encoder: 3 },
  };
}

test('a result carries the mask, the fused map, then the requested planes, and no pixels of the source', () => {
  const result = toFrameResult(scoredFrame(), { width: 2, height: 2 }, ['laplace.mutual_information', 'laplace.logit_variance'], { 'laplace.logit_variance': { min: 0, max: 8 } });
  assert.equal(result.planes.map((p) => p.name), ['mask', 'fused', 'laplace.mutual_information', 'laplace.logit_variance']);
  assert.equal(Array.from(result.planes[0]!.data), [0, 0, 1, 1], 'mask: mean probability > 0.5');
  assert.equal([result.planes[1]!.min, result.planes[1]!.scale, ...result.planes[1]!.data], [0, 3 / 255, 0, 85, 170, 255]);
  assert.equal(Array.from(result.planes[2]!.data), [0, 255, 0, 0], 'mutual information on its fixed [0, ln 2] scale');
  assert.equal(Array.from(result.planes[3]!.data), [32, 64, 96, 128], 'range override');
  assert.equal(result.frame, { index: 7, pts: 0.28, captureTime: 5, width: 640, height: 480 });
  assert.equal(result.ood, { score: 1.5, threshold: 1, map: 'fused', above: true });
  assert.is(result.timings.encoder, 3);
  assert.type(result.timings.planes, 'number');
});

test('bad plane names and packages without the uncertainty graphs fail at set-up', async () => {
  const { manifest } = await loadModelPackage(TINY_PACKAGE); // has no measures graph
  const runner: GraphRunner = { run: () => Promise.reject(new Error('not called')) };
  const withMeasures: ModelManifest = { ...manifest, graphs: { ...manifest.graphs, measures: manifest.graphs.dropout_head! } };
  assert.throws(() => lfusionUncertainty(runner, manifest), (e: LfusionError) => e.code === 'INVALID_OPTION' && /measures/.test(e.message));
  assert.throws(() => lfusionUncertainty(runner, withMeasures, { planes: ['laplace.entropy'] }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => lfusionUncertainty(runner, withMeasures, { planes: ['fused'] }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => lfusionUncertainty(runner, withMeasures, { m: 0 }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => lfusionUncertainty(runner, withMeasures, { ood: { aggregation: 'max' } }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  lfusionUncertainty(runner, withMeasures, { planes: ['dropout.mutual_information'] });
});

test.run();
