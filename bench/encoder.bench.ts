/**
 * Encoder frames per second in the inference pool (worker thread) and on the main thread, and how long
 * the main thread's event loop is held up meanwhile (what the worker pool is for); and the pool with ONNX
 * Runtime's intra-op threads spinning (`spinWait: true`) against sleeping (the default), in alternation. Before it,
 * the encoder's Pillow resize of an 800x540 frame (the bundled sample's size) with the JavaScript loops and the
 * native ones, alternating.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { greyResizer } from '../src/operators/encodeFrames.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { nativeKernels, nativeKernelsStatus } from '../src/runtime/native-kernels.js';
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

/** ms per 800x540 -> 224x224 resize, JavaScript and native loops alternating (REPEATS x 50 calls each). */
function benchResize(): BenchResult[] {
  if (!nativeKernels) {
    process.stderr.write(`resize: native kernels ${nativeKernelsStatus}; JavaScript only\n`);
  }
  const [width, height] = [800, 540];
  const pixels = Uint8Array.from({ length: width * height }, (_, i) => (i * 2654435761) >>> 24);
  const out = new Uint8Array(224 * 224);
  const timed = (resize: ReturnType<typeof greyResizer>) => {
    const started = performance.now();
    for (let i = 0; i < 50; i++) resize(pixels, out);
    return (performance.now() - started) / 50;
  };
  const script = greyResizer(width, height, 224, 224, 'javascript');
  const auto = greyResizer(width, height, 224, 224);
  timed(script);
  timed(auto); // warm-up
  const pairs = Array.from({ length: REPEATS }, () => [timed(script), timed(auto)] as const);
  const notes = { from: `${width}x${height}`, to: '224x224', calls: 50 };
  return [
    { name: 'Pillow resize 800x540, javascript', unit: 'ms', samples: pairs.map(([js]) => js), notes },
    ...(nativeKernels
      ? [
          { name: 'Pillow resize 800x540, native', unit: 'ms', samples: pairs.map(([, native]) => native), notes },
          { name: 'Pillow resize: javascript / native time', unit: 'x', samples: pairs.map(([js, native]) => js / native), notes },
        ]
      : []),
  ];
}

const bench: BenchModule = {
  title: `encoder: ${FRAMES} frames x ${REPEATS}, worker pool vs main thread`,
  async run(): Promise<BenchResult[]> {
    const resize = benchResize();
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
      ...resize,
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
