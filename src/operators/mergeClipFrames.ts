import { Observable, type OperatorFunction } from 'rxjs';
import { ShapeError } from '../runtime/errors.js';
import type { ClipFrame, ClipWindowMaps } from '../runtime/types/uncertainty.js';

/**
 * Gives every frame one clip result from the overlapping windows that contain it: the mean of its maps over those
 * windows (an ensemble over temporal contexts; a label map is thresholded only after this mean). Windows arrive in
 * stream order, so a frame before the newest window's start can be in no later window: it is emitted then, and
 * the rest when the windows complete. A frame's result thus comes one stride after its last window; memory holds
 * at most one window's frames beyond the newest window. Frames of a window dropped in live mode keep the results
 * of the windows that were analysed.
 *
 * @example
 * frames$.pipe(windowClips(encode, { length: 16, stride: 8 }, (w) => of(w).pipe(lfusionClipUncertainty(pool, manifest))), mergeClipFrames())
 *   .subscribe((clip) => console.log(clip.frame.index, clip.windows, clip.ood.score));
 *
 * @return One {@link ClipFrame} per frame of the windows, in stream order, with the score of the last window that
 * contained it and, when the windows carry biometry, that of the window in which it sat nearest the middle. A window
 * without one map per frame for some name, or a map whose length differs from an earlier window's for the same frame,
 * ends the stream with a `ShapeError`.
 */
export function mergeClipFrames(): OperatorFunction<ClipWindowMaps, ClipFrame> {
  return (windows) =>
    new Observable<ClipFrame>((subscriber) => {
      /**
       * Frames not emitted yet, by stream position; their `maps` hold sums over `windows` windows. Windows come in
       * stream order, so positions are inserted in increasing order: the map's order is stream order.
       */
      const pending = new Map<number, ClipFrame>();
      /** Per pending frame with biometry: its distance from the middle of the window its biometry came from. */
      const offCentre = new Map<number, number>();
      const emitBefore = (position: number): void => {
        for (const [at, clip] of pending) {
          if (at >= position) break;
          pending.delete(at);
          offCentre.delete(at);
          const maps = Object.fromEntries(Object.entries(clip.maps).map(([name, sum]) => [name, clip.windows === 1 ? sum : sum.map((v) => v / clip.windows)]));
          subscriber.next({ ...clip, maps });
        }
      };
      const add = (window: ClipWindowMaps): void => {
        emitBefore(window.start);
        window.frames.forEach((frame, t) => {
          const position = window.start + t;
          const entry = pending.get(position);
          const biometry = window.biometry?.[t];
          const distance = Math.abs(t - (window.frames.length - 1) / 2);
          const central = biometry !== undefined && distance < (offCentre.get(position) ?? Infinity);
          if (central) offCentre.set(position, distance);
          const maps = Object.entries(window.maps).map(([name, perFrame]) => {
            const values = perFrame[t];
            const expected = entry ? entry.maps[name]?.length : values?.length;
            if (!values || values.length !== expected) {
              throw new ShapeError(`clip map "${name}" of frame ${frame.index} has ${values?.length ?? 'no'} values, expected ${expected ?? 'a map'}`, [expected ?? 0], [values?.length ?? 0]);
            }
            return [name, values] as const;
          });
          if (!entry) {
            const sums = Object.fromEntries(maps.map(([name, values]) => [name, Float32Array.from(values)]));
            pending.set(position, { frame, position, size: window.size, maps: sums, windows: 1, ood: window.ood, ...(central ? { biometry } : {}), timings: window.timings });
            return;
          }
          for (const [name, values] of maps) {
            const sum = entry.maps[name]!;
            for (let i = 0; i < values.length; i++) sum[i]! += values[i]!;
          }
          entry.windows += 1;
          entry.ood = window.ood;
          if (central) entry.biometry = biometry;
          entry.timings = window.timings;
        });
      };
      return windows.subscribe({
        next: (window) => {
          try {
            add(window);
          } catch (error) {
            subscriber.error(error);
          }
        },
        error: (error) => subscriber.error(error),
        complete: () => {
          emitBefore(Infinity);
          subscriber.complete();
        },
      });
    });
}
