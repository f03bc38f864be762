import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { from, lastValueFrom, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { alignFrames } from '../../src/operators/alignFrames.js';
import type { Affine } from '../../src/operators/alignFrames/affine.js';
import { alignKernels, javascriptKernels, nativeAlignKernels, type AlignKernels } from '../../src/operators/alignFrames/kernels.js';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { LfusionError } from '../../src/runtime/errors.js';
import { nativeKernels, nativeKernelsStatus } from '../../src/runtime/native-kernels.js';
import type { AlignedFrame } from '../../src/runtime/types/frames.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const SAMPLE = join(ROOT, 'assets/sample.mp4');
const BUILD_SCRIPT = join(ROOT, 'native/build.mjs');

function seededUniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}
const noise = <T extends Float32Array | Float64Array>(array: T, seed: number, scale = 255): T => {
  const uniform = seededUniform(seed);
  for (let i = 0; i < array.length; i++) array[i] = uniform() * scale;
  return array;
};

/** Same length and every element the same bits (NaN equal to NaN). */
function assertIdentical(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  assert.is(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) assert.unreachable(`${label}: element ${i} is ${actual[i]}, JavaScript gives ${expected[i]}`);
  }
}

if (!nativeAlignKernels) console.warn(`alignFramesKernels: native kernels ${nativeKernelsStatus}; only the JavaScript path and the build script are tested`);

/** Runs `body` with the native kernels, or says why it does not. */
function withNative(body: (native: AlignKernels) => void | Promise<void>): () => void | Promise<void> {
  return () => (nativeAlignKernels ? body(nativeAlignKernels) : undefined);
}

// A rotation, scale and shift that puts part of each output outside the input (the NaN / fill branch).
const WARP: Affine = [0.9 * Math.cos(0.3), -0.9 * Math.sin(0.3), 20.25, 0.9 * Math.sin(0.3), 0.9 * Math.cos(0.3), -15.5];

test('native blur, warpImage and FFTs give bit-identical results to JavaScript', withNative((native) => {
  const image = noise(new Float32Array(61 * 47), 1);
  const kernel = Float32Array.from([0.05, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05]);
  assertIdentical(native.blur(image, 61, 47, kernel), javascriptKernels.blur(image, 61, 47, kernel), 'blur');
  assertIdentical(native.warpImage(image, 61, 47, WARP, 50, 40, -1), javascriptKernels.warpImage(image, 61, 47, WARP, 50, 40, -1), 'warpImage');
  const real = noise(new Float64Array(64 * 128), 2, 1), imag = noise(new Float64Array(64 * 128), 3, 1);
  for (const inverse of [false, true]) {
    const js = javascriptKernels.fft2(real, 64, 128, inverse, imag), nat = native.fft2(real, 64, 128, inverse, imag);
    assertIdentical(nat.re, js.re, `fft2 re, inverse ${inverse}`);
    assertIdentical(nat.im, js.im, `fft2 im, inverse ${inverse}`);
  }
  const reference = javascriptKernels.fft2(real, 64, 128), moving = javascriptKernels.fft2(imag, 64, 128);
  const js = javascriptKernels.crossPower(reference, moving), nat = native.crossPower(reference, moving);
  assertIdentical(nat.re, js.re, 'crossPower re');
  assertIdentical(nat.im, js.im, 'crossPower im');
}));

test('native Gauss–Newton and overlap sums give bit-identical results to JavaScript', withNative((native) => {
  const template = noise(new Float32Array(40 * 30), 4), gx = noise(new Float32Array(40 * 30), 5, 2), gy = noise(new Float32Array(40 * 30), 6, 2);
  const moving = noise(new Float32Array(45 * 33), 7);
  const args = [template, gx, gy, 40, 30, moving, 45, 33, WARP, 19.5, 14.5] as const;
  assertIdentical(native.gaussNewtonSums(...args), javascriptKernels.gaussNewtonSums(...args), 'gaussNewtonSums');
  assertIdentical(native.overlapSums(template, 40, 30, moving, 45, 33, WARP), javascriptKernels.overlapSums(template, 40, 30, moving, 45, 33, WARP), 'overlapSums');
}));

test('alignFrames on the sample video: native and JavaScript kernels give the same transforms, qualities and pixels', withNative(async () => {
  const frames = await lastValueFrom(fromVideo(SAMPLE, { width: 224, height: 224 }).pipe(take(6), toArray()));
  const run = (kernels: 'javascript' | 'native') => lastValueFrom(from(frames).pipe(alignFrames({ kernels }), toArray()));
  const [js, native] = [await run('javascript'), await run('native')] as [AlignedFrame[], AlignedFrame[]];
  assert.ok(js.slice(1).every((r) => r.aligned && r.quality > 0.9), 'the sample frames align');
  js.forEach((expected, i) => {
    assert.equal(native[i]!.transform, expected.transform, `frame ${i} transform`);
    assert.is(native[i]!.quality, expected.quality, `frame ${i} quality`);
    assertIdentical(native[i]!.frame.data, expected.frame.data, `frame ${i} pixels`);
  });
}));

test('the addon checks its arguments: a wrong type or a short array throws instead of reading out of bounds', withNative(() => {
  const out = new Float32Array(16);
  assert.throws(() => nativeKernels!.blur(new Float64Array(16) as unknown as Float32Array, 4, 4, Float32Array.of(1), out), /Float32Array/);
  assert.throws(() => nativeKernels!.blur(new Float32Array(15), 4, 4, Float32Array.of(1), out), /shorter/);
  assert.throws(() => nativeKernels!.fft2(new Float64Array(12), new Float64Array(12), 3, 4, new Float64Array(6), new Float64Array(4)), /powers of two/);
}));

test('kernel choice: auto takes native when built; a bad choice is INVALID_OPTION', () => {
  assert.is(alignKernels('auto'), nativeAlignKernels ?? javascriptKernels);
  assert.is(alignKernels('javascript'), javascriptKernels);
  assert.throws(() => alignFrames({ kernels: 'gpu' as 'native' }), (error: unknown) => error instanceof LfusionError && error.code === 'INVALID_OPTION');
});

test('LFUSION_NATIVE=0 turns the addon off: auto is JavaScript, native is INVALID_OPTION naming why', () => {
  const script = `import('./src/operators/alignFrames/kernels.ts').then((k) => {
    let code = 'none';
    try { k.alignKernels('native'); } catch (error) { code = error.code + ': ' + error.message; }
    console.log(JSON.stringify({ auto: k.alignKernels('auto').name, code }));
  });`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env: { ...process.env, LFUSION_NATIVE: '0' }, encoding: 'utf8' });
  assert.is(child.status, 0, child.stderr);
  const result = JSON.parse(child.stdout.trim().split('\n').pop()!) as { auto: string; code: string };
  assert.is(result.auto, 'javascript');
  assert.match(result.code, /^INVALID_OPTION: .*LFUSION_NATIVE=0/);
});

test('the install-time build never fails: without a compiler it exits 0 with one line saying why, and builds nothing', () => {
  const out = mkdtempSync(join(tmpdir(), 'lfusion-native-'));
  const emptyPath = mkdtempSync(join(tmpdir(), 'lfusion-no-compiler-'));
  try {
    const cases = [
      { CXX: '/nonexistent/g++' }, // a compiler named but absent
      { CXX: '', PATH: emptyPath }, // no g++ on PATH
    ];
    for (const env of cases) {
      const child = spawnSync(process.execPath, [BUILD_SCRIPT], { env: { ...process.env, ...env, LFUSION_NATIVE_OUT: out }, encoding: 'utf8' });
      assert.is(child.status, 0, `exit status with ${JSON.stringify(env)}: ${child.stderr}`);
      const lines = child.stdout.trim().split('\n');
      assert.is(lines.length, 1, child.stdout);
      assert.match(lines[0]!, /native kernels not built \(no C\+\+ compiler: .*g\+\+ not found\); the JavaScript kernels are used/);
      assert.equal(readdirSync(out), [], 'nothing built');
    }
    const skipped = spawnSync(process.execPath, [BUILD_SCRIPT], { env: { ...process.env, LFUSION_NATIVE_BUILD: '0', LFUSION_NATIVE_OUT: out }, encoding: 'utf8' });
    assert.is(skipped.status, 0);
    assert.match(skipped.stdout, /not built \(LFUSION_NATIVE_BUILD=0\)/);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(emptyPath, { recursive: true, force: true });
  }
});

test('the addon the tests load was built from the current source (else `npm run build:native`)', () => {
  if (process.env.LFUSION_NATIVE === '0' || !existsSync(join(ROOT, 'native/build/lfusion_native.node'))) return;
  assert.ok(nativeKernels, `native/build/lfusion_native.node exists but is not used: ${nativeKernelsStatus}`);
});

test.run();
