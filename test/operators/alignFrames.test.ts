import { existsSync } from 'node:fs';
import { from, lastValueFrom, skip, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignFrames } from '../../src/operators/alignFrames.js';
import { estimateAlignment } from '../../src/operators/alignFrames/estimate.js';
import { warpToOriginal } from '../../src/operators/alignFrames/warp.js';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { LfusionError, ShapeError } from '../../src/runtime/errors.js';
import type { Frame, SimilarityTransform } from '../../src/runtime/types/frames.js';

const HC18 = new URL('../../../shared/data/hc18/training_set/', import.meta.url).pathname;
const SAMPLE = new URL('../../assets/sample.mp4', import.meta.url).pathname;
/** Tolerances the estimate must meet on speckled 224x224 frames. */
const TOLERANCE = { rotationDeg: 1, scale: 0.02, pixels: 1 };

/** Known frame -> reference transforms: [scale, rotation in degrees, tx, ty]. */
const TRANSFORMS: [number, number, number, number][] = [
  [1, 10, 5, -3],
  [1.1, -25, -8, 6],
  [0.9, 3, 12, 4],
  [1, 0, -15, 10],
  [1.15, 40, 4, -4],
  [0.95, 170, 2, 3],
];

function seededUniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * `frame` seen through a known transform `M` (frame -> reference), `moved(p) = frame(M p)` (bilinear, black
 * outside), with fully developed speckle of 4 looks: each pixel times a unit-mean Gamma(4) variable.
 */
function moveAndSpeckle(frame: Frame, [scale, degrees, tx, ty]: [number, number, number, number], seed: number): Frame {
  const { width: w, height: h } = frame;
  const cx = (w - 1) / 2, cy = (h - 1) / 2, angle = (degrees * Math.PI) / 180;
  const a = scale * Math.cos(angle), d = scale * Math.sin(angle);
  const uniform = seededUniform(seed);
  const data = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const X = a * (x - cx) - d * (y - cy) + cx + tx, Y = d * (x - cx) + a * (y - cy) + cy + ty;
      let value = 0;
      if (X >= 0 && Y >= 0 && X <= w - 1 && Y <= h - 1) {
        const x0 = Math.min(Math.floor(X), w - 2), y0 = Math.min(Math.floor(Y), h - 2), fx = X - x0, fy = Y - y0;
        const at = (i: number, j: number) => frame.data[j * w + i]!;
        value = (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
      }
      let speckle = 0;
      for (let k = 0; k < 4; k++) speckle -= Math.log(1 - uniform());
      data[y * w + x] = Math.min(255, Math.round((value * speckle) / 4));
    }
  }
  return { ...frame, data };
}

function assertRecovered(transform: SimilarityTransform, [scale, degrees, tx, ty]: [number, number, number, number], label: string): void {
  const rotationError = (((transform.rotation * 180) / Math.PI - degrees + 540) % 360) - 180;
  const got = `scale ${transform.scale.toFixed(4)} rotation ${((transform.rotation * 180) / Math.PI).toFixed(2)}° t (${transform.tx.toFixed(2)}, ${transform.ty.toFixed(2)})`;
  assert.ok(Math.abs(rotationError) <= TOLERANCE.rotationDeg, `${label}: ${got}`);
  assert.ok(Math.abs(transform.scale / scale - 1) <= TOLERANCE.scale, `${label}: ${got}`);
  assert.ok(Math.hypot(transform.tx - tx, transform.ty - ty) <= TOLERANCE.pixels, `${label}: ${got}`);
}

const decode224 = (path: string, frames = 1, from = 0) => lastValueFrom(fromVideo(path, { width: 224, height: 224 }).pipe(skip(from), take(frames), toArray()));

const hc18Scans = ['010_HC.png', '155_HC.png', '420_HC.png'].map((name) => `${HC18}${name}`);
if (hc18Scans.every((path) => existsSync(path))) {
  test('recovers known similarity transforms of speckled HC18 scans within 1°, 2% and 1 px', async () => {
    for (const [s, path] of hc18Scans.entries()) {
      const [scan] = await decode224(path);
      const reference = moveAndSpeckle(scan!, [1, 0, 0, 0], 100 + s);
      for (const [k, known] of TRANSFORMS.entries()) {
        const { transform, quality } = estimateAlignment(reference, moveAndSpeckle(scan!, known, 200 + k));
        assertRecovered(transform, known, `${path.split('/').pop()} ${known.join(' ')}`);
        assert.ok(quality > 0.8, `quality ${quality}`);
      }
    }
  });
} else {
  console.warn(`alignFrames: HC18 scans not found under ${HC18}; skipping the HC18 recovery test (the sample-video test still runs)`);
}

test('recovers known transforms of a speckled frame of the sample video; rigid keeps scale at 1', async () => {
  const [frame] = await decode224(SAMPLE, 1, 40);
  const reference = moveAndSpeckle(frame!, [1, 0, 0, 0], 1);
  for (const [k, known] of [TRANSFORMS[0]!, TRANSFORMS[1]!, TRANSFORMS[5]!].entries()) {
    assertRecovered(estimateAlignment(reference, moveAndSpeckle(frame!, known, 10 + k)).transform, known, `sample ${known.join(' ')}`);
  }
  const rigid = estimateAlignment(reference, moveAndSpeckle(frame!, [1, -15, 6, 2], 20), 'rigid').transform;
  assertRecovered(rigid, [1, -15, 6, 2], 'rigid');
  assert.ok(Math.abs(rigid.scale - 1) < 1e-9, `rigid scale ${rigid.scale}`);
});

test('the operator emits the aligned frame on the reference geometry, and rejects a frame of noise', async () => {
  const [frame] = await decode224(SAMPLE, 1, 40);
  const reference = { ...frame!, index: 0 };
  const moved = { ...moveAndSpeckle(frame!, [1.05, 12, 6, -4], 3), index: 1 };
  const uniform = seededUniform(9);
  const noise = { ...frame!, index: 2, data: Uint8Array.from(frame!.data, () => Math.floor(uniform() * 256)) };
  const [first, second, third] = await lastValueFrom(from([reference, moved, noise]).pipe(alignFrames(), toArray()));
  assert.equal([first!.quality, first!.aligned, first!.referenceIndex, first!.transform.matrix], [1, true, 0, [1, 0, 0, 0, 1, 0]]);
  assertRecovered(second!.transform, [1.05, 12, 6, -4], 'operator');
  assert.is(second!.original, moved);
  // Aligned on the reference: in the middle, pixels differ from the reference by about the speckle alone.
  const speckled = moveAndSpeckle(frame!, [1, 0, 0, 0], 3);
  let aligned = 0, speckleOnly = 0;
  for (let y = 70; y < 154; y++) {
    for (let x = 70; x < 154; x++) {
      aligned += Math.abs(second!.frame.data[y * 224 + x]! - reference.data[y * 224 + x]!);
      speckleOnly += Math.abs(speckled.data[y * 224 + x]! - reference.data[y * 224 + x]!);
    }
  }
  assert.ok(aligned < 1.2 * speckleOnly, `sum |aligned - reference| ${aligned} vs speckle alone ${speckleOnly}`);
  assert.ok(third!.quality < 0.2, `noise quality ${third!.quality}`);
  assert.is(third!.aligned, false);
  assert.equal(third!.transform.matrix, [1, 0, 0, 0, 1, 0], 'a rejected frame passes with the identity, not a wild transform');
  assert.is(third!.frame, noise);
});

test('after rekeyAfter consecutive rejections the current frame becomes the reference', async () => {
  const [a] = await decode224(SAMPLE, 1, 0);
  const [b] = await decode224(SAMPLE, 1, 300);
  const uniform = seededUniform(4);
  const noise = (index: number) => ({ ...a!, index, data: Uint8Array.from(a!.data, () => Math.floor(uniform() * 256)) });
  const stream = [{ ...a!, index: 0 }, noise(1), noise(2), { ...b!, index: 3 }, { ...moveAndSpeckle(b!, [1, 5, 3, 0], 5), index: 4 }];
  const results = await lastValueFrom(from(stream).pipe(alignFrames({ rekeyAfter: 2 }), toArray()));
  assert.equal(results.map((r) => r.referenceIndex), [0, 0, 0, 3, 3]);
  assert.equal(results.map((r) => r.aligned), [true, false, false, true, true]);
  assertRecovered(results[4]!.transform, [1, 5, 3, 0], 'after rekey');
});

test('warpToOriginal maps a map on the aligned frame back through the transform, at the map resolution', () => {
  // Frame 200x100, map 100x50 (half resolution). The transform moves frame content by +20 px in x (10 map px).
  const map = { width: 100, height: 50, data: new Uint8Array(100 * 50) };
  for (let y = 20; y < 30; y++) for (let x = 40; x < 50; x++) map.data[y * 100 + x] = 1;
  const shift: SimilarityTransform = { scale: 1, rotation: 0, tx: 20, ty: 0, matrix: [1, 0, 20, 0, 1, 0] };
  const back = warpToOriginal(map, shift, { width: 200, height: 100 });
  const columns = new Set<number>();
  for (let i = 0; i < back.length; i++) if (back[i]) columns.add(i % 100);
  assert.equal([...columns].sort((p, q) => p - q), [30, 31, 32, 33, 34, 35, 36, 37, 38, 39]);
  // A half turn about the centre sends the square to the mirrored place; a float map keeps its type.
  const half: SimilarityTransform = { scale: 1, rotation: Math.PI, tx: 0, ty: 0, matrix: [-1, 0, 199, 0, -1, 99] };
  const turned = warpToOriginal({ ...map, data: Float32Array.from(map.data) }, half, { width: 200, height: 100 });
  assert.instance(turned, Float32Array);
  for (let y = 0; y < 50; y++) for (let x = 0; x < 100; x++) assert.is(turned[y * 100 + x], map.data[(49 - y) * 100 + (99 - x)], `(${x}, ${y})`);
});

test('malformed or mismatched frames are ShapeErrors; bad options INVALID_OPTION', async () => {
  const [frame] = await decode224(SAMPLE);
  const bad = [{ ...frame!, index: 1, data: new Uint8Array(10) }, { ...frame!, index: 1, width: 112, height: 448 }, { ...frame!, index: 1, width: 4, height: 4, data: new Uint8Array(16) }];
  for (const wrong of bad) {
    try {
      await lastValueFrom(from([frame!, wrong]).pipe(alignFrames()));
      assert.unreachable(`accepted ${wrong.width}x${wrong.height} with ${wrong.data.length} pixels`);
    } catch (error) {
      assert.instance(error, ShapeError);
      assert.match((error as Error).message, /frame 1/);
    }
  }
  for (const options of [{ model: 'affine' as 'rigid' }, { minQuality: 2 }, { rekeyAfter: 0 }]) {
    assert.throws(() => alignFrames(options), (e: unknown) => e instanceof LfusionError && e.code === 'INVALID_OPTION');
  }
});

test.run();
