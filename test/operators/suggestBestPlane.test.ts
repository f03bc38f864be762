import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, from, toArray } from 'rxjs';
import { suggestBestPlane } from '../../src/operators/suggestBestPlane.js';
import type { Biometry } from '../../src/runtime/types/biometry.js';
import type { FrameResult } from '../../src/runtime/types/results.js';

/** A frame at `pts` seconds with HC `hc` ± `half` and the ellipse centre at x = `cx`. */
function frame(index: number, pts: number, hc: number, half: number, status: Biometry['status'] = 'ok', cx = 100): FrameResult {
  const interval = { median: hc, low: hc - half, high: hc + half };
  return {
    frame: { index, pts, captureTime: 0, width: 200, height: 200 },
    planes: [],
    timings: {},
    biometry: {
      status,
      unit: 'mm',
      spacing: { x: 0.2, y: 0.2 },
      ellipse: { cx, cy: 100, a: 60, b: 50, angle: 0 },
      ellipseMm: null,
      residual: 1,
      visible: 1,
      pooled: { hc: interval, bpd: interval, ofd: interval, fitted: 20, samples: 20 },
      laplace: null,
      dropout: null,
      ga: null,
      intervalScale: 1,
      outlineResidual: 0.02,
    },
  };
}

const bestOf = (frames: FrameResult[], options = {}) => firstValueFrom(from(frames).pipe(suggestBestPlane(options), toArray()));

test('a stable ok frame narrower than every other of the window is suggested; the first frame has no neighbour to be stable with', async () => {
  const frames = [frame(0, 0, 170, 5), frame(1, 0.1, 170.5, 4), frame(2, 0.2, 171, 6), frame(3, 0.3, 171, 3), frame(4, 0.4, 171, 3.5)];
  assert.equal((await bestOf(frames)).map((b) => b.frameIndex), [1, 3]);
  const best = (await bestOf(frames))[1]!;
  assert.is(best.width, 6);
  assert.is(best.unit, 'mm');
});

test('unstable (HC jump, ellipse moved), not-ok frames and frames after the window are judged as they should be', async () => {
  const jump = [frame(0, 0, 170, 5), frame(1, 0.1, 170, 4), frame(2, 0.2, 190, 1)];
  assert.equal((await bestOf(jump)).map((b) => b.frameIndex), [1]);
  const moved = [frame(0, 0, 170, 5), frame(1, 0.1, 170, 4), frame(2, 0.2, 170, 1, 'ok', 130)];
  assert.equal((await bestOf(moved)).map((b) => b.frameIndex), [1]);
  const notOk = [frame(0, 0, 170, 5), frame(1, 0.1, 170, 4), frame(2, 0.2, 170, 1, 'ood'), frame(3, 0.3, 170, 1, 'ok')];
  assert.equal((await bestOf(notOk)).map((b) => b.frameIndex), [1], 'frame 3 follows a frame that is not ok');
  // Frame 3 is wider than frame 1 but frame 1 left the 1 s window.
  const later = [frame(0, 0, 170, 5), frame(1, 0.1, 170, 2), frame(2, 0.2, 170, 3), frame(3, 1.5, 170, 3)];
  assert.equal((await bestOf(later, { windowSeconds: 1 })).map((b) => b.frameIndex), [1, 3]);
  assert.equal(await bestOf([{ ...frame(0, 0, 1, 1), biometry: undefined }]), []);
});

test('bad options are INVALID_OPTION', () => {
  for (const bad of [{ windowSeconds: 0 }, { maxHcChange: -1 }, { maxCentreShift: Number.NaN }]) {
    assert.throws(() => suggestBestPlane(bad), (e: { code?: string }) => e.code === 'INVALID_OPTION');
  }
});

test.run();
