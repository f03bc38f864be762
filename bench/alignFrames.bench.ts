/**
 * Cost of `alignFrames` per 224x224 frame (the live budget): frames of the sample video (a slow zoom over
 * scans, so real motion and real estimates), aligned to the first frame, and the same with a reference
 * re-prepared for every frame (the cost of a keyframe change).
 *
 *   npm run bench -- alignFrames
 *   BENCH_ALIGN_FRAMES=30 BENCH_ALIGN_REPEATS=3 npm run bench -- alignFrames
 */
import { lastValueFrom, Subject, take, toArray } from 'rxjs';
import { alignFrames } from '../src/operators/alignFrames.js';
import { estimateAlignment } from '../src/operators/alignFrames/estimate.js';
import { fromVideo } from '../src/operators/fromVideo.js';
import type { AlignedFrame, Frame } from '../src/runtime/types/frames.js';
import type { BenchModule, BenchResult } from './run.js';

const FRAMES = Number(process.env.BENCH_ALIGN_FRAMES ?? 40);
const REPEATS = Number(process.env.BENCH_ALIGN_REPEATS ?? 5);
const SAMPLE = new URL('../assets/sample.mp4', import.meta.url).pathname;

/** Milliseconds per frame through the operator (the first frame, which becomes the reference, not timed). */
function operatorMs(frames: readonly Frame[], quality: number[]): number {
  const input = new Subject<Frame>();
  const results: AlignedFrame[] = [];
  const subscription = input.pipe(alignFrames()).subscribe((result) => results.push(result));
  input.next(frames[0]!);
  const started = performance.now();
  for (const frame of frames.slice(1)) input.next(frame);
  const ms = (performance.now() - started) / (frames.length - 1);
  subscription.unsubscribe();
  quality.push(...results.slice(1).map((r) => r.quality));
  return ms;
}

const bench: BenchModule = {
  title: `alignFrames: sample video at 224x224, ${FRAMES} frames x ${REPEATS}`,
  async run(): Promise<BenchResult[]> {
    const frames = await lastValueFrom(fromVideo(SAMPLE, { width: 224, height: 224 }).pipe(take(FRAMES), toArray()));
    const quality: number[] = [];
    operatorMs(frames, []); // warm-up
    const steady: number[] = [];
    const rekeyed: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      steady.push(operatorMs(frames, quality));
      const started = performance.now();
      for (let i = 1; i < frames.length; i++) estimateAlignment(frames[i - 1]!, frames[i]!);
      rekeyed.push((performance.now() - started) / (frames.length - 1));
    }
    const sorted = [...quality].sort((a, b) => a - b);
    const notes = { size: '224x224', frames: FRAMES, medianQuality: +sorted[Math.floor(sorted.length / 2)]!.toFixed(3), minQuality: +sorted[0]!.toFixed(3) };
    return [
      { name: 'operator, fixed reference (estimate + resample)', unit: 'ms/frame', samples: steady, notes },
      { name: 'estimate with a new reference each frame', unit: 'ms/frame', samples: rekeyed, notes },
    ];
  },
};

export default bench;
