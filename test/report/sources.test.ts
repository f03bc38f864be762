import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { countFrames, listInputs } from '../../src/report/sources.js';
import { runningFfmpegCount } from '../../src/runtime/ffmpeg-process.js';

const SAMPLE = fileURLToPath(new URL('../../assets/sample.mp4', import.meta.url));

test('counts the frames of a file', async () => {
  assert.is(await countFrames(SAMPLE), 340);
});

test('a live URL is not counted: nothing is started, nothing hangs', async () => {
  const started = Date.now();
  assert.is(await countFrames('udp://127.0.0.1:5999'), undefined);
  assert.ok(Date.now() - started < 100);
  assert.is(runningFfmpegCount(), 0);
  assert.equal(listInputs('udp://127.0.0.1:5999'), { layout: 'video', inputs: [{ path: 'udp://127.0.0.1:5999', name: 'udp://127.0.0.1:5999', kind: 'video' }] });
});

test('counting that does not finish in time gives up and ends its ffmpeg', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lfusion-count-'));
  const fifo = join(dir, 'never-written.mp4');
  execFileSync('mkfifo', [fifo]); // opening it blocks: no writer ever comes
  try {
    const started = Date.now();
    assert.is(await countFrames(fifo, 500), undefined);
    assert.ok(Date.now() - started < 3000, `gave up after ${Date.now() - started} ms`);
    const deadline = Date.now() + 3000;
    while (runningFfmpegCount() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.is(runningFfmpegCount(), 0, 'the counting ffmpeg was ended');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
