import { from, lastValueFrom, tap, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeFrames } from '../../src/operators/encodeFrames.js';
import { segmentFrames } from '../../src/operators/segmentFrames.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { headGrid, loadModelPackage } from '../../src/runtime/model-package.js';
import type { EncodedFrame } from '../../src/runtime/types/frames.js';
import { loadReferenceVectors } from '../../src/runtime/reference-vectors.js';
import { upsample2x } from '../../src/runtime/upsample.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';
import { RecordingRunner, syntheticFrame } from '../helpers/frames.js';

const HW = 224 * 224;

function encoded(index: number): EncodedFrame {
  return { frame: syntheticFrame(index), image: new Float32Array(HW).fill(0.5), features: new Float32Array(8 * 196).fill(0.25), timings: { encoder: 1 } };
}

test('runs the MAP head (one sample, zero noise, posterior scale 0) and thresholds the logit at 0', async () => {
  const { manifest } = await loadModelPackage(TINY_PACKAGE);
  const logits = Float32Array.from({ length: HW }, (_, i) => (i % 3 === 0 ? 2 : i % 3 === 1 ? -2 : -0.001));
  const runner = new RecordingRunner(() => ({ logit_mean: { data: logits, dims: [1, HW] } }));
  const [result] = await lastValueFrom(from([encoded(5)]).pipe(segmentFrames(runner, manifest), toArray()));
  const call = runner.calls[0]!;
  assert.is(call.graph, 'laplace_head');
  assert.equal(call.feeds.weight_noise!.dims, [1, manifest.laplace.weightCount]);
  assert.ok(call.feeds.weight_noise!.data.every((v) => v === 0));
  assert.equal(Array.from(call.feeds.posterior_scale!.data), [0]);
  assert.equal(call.feeds.features!.dims, [1, 8, 14, 14]);
  assert.equal(call.feeds.image!.dims, [1, 1, 224, 224]);
  const mask = result!.planes[0]!;
  assert.equal([mask.name, mask.width, mask.height, mask.min, mask.scale], ['mask', 224, 224, 0, 1]);
  assert.equal(Array.from(mask.data.subarray(0, 6)), [1, 0, 0, 1, 0, 0]);
  assert.is(result!.frame.index, 5);
  assert.not.ok('data' in result!.frame, 'results carry no source pixels');
  assert.is(result!.timings.encoder, 1);
  assert.ok(result!.timings.head! >= 0);
});

test('heads at half resolution: the logits are upsampled to the input grid before the threshold', async () => {
  const { manifest } = await loadModelPackage(TINY_PACKAGE);
  const half = structuredClone(manifest);
  half.graphs.laplace_head!.outputs.logit_mean![1] = 112 * 112;
  // Each full-grid pixel is 3:1 its nearest half-grid logit and the next one out: a half-grid column of +4 among
  // -3 gives its two full-grid columns 0.75 * 4 - 0.25 * 3 > 0, their neighbours 0.75 * -3 + 0.25 * 4 < 0.
  const logits = Float32Array.from({ length: 112 * 112 }, (_, i) => (i % 112 === 50 ? 4 : -3));
  const runner = new RecordingRunner(() => ({ logit_mean: { data: logits, dims: [1, 112 * 112] } }));
  const [result] = await lastValueFrom(from([encoded(0)]).pipe(segmentFrames(runner, half), toArray()));
  const mask = result!.planes[0]!;
  assert.equal([mask.width, mask.height], [224, 224]);
  const row = Array.from(mask.data.subarray(224 * 60 + 98, 224 * 60 + 104));
  assert.equal(row, [0, 0, 1, 1, 0, 0], 'columns 100 and 101 (half-grid column 50) are foreground');
});

test('segments real encoded frames in order with a real pool, leaving each encoded frame usable', async () => {
  const pkg = await loadModelPackage(TINY_PACKAGE);
  const pool = await InferencePool.open(pkg, { graphs: ['encoder', 'laplace_head'], threadsPerWorker: 1 });
  const frames = [0, 1, 2].map((index) => syntheticFrame(index));
  const seen: EncodedFrame[] = [];
  const results = await lastValueFrom(from(frames).pipe(encodeFrames(pool, pkg.manifest), tap((e) => seen.push(e)), segmentFrames(pool, pkg.manifest), toArray()));
  assert.equal(results.map((r) => r.frame.index), [0, 1, 2]);
  // The clip path stacks the same encoded frames into windows after the 2D head ran on them.
  for (const e of seen) assert.equal([e.image.length, e.features.length], [HW, 8 * 196], 'buffers not transferred away');
  for (const r of results) {
    assert.is(r.planes[0]!.data.length, HW);
    assert.ok(r.planes[0]!.data.every((q) => q === 0 || q === 1));
  }
  await pool.close();
});

if (shippedPackagePresent('segmentFrames against the shipped package\'s MAP logits')) {
  test('with the shipped package, the mask is the reference MAP logit thresholded at 0', async () => {
    const pkg = await loadModelPackage(SHIPPED_PACKAGE);
    const { cases } = await loadReferenceVectors(SHIPPED_PACKAGE);
    const reference = cases.find((c) => c.arrays.map_logit_mean)!;
    const pool = await InferencePool.open(pkg, { graphs: ['laplace_head'], threadsPerWorker: 1 });
    const input: EncodedFrame = {
      frame: syntheticFrame(0),
      image: Float32Array.from(reference.arrays.image!.data),
      features: Float32Array.from(reference.arrays.features!.data),
      timings: {},
    };
    const [result] = await lastValueFrom(from([input]).pipe(segmentFrames(pool, pkg.manifest), toArray()));
    await pool.close();
    const grid = headGrid(pkg.manifest);
    const headLogits = Float32Array.from(reference.arrays.map_logit_mean!.data.subarray(0, grid.width * grid.height));
    const logits = grid.width * grid.height === HW ? headLogits : upsample2x(headLogits, 1, grid.width, grid.height);
    const mask = result!.planes[0]!.data;
    let decided = 0;
    let foreground = 0;
    for (let i = 0; i < HW; i++) {
      if (Math.abs(logits[i]!) < 1e-3) continue; // float32 round-off may flip a logit this close to 0
      decided += 1;
      foreground += mask[i]!;
      if (mask[i] !== (logits[i]! > 0 ? 1 : 0)) assert.unreachable(`pixel ${i}: mask ${mask[i]}, reference logit ${logits[i]}`);
    }
    assert.ok(decided > HW * 0.99);
    assert.ok(foreground > 0 && foreground < decided, 'the reference frame has both head and background');
  });
}

test.run();
