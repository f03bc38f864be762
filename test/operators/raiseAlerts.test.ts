import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TestScheduler } from 'rxjs/testing';
import { raiseAlerts, type ScoredFrameLike } from '../../src/operators/raiseAlerts.js';
import type { LfusionError } from '../../src/runtime/errors.js';

const THRESHOLD = 0.5;
const manifest = { ood: { map: 'fused', aggregation: 'mean', threshold: THRESHOLD, raiseAfter: 3, clearAfter: 2 } };

/** Marble letters a, b, ... are frames 0, 1, ... with these scores. */
function scoredFrames(scores: number[]): Record<string, ScoredFrameLike> {
  return Object.fromEntries(
    scores.map((score, index) => [String.fromCharCode(97 + index), { frame: { index }, ood: { score, threshold: THRESHOLD, map: 'fused', above: score > THRESHOLD } }]),
  );
}

const newScheduler = () => new TestScheduler((actual, expected) => assert.equal(actual, expected));

test('raises after raiseAfter frames above, ignores a one-frame dip, clears after clearAfter frames below', () => {
  const scheduler = newScheduler();
  scheduler.run(({ cold, expectObservable }) => {
    //             frame   0    1    2    3    4    5    6     7    8    9
    const frames = scoredFrames([0.9, 0.1, 0.6, 0.8, 0.7, 0.2, 0.95, 0.1, 0.3, 0.9]);
    const source = cold('a-b-c-d-e-f-g-h-i-j|', frames);
    const expected = '   --------r-------c--|';
    const episode = { path: 'frame', id: 1, startFrame: 2, map: 'fused', threshold: THRESHOLD };
    expectObservable(source.pipe(raiseAlerts(manifest))).toBe(expected, {
      r: { kind: 'raised', ...episode, endFrame: 4, peakScore: 0.8, peakFrame: 3, time: 8 },
      c: { kind: 'cleared', ...episode, endFrame: 6, peakScore: 0.95, peakFrame: 6, time: 16 },
    });
  });
});

test('options override the manifest (and name the path); episodes get new ids; frames without a score are skipped', () => {
  const scheduler = newScheduler();
  scheduler.run(({ cold, expectObservable }) => {
    const frames: Record<string, ScoredFrameLike> = { ...scoredFrames([0.9, 0.1, 0.7, 0.1]), x: { frame: { index: 9 } } };
    const source = cold('a-b-x-c-d|', frames);
    const expected = '   r-c---s-d|';
    const alert = (kind: string, id: number, frame: number, score: number, time: number) => ({
      kind, path: 'clip', id, startFrame: frame, endFrame: frame, peakScore: score, peakFrame: frame, map: 'fused', threshold: THRESHOLD, time,
    });
    expectObservable(source.pipe(raiseAlerts(manifest, { raiseAfter: 1, clearAfter: 1, path: 'clip' }))).toBe(expected, {
      r: alert('raised', 1, 0, 0.9, 0),
      c: alert('cleared', 1, 0, 0.9, 2),
      s: alert('raised', 2, 2, 0.7, 6),
      d: alert('cleared', 2, 2, 0.7, 8),
    });
  });
});

test('an alert of the fused decision lists each evidence that fired in its episode, with its highest score', () => {
  const scheduler = newScheduler();
  scheduler.run(({ cold, expectObservable }) => {
    const reason = (evidence: string, score: number) => ({ reason: evidence === 'density' ? 'wrong-anatomy' : 'no-head', evidence, score, threshold: 10 }) as const;
    const frame = (index: number, reasons: ReturnType<typeof reason>[]): ScoredFrameLike => ({ frame: { index }, ood: { score: 0.1, threshold: THRESHOLD, map: 'fused', above: reasons.length > 0, reasons } });
    const frames = { a: frame(0, [reason('density', 12)]), b: frame(1, [reason('density', 30), reason('head-area-low', 11)]), c: frame(2, [reason('density', 20)]) };
    const episode = { path: 'frame', id: 1, startFrame: 0, endFrame: 2, map: 'fused', threshold: THRESHOLD, peakScore: 0.1, peakFrame: 0 };
    expectObservable(cold('abc|', frames).pipe(raiseAlerts(manifest))).toBe('--r|', {
      r: { kind: 'raised', ...episode, reasons: [reason('density', 30), reason('head-area-low', 11)], time: 2 },
    });
  });
});

test('bad hysteresis counts are INVALID_OPTION errors', () => {
  assert.throws(() => raiseAlerts(manifest, { raiseAfter: 0 }), (e: LfusionError) => e.code === 'INVALID_OPTION');
  assert.throws(() => raiseAlerts(manifest, { clearAfter: 1.5 }), (e: LfusionError) => e.code === 'INVALID_OPTION');
});

test.run();
