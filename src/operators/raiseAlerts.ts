/**
 * OOD alerts with hysteresis, from a stream of scored frames.
 */
import { Observable, asyncScheduler, type OperatorFunction, type SchedulerLike } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { Alert, OodReason, OodScore } from '../runtime/types/results.js';

export interface AlertOptions {
  /** Consecutive frames above threshold before an alert is raised; default manifest `ood.raiseAfter`. */
  raiseAfter?: number;
  /** Consecutive frames at or below threshold before a raised alert clears; default manifest `ood.clearAfter`. */
  clearAfter?: number;
  /** Clock for `Alert.time`; default `asyncScheduler` (wall clock, virtual under `TestScheduler`). */
  scheduler?: SchedulerLike;
  /** `Alert.path`: `frame` (default) or `clip` (then each item is a window and the counts count windows). */
  path?: Alert['path'];
}

/** Anything with a frame index and an OOD score: `ScoredFrame` or `FrameResult`. Frames without `ood` are skipped. */
export interface ScoredFrameLike {
  frame: { index: number };
  ood?: OodScore;
}

/**
 * Emits an `Alert` of kind `raised` once the score has stayed above threshold for `raiseAfter` consecutive
 * scored frames, and the matching `cleared` once it has then stayed at or below for `clearAfter` frames.
 * Single short spikes and dips do not toggle the alert. It emits alerts only, so subscribe to it apart from
 * any lossy (keep-latest) delivery of frame results: alerts are rare and must never be dropped.
 * A source that completes while an alert is raised completes without a `cleared`. With the fused decision
 * (frames carrying `ood.reasons`) an alert lists every piece of evidence that fired during its episode, with
 * its highest score.
 *
 * @example
 * const results$ = encoded$.pipe(lfusionUncertainty(pool, manifest), share());
 * results$.pipe(raiseAlerts(manifest, { raiseAfter: 5 })).subscribe((alert) => console.log(alert.kind, alert.startFrame));
 */
export function raiseAlerts<T extends ScoredFrameLike>(manifest: Pick<ModelManifest, 'ood'>, options: AlertOptions = {}): OperatorFunction<T, Alert> {
  const raiseAfter = options.raiseAfter ?? manifest.ood.raiseAfter;
  const clearAfter = options.clearAfter ?? manifest.ood.clearAfter;
  for (const [name, value] of [['raiseAfter', raiseAfter], ['clearAfter', clearAfter]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new LfusionError('INVALID_OPTION', `${name} must be a positive integer, got ${value}`, { [name]: value });
  }
  const scheduler = options.scheduler ?? asyncScheduler;
  const path = options.path ?? 'frame';
  return (source) =>
    new Observable<Alert>((subscriber) => {
      let nextId = 1;
      /** The current run of frames above threshold (before raising) or the raised episode. */
      let episode: { id: number; startFrame: number; endFrame: number; peakScore: number; peakFrame: number; map: string; threshold: number; reasons?: OodReason[] } | undefined;
      let raised = false;
      let aboveRun = 0;
      let belowRun = 0;
      const emit = (kind: Alert['kind']): void => {
        if (episode) subscriber.next({ kind, path, ...episode, time: scheduler.now() });
      };
      return source.subscribe({
        next: ({ frame, ood }) => {
          if (!ood) return;
          if (ood.above) {
            belowRun = 0;
            aboveRun += 1;
            if (!episode) {
              episode = { id: nextId, startFrame: frame.index, endFrame: frame.index, peakScore: ood.score, peakFrame: frame.index, map: ood.map, threshold: ood.threshold };
            }
            episode.endFrame = frame.index;
            if (ood.reasons) episode.reasons = mergeReasons(episode.reasons ?? [], ood.reasons);
            if (ood.score > episode.peakScore) {
              episode.peakScore = ood.score;
              episode.peakFrame = frame.index;
            }
            if (!raised && aboveRun >= raiseAfter) {
              raised = true;
              nextId += 1;
              emit('raised');
            }
            return;
          }
          aboveRun = 0;
          if (!raised) {
            episode = undefined;
            return;
          }
          belowRun += 1;
          if (belowRun >= clearAfter) {
            emit('cleared');
            raised = false;
            belowRun = 0;
            episode = undefined;
          }
        },
        error: (error) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });
    });
}

/** The reasons of an episode so far plus a frame's: one entry per evidence, its highest score kept. */
function mergeReasons(episode: OodReason[], frame: OodReason[]): OodReason[] {
  const merged = new Map(episode.map((reason) => [reason.evidence, reason]));
  for (const reason of frame) {
    const seen = merged.get(reason.evidence);
    if (!seen || reason.score > seen.score) merged.set(reason.evidence, reason);
  }
  return [...merged.values()];
}
