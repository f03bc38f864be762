/**
 * Encoder frames per second in the inference pool (worker thread) and on the main thread, and how long
 * the main thread's event loop is held up meanwhile (what the worker pool is for); and the pool with ONNX
 * Runtime's intra-op threads spinning (`spinWait: true`) against sleeping (the default), in alternation.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';
import type { BenchModule, BenchResult } from './run.js';

const FRAMES = Number(process.env.BENCH_FRAMES ?? 20);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const TINY = new URL('../test/fixtures/tiny-package', import.meta.url).pathname;

function image(): Float32Array {
  return Float32Array.from({ length: 224 * 224 }, (_, i) => Math.sin(i / 97));
}

/** Runs `frames` inferences, returning frames/s and the event loop's worst delay (ms) meanwhile. */
async function measure(infer: () => Promise<void>): Promise<{ fps: number; loopDelayMax: number; loopDelayP99: number }> {
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const started = performance.now();
  for (let i = 0; i < FRAMES; i++) await infer();
  const seconds = (performance.now() - started) / 1000;
  await new Promise((resolve) => setTimeout(resolve, 20)); // let the monitor record the last stall
  delay.disable();
  return { fps: FRAMES / seconds, loopDelayMax: delay.max / 1e6, loopDelayP99: delay.percentile(99) / 1e6 };
}

const bench: BenchModule = {
  title: `encoder: ${FRAMES} frames x ${REPEATS}, worker pool vs main thread`,
  async run(): Promise<BenchResult[]> {
    const modelPath = existsSync(join(DEFAULT_MODEL_PATH, 'manifest.json')) ? DEFAULT_MODEL_PATH : TINY;
    const model = await loadModelPackage(modelPath);
    const notes = { model: model.manifest.name, frames: FRAMES };
    const pool = await InferencePool.open(model, { graphs: ['encoder'] });
    const spinningPool = await InferencePool.open(model, { graphs: ['encoder'], spinWait: true });
    const session = await ort.InferenceSession.create(model.graphPath('encoder'));
    const dims = [1, 1, 224, 224];
    const inPool = () => pool.run('encoder', { image: { data: image(), dims } }).then(() => undefined);
    const inSpinningPool = () => spinningPool.run('encoder', { image: { data: image(), dims } }).then(() => undefined);
    const onMain = () => session.run({ image: new ort.Tensor('float32', image(), dims) }).then(() => undefined);
    await inPool();
    await inSpinningPool();
    await onMain(); // warm-up
    const pooled = [];
    const spinning = [];
    const main = [];
    for (let r = 0; r < REPEATS; r++) {
      pooled.push(await measure(inPool));
      spinning.push(await measure(inSpinningPool));
      main.push(await measure(onMain));
    }
    await pool.close();
    await spinningPool.close();
    await session.release();
    return [
      { name: 'pool frames/s', unit: 'fps', samples: pooled.map((m) => m.fps), notes },
      { name: 'pool frames/s, spinWait on', unit: 'fps', samples: spinning.map((m) => m.fps), notes },
      { name: 'main-thread frames/s', unit: 'fps', samples: main.map((m) => m.fps), notes },
      { name: 'pool: event-loop delay max', unit: 'ms', samples: pooled.map((m) => m.loopDelayMax), notes },
      { name: 'main-thread: event-loop delay max', unit: 'ms', samples: main.map((m) => m.loopDelayMax), notes },
      { name: 'pool: event-loop delay p99', unit: 'ms', samples: pooled.map((m) => m.loopDelayP99), notes },
      { name: 'main-thread: event-loop delay p99', unit: 'ms', samples: main.map((m) => m.loopDelayP99), notes },
    ];
  },
};
export default bench;
