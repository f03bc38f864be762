import { from, Observable, type ObservableInput, type OperatorFunction } from 'rxjs';

/** Options of {@link keepLatestStages} and `keepLatest`. */
export interface KeepLatestOptions<T> {
  /** Called for each value replaced before it was processed, with the running count of drops on this subscription. */
  onDrop?: (dropped: T, dropCount: number) => void;
}

/**
 * `keepLatest` for work in two stages that overlap: while the second stage runs on one value, the first stage
 * already runs on the newest source value (on a live scanner: the encoder of the next frame while the heads of this
 * one run, each on its own core). At most one value is between the stages: the first stage starts only when what
 * it produced last has been taken by the second, so nothing it computes is thrown away; the values dropped are
 * source values replaced while the first stage could not start (reported to `onDrop`, as by `keepLatest`).
 *
 * Results come in the order the processed values arrived. When the source completes, the kept value still goes
 * through both stages before completion. Errors from the source or a stage end the stream at once.
 *
 * @example
 * fromVideo('/dev/video0')
 *   .pipe(keepLatestStages((frame) => encode(frame), (encoded) => analyse(encoded), { onDrop: () => stats.dropped() }))
 *   .subscribe(render);
 *
 * @param first Starts the first stage for one source value; `index` counts the values processed. Every value it
 * emits is handed to `second`, in order.
 * @param second Starts the second stage for one value of the first.
 * @param options See {@link KeepLatestOptions}.
 */
export function keepLatestStages<T, M, R>(
  first: (value: T, index: number) => ObservableInput<M>,
  second: (value: M) => ObservableInput<R>,
  options: KeepLatestOptions<T> = {},
): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) => {
      /** The newest source value waiting for the first stage; boxed so that `undefined` is a value too. */
      let kept: { value: T } | null = null;
      /** What the first stage produced, waiting for the second. */
      const between: M[] = [];
      let firstBusy = false;
      let secondBusy = false;
      let sourceDone = false;
      let index = 0;
      let dropCount = 0;

      const completeIfDone = (): void => {
        if (sourceDone && !kept && !firstBusy && !secondBusy && between.length === 0) subscriber.complete();
      };
      const startSecond = (): void => {
        if (secondBusy || between.length === 0) return;
        const value = between.shift()!;
        secondBusy = true;
        subscriber.add(
          from(second(value)).subscribe({
            next: (result) => subscriber.next(result),
            error: (error: unknown) => subscriber.error(error),
            complete: () => {
              secondBusy = false;
              startSecond();
              startFirst();
              completeIfDone();
            },
          }),
        );
        startFirst();
      };
      const startFirst = (): void => {
        if (firstBusy || between.length > 0 || !kept) return;
        const { value } = kept;
        kept = null;
        firstBusy = true;
        subscriber.add(
          from(first(value, index++)).subscribe({
            next: (middle) => {
              between.push(middle);
              startSecond();
            },
            error: (error: unknown) => subscriber.error(error),
            complete: () => {
              firstBusy = false;
              startFirst();
              completeIfDone();
            },
          }),
        );
      };

      subscriber.add(() => {
        kept = null;
        between.length = 0;
      });
      return source.subscribe({
        next: (value) => {
          if (kept) {
            dropCount += 1;
            options.onDrop?.(kept.value, dropCount);
          }
          kept = { value };
          startFirst();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => {
          sourceDone = true;
          completeIfDone();
        },
      });
    });
}
