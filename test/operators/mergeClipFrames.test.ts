import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Subject } from 'rxjs';
import { mergeClipFrames } from '../../src/operators/mergeClipFrames.js';
import { ShapeError } from '../../src/runtime/errors.js';
import type { Frame } from '../../src/runtime/types/frames.js';
import type { ClipFrame, ClipWindowMaps } from '../../src/runtime/types/uncertainty.js';

const frame = (index: number): Frame => ({ index, pts: index, captureTime: 0, width: 1, height: 1, data: new Uint8Array(1) });
/** A window of `count` frames from `start` whose `fused` map for the frame at position p is [value(p), 10 * value(p)]. */
function window(start: number, count: number, score: number, value: (position: number) => number): ClipWindowMaps {
  const positions = Array.from({ length: count }, (_, t) => start + t);
  return {
    start,
    frames: positions.map(frame),
    size: 1,
    maps: { fused: positions.map((p) => Float32Array.of(value(p), 10 * value(p))) },
    ood: { score, threshold: 0.5, map: 'fused', above: score > 0.5, window: { first: start, last: start + count - 1 } },
    timings: { heads: score },
  };
}
const summary = (clip: ClipFrame) => ({ position: clip.position, index: clip.frame.index, windows: clip.windows, fused: [...clip.maps.fused!], score: clip.ood.score });

/** Subscribes `mergeClipFrames` to a subject and records what it emits and whether it ended. */
function harness() {
  const windows = new Subject<ClipWindowMaps>();
  const out: ReturnType<typeof summary>[] = [];
  const state = { complete: false, error: undefined as unknown };
  windows.pipe(mergeClipFrames()).subscribe({ next: (clip) => out.push(summary(clip)), complete: () => (state.complete = true), error: (e) => (state.error = e) });
  return { windows, out, state };
}

test('each frame: the mean over its windows, emitted in order once no later window can contain it', () => {
  const { windows, out, state } = harness();
  // Length 4, stride 2: positions 2 and 3 lie in both windows; window B's maps are 1 higher than A's.
  windows.next(window(0, 4, 0.2, (p) => p));
  assert.equal(out, [], 'nothing is final while a window may still start at position 1');
  windows.next(window(2, 4, 0.9, (p) => p + 1));
  assert.equal(out.map((c) => c.position), [0, 1], 'positions before the newest window start are final');
  windows.complete();
  assert.ok(state.complete);
  assert.equal(out, [
    { position: 0, index: 0, windows: 1, fused: [0, 0], score: 0.2 },
    { position: 1, index: 1, windows: 1, fused: [1, 10], score: 0.2 },
    { position: 2, index: 2, windows: 2, fused: [2.5, 25], score: 0.9 },
    { position: 3, index: 3, windows: 2, fused: [3.5, 35], score: 0.9 },
    { position: 4, index: 4, windows: 1, fused: [5, 50], score: 0.9 },
    { position: 5, index: 5, windows: 1, fused: [6, 60], score: 0.9 },
  ]);
});

test('biometry: each frame keeps the one from the window in which it sat nearest the middle', () => {
  const measured: ClipFrame[] = [];
  const windows = new Subject<ClipWindowMaps>();
  windows.pipe(mergeClipFrames()).subscribe((clip) => measured.push(clip));
  // Length 4, stride 2: window A holds positions 0-3, B 2-5, C 4-7; each frame's biometry names its window.
  const withBiometry = (maps: ClipWindowMaps, name: string): ClipWindowMaps => ({ ...maps, biometry: maps.frames.map(() => ({ status: name }) as never) });
  windows.next(withBiometry(window(0, 4, 0.1, (p) => p), 'A'));
  windows.next(withBiometry(window(2, 4, 0.1, (p) => p), 'B'));
  windows.next(withBiometry(window(4, 4, 0.1, (p) => p), 'C'));
  windows.complete();
  // Position 2 is A's third frame (1.5 - 2 = 0.5 off centre) and B's first (1.5 off): A's. Position 3: A's last (1.5), B's second (0.5): B's.
  assert.equal(measured.map((clip) => clip.biometry?.status), ['A', 'A', 'A', 'B', 'B', 'C', 'C', 'C']);
  const plain = harness();
  plain.windows.next(window(0, 4, 0.1, (p) => p));
  plain.windows.complete();
  assert.ok(plain.out.length === 4, 'windows without biometry merge as before');
});

test('a gap (a window dropped in live mode) leaves the frames with the windows that ran', () => {
  const { windows, out } = harness();
  windows.next(window(0, 4, 0.1, () => 1));
  windows.next(window(8, 4, 0.3, () => 3)); // windows at 2, 4 and 6 were dropped
  windows.complete();
  assert.equal(out.map((c) => [c.position, c.windows, c.fused[0]]), [[0, 1, 1], [1, 1, 1], [2, 1, 1], [3, 1, 1], [8, 1, 3], [9, 1, 3], [10, 1, 3], [11, 1, 3]]);
});

test('maps of one frame with different sizes, or a window without a map per frame, end the stream with a ShapeError', () => {
  const first = harness();
  first.windows.next(window(0, 2, 0.1, () => 1));
  first.windows.next({ ...window(1, 2, 0.1, () => 1), maps: { fused: [Float32Array.of(1), Float32Array.of(1)] } });
  assert.instance(first.state.error, ShapeError);
  assert.equal(first.out.map((c) => c.position), [0], 'frames final before the bad window still came out');
  const second = harness();
  second.windows.next({ ...window(0, 2, 0.1, () => 1), maps: { fused: [Float32Array.of(1, 2)] } });
  assert.instance(second.state.error, ShapeError);
});

test.run();
