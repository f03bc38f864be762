/**
 * A pool of inference worker threads running the graphs of one model package. The main thread only
 * moves tensors: feed buffers are transferred to the worker and output buffers transferred back.
 */
import { Worker } from 'node:worker_threads';
import { LfusionError, ModelError, ShapeError, type LfusionErrorCode } from './errors.js';
import type { ModelPackage } from './model-package.js';
import { createNativeState, guardUntilExit, stopWhenIdle } from './native-guard.js';
import type { InferenceWorkerData, InferenceWorkerReply, InferenceWorkerRequest, ResidentFeed, RunOptions, SerializedError, TensorData } from './types/inference.js';
import type { ExecutionProvider, GraphSpec } from './types/model.js';

/** Options of {@link InferencePool.open}. */
export interface InferencePoolOptions {
  /** Worker threads, each with its own sessions. Default 1: one ONNX run already uses several cores. */
  workers?: number;
  /** `cpu` (default, always available), `cuda` (needs the CUDA build of onnxruntime-node), `webgpu`. Falls back to `cpu` with a warning. */
  executionProvider?: ExecutionProvider;
  /** ONNX Runtime intra-op threads per session. Default: the runtime's choice (all physical cores). */
  threadsPerWorker?: number;
  /**
   * Let idle intra-op threads spin-wait for work (ONNX Runtime's default). Default false: they sleep, which on
   * cores shared with the decoder, the main thread and other workers made the heads and measures faster (docs/decisions.md).
   */
  spinWait?: boolean;
  /** Graphs to open. Default: every graph of the package. */
  graphs?: readonly string[];
  /** Receives the provider fallback message (once per pool). Default `console.warn`. */
  onWarning?: (message: string) => void;
}

export type { RunOptions } from './types/inference.js';

interface Task {
  id: number;
  graph: string;
  feeds: Record<string, TensorData>;
  keep: ReadonlySet<string>;
  resident: ReadonlySet<string>;
  resolve: (outputs: Record<string, TensorData>) => void;
  reject: (error: Error) => void;
}

interface Slot extends StartedWorker {
  task?: Task;
  /** Ids of the resident arrays this worker holds. */
  resident: Set<number>;
}

/** What every worker of a pool is started with; each also gets its own native state. */
type PoolWorkerData = Omit<InferenceWorkerData, 'nativeState'>;

function deserialize(error: SerializedError): LfusionError {
  return new LfusionError(error.code as LfusionErrorCode, error.message, error.details);
}

/** The array's buffer when it can be moved to another thread: a plain ArrayBuffer the array covers whole. */
export function transferableBuffer(data: Float32Array): ArrayBuffer | undefined {
  const { buffer } = data;
  return buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === buffer.byteLength ? buffer : undefined;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/**
 * Runs the graphs of a model package in worker threads; sessions are created once per worker and reused.
 *
 * @example
 * const pool = await InferencePool.open(await loadModelPackage('models/packages/lfusion-hc18'));
 * const { features } = await pool.run('encoder', { image: { data: image, dims: [1, 1, 224, 224] } });
 * await pool.close();
 */
export class InferencePool {
  /** The provider the sessions actually use (after any fallback). */
  readonly executionProvider: ExecutionProvider;
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  /** The worker each graph runs on when it is free (see `dispatch`). */
  private readonly homes = new Map<string, Slot>();
  private nextId = 0;
  private closing?: Promise<void>;
  private broken?: LfusionError;
  private onIdle?: () => void;
  /** Resident feed arrays (RunOptions `resident`) by identity; a worker that holds one holds it under this id. */
  private readonly residentIds = new WeakMap<Float32Array, number>();
  private nextResidentId = 0;
  /** Frees the workers' copies of a resident array once the caller's array is garbage-collected. */
  private readonly residentRegistry = new FinalizationRegistry<number>((id) => this.releaseResident(id));

  private constructor(
    private readonly pkg: ModelPackage,
    private readonly workerData: PoolWorkerData,
    executionProvider: ExecutionProvider,
  ) {
    this.executionProvider = executionProvider;
  }

  /**
   * Starts the workers and waits until each has opened its sessions and checked their I/O.
   * @throws ModelError when a graph's I/O disagrees with the manifest or a graph cannot be opened.
   */
  static async open(pkg: ModelPackage, options: InferencePoolOptions = {}): Promise<InferencePool> {
    const workers = options.workers ?? 1;
    if (!Number.isInteger(workers) || workers < 1) throw new LfusionError('INVALID_OPTION', `workers must be an integer >= 1, got ${workers}`);
    const names = options.graphs ?? Object.keys(pkg.manifest.graphs);
    const graphs: Record<string, GraphSpec> = Object.fromEntries(names.map((name) => [name, pkg.graph(name)]));
    const data: PoolWorkerData = {
      packagePath: pkg.path,
      graphs,
      executionProvider: options.executionProvider ?? 'cpu',
      ...(options.threadsPerWorker === undefined ? {} : { threads: options.threadsPerWorker }),
      spinWait: options.spinWait ?? false,
    };
    const started = await Promise.allSettled(Array.from({ length: workers }, () => startWorker(data)));
    const failure = started.find((result) => result.status === 'rejected');
    if (failure) {
      await Promise.all(started.map((result) => (result.status === 'fulfilled' ? stopWorker(result.value) : undefined)));
      throw (failure as PromiseRejectedResult).reason;
    }
    const ready = started.map((result) => (result as PromiseFulfilledResult<StartedWorker>).value);
    const warning = ready.find((worker) => worker.warning)?.warning;
    if (warning) (options.onWarning ?? console.warn)(`lfusion: ${warning}`);
    const pool = new InferencePool(pkg, data, ready[0]!.executionProvider);
    for (const worker of ready) pool.adopt(worker);
    return pool;
  }

  /** Tasks waiting for a worker plus tasks running. */
  get pending(): number {
    return this.queue.length + this.slots.filter((slot) => slot.task).length;
  }

  /**
   * Runs one graph. Feeds are checked against the manifest (names, rank, fixed dimensions, element count).
   * Feed buffers are transferred unless named in `options.keep` (copied) or `options.resident` (sent to each
   * worker once, then referenced); output buffers are transferred back.
   * @throws ShapeError for a feed that disagrees with the manifest; LfusionError `WORKER_FAILED` when the
   * worker running it dies (the pool replaces the worker), `INFERENCE_FAILED` when ONNX Runtime rejects it.
   */
  run(graph: string, feeds: Record<string, TensorData>, options: RunOptions = {}): Promise<Record<string, TensorData>> {
    if (this.closing) return Promise.reject(new LfusionError('WORKER_FAILED', 'the inference pool is closed'));
    if (this.broken) return Promise.reject(this.broken);
    try {
      this.checkFeeds(graph, feeds);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, graph, feeds, keep: new Set(options.keep ?? []), resident: new Set(options.resident ?? []), resolve, reject });
      this.dispatch();
    });
  }

  /** Waits for queued and running tasks, then releases the sessions and ends the workers. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await new Promise<void>((resolve) => {
        this.onIdle = resolve;
        this.notifyIfIdle();
      });
      await Promise.all(
        this.slots.map((slot) => {
          const exited = new Promise<void>((resolve) => slot.worker.once('exit', () => resolve()));
          slot.worker.postMessage({ type: 'close' } satisfies InferenceWorkerRequest);
          const timeout = setTimeout(() => void stopWorker(slot), 5000);
          return exited.finally(() => clearTimeout(timeout));
        }),
      );
    })();
    return this.closing;
  }

  private notifyIfIdle(): void {
    if (this.onIdle && (this.pending === 0 || this.broken)) this.onIdle();
  }

  /**
   * @internal The live worker threads (tests use it to simulate a crash). Terminating one that is inside
   * ONNX Runtime aborts the process: see native-guard.ts.
   */
  workerThreads(): readonly Worker[] {
    return this.slots.map((slot) => slot.worker);
  }

  private checkFeeds(graph: string, feeds: Record<string, TensorData>): void {
    const spec = this.pkg.graph(graph);
    if (!(graph in this.workerData.graphs)) throw new LfusionError('INVALID_OPTION', `graph "${graph}" was not opened by this pool (opened: ${Object.keys(this.workerData.graphs).join(', ')})`);
    const expected = Object.keys(spec.inputs).sort().join(', ');
    const actual = Object.keys(feeds).sort().join(', ');
    if (expected !== actual) throw new LfusionError('SHAPE_MISMATCH', `graph "${graph}" takes inputs [${expected}], got [${actual}]`, { graph, expected, actual });
    for (const [name, { data, dims }] of Object.entries(feeds)) {
      const shape = spec.inputs[name]!;
      const fixedMismatch = shape.some((dim, i) => typeof dim === 'number' && dim !== dims[i]);
      if (dims.length !== shape.length || fixedMismatch || dims.some((dim) => !Number.isInteger(dim) || dim < 1)) {
        throw new ShapeError(`graph "${graph}" input "${name}" must have shape [${shape.join(', ')}], got [${dims.join(', ')}]`, shape, dims);
      }
      if (!(data instanceof Float32Array) || data.length !== product(dims)) {
        throw new ShapeError(`graph "${graph}" input "${name}" of shape [${dims.join(', ')}] needs ${product(dims)} float32 values, got ${data instanceof Float32Array ? data.length : typeof data}`, shape, dims);
      }
    }
  }

  private adopt(started: StartedWorker): void {
    const slot: Slot = { ...started, resident: new Set() };
    const { worker } = slot;
    this.slots.push(slot);
    worker.on('message', (reply: InferenceWorkerReply) => this.onReply(slot, reply));
    worker.on('error', (error) => this.onWorkerDeath(slot, `worker error: ${error.message}`));
    worker.on('exit', (code) => this.onWorkerDeath(slot, `worker exited with code ${code}`));
    this.dispatch();
  }

  private onReply(slot: Slot, reply: InferenceWorkerReply): void {
    const task = slot.task;
    if (!task || (reply.type !== 'result' && reply.type !== 'failed') || reply.id !== task.id) return;
    slot.task = undefined;
    if (reply.type === 'result') task.resolve(reply.outputs);
    else task.reject(deserialize(reply.error));
    this.dispatch();
    this.notifyIfIdle();
  }

  /** Rejects the dead worker's task and starts a replacement; a replacement that cannot start breaks the pool. */
  private onWorkerDeath(slot: Slot, reason: string): void {
    const index = this.slots.indexOf(slot);
    if (index < 0) return;
    this.slots.splice(index, 1);
    slot.task?.reject(new LfusionError('WORKER_FAILED', `inference worker failed while running "${slot.task.graph}": ${reason}`, { graph: slot.task.graph }));
    slot.task = undefined;
    if (this.closing) {
      if (this.slots.length === 0) for (const task of this.queue.splice(0)) task.reject(new LfusionError('WORKER_FAILED', `inference pool closed after its last worker failed: ${reason}`));
      this.notifyIfIdle();
      return;
    }
    startWorker(this.workerData).then(
      // While closing, the replacement still drains the queue; with nothing queued it is not needed.
      (started) => (this.closing && this.queue.length === 0 ? void stopWorker(started) : this.adopt(started)),
      (error: Error) => {
        this.broken = new LfusionError('WORKER_FAILED', `inference worker could not be restarted: ${error.message}`, {}, { cause: error });
        for (const task of this.queue.splice(0)) task.reject(this.broken);
        this.notifyIfIdle();
      },
    );
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      const free = this.slots.filter((candidate) => !candidate.task);
      if (free.length === 0) return;
      const task = this.queue.shift()!;
      // Each graph goes back to the worker that first ran it whenever that one is free: its session's buffers are
      // already sized for the graph's shapes (a first run at new shapes cost a live frame 100+ ms), and its weights
      // are warm in that core's cache.
      let home = this.homes.get(task.graph);
      if (!home || !this.slots.includes(home)) this.homes.set(task.graph, (home = free[0]!));
      const slot = free.includes(home) ? home : free[0]!;
      slot.task = task;
      const transfer: ArrayBuffer[] = [];
      const feeds: Record<string, TensorData | ResidentFeed> = {};
      const retain: Record<string, number> = {};
      for (const [name, { data, dims }] of Object.entries(task.feeds)) {
        if (task.resident.has(name)) {
          const id = this.residentId(data);
          if (slot.resident.has(id)) {
            feeds[name] = { resident: id, dims };
          } else {
            feeds[name] = { data, dims }; // copied by postMessage, kept by the worker
            retain[name] = id;
            slot.resident.add(id);
          }
          continue;
        }
        const buffer = transferableBuffer(data);
        const movable = buffer !== undefined && !task.keep.has(name) && !transfer.includes(buffer);
        // A kept feed travels as a copy of its own, moved: copied once, not again by postMessage.
        const sent = movable ? data : data.slice();
        feeds[name] = { data: sent, dims };
        transfer.push(sent.buffer as ArrayBuffer);
      }
      const request: InferenceWorkerRequest = { type: 'run', id: task.id, graph: task.graph, feeds, ...(Object.keys(retain).length ? { retain } : {}) };
      slot.worker.postMessage(request, transfer);
    }
  }

  private residentId(data: Float32Array): number {
    let id = this.residentIds.get(data);
    if (id === undefined) {
      id = this.nextResidentId++;
      this.residentIds.set(data, id);
      this.residentRegistry.register(data, id);
    }
    return id;
  }

  private releaseResident(id: number): void {
    for (const slot of this.slots) {
      if (slot.resident.delete(id) && !this.closing) slot.worker.postMessage({ type: 'release', ids: [id] } satisfies InferenceWorkerRequest);
    }
  }
}

interface StartedWorker {
  worker: Worker;
  /** Shared with the worker: whether it is inside ONNX Runtime. */
  nativeState: Int32Array;
  executionProvider: ExecutionProvider;
  warning?: string;
}

/** Ends a worker without ever tearing it down inside a native call: waits for that call, then stops it. */
async function stopWorker({ worker, nativeState }: Pick<StartedWorker, 'worker' | 'nativeState'>): Promise<void> {
  await stopWhenIdle(nativeState);
  await worker.terminate();
}

const fromSource = import.meta.url.endsWith('.ts');
const workerUrl = new URL(`./inference-worker${fromSource ? '.ts' : '.js'}`, import.meta.url);

/**
 * Worker threads do not inherit tsx's loader hooks in Node 20, so when running from source (tests,
 * `tsx`) the worker registers tsx itself before importing the TypeScript worker module.
 */
function spawnWorker(workerData: InferenceWorkerData): Worker {
  if (!fromSource) return new Worker(workerUrl, { workerData });
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return new Worker(`import(${tsx}).then(({ register }) => { register(); return import(${JSON.stringify(workerUrl.href)}); });`, { eval: true, workerData });
}

function startWorker(data: PoolWorkerData): Promise<StartedWorker> {
  return new Promise((resolve, reject) => {
    const nativeState = createNativeState();
    const worker = spawnWorker({ ...data, nativeState });
    worker.once('exit', guardUntilExit(nativeState));
    // Remove only our own listeners: Worker keeps internal ones that message delivery depends on.
    const settle = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    const fail = (error: Error) => {
      settle();
      void stopWorker({ worker, nativeState });
      reject(error);
    };
    const onMessage = (reply: InferenceWorkerReply) => {
      if (reply.type === 'ready') {
        settle();
        resolve({ worker, nativeState, executionProvider: reply.executionProvider, ...(reply.warning ? { warning: reply.warning } : {}) });
      } else if (reply.type === 'init-failed') {
        fail(reply.error.code === 'MODEL_INVALID' ? new ModelError(reply.error.message, data.packagePath, reply.error.details) : deserialize(reply.error));
      } else {
        fail(new LfusionError('WORKER_FAILED', `inference worker sent "${reply.type}" before it was ready`));
      }
    };
    const onError = (error: Error) => fail(new LfusionError('WORKER_FAILED', `inference worker failed to start: ${error.message}`, {}, { cause: error }));
    const onExit = (code: number) => fail(new LfusionError('WORKER_FAILED', `inference worker exited with code ${code} before it was ready`));
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
