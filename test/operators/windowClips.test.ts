import { from, lastValueFrom, map, of, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ClipWindower, windowClips, type ClipDrop, type FrameEncoder } from '../../src/operators/windowClips.js';
import { LfusionError, ShapeError } from '../../src/runtime/errors.js';
import type { ClipWindow, EncodedFrame, Frame } from '../../src/runtime/types/frames.js';
import { syntheticFrame } from '../helpers/frames.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.equal(actual, expected));

const encodedOf = (frame: Frame): EncodedFrame => ({ frame, image: new Float32Array(1), features: Float32Array.of(frame.index), timings: {} });

/** A synchronous encoder that counts its calls per frame index. */
function countingEncoder(): { encode: FrameEncoder; calls: Map<number, number> } {
  const calls = new Map<number, number>();
  return {
    calls,
    encode: (frame) => {
      calls.set(frame.index, (calls.get(frame.index) ?? 0) + 1);
      return of(encodedOf(frame));
    },
  };
}

const frames = (count: number) => Array.from({ length: count }, (_, index) => syntheticFrame(index, 4, 4));
const describe = (window: ClipWindow) => `${window.start}-${window.end}${window.partial ? 'p' : ''}`;

async function windowsOf(count: number, length: number, stride: number, end: 'shift' | 'partial' = 'shift'): Promise<ClipWindow[]> {
  return lastValueFrom(from(frames(count)).pipe(windowClips(countingEncoder().encode, { length, stride, end }), toArray()), { defaultValue: [] });
}

test('windows of 16: first, overlapping and last windows for strides 1, 8, 16 and 20', async () => {
  const cases: [count: number, stride: number, end: 'shift' | 'partial', expected: string[]][] = [
    [40, 1, 'shift', Array.from({ length: 25 }, (_, k) => `${k}-${k + 16}`)],
    [40, 8, 'shift', ['0-16', '8-24', '16-32', '24-40']],
    [37, 8, 'shift', ['0-16', '8-24', '16-32', '21-37']],
    [37, 8, 'partial', ['0-16', '8-24', '16-32', '24-37p']],
    [40, 16, 'shift', ['0-16', '16-32', '24-40']],
    [40, 16, 'partial', ['0-16', '16-32', '32-40p']],
    [40, 20, 'shift', ['0-16', '20-36']],
    [45, 20, 'shift', ['0-16', '20-36', '40-45p']],
    [5, 8, 'shift', ['0-5p']],
    [16, 8, 'partial', ['0-16']],
    [0, 8, 'shift', []],
  ];
  for (const [count, stride, end, expected] of cases) {
    const windows = await windowsOf(count, 16, stride, end);
    assert.equal(windows.map(describe), expected, `${count} frames, stride ${stride}, end ${end}`);
    for (const window of windows) {
      assert.equal(window.frames.map((f) => f.index), Array.from({ length: window.end - window.start }, (_, k) => window.start + k));
      assert.equal(window.features.map((e) => e.frame), window.frames);
    }
  }
});

test('with stride <= length every frame lies in some window', async () => {
  for (const stride of [1, 3, 8, 16]) {
    for (const count of [1, 15, 16, 17, 30, 33]) {
      for (const end of ['shift', 'partial'] as const) {
        const covered = new Set((await windowsOf(count, 16, stride, end)).flatMap((w) => w.frames.map((f) => f.index)));
        assert.is(covered.size, count, `${count} frames, stride ${stride}, ${end}`);
      }
    }
  }
});

test('each frame is encoded exactly once whatever the overlap, and windows share the encoded frame', async () => {
  for (const stride of [1, 4, 16]) {
    const { encode, calls } = countingEncoder();
    const windows = await lastValueFrom(from(frames(40)).pipe(windowClips(encode, { length: 16, stride }), toArray()));
    assert.equal([...calls.keys()], Array.from({ length: 40 }, (_, i) => i), `stride ${stride}`);
    assert.ok([...calls.values()].every((n) => n === 1), `stride ${stride}: ${JSON.stringify([...calls])}`);
    const byFrame = new Map<number, EncodedFrame>();
    for (const encoded of windows.flatMap((w) => w.features)) {
      assert.ok((byFrame.get(encoded.frame.index) ?? encoded) === encoded, 'the same EncodedFrame object in every window');
      byFrame.set(encoded.frame.index, encoded);
    }
  }
});

test('with stride > length the frames between windows are never encoded', async () => {
  const { encode, calls } = countingEncoder();
  await lastValueFrom(from(frames(40)).pipe(windowClips(encode, { length: 16, stride: 20 }), toArray()));
  assert.equal([...calls.keys()], [...Array.from({ length: 16 }, (_, i) => i), ...Array.from({ length: 16 }, (_, i) => 20 + i)]);
});

test('the cache never holds more than length encoded frames, and releases them at the end', () => {
  for (const [stride, end] of [[1, 'shift'], [8, 'shift'], [8, 'partial'], [16, 'shift'], [20, 'partial']] as const) {
    const windower = new ClipWindower(16, stride, end);
    let most = 0;
    for (const frame of frames(100)) {
      const position = windower.next();
      if (windower.needs(position)) windower.add(position, encodedOf(frame));
      most = Math.max(most, windower.cached);
    }
    assert.ok(most <= 16, `stride ${stride} ${end}: ${most} cached`);
    if (end === 'partial') assert.ok(most < 16, `stride ${stride}: a partial tail never needs a full window's frames back (${most})`);
    windower.finish();
    assert.is(windower.cached, 0);
  }
});

test('marbles: windows follow the asynchronous encoder, and the tail window waits for the last encoding', () => {
  scheduler().run(({ cold, hot, expectObservable }) => {
    const source = hot('-a-b-c-d|', Object.fromEntries('abcd'.split('').map((k, i) => [k, syntheticFrame(i, 4, 4)])));
    const encode: FrameEncoder = (frame) => cold('--x|', { x: encodedOf(frame) });
    const windows = source.pipe(windowClips(encode, { length: 3, stride: 2, end: 'partial' }), map(describe));
    // Encodings run one at a time, 2 frames each (the first value is taken): c is encoded at 7, d at 9.
    expectObservable(windows).toBe('-------x-(z|)', { x: '0-3', z: '2-4p' });
  });
});

test('live: windows keep-latest while the window stage is busy, drops counted; the last kept window still runs', () => {
  const drops: string[] = [];
  scheduler().run(({ cold, hot, expectObservable, flush }) => {
    const source = hot('-abcdefg|', Object.fromEntries('abcdefg'.split('').map((k, i) => [k, syntheticFrame(i, 4, 4)])));
    const encode: FrameEncoder = (frame) => of(encodedOf(frame));
    const onDrop = (drop: ClipDrop, count: number) => drops.push(`${drop.kind === 'window' ? describe(drop.window) : drop.frame.index}#${count}`);
    const results = source.pipe(windowClips(encode, { length: 2, stride: 1, live: true, onDrop }, (window) => cold('----r|', { r: describe(window) })));
    // Windows complete at frames b..g (0-2 ... 5-7); the stage takes 5 frames: 0-2 runs, 1-3..4-6 wait, only the newest is kept.
    expectObservable(results).toBe('------x----y|', { x: '0-2', y: '5-7' });
    flush();
  });
  assert.equal(drops, ['1-3#1', '2-4#2', '3-5#3', '4-6#4']);
});

test('live: frames keep-latest while the encoder is busy; windows are cut from the frames encoded', () => {
  const drops: number[] = [];
  scheduler().run(({ cold, hot, expectObservable, flush }) => {
    const source = hot('-abc-de|', Object.fromEntries('abcde'.split('').map((k, i) => [k, syntheticFrame(i, 4, 4)])));
    const encode: FrameEncoder = (frame) => cold('---x', { x: encodedOf(frame) });
    const onDrop = (drop: ClipDrop) => drop.kind === 'frame' && drops.push(drop.frame.index);
    const results = source.pipe(windowClips(encode, { length: 2, stride: 1, live: true, onDrop }, (window) => of(window.frames.map((f) => f.index).join(''))));
    // a is encoded from 1 to 4; b, c arrive: c kept (b dropped); c from 4 to 7; d, e arrive: e kept; e from 7 to 10.
    expectObservable(results).toBe('-------x--(y|)', { x: '02', y: '24' });
    flush();
  });
  assert.equal(drops, [1, 3]);
});

test('bad options are INVALID_OPTION at once; an encoder that yields nothing is INFERENCE_FAILED', async () => {
  const { encode } = countingEncoder();
  for (const options of [{ length: 0 }, { stride: 1.5 }, { end: 'pad' as 'shift' }, { live: true }]) {
    try {
      windowClips(encode, options);
      assert.unreachable(JSON.stringify(options));
    } catch (error) {
      assert.instance(error, LfusionError);
      assert.is((error as LfusionError).code, 'INVALID_OPTION');
    }
  }
  try {
    await lastValueFrom(from(frames(3)).pipe(windowClips(() => from([]), { length: 2, stride: 1 })));
    assert.unreachable('accepted an empty encoder output');
  } catch (error) {
    assert.is((error as LfusionError).code, 'INFERENCE_FAILED');
  }
});


test.run();
