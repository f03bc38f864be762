/**
 * Working arrays reused across calls of synchronous kernels (per-frame maps of 12,544-50,176 values): allocating
 * them per frame made most of the main thread's ArrayBuffer churn, and V8 answers that churn with full
 * garbage collections (external memory pressure).
 */

type Numeric = Float32Array | Float64Array | Int32Array;

const arrays = new Map<string, Numeric>();

/**
 * A working array of `length` values of `type`, named `name` by its caller: the same memory on every call with that
 * name, so it is valid only until the caller returns (never hand it out). Its contents are left over: fill it
 * before reading.
 *
 * @example
 * const sum = workspace(Float64Array, 'rowMean.sum', pixels).fill(0);
 */
export function workspace<T extends Numeric>(type: { new (length: number): T; readonly name: string }, name: string, length: number): T {
  const key = `${type.name} ${name}`;
  let array = arrays.get(key) as T | undefined;
  if (!array || array.length < length) {
    array = new type(length);
    arrays.set(key, array);
  }
  return array.subarray(0, length) as T;
}
