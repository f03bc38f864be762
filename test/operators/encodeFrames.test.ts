import { readFileSync } from 'node:fs';
import { firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeFrames, greyResizer } from '../../src/operators/encodeFrames.js';
import { ShapeError } from '../../src/runtime/errors.js';
import { nativeKernels, nativeKernelsStatus } from '../../src/runtime/native-kernels.js';
import { Random } from '../../src/runtime/random.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';
import { compareToReference, loadReferenceVectors } from '../../src/runtime/reference-vectors.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';
import { RecordingRunner, syntheticFrame } from '../helpers/frames.js';

const fixture = (name: string) => new Uint8Array(readFileSync(new URL(`../fixtures/pil-resize/${name}`, import.meta.url)));

test('the resize reproduces Pillow bilinear (training) byte for byte, with the JavaScript loops and the native ones', () => {
  if (!nativeKernels) console.warn(`encodeFrames: native kernels ${nativeKernelsStatus}; the JavaScript resize only`);
  for (const kernels of ['javascript', 'auto'] as const) {
    for (const [width, height] of [[100, 60], [90, 150]] as const) {
      const out = new Uint8Array(224 * 224);
      greyResizer(width, height, 224, 224, kernels)(fixture(`${width}x${height}.in.u8`), out);
      assert.equal(Array.from(out), Array.from(fixture(`${width}x${height}.out.u8`)), `${kernels} ${width}x${height}`);
    }
  }
});

test('native and JavaScript resizes give the same bytes, shrinking a screen or enlarging a small frame', () => {
  for (const [width, height] of [[1920, 1080], [800, 540], [61, 47], [224, 224]] as const) {
    const pixels = new Uint8Array(width * height);
    const random = new Random(width);
    for (let i = 0; i < pixels.length; i++) pixels[i] = random.nextUint32() & 255;
    const [script, auto] = [new Uint8Array(224 * 224), new Uint8Array(224 * 224)];
    greyResizer(width, height, 224, 224, 'javascript')(pixels, script);
    greyResizer(width, height, 224, 224)(pixels, auto);
    assert.ok(script.every((value, i) => value === auto[i]), `${width}x${height}`);
  }
});

test('feeds the encoder the resized frame normalised with the manifest mean and std', async () => {
  const { manifest } = await loadModelPackage(TINY_PACKAGE);
  const runner = new RecordingRunner(() => ({ features: { data: new Float32Array(8 * 196), dims: [1, 8, 14, 14] } }));
  const frame = { ...syntheticFrame(0, 100, 60), data: fixture('100x60.in.u8') };
  const encoded = await firstValueFrom(from([frame]).pipe(encodeFrames(runner, manifest)));
  const { mean, std } = manifest.input.normalization;
  const expected = Array.from(fixture('100x60.out.u8'), (pixel) => Math.fround((pixel / 255 - mean) / std));
  assert.is(runner.calls[0]!.graph, 'encoder');
  assert.equal(runner.calls[0]!.feeds.image!.dims, [1, 1, 224, 224]);
  assert.equal(Array.from(runner.calls[0]!.feeds.image!.data), expected);
  assert.equal(Array.from(encoded.image), expected, 'the image travels on for the heads');
  assert.ok(encoded.timings.preprocess! >= 0 && encoded.timings.encoder! >= 0);
});

test('encodes every frame in order with a real pool', async () => {
  const pkg = await loadModelPackage(TINY_PACKAGE);
  const pool = await InferencePool.open(pkg, { graphs: ['encoder'], threadsPerWorker: 1 });
  const frames = [0, 1, 2, 3].map((index) => syntheticFrame(index));
  const encoded = await lastValueFrom(from(frames).pipe(encodeFrames(pool, pkg.manifest), toArray()));
  assert.equal(encoded.map((e) => e.frame.index), [0, 1, 2, 3]);
  for (const e of encoded) assert.is(e.features.length, 8 * 14 * 14);
  await pool.close();
});

test('a frame whose pixel count disagrees with its size is a ShapeError', async () => {
  const { manifest } = await loadModelPackage(TINY_PACKAGE);
  const runner = new RecordingRunner(() => ({}));
  const bad = { ...syntheticFrame(3), data: new Uint8Array(10) };
  try {
    await firstValueFrom(from([bad]).pipe(encodeFrames(runner, manifest)));
    assert.unreachable('accepted a malformed frame');
  } catch (error) {
    assert.instance(error, ShapeError);
    assert.match((error as Error).message, /frame 3 has 10 pixels, expected 64x48/);
  }
  assert.is(runner.calls.length, 0);
});

if (shippedPackagePresent('encodeFrames against the shipped package\'s reference features')) {
  test('with the shipped package, a frame of the reference image yields the reference features', async () => {
    const pkg = await loadModelPackage(SHIPPED_PACKAGE);
    const { tolerance, cases } = await loadReferenceVectors(SHIPPED_PACKAGE);
    const reference = cases[0]!;
    const { mean, std } = pkg.manifest.input.normalization;
    // The reference image is a normalised 224x224 grey image: back to its pixels, it is a frame the resize leaves as is.
    const pixels = Uint8Array.from(reference.arrays.image!.data, (x) => Math.round((x * std + mean) * 255));
    const frame = { index: 0, pts: 0, captureTime: Date.now(), width: 224, height: 224, data: pixels };
    const pool = await InferencePool.open(pkg, { graphs: ['encoder'], threadsPerWorker: 1 });
    const encoded = await firstValueFrom(from([frame]).pipe(encodeFrames(pool, pkg.manifest)));
    await pool.close();
    const image = compareToReference(encoded.image, reference.arrays.image!.data, tolerance);
    assert.ok(image.ok, `normalised image: ${JSON.stringify(image)}`);
    const features = compareToReference(encoded.features, reference.arrays.features!.data, tolerance);
    assert.ok(features.ok, `features: ${JSON.stringify(features)}`);
  });
}

test.run();
