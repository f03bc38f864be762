/**
 * Child process of test/runtime/native-guard.test.ts: keeps a worker inside ONNX Runtime (large batches back
 * to back), then exits the process with code 3 while a run is in flight.
 */
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';
import { TINY_PACKAGE } from './tiny-package.js';

const EXIT_AFTER_MS = Number(process.argv[2] ?? 150);
const pool = await InferencePool.open(await loadModelPackage(TINY_PACKAGE), { threadsPerWorker: 1 });
const batch = () => ({ data: new Float32Array(128 * 224 * 224).fill(1), dims: [128, 1, 224, 224] });
setTimeout(() => process.exit(3), EXIT_AFTER_MS);
for (;;) await pool.run('encoder', { image: batch() });
