/**
 * Best-plane suggestion over a live sweep: the frame whose head measurement is the most trustworthy of the
 * last few seconds, so that an overlay can say "freeze now".
 */
import { filter, map, scan, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import type { Biometry, Ellipse, Interval } from '../runtime/types/biometry.js';
import type { FrameResult } from '../runtime/types/results.js';

export interface BestPlaneOptions {
  /** The window (seconds of the source's clock) a frame must be the best of. Default 3. */
  windowSeconds?: number;
  /** Stable: HC changed by at most this fraction since the previous frame. Default 0.03. */
  maxHcChange?: number;
  /** Stable: the ellipse centre moved by at most this fraction of its minor semi-axis. Default 0.1. */
  maxCentreShift?: number;
}

/** A frame that is the best plane so far of the last `windowSeconds`. */
export interface BestPlane {
  frameIndex: number;
  /** Source time (s) of the frame. */
  pts: number;
  hc: Interval;
  /** Width of the 95% HC interval, in `unit`. */
  width: number;
  unit: Biometry['unit'];
  ellipse: Ellipse;
}

interface Seen {
  time: number;
  width: number;
}

/**
 * Emits a {@link BestPlane} for each frame that is, among the last `windowSeconds`, the frame with the narrowest HC
 * interval whose measurement is `ok` and stable (HC and ellipse centre close to the previous frame's).
 *
 * @param options window length and stability tolerances.
 * @throws LfusionError `INVALID_OPTION` at set-up for a non-positive option.
 * @example
 * pipeline.results$.pipe(suggestBestPlane({ windowSeconds: 2 })).subscribe((best) => overlay.say(`freeze now (frame ${best.frameIndex})`));
 */
export function suggestBestPlane(options: BestPlaneOptions = {}): OperatorFunction<FrameResult, BestPlane> {
  const windowSeconds = options.windowSeconds ?? 3;
  const maxHcChange = options.maxHcChange ?? 0.03;
  const maxCentreShift = options.maxCentreShift ?? 0.1;
  for (const [name, value] of Object.entries({ windowSeconds, maxHcChange, maxCentreShift })) {
    if (!(Number.isFinite(value) && value > 0)) throw new LfusionError('INVALID_OPTION', `${name} must be a positive number, got ${value}`, { [name]: value });
  }
  type State = { previous: Biometry | undefined; window: Seen[]; best: BestPlane | undefined };
  return (results$) =>
    results$.pipe(
      scan<FrameResult, State>(
        ({ previous, window }, result) => {
          const biometry = result.biometry;
          const time = Number.isFinite(result.frame.pts) ? result.frame.pts : result.frame.captureTime / 1000;
          const recent = window.filter((seen) => seen.time > time - windowSeconds && seen.time <= time);
          const hc = biometry?.pooled?.hc;
          const e = biometry?.ellipse;
          const before = previous?.status === 'ok' ? previous : undefined;
          const stable =
            biometry?.status === 'ok' && hc && e && before?.pooled && before.ellipse
              ? Math.abs(hc.median - before.pooled.hc.median) <= maxHcChange * hc.median && Math.hypot(e.cx - before.ellipse.cx, e.cy - before.ellipse.cy) <= maxCentreShift * e.b
              : false;
          if (!stable || !hc || !e || !biometry) return { previous: biometry, window: recent, best: undefined };
          const width = hc.high - hc.low;
          const best = recent.every((seen) => width < seen.width) ? { frameIndex: result.frame.index, pts: time, hc, width, unit: biometry.unit, ellipse: e } : undefined;
          return { previous: biometry, window: [...recent, { time, width }], best };
        },
        { previous: undefined, window: [], best: undefined },
      ),
      map((state) => state.best),
      filter((best): best is BestPlane => best !== undefined),
    );
}
