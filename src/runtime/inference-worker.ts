/**
 * One inference worker thread: opens an ONNX Runtime session per graph once, checks each graph's I/O
 * against the manifest, then runs requests until told to close. `session.run` blocks this thread,
 * never the main one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { LfusionError, ModelError } from './errors.js';
import { transferableBuffer } from './inference-pool.js';
import { checkGraphIo, type SessionValue } from './model-package.js';
import { whileBusy } from './native-guard.js';
import type { InferenceWorkerData, InferenceWorkerReply, InferenceWorkerRequest, SerializedError, TensorData } from './types/inference.js';
import type { ExecutionProvider } from './types/model.js';

const port = parentPort;
if (!port) throw new Error('inference-worker.ts runs only as a worker thread');
const config = workerData as InferenceWorkerData;
// A missing GPU provider is reported once, by the pool's fallback warning, not by the runtime's native log;
// every runtime failure still arrives as an exception.
if (config.executionProvider !== 'cpu') ort.env.logLevel = 'fatal';

function serialize(error: unknown, fallbackCode: string): SerializedError {
  if (error instanceof LfusionError) return { code: error.code, message: error.message, details: { ...error.context } };
  return { code: fallbackCode, message: error instanceof Error ? error.message : String(error), details: {} };
}

function describe(values: readonly ort.InferenceSession.ValueMetadata[]): SessionValue[] {
  return values.map((value) => (value.isTensor ? { name: value.name, shape: value.shape, type: value.type } : { name: value.name, shape: [] }));
}

async function createSession(file: string, provider: ExecutionProvider): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, {
    executionProviders: [provider],
    ...(config.threads === undefined ? {} : { intraOpNumThreads: config.threads, interOpNumThreads: 1 }),
    extra: { session: { intra_op: { allow_spinning: config.spinWait ? '1' : '0' } } },
  });
}

async function openAll(provider: ExecutionProvider): Promise<Map<string, ort.InferenceSession>> {
  const sessions = new Map<string, ort.InferenceSession>();
  try {
    for (const [graph, spec] of Object.entries(config.graphs)) {
      try {
        sessions.set(graph, await createSession(`${config.packagePath}/${spec.file}`, provider));
      } catch (cause) {
        const reason = (cause instanceof Error ? cause.message : String(cause)).split('\n')[0];
        throw new ModelError(`cannot open graph "${graph}" (${spec.file}) with the ${provider} provider: ${reason}`, config.packagePath, { graph, file: spec.file });
      }
    }
    return sessions;
  } catch (error) {
    for (const session of sessions.values()) await session.release();
    throw error;
  }
}

/** Opens every graph with the requested provider (if it cannot start, with `cpu`, saying why), then checks each graph's I/O. */
async function openSessions(): Promise<{ sessions: Map<string, ort.InferenceSession>; provider: ExecutionProvider; warning?: string }> {
  let provider = config.executionProvider;
  let warning: string | undefined;
  let sessions: Map<string, ort.InferenceSession>;
  try {
    sessions = await openAll(provider);
  } catch (error) {
    if (provider === 'cpu') throw error;
    warning = `execution provider "${provider}" is unavailable (${(error as Error).message}); falling back to cpu`;
    provider = 'cpu';
    sessions = await openAll(provider);
  }
  for (const [graph, session] of sessions) {
    checkGraphIo(graph, config.graphs[graph]!, { inputs: describe(session.inputMetadata), outputs: describe(session.outputMetadata) }, config.packagePath);
  }
  return { sessions, provider, ...(warning ? { warning } : {}) };
}

async function run(session: ort.InferenceSession, feeds: Record<string, TensorData>): Promise<Record<string, TensorData>> {
  const tensors: Record<string, ort.Tensor> = {};
  for (const [name, feed] of Object.entries(feeds)) tensors[name] = new ort.Tensor('float32', feed.data, feed.dims);
  const results = await session.run(tensors);
  const outputs: Record<string, TensorData> = {};
  for (const [name, tensor] of Object.entries(results)) {
    if (tensor.type !== 'float32') throw new LfusionError('INFERENCE_FAILED', `output "${name}" is ${tensor.type}, expected float32`);
    outputs[name] = { data: tensor.data as Float32Array, dims: [...tensor.dims] };
  }
  return outputs;
}

/** Arrays sent once and referenced by later requests (RunOptions `resident`), by id. */
const residents = new Map<number, Float32Array>();

/** The request's feeds with resident references resolved; keeps the arrays it is asked to retain. */
function resolveFeeds(request: Extract<InferenceWorkerRequest, { type: 'run' }>): Record<string, TensorData> {
  const feeds: Record<string, TensorData> = {};
  for (const [name, feed] of Object.entries(request.feeds)) {
    if ('resident' in feed) {
      const data = residents.get(feed.resident);
      if (!data) throw new LfusionError('WORKER_FAILED', `this worker holds no resident feed ${feed.resident} for "${name}"`, { feed: name });
      feeds[name] = { data, dims: feed.dims };
    } else {
      feeds[name] = feed;
    }
  }
  for (const [name, id] of Object.entries(request.retain ?? {})) residents.set(id, feeds[name]!.data);
  return feeds;
}

/** Output buffers to move (not copy) back to the main thread. */
function transferables(tensors: Record<string, TensorData>): ArrayBuffer[] {
  const buffers = Object.values(tensors).map(({ data }) => transferableBuffer(data));
  return [...new Set(buffers.filter((buffer) => buffer !== undefined))];
}

function reply(message: InferenceWorkerReply, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(message, transfer);
}

/** Ends this thread from its own JS (never from inside a native call). */
function exitWorker(): never {
  port!.close();
  process.exit(0);
}

let opened: Awaited<ReturnType<typeof openSessions>>;
try {
  const started = await whileBusy(config.nativeState, openSessions);
  if (!started) exitWorker();
  opened = started.value;
} catch (error) {
  reply({ type: 'init-failed', error: serialize(error, 'MODEL_INVALID') });
  exitWorker();
}
const { sessions } = opened;
reply({ type: 'ready', executionProvider: opened.provider, ...(opened.warning ? { warning: opened.warning } : {}) });

port.on('message', async (request: InferenceWorkerRequest) => {
  if (request.type === 'close') {
    await whileBusy(config.nativeState, async () => {
      for (const session of sessions.values()) await session.release();
    });
    port.close();
    return;
  }
  if (request.type === 'release') {
    for (const id of request.ids) residents.delete(id);
    return;
  }
  const session = sessions.get(request.graph);
  if (!session) {
    reply({ type: 'failed', id: request.id, error: { code: 'INVALID_OPTION', message: `this worker has no graph "${request.graph}"`, details: {} } });
    return;
  }
  try {
    const feeds = resolveFeeds(request);
    const ran = await whileBusy(config.nativeState, () => run(session, feeds));
    if (!ran) throw new LfusionError('WORKER_FAILED', 'the inference worker is stopping');
    reply({ type: 'result', id: request.id, outputs: ran.value }, transferables(ran.value));
  } catch (error) {
    reply({ type: 'failed', id: request.id, error: serialize(error, 'INFERENCE_FAILED') });
  }
});
