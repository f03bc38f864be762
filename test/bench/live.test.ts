import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lastValueFrom, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pacedRecording } from '../../bench/live.bench.js';
import { fromVideo } from '../../src/operators/fromVideo.js';

test('the live bench recording holds the asked number of frames, 1/30 s apart, all different', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lfusion-live-bench-test-'));
  try {
    const { file, frames } = pacedRecording(dir, 0.5, 30);
    const decoded = await lastValueFrom(fromVideo(file).pipe(toArray()));
    assert.is(frames, 15);
    assert.is(decoded.length, 15);
    const steps = decoded.slice(1).map((frame, i) => frame.pts - decoded[i]!.pts);
    assert.ok(steps.every((step) => Math.abs(step - 1 / 30) < 1e-3), `pts steps ${steps.join(', ')}`);
    // One source frame per output frame: no duplicates for live mode's pooling to exploit.
    const same = decoded.slice(1).filter((frame, i) => frame.data.every((value, p) => value === decoded[i]!.data[p]));
    assert.is(same.length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
