/**
 * Running graphs: tensors and the messages between the main thread and the inference workers.
 */
import type { ExecutionProvider, GraphSpec } from './model.js';

/** A tensor as it crosses the worker boundary. */
export interface TensorData {
  data: Float32Array;
  dims: number[];
}

/** How {@link GraphRunner.run} treats the feed buffers. */
export interface RunOptions {
  /**
   * Feeds the caller still needs after the call: these are copied to the worker. All other feed
   * buffers are transferred (zero-copy) and unusable by the caller afterwards.
   */
  keep?: readonly string[];
  /**
   * Feeds the caller passes again, unchanged, on later calls (common random numbers): each worker receives such
   * an array once and keeps it, later calls send only a reference to it. The caller keeps the array and must not
   * modify it afterwards. A worker frees its copy when the caller's array is garbage-collected or the pool closes.
   */
  resident?: readonly string[];
}

/**
 * Runs a named graph of the loaded model package: the `InferencePool` satisfies it, tests may pass a fake.
 * Feeds named in neither `keep` nor `resident` may be transferred to a worker and become unusable to the caller.
 */
export interface GraphRunner {
  run(graph: string, feeds: Record<string, TensorData>, options?: RunOptions): Promise<Record<string, TensorData>>;
}

/** An error as it crosses a thread boundary (class identity does not survive structured clone). */
export interface SerializedError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/** `workerData` of an inference worker. */
export interface InferenceWorkerData {
  packagePath: string;
  /** The graphs this worker opens, as declared by the manifest. */
  graphs: Record<string, GraphSpec>;
  executionProvider: ExecutionProvider;
  /** ONNX Runtime intra-op threads per session; `undefined` lets the runtime choose. */
  threads?: number;
  /** Shared with the main thread: whether the worker is inside ONNX Runtime (see native-guard.ts). */
  nativeState: Int32Array;
  /** Whether idle intra-op threads spin-wait for work (ONNX Runtime's default) instead of sleeping. */
  spinWait?: boolean;
}

/** A feed the worker already holds: kept from an earlier request's `retain` under this id. */
export interface ResidentFeed {
  resident: number;
  dims: number[];
}

/** Main thread -> inference worker. */
export type InferenceWorkerRequest =
  /** `retain`: feed name -> id under which the worker keeps that feed's array for later requests. */
  | { type: 'run'; id: number; graph: string; feeds: Record<string, TensorData | ResidentFeed>; retain?: Record<string, number> }
  /** Frees kept arrays (the caller's array was garbage-collected). */
  | { type: 'release'; ids: number[] }
  | { type: 'close' };

/** Inference worker -> main thread. */
export type InferenceWorkerReply =
  | { type: 'ready'; executionProvider: ExecutionProvider; warning?: string }
  | { type: 'init-failed'; error: SerializedError }
  | { type: 'result'; id: number; outputs: Record<string, TensorData> }
  | { type: 'failed'; id: number; error: SerializedError };
