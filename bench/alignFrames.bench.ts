/**
 * Cost of `alignFrames` per 224x224 frame (the live budget): frames of the sample video (a slow zoom over
 * scans, so real motion and real estimates), aligned to the first frame, and the same with a reference
 * re-prepared for every frame (the cost of a keyframe change). JavaScript and native kernels (where the addon
 * is built) take turns in each repeat; their ratio is per repeat, and `identical` says whether both paths gave
 * the same transforms and qualities to the last bit.
 *
 *   npm run bench -- alignFrames
 *   BENCH_ALIGN_FRAMES=30 BENCH_ALIGN_REPEATS=3 npm run bench -- alignFrames
 */
import { lastValueFrom, Subject, take, toArray } from 'rxjs';
import { alignFrames } from '../src/operators/alignFrames.js';
import { estimateAlignment } from '../src/operators/alignFrames/estimate.js';
import type { Affine } from '../src/operators/alignFrames/affine.js';
import { javascriptKernels, nativeAlignKernels, type AlignKernels } from '../src/operators/alignFrames/kernels.js';
import { nativeKernelsStatus } from '../src/runtime/native-kernels.js';
import { fromVideo } from '../src/operators/fromVideo.js';
import type { AlignedFrame, Frame } from '../src/runtime/types/frames.js';
import type { BenchModule, BenchResult } from './run.js';

const FRAMES = Number(process.env.BENCH_ALIGN_FRAMES ?? 40);
const REPEATS = Number(process.env.BENCH_ALIGN_REPEATS ?? 5);
const SAMPLE = new URL('../assets/sample.mp4', import.meta.url).pathname;

type Kernels = 'javascript' | 'native';

/** Milliseconds per frame through the operator (the first frame, which becomes the reference, not timed). */
function operatorMs(frames: readonly Frame[], kernels: Kernels, results: AlignedFrame[] = []): number {
  const input = new Subject<Frame>();
  const subscription = input.pipe(alignFrames({ kernels })).subscribe((result) => results.push(result));
  input.next(frames[0]!);
  const started = performance.now();
  for (const frame of frames.slice(1)) input.next(frame);
  const ms = (performance.now() - started) / (frames.length - 1);
  subscription.unsubscribe();
  return ms;
}

/** Milliseconds per frame of an estimate whose reference is prepared anew (the previous frame). */
function rekeyedMs(frames: readonly Frame[], kernels: Kernels): number {
  const started = performance.now();
  for (let i = 1; i < frames.length; i++) estimateAlignment(frames[i - 1]!, frames[i]!, 'similarity', kernels);
  return (performance.now() - started) / (frames.length - 1);
}

/** Whether two runs gave the same transforms, qualities and aligned pixels, to the last bit. */
const identical = (a: readonly AlignedFrame[], b: readonly AlignedFrame[]) =>
  a.length === b.length &&
  a.every((r, i) => JSON.stringify([r.transform, r.quality]) === JSON.stringify([b[i]!.transform, b[i]!.quality]) && r.frame.data.every((v, j) => v === b[i]!.frame.data[j]));

/**
 * Per kernel, at the sizes of a 224x224 frame, JavaScript time / native time of `CALLS` calls, the two taking
 * turns `REPEATS` times: which kernels earn their place in native/.
 */
function kernelRatios(native: AlignKernels, frame: Frame): BenchResult[] {
  const image = Float32Array.from(frame.data);
  const gradient = new Float32Array(image.length).map((_, i) => image[i + 1]! - image[i]! || 0);
  const kernel = Float32Array.from({ length: 7 }, (_, k) => Math.exp(-((k - 3) ** 2) / 4.5) / 3.76);
  const warp: Affine = [0.98, -0.05, 3.5, 0.05, 0.98, -2.25];
  const grid = new Float64Array(128 * 128).map((_, i) => image[i]!);
  const spectrum = javascriptKernels.fft2(grid, 128, 128);
  const calls: Record<string, (k: AlignKernels) => unknown> = {
    blur: (k) => k.blur(image, 224, 224, kernel),
    warpImage: (k) => k.warpImage(image, 224, 224, warp, 224, 224, 0),
    fft2: (k) => k.fft2(grid, 128, 128),
    crossPower: (k) => k.crossPower(spectrum, spectrum),
    gaussNewtonSums: (k) => k.gaussNewtonSums(image, gradient, gradient, 224, 224, image, 224, 224, warp, 111.5, 111.5),
    overlapSums: (k) => k.overlapSums(image, 224, 224, image, 224, 224, warp),
  };
  const CALLS = 20;
  const ms = (call: (k: AlignKernels) => unknown, k: AlignKernels) => {
    const started = performance.now();
    for (let i = 0; i < CALLS; i++) call(k);
    return performance.now() - started;
  };
  return Object.entries(calls).map(([name, call]) => {
    ms(call, javascriptKernels); // warm-up
    const samples = Array.from({ length: REPEATS }, () => ms(call, javascriptKernels) / ms(call, native));
    return { name: `kernel ${name}: javascript / native time`, unit: 'x', samples, notes: { size: name.startsWith('fft') || name === 'crossPower' ? '128x128' : '224x224', calls: CALLS } };
  });
}

const bench: BenchModule = {
  title: `alignFrames: sample video at 224x224, ${FRAMES} frames x ${REPEATS}`,
  async run(): Promise<BenchResult[]> {
    const frames = await lastValueFrom(fromVideo(SAMPLE, { width: 224, height: 224 }).pipe(take(FRAMES), toArray()));
    const paths: Kernels[] = nativeAlignKernels ? ['javascript', 'native'] : ['javascript'];
    const outcomes = paths.map((kernels) => {
      const results: AlignedFrame[] = [];
      operatorMs(frames, kernels, results); // warm-up, and the results to compare
      return results;
    });
    const quality = outcomes[0]!.slice(1).map((r) => r.quality);
    const steady: Record<Kernels, number[]> = { javascript: [], native: [] };
    const rekeyed: Record<Kernels, number[]> = { javascript: [], native: [] };
    for (let r = 0; r < REPEATS; r++) {
      for (const kernels of paths) {
        steady[kernels].push(operatorMs(frames, kernels));
        rekeyed[kernels].push(rekeyedMs(frames, kernels));
      }
    }
    const sorted = [...quality].sort((a, b) => a - b);
    const notes = { size: '224x224', frames: FRAMES, medianQuality: +sorted[Math.floor(sorted.length / 2)]!.toFixed(3), minQuality: +sorted[0]!.toFixed(3) };
    const results: BenchResult[] = paths.flatMap((kernels) => [
      { name: `operator, fixed reference (estimate + resample), ${kernels}`, unit: 'ms/frame', samples: steady[kernels], notes },
      { name: `estimate with a new reference each frame, ${kernels}`, unit: 'ms/frame', samples: rekeyed[kernels], notes },
    ]);
    if (!nativeAlignKernels) {
      process.stderr.write(`alignFrames: native kernels ${nativeKernelsStatus}; JavaScript only\n`);
      return results;
    }
    const ratio = (js: number[], native: number[]) => js.map((ms, i) => ms / native[i]!);
    const same = { identical: identical(outcomes[0]!, outcomes[1]!) ? 'yes' : 'NO' };
    return [
      ...results,
      { name: 'operator: javascript / native time', unit: 'x', samples: ratio(steady.javascript, steady.native), notes: same },
      { name: 'new reference: javascript / native time', unit: 'x', samples: ratio(rekeyed.javascript, rekeyed.native), notes: same },
      ...kernelRatios(nativeAlignKernels, frames[0]!),
    ];
  },
};

export default bench;
