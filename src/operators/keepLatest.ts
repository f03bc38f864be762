import { from, Observable, type ObservableInput, type OperatorFunction } from 'rxjs';

export interface KeepLatestOptions<T> {
  /** Called for each value replaced before it was processed, with the running count of drops on this subscription. */
  onDrop?: (dropped: T, dropCount: number) => void;
}

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
  return (source) =>
    new Observable<R>((subscriber) => {
      /** The newest value waiting for the stage; boxed so that `undefined` is a value too. */
      let kept: { value: T } | null = null;
      let busy = false;
      let sourceDone = false;
      let index = 0;
      let dropCount = 0;

      const run = (value: T): void => {
        busy = true;
        subscriber.add(
          from(project(value, index++)).subscribe({
            next: (result) => subscriber.next(result),
            error: (error: unknown) => subscriber.error(error),
            complete: () => {
              busy = false;
              if (kept) {
                const next = kept.value;
                kept = null;
                run(next);
              } else if (sourceDone) {
                subscriber.complete();
              }
            },
          }),
        );
      };

      subscriber.add(() => {
        kept = null;
      });
      return source.subscribe({
        next: (value) => {
          if (!busy) {
            run(value);
            return;
          }
          if (kept) {
            dropCount += 1;
            options.onDrop?.(kept.value, dropCount);
          }
          kept = { value };
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          sourceDone = true;
          if (!busy) subscriber.complete();
        },
      });
    });
}
