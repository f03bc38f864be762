import type { ObservableInput, OperatorFunction } from 'rxjs';
import { keepLatestStages, type KeepLatestOptions } from './keepLatestStages.js';

export type { KeepLatestOptions } from './keepLatestStages.js';

/**
 * Runs an async stage on a live stream without ever queueing more than one value: while `project`'s inner Observable
 * is running, only the newest source value is kept (each one it replaces is dropped and reported to `onDrop`), and it
 * is processed as soon as the stage is free.
 *
 * Why: a live scanner produces frames faster than inference may run. `concatMap` would queue every frame (unbounded
 * memory, ever-growing latency) and `exhaustMap` would skip the frame that arrived last, leaving the output stale
 * when the source pauses. Like `exhaustMap`, but re-running on the latest value. When the source completes, the kept
 * value is still processed before completion. Errors from the source or a stage end the stream at once.
 *
 * @example
 * fromVideo('/dev/video0')
 *   .pipe(keepLatest((frame) => infer(frame), { onDrop: (_frame, drops) => stats.dropped(drops) }))
 *   .subscribe(render);
 *
 * @param project Starts the async stage for one value (a Promise or an Observable); `index` counts processed values.
 * @param options See {@link KeepLatestOptions}.
 * @return The stage's outputs, in the order the processed values arrived.
 */
export function keepLatest<T, R>(
  project: (value: T, index: number) => ObservableInput<R>,
  options: KeepLatestOptions<T> = {},
): OperatorFunction<T, R> {
  // One stage: a second stage that passes each result on at once.
  return keepLatestStages(project, (result: R) => [result], options);
}
