/**
 * Cost of the clip path: the 3D heads, measures, fusion and OOD score on one 16-frame window, at the package's
 * default clip sample counts and at (1, 1, 1); and the clip path's frame rate at the default stride, counting one
 * encoder run per frame plus one window per `stride` frames (what `windowClips` does). One window in flight.
 *
 *   npm run bench -- clip
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { lastValueFrom, of } from 'rxjs';
import { encodeFrames } from '../src/operators/encodeFrames.js';
import { lfusionClipUncertainty } from '../src/operators/lfusionClipUncertainty.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';
import type { ClipWindow, EncodedFrame, Frame } from '../src/runtime/types/frames.js';
import type { SampleCounts } from '../src/runtime/types/uncertainty.js';
import type { BenchModule, BenchResult } from './run.js';

const WINDOWS = Number(process.env.BENCH_CLIP_WINDOWS ?? 5);
const STRIDE = 8;

const bench: BenchModule = {
  title: `clip path: ${WINDOWS} windows per (m, n, k), stride ${STRIDE}`,
  async run(): Promise<BenchResult[]> {
    const model = existsSync(join(DEFAULT_MODEL_PATH, 'manifest.json')) ? await loadModelPackage(DEFAULT_MODEL_PATH) : undefined;
    const clip = model?.manifest.clip;
    if (!model || !clip) {
      process.stderr.write('clip bench skipped: the model package has no clip heads\n');
      return [];
    }
    const pool = await InferencePool.open(model);
    const results: BenchResult[] = [];
    try {
      const encode = encodeFrames(pool, model.manifest);
      const { width, height } = model.manifest.input;
      // A smooth synthetic sweep: what the heads compute does not depend on the pixel values.
      const frames: Frame[] = Array.from({ length: clip.frames }, (_, t) => ({
        index: t, pts: t / 25, captureTime: Date.now(), width, height,
        data: Uint8Array.from({ length: width * height }, (_, i) => 128 + 100 * Math.sin((i % width) / 9 + t / 4) * Math.cos(Math.floor(i / width) / 11)),
      }));
      const encoderMs: number[] = [];
      const encoded: EncodedFrame[] = [];
      for (const frame of frames) {
        const started = performance.now();
        encoded.push(await lastValueFrom(of(frame).pipe(encode)));
        encoderMs.push(performance.now() - started);
      }
      const window: ClipWindow = { frames, features: encoded, start: 0, end: frames.length, partial: false };
      const encoderMedian = [...encoderMs].sort((a, b) => a - b)[Math.floor(encoderMs.length / 2)]!;
      results.push({ name: 'encoder per frame', unit: 'ms', samples: encoderMs });
      const counts: SampleCounts[] = [{ m: 1, n: 1, k: 1 }, { m: clip.sampling.m, n: clip.sampling.n, k: clip.sampling.k }];
      for (const { m, n, k } of counts) {
        const analyse = lfusionClipUncertainty(pool, model.manifest, { m, n, k });
        await lastValueFrom(of(window).pipe(analyse)); // warm-up; draws the common random numbers once
        const windowMs: number[] = [];
        for (let i = 0; i < WINDOWS; i++) {
          const started = performance.now();
          await lastValueFrom(of(window).pipe(analyse));
          windowMs.push(performance.now() - started);
        }
        const label = `(m,n,k)=(${m},${n},${k})`;
        const notes = { model: model.manifest.name, frames: clip.frames, outputSize: clip.outputSize, stride: STRIDE, encoderMsMedian: +encoderMedian.toFixed(1) };
        results.push({ name: `${label} window`, unit: 'ms', samples: windowMs, notes });
        results.push({ name: `${label} clip path frames/s`, unit: 'fps', samples: windowMs.map((ms) => 1000 / (encoderMedian + ms / STRIDE)), notes });
      }
    } finally {
      await pool.close();
    }
    return results;
  },
};
export default bench;
