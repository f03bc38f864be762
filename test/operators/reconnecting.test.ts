import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { join, resolve } from 'node:path';
import type { Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { reconnecting } from '../../src/operators/reconnecting.js';
import { SourceError } from '../../src/runtime/errors.js';
import { isSourceEvent, type SourceEvent, type SourceLostEvent } from '../../src/runtime/source-events.js';
import type { Frame } from '../../src/runtime/types/frames.js';
import { runningFfmpegCount } from '../../src/runtime/ffmpeg-process.js';
import { freePort, startStreamer, startUdpFeeder, stopStreamer } from '../helpers/loopback-stream.js';

const SAMPLE = join(resolve(import.meta.dirname, '../..'), 'assets/sample.mp4');
const URL_ = 'udp://127.0.0.1:1';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.equal(actual, expected));

const frame = (index: number): Frame => ({ index, pts: index / 20, captureTime: 0, width: 2, height: 1, data: Uint8Array.of(index, index) });
const renumbered = (f: Frame, index: number): Frame => ({ ...f, index });
const lost = new SourceError('SOURCE_LOST', 'live source ended', URL_, 'stream ended');
const notFound = new SourceError('SOURCE_NOT_FOUND', 'cannot open', URL_, 'Connection refused');

/** A factory handing out one prepared connection per call, in order. */
function connections(list: Observable<Frame>[]): { connect: () => Observable<Frame>; calls: () => number } {
  let calls = 0;
  return { connect: () => list[calls++] as Observable<Frame>, calls: () => calls };
}

const lostEvent = (error: SourceError, attempt: number, retryInMs: number, lastIndex: number, time: number): SourceLostEvent => ({
  type: 'source-lost',
  source: URL_,
  code: error.code as SourceLostEvent['code'],
  message: error.message,
  stderrTail: error.stderrTail,
  attempt,
  retryInMs,
  lastIndex,
  time,
});

test('loss, failed attempts with exponential backoff capped at maxMs, then restored with continuous indices', () => {
  scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
    const f = { a: frame(0), b: frame(1) };
    const c0 = cold<Frame>('-a-b-#', f, lost);
    const c1 = cold<Frame>('--#', f, notFound);
    const c2 = cold<Frame>('--#', f, notFound);
    const c3 = cold<Frame>('-a---b', f);
    const { connect } = connections([c0, c1, c2, c3]);
    const result = reconnecting(connect, { backoff: { initialMs: 10, factor: 2, maxMs: 25 } });
    // Losses at 5, 17, 39; retries after 10, 20, then 25 (capped); frames again at 65.
    expectObservable(result).toBe('-a-b-l 11ms m 21ms n 25ms (rc)d', {
      a: renumbered(f.a, 0),
      b: renumbered(f.b, 1),
      l: lostEvent(lost, 1, 10, 1, 5),
      m: lostEvent(notFound, 2, 20, 1, 17),
      n: lostEvent(notFound, 3, 25, 1, 39),
      r: { type: 'source-restored', source: URL_, attempts: 3, downtimeMs: 60, firstIndex: 2, time: 65 },
      c: renumbered(f.a, 2),
      d: renumbered(f.b, 3),
    });
    expectSubscriptions(c0.subscriptions).toBe('^----!');
    expectSubscriptions(c1.subscriptions).toBe('15ms ^-!');
    expectSubscriptions(c2.subscriptions).toBe('37ms ^-!');
    expectSubscriptions(c3.subscriptions).toBe('64ms ^');
  });
});

test('the backoff starts again from initialMs after frames have flowed', () => {
  scheduler().run(({ cold, expectObservable }) => {
    const c0 = cold<Frame>('-a#', { a: frame(0) }, lost);
    const c1 = cold<Frame>('-a---#', { a: frame(0) }, lost);
    const c2 = cold<Frame>('-a', { a: frame(0) });
    const { connect } = connections([c0, c1, c2]);
    const result = reconnecting(connect, { backoff: { initialMs: 4, factor: 3, maxMs: 100 } });
    expectObservable(result).toBe('-al 4ms (rb)m 4ms (sc)', {
      a: frame(0),
      l: lostEvent(lost, 1, 4, 0, 2),
      r: { type: 'source-restored', source: URL_, attempts: 1, downtimeMs: 5, firstIndex: 1, time: 7 },
      b: renumbered(frame(0), 1),
      m: lostEvent(lost, 1, 4, 1, 11),
      s: { type: 'source-restored', source: URL_, attempts: 1, downtimeMs: 5, firstIndex: 2, time: 16 },
      c: renumbered(frame(0), 2),
    });
  });
});

test('a source that cannot be opened at first is retried, and its first frames count as restored', () => {
  scheduler().run(({ cold, expectObservable }) => {
    const { connect } = connections([cold<Frame>('---#', {}, notFound), cold<Frame>('-a', { a: frame(0) })]);
    expectObservable(reconnecting(connect, { backoff: { initialMs: 5 } })).toBe('---l 5ms (ra)', {
      l: lostEvent(notFound, 1, 5, -1, 3),
      r: { type: 'source-restored', source: URL_, attempts: 1, downtimeMs: 6, firstIndex: 0, time: 9 },
      a: frame(0),
    });
  });
});

test('errors that waiting cannot fix pass through at once, and so does completion', () => {
  const decodeFailed = new SourceError('DECODE_FAILED', 'corrupt', 'scan.mp4');
  const noFfmpeg = new SourceError('FFMPEG_NOT_FOUND', 'no ffmpeg', URL_);
  const other = new Error('bug');
  for (const error of [decodeFailed, noFfmpeg, other]) {
    scheduler().run(({ cold, expectObservable }) => {
      const source = connections([cold<Frame>('-a-#', { a: frame(0) }, error)]);
      expectObservable(reconnecting(source.connect)).toBe('-a-#', { a: frame(0) }, error);
    });
  }
  scheduler().run(({ cold, expectObservable }) => {
    const source = connections([cold<Frame>('-a-|', { a: frame(0) })]);
    expectObservable(reconnecting(source.connect)).toBe('-a-|', { a: frame(0) });
  });
});

test('maxAttempts: gives up with the last error after that many failed attempts in a row', () => {
  scheduler().run(({ cold, expectObservable, flush }) => {
    const { connect, calls } = connections([cold<Frame>('-#', {}, lost), cold<Frame>('-#', {}, notFound), cold<Frame>('-#', {}, notFound)]);
    const result = reconnecting(connect, { backoff: { initialMs: 2, factor: 1 }, maxAttempts: 2 });
    expectObservable(result).toBe('-l 2ms m 2ms #', { l: lostEvent(lost, 1, 2, -1, 1), m: lostEvent(notFound, 2, 2, -1, 4) }, notFound);
    flush();
    assert.is(calls(), 3);
  });
});

test('unsubscribing while waiting to reconnect cancels the attempt', () => {
  scheduler().run(({ cold, expectObservable, flush }) => {
    const { connect, calls } = connections([cold<Frame>('-#', {}, lost), cold<Frame>('-a', { a: frame(0) })]);
    expectObservable(reconnecting(connect, { backoff: { initialMs: 10 } }), '^---!').toBe('-l', { l: lostEvent(lost, 1, 10, -1, 1) });
    flush();
    assert.is(calls(), 1);
  });
});

test('a factory that throws is an error; invalid options throw INVALID_OPTION at the call', () => {
  const thrown = new Error('bad source');
  scheduler().run(({ expectObservable }) => {
    expectObservable(reconnecting(() => { throw thrown; })).toBe('#', undefined, thrown);
  });
  const connect = (): never => {
    throw new Error('not connected: options are checked at the call');
  };
  const invalid = (e: { code?: string }): boolean => e.code === 'INVALID_OPTION';
  assert.throws(() => reconnecting(connect, { backoff: { initialMs: -1 } }), invalid);
  assert.throws(() => reconnecting(connect, { backoff: { initialMs: 100, maxMs: 50 } }), invalid);
  assert.throws(() => reconnecting(connect, { backoff: { factor: 0.5 } }), invalid);
  assert.throws(() => reconnecting(connect, { maxAttempts: 1.5 }), invalid);
});

// ---------------------------------------------------------------------------------------------
// A real ffmpeg stream on loopback, stopped (SIGKILL, like a pulled cable) and started again.
// ---------------------------------------------------------------------------------------------

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Subscribes to `url` through `reconnecting` (backoff 100 ms x2 up to 400 ms), keeping every item (frames without pixels). */
function watchLiveSource(url: string, timeouts: { stallTimeoutMs: number; openTimeoutMs: number }) {
  const items: (Frame | SourceEvent)[] = [];
  const outcome: { ended?: string } = {};
  const subscription = reconnecting(() => fromVideo(url, { width: 80, ...timeouts }), {
    backoff: { initialMs: 100, factor: 2, maxMs: 400 },
  }).subscribe({
    next: (item) => items.push(isSourceEvent(item) ? item : { ...item, data: new Uint8Array(0) }),
    error: (error: Error) => (outcome.ended = `error ${error.message}`),
    complete: () => (outcome.ended = 'complete'),
  });
  const frames = (): Frame[] => items.filter((item): item is Frame => !isSourceEvent(item));
  return { items, frames, ended: () => outcome.ended, subscription };
}

test('real stream on loopback: killed, restarted, and the frames keep coming with continuous indices', async () => {
  const url = `http://127.0.0.1:${await freePort()}/live.ts`;
  let streamer = startStreamer(SAMPLE, url);
  await new Promise((r) => setTimeout(r, 300)); // let it listen
  const { items, frames, ended, subscription } = watchLiveSource(url, { stallTimeoutMs: 1000, openTimeoutMs: 4000 });
  try {
    await until(() => frames().length >= 10, 8000);
    await stopStreamer(streamer);
    await until(() => items.some((item) => isSourceEvent(item) && item.type === 'source-lost'), 4000);
    await new Promise((r) => setTimeout(r, 600)); // down long enough for failed attempts (connection refused)
    const framesBefore = frames().length;
    streamer = startStreamer(SAMPLE, url);
    await until(() => frames().length >= framesBefore + 10, 8000);
  } finally {
    subscription.unsubscribe();
    await stopStreamer(streamer);
  }
  assert.is(ended(), undefined, 'the stream neither errored nor completed');
  assert.equal(frames().map((f) => f.index), frames().map((_, i) => i), 'indices continuous across the outage');
  // The outage this test made: from the first loss after frames flowed to the restoration that ended it.
  const firstFrameAt = items.findIndex((item) => !isSourceEvent(item));
  const lostAt = items.findIndex((item, i) => i > firstFrameAt && isSourceEvent(item) && item.type === 'source-lost');
  const restoredAt = items.findIndex((item, i) => i > lostAt && isSourceEvent(item) && item.type === 'source-restored');
  const outage = items.slice(lostAt, restoredAt);
  assert.ok(lostAt > firstFrameAt && restoredAt > lostAt, `items: ${items.map((item) => (isSourceEvent(item) ? item.type : 'frame')).join(', ')}`);
  assert.ok(outage.every(isSourceEvent), 'nothing but source-lost events between loss and restoration');
  const losses = outage as SourceLostEvent[];
  assert.is(losses[0]?.code, 'SOURCE_LOST');
  assert.ok(losses.length >= 2, `${losses.length} source-lost events: the attempts while the streamer was down failed too`);
  assert.ok(losses.slice(1).every((e) => e.code === 'SOURCE_NOT_FOUND'), 'attempts while down could not connect');
  assert.equal(losses.map((e) => e.attempt), losses.map((_, i) => i + 1));
  assert.equal(losses.map((e) => e.retryInMs), losses.map((_, i) => Math.min(100 * 2 ** i, 400)));
  const restored = items[restoredAt] as SourceEvent & { type: 'source-restored' };
  assert.is(restored.attempts, losses.length);
  assert.is(restored.firstIndex, (items[restoredAt + 1] as Frame).index);
  assert.is(losses[0]?.lastIndex, restored.firstIndex - 1, 'no frame lost or repeated at the seam');
  assert.ok(frames().filter((f) => f.index >= restored.firstIndex).length >= 10, 'frames after restoration');
});

test('udp on loopback: the feeder goes quiet, comes back, and the frames keep coming; no ffmpeg left behind', async () => {
  // The receiver's ffmpeg, blocked on a silent UDP input, may outlive SIGTERM and keep the port bound: the next
  // connection must wait for it to exit, and a port still bound is a retryable error, not DECODE_FAILED.
  const url = `udp://127.0.0.1:${await freePort()}`;
  let feeder = startUdpFeeder(SAMPLE, url);
  // Opening takes ffmpeg's 1 s of stream analysis plus up to 1 s to the sample's next keyframe, more on a loaded
  // machine: an open timeout under that would fail every attempt after the feeder's return (seen at load 4.6).
  const openTimeoutMs = 4000;
  const { items, frames, ended, subscription } = watchLiveSource(url, { stallTimeoutMs: 800, openTimeoutMs });
  try {
    await until(() => frames().length >= 10, 10_000);
    await stopStreamer(feeder);
    await until(() => items.some((item) => isSourceEvent(item) && item.type === 'source-lost') || ended() !== undefined, 5000);
    await new Promise((r) => setTimeout(r, openTimeoutMs + 1000)); // quiet past at least one failed attempt
    const framesBefore = frames().length;
    feeder = startUdpFeeder(SAMPLE, url);
    await until(() => frames().length >= framesBefore + 10 || ended() !== undefined, 30_000);
  } finally {
    subscription.unsubscribe();
    await stopStreamer(feeder);
  }
  assert.is(ended(), undefined, 'the stream neither errored nor completed');
  assert.ok(items.some((item) => isSourceEvent(item) && item.type === 'source-restored'), 'restored');
  assert.equal(frames().map((f) => f.index), frames().map((_, i) => i), 'indices continuous across the outage');
  await until(() => runningFfmpegCount() === 0, 5000);
});

test.run();
