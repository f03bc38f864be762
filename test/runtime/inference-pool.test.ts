import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LfusionError, ShapeError } from '../../src/runtime/errors.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';
import type { InferenceWorkerRequest } from '../../src/runtime/types/inference.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

const IMAGE_DIMS = [1, 1, 224, 224];
const image = (value: number) => ({ data: new Float32Array(224 * 224).fill(value), dims: IMAGE_DIMS });

async function openPool(options = {}): Promise<InferencePool> {
  return InferencePool.open(await loadModelPackage(TINY_PACKAGE), { threadsPerWorker: 1, ...options });
}

test('runs the encoder in a worker and transfers the feed buffer', async () => {
  const pool = await openPool();
  const feed = image(1);
  const { features } = await pool.run('encoder', { image: feed });
  assert.equal(features!.dims, [1, 8, 14, 14]);
  assert.is(features!.data.length, 8 * 14 * 14);
  assert.is(feed.data.length, 0, 'the transferred feed is detached on the caller side');
  const kept = image(1);
  const again = await pool.run('encoder', { image: kept }, { keep: ['image'] });
  assert.is(kept.data.length, 224 * 224, 'a kept feed stays usable');
  assert.equal(Array.from(again.features!.data), Array.from(features!.data), 'same input, same output');
  await pool.close();
});

/** The messages the pool posts to its workers, recorded without their arrays (the workers still receive them). */
function recordRequests(pool: InferencePool): InferenceWorkerRequest[] {
  const requests: InferenceWorkerRequest[] = [];
  const withoutArrays = (message: InferenceWorkerRequest): InferenceWorkerRequest => {
    if (message.type !== 'run') return message;
    const feeds = Object.entries(message.feeds).map(([name, feed]) => [name, 'data' in feed ? { data: new Float32Array(0), dims: feed.dims } : feed]);
    return { ...message, feeds: Object.fromEntries(feeds) };
  };
  for (const worker of pool.workerThreads()) {
    const post = worker.postMessage.bind(worker);
    worker.postMessage = (message: InferenceWorkerRequest, transfer?: readonly ArrayBuffer[]) => {
      requests.push(withoutArrays(message));
      post(message, transfer);
    };
  }
  return requests;
}

test('a resident feed is sent to each worker once, then referenced, and freed when the caller drops it', async () => {
  const pool = await openPool({ workers: 2 });
  const requests = recordRequests(pool);
  let common: { data: Float32Array; dims: number[] } | undefined = image(0.25);
  const expected = (await pool.run('encoder', { image: image(0.25) })).features!.data;
  requests.length = 0;
  // Four runs over two workers: each worker gets the array once, then a reference.
  const results = await Promise.all([0, 1, 2, 3].map(() => pool.run('encoder', { image: common! }, { resident: ['image'] })));
  for (const { features } of results) assert.equal(Array.from(features!.data), Array.from(expected), 'same output as the array itself');
  assert.is(common.data.length, 224 * 224, 'the caller keeps its array');
  const runs = requests.filter((request) => request.type === 'run');
  const carried = runs.filter((request) => 'data' in request.feeds.image!);
  assert.is(carried.length, 2, 'the array crossed once per worker');
  assert.ok(carried.every((request) => request.retain?.image !== undefined));
  assert.ok(runs.every((request) => 'data' in request.feeds.image! || request.feeds.image!.resident === carried[0]!.retain!.image));
  // A second array is a second resident; its release follows the caller's array being collected.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  common = undefined;
  for (let i = 0; i < 50 && !requests.some((request) => request.type === 'release'); i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const released = requests.filter((request) => request.type === 'release');
  assert.is(released.length, 2, 'each worker is told to free its copy');
  const again = await pool.run('encoder', { image: image(0.25) }, { resident: ['image'] });
  assert.equal(Array.from(again.features!.data), Array.from(expected), 'a new resident array after a release');
  await pool.close();
});

test('ONNX Runtime takes both spinWait settings (a session option of every graph), with the same outputs', async () => {
  const [spinning, sleeping] = await Promise.all([openPool({ spinWait: true, threadsPerWorker: 2 }), openPool({ spinWait: false, threadsPerWorker: 2 })]);
  const [a, b] = await Promise.all([spinning.run('encoder', { image: image(0.5) }), sleeping.run('encoder', { image: image(0.5) })]);
  assert.equal(Array.from(a.features!.data), Array.from(b.features!.data));
  await Promise.all([spinning.close(), sleeping.close()]);
});

test('runs tasks queued beyond the worker count, in order of submission', async () => {
  const pool = await openPool({ workers: 2 });
  const results = await Promise.all([0, 0.5, 1, 0.5].map((value) => pool.run('encoder', { image: image(value) })));
  assert.equal(Array.from(results[1]!.features!.data), Array.from(results[3]!.features!.data));
  assert.not.equal(Array.from(results[0]!.features!.data), Array.from(results[2]!.features!.data));
  await pool.close();
});

test('feeds that disagree with the manifest are rejected before reaching a worker', async () => {
  const pool = await openPool();
  try {
    await pool.run('encoder', { image: { data: new Float32Array(10), dims: [1, 1, 224, 224] } });
    assert.unreachable('wrong element count accepted');
  } catch (error) {
    assert.instance(error, ShapeError);
    assert.match((error as Error).message, /needs 50176 float32 values, got 10/);
  }
  try {
    await pool.run('encoder', { image: { data: new Float32Array(2 * 112 * 112), dims: [1, 2, 112, 112] } });
    assert.unreachable('wrong shape accepted');
  } catch (error) {
    assert.instance(error, ShapeError);
    assert.match((error as Error).message, /must have shape \[batch, 1, 224, 224\], got \[1, 2, 112, 112\]/);
  }
  try {
    await pool.run('encoder', { pixels: image(0) });
    assert.unreachable('wrong input name accepted');
  } catch (error) {
    assert.is((error as LfusionError).code, 'SHAPE_MISMATCH');
  }
  await pool.close();
});

test('a worker crash rejects its task with WORKER_FAILED and the pool recovers', async () => {
  const pool = await openPool();
  // The worker dies idle (dying inside ONNX Runtime aborts the process: see native-guard.ts), and the task
  // reaches it before its exit is reported, as it would a worker that crashed.
  const dying = pool.workerThreads()[0]!.terminate();
  const inFlight = pool.run('encoder', { image: image(1) });
  await dying;
  try {
    await inFlight;
    assert.unreachable('task of a dead worker resolved');
  } catch (error) {
    assert.instance(error, LfusionError);
    assert.is((error as LfusionError).code, 'WORKER_FAILED');
  }
  const { features } = await pool.run('encoder', { image: image(1) });
  assert.is(features!.data.length, 8 * 14 * 14);
  await pool.close();
});

test('an unavailable execution provider falls back to cpu with one warning', async () => {
  const warnings: string[] = [];
  const pool = await openPool({ executionProvider: 'cuda', workers: 2, onWarning: (message: string) => warnings.push(message) });
  assert.is(pool.executionProvider, 'cpu');
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, /execution provider "cuda" is unavailable .*falling back to cpu/);
  await pool.close();
});

test('close waits for running tasks, then refuses new ones', async () => {
  const pool = await openPool();
  const running = pool.run('encoder', { image: image(1) });
  const closed = pool.close();
  assert.is((await running).features!.dims[1], 8);
  await closed;
  try {
    await pool.run('encoder', { image: image(1) });
    assert.unreachable('closed pool ran a task');
  } catch (error) {
    assert.match((error as Error).message, /closed/);
  }
});

test.run();
