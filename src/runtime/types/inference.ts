/**
 * Running graphs: tensors and the messages between the main thread and the inference workers.
 */
import type { ExecutionProvider, GraphSpec } from './model.js';

/** A tensor as it crosses the worker boundary. */
export interface TensorData {
  data: Float32Array;
  dims: number[];
}

/**
 * Runs a named graph of the loaded model package: the `InferencePool` satisfies it, tests may pass a fake.
 * Feeds not named in `keep` may be transferred to a worker and become unusable to the caller.
 */
export interface GraphRunner {
  run(graph: string, feeds: Record<string, TensorData>, options?: { keep?: readonly string[] }): Promise<Record<string, TensorData>>;
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

/** Main thread -> inference worker. */
export type InferenceWorkerRequest =
  | { type: 'run'; id: number; graph: string; feeds: Record<string, TensorData> }
  | { type: 'close' };

/** Inference worker -> main thread. */
export type InferenceWorkerReply =
  | { type: 'ready'; executionProvider: ExecutionProvider; warning?: string }
  | { type: 'init-failed'; error: SerializedError }
  | { type: 'result'; id: number; outputs: Record<string, TensorData> }
  | { type: 'failed'; id: number; error: SerializedError };
