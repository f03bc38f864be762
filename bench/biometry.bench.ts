/**
 * Milliseconds of the head biometry step (`measureBiometry`: head candidates and robust ellipse fits on every
 * posterior sample, intervals, status) per frame at the package's default sample counts (10, 4, 10): the
 * package's in-distribution reference image through the encoder and both heads once, then the biometry step
 * alone, repeated. Target: under 5 ms per frame.
 *
 *   npm run bench -- biometry
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { firstValueFrom, lastValueFrom, of } from 'rxjs';
import { encodeFrames } from '../src/operators/encodeFrames.js';
import { measureBiometry } from '../src/operators/measureBiometry.js';
import { sampleHeads } from '../src/operators/sampleHeads.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';
import type { BenchModule, BenchResult } from './run.js';
import { referenceFrame } from './uncertainty.bench.js';

const REPEATS = Number(process.env.BENCH_BIOMETRY_REPEATS ?? 50);

const bench: BenchModule = {
  title: `head biometry step at (m,n,k)=(10,4,10): ${REPEATS} repeats on one frame's posterior samples`,
  async run(): Promise<BenchResult[]> {
    if (!existsSync(join(DEFAULT_MODEL_PATH, 'manifest.json'))) {
      process.stderr.write(`biometry bench skipped: no model package at ${DEFAULT_MODEL_PATH}\n`);
      return [];
    }
    const model = await loadModelPackage(DEFAULT_MODEL_PATH);
    const pool = await InferencePool.open(model);
    try {
      const frame = await referenceFrame(model);
      const samples = await lastValueFrom(of(frame).pipe(encodeFrames(pool, model.manifest), sampleHeads(pool, model.manifest, { m: 10, n: 4, k: 10 })));
      const biometry = measureBiometry(model.manifest, { pixelSpacing: { x: 0.15, y: 0.15 } });
      const ms: number[] = [];
      let status = '';
      for (let i = 0; i < REPEATS; i++) {
        const started = performance.now();
        status = (await firstValueFrom(of(samples).pipe(biometry))).biometry.status;
        ms.push(performance.now() - started);
      }
      return [{ name: '(m,n,k)=(10,4,10) biometry', unit: 'ms', samples: ms, notes: { model: model.manifest.name, repeats: REPEATS, status } }];
    } finally {
      await pool.close();
    }
  },
};

export default bench;
