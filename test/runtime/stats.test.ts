import { map } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { StatsRecorder } from '../../src/runtime/stats.js';
import type { FrameResult } from '../../src/runtime/types/results.js';

function result(captureTime: number, encoder: number): FrameResult {
  return { frame: { index: 0, pts: 0, captureTime, width: 1, height: 1 }, planes: [], timings: { encoder } };
}

test('counts frames and drops, rates over the window, latency percentiles per stage', () => {
  let clock = 10_000;
  const stats = new StatsRecorder({ now: () => clock, rateWindowMs: 1000 });
  for (let i = 1; i <= 100; i++) {
    clock += 10; // 100 frames in per second
    stats.frameIn();
    if (i % 4 === 0) stats.frameOut(result(clock - 50, i)); // every 4th comes out, 50 ms after capture
  }
  stats.dropped(3);
  const snapshot = stats.snapshot();
  assert.equal([snapshot.framesIn, snapshot.framesOut, snapshot.dropped], [100, 25, 3]);
  assert.ok(Math.abs(snapshot.fpsIn - 100) < 1.5, `fpsIn ${snapshot.fpsIn}`);
  assert.ok(Math.abs(snapshot.fpsOut - 25) < 1.5, `fpsOut ${snapshot.fpsOut}`);
  assert.equal(snapshot.latency.total, { p50: 50, p90: 50, p99: 50, max: 50, count: 25 });
  const encoder = snapshot.latency.encoder!;
  assert.equal([encoder.p50, encoder.p90, encoder.max, encoder.count], [52, 92, 100, 25]); // samples 4, 8, ..., 100
  clock += 5000;
  assert.is(stats.snapshot().fpsIn, 0, 'no frames in the last window');
});

test('keeps only the most recent latency samples', () => {
  const stats = new StatsRecorder({ latencySamples: 4 });
  for (const ms of [100, 100, 100, 1, 2, 3, 4]) stats.record('head', ms);
  assert.equal(stats.snapshot().latency.head, { p50: 2, p90: 4, p99: 4, max: 4, count: 7 });
});

test('stats$ emits a snapshot every period', () => {
  new TestScheduler((actual, expected) => assert.equal(actual, expected)).run(({ expectObservable }) => {
    let clock = 0;
    const stats = new StatsRecorder({ now: () => clock });
    const framesIn = stats.stats$(1000).pipe(map((snapshot) => snapshot.framesIn));
    stats.frameIn();
    expectObservable(framesIn, '^ 3500ms !').toBe('1000ms a 999ms a 999ms a', { a: 1 });
  });
});

test.run();
