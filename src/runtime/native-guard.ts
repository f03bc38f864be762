/**
 * Keeps a worker thread from being torn down while it is inside ONNX Runtime.
 *
 * `session.run` (and `release`) block the worker's thread in native code; if the thread is terminated
 * meanwhile (`worker.terminate()`, `process.exit()`, the end of the process), the addon throws a C++
 * `Napi::Error` when it returns and the whole process aborts ("terminate called after throwing ...").
 * So each worker shares one Int32 with the main thread: the worker marks it busy around every native
 * call, and the main thread stops a worker only by first moving it from idle to stopped, after which the
 * worker refuses to enter native code again.
 */

const IDLE = 0;
const BUSY = 1;
const STOPPED = 2;

/** How long the end of the process waits for a native call in flight before giving up (and risking the abort). */
const EXIT_WAIT_MS = 30_000;

/** The word a worker and the main thread share; create it on the main thread, pass it in `workerData`. */
export function createNativeState(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
}

/**
 * Worker side: runs `call` (which enters native code) unless the main thread has stopped this worker.
 * @returns `undefined` without calling when the worker is stopped.
 */
export async function whileBusy<T>(state: Int32Array, call: () => Promise<T>): Promise<{ value: T } | undefined> {
  if (Atomics.compareExchange(state, 0, IDLE, BUSY) !== IDLE) return undefined;
  try {
    return { value: await call() };
  } finally {
    Atomics.store(state, 0, IDLE);
    Atomics.notify(state, 0);
  }
}

/** How often {@link stopWhenIdle} looks again while a native call is in flight. */
const POLL_MS = 5;

/** Main side: moves an idle worker to stopped, waiting (without blocking) for a native call in flight to return. */
export async function stopWhenIdle(state: Int32Array): Promise<void> {
  while (Atomics.compareExchange(state, 0, IDLE, STOPPED) === BUSY) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
}

/** Main side, synchronous: the same for the `exit` event, where nothing asynchronous runs any more. */
function stopWhenIdleBlocking(state: Int32Array, deadline: number): void {
  while (Atomics.compareExchange(state, 0, IDLE, STOPPED) === BUSY) {
    const left = deadline - Date.now();
    if (left <= 0) return;
    Atomics.wait(state, 0, BUSY, left);
  }
}

const live = new Set<Int32Array>();

function stopAllBeforeExit(): void {
  const deadline = Date.now() + EXIT_WAIT_MS;
  for (const state of live) stopWhenIdleBlocking(state, deadline);
}

/**
 * Main side: until `release` is called, the end of the process (`process.exit`, an uncaught exception, an
 * empty event loop) first waits for this worker's native call in flight, so Node tears down only idle workers.
 */
export function guardUntilExit(state: Int32Array): () => void {
  if (live.size === 0) process.on('exit', stopAllBeforeExit);
  live.add(state);
  return () => {
    live.delete(state);
    if (live.size === 0) process.off('exit', stopAllBeforeExit);
  };
}
