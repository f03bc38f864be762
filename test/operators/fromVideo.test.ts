import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { copyFileSync, createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { firstValueFrom, Observable, Subject, take } from 'rxjs';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { SourceError } from '../../src/runtime/errors.js';
import { resolveFfmpeg } from '../../src/runtime/ffmpeg.js';
import type { Frame } from '../../src/runtime/types/frames.js';
import { SAMPLE_VIDEO } from '../../scripts/make-sample-video.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SAMPLE = join(ROOT, 'assets/sample.mp4');
const HC18 = join(ROOT, '../shared/data/hc18/training_set');
const tmp = mkdtempSync(join(tmpdir(), 'fromVideo-'));

const unhandled: unknown[] = [];
const recordUnhandled = (reason: unknown): number => unhandled.push(reason);
process.on('unhandledRejection', recordUnhandled);

interface Run {
  frames: Omit<Frame, 'data'>[];
  means: number[];
  error?: SourceError;
  /** ms from subscribing to each frame. */
  arrivals: number[];
}

/** Subscribes until the end, keeping frame metadata and mean intensity (not the pixels: 340 frames are 147 MB). */
function collect(frames$: Observable<Frame>, onFrame?: (frame: Frame) => void): Promise<Run> {
  const run: Run = { frames: [], means: [], arrivals: [] };
  const start = Date.now();
  return new Promise((done) => {
    frames$.subscribe({
      next: (frame) => {
        const { data, ...meta } = frame;
        assert.is(data.length, frame.width * frame.height, 'frame bytes = width * height');
        run.frames.push(meta);
        run.means.push(mean(data));
        run.arrivals.push(Date.now() - start);
        onFrame?.(frame);
      },
      error: (error: SourceError) => done({ ...run, error }),
      complete: () => done(run),
    });
  });
}

function mean(data: Uint8Array): number {
  let sum = 0;
  for (const v of data) sum += v;
  return sum / data.length;
}

/** Pids of live processes whose command line mentions `needle` (Linux /proc). */
function processesMentioning(needle: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
      } catch {
        return false; // exited while we looked
      }
    })
    .map(Number);
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return condition();
}

test('decodes the sample: every frame, its size, real timestamps, plausible pixels', async () => {
  const run = await collect(fromVideo(SAMPLE));
  assert.is(run.error, undefined);
  assert.is(run.frames.length, SAMPLE_VIDEO.frames);
  run.frames.forEach((frame, i) => {
    assert.is(frame.index, i);
    assert.is(frame.width, SAMPLE_VIDEO.width);
    assert.is(frame.height, SAMPLE_VIDEO.height);
    assert.ok(Math.abs(frame.pts - i / SAMPLE_VIDEO.fps) < 1e-3, `pts of frame ${i}: ${frame.pts}`);
  });
  // Ultrasound: dark background with a brighter sector; never blank, never saturated.
  for (const m of run.means) assert.ok(m > 20 && m < 80, `mean intensity ${m}`);
});

test('the first frame is the first scan, pixel for pixel up to H.264 loss', async () => {
  const firstScan = /`(\d+_\d?HC)\.png`/.exec(readFileSync(join(ROOT, 'assets/ATTRIBUTION.md'), 'utf8'))?.[1];
  if (!existsSync(HC18) || !firstScan) {
    console.log(`  skipped: HC18 data not at ${HC18}`);
    return;
  }
  const [video, scan] = await Promise.all([
    firstValueFrom(fromVideo(SAMPLE)),
    firstValueFrom(fromVideo(join(HC18, `${firstScan}.png`))),
  ]);
  let absDiff = 0;
  video.data.forEach((v, i) => (absDiff += Math.abs(v - (scan.data[i] as number))));
  const meanAbsDiff = absDiff / video.data.length;
  assert.ok(meanAbsDiff < 2, `mean |video - scan| = ${meanAbsDiff.toFixed(2)} grey levels`);
});

test('scales in ffmpeg: both sides, or one side keeping the aspect ratio', async () => {
  const square = await firstValueFrom(fromVideo(SAMPLE, { width: 224, height: 224 }));
  assert.equal([square.width, square.height, square.data.length], [224, 224, 224 * 224]);
  const half = await firstValueFrom(fromVideo(SAMPLE, { width: 400 }));
  assert.equal([half.width, half.height], [400, 270]);
});

test('realtime paces a file at its own frame rate', async () => {
  const second = SAMPLE_VIDEO.fps; // frame index at pts = 1 s
  const run = await collect(fromVideo(SAMPLE, { realtime: true, width: 80 }).pipe(take(second + 1)));
  const elapsed = (run.arrivals[second] as number) - (run.arrivals[0] as number);
  assert.ok(elapsed > 700, `1 s of video arrived in ${elapsed} ms`);
});

test('a missing file is SOURCE_NOT_FOUND with the stderr tail', async () => {
  const run = await collect(fromVideo(join(tmp, 'missing.mp4')));
  assert.is(run.frames.length, 0);
  assert.instance(run.error, SourceError);
  assert.is(run.error?.code, 'SOURCE_NOT_FOUND');
  assert.match(run.error?.stderrTail ?? '', 'No such file or directory');
});

test('a corrupt file is DECODE_FAILED with the stderr tail', async () => {
  const corrupt = join(tmp, 'corrupt.mp4');
  writeFileSync(corrupt, Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7919 + 13) % 251)));
  const run = await collect(fromVideo(corrupt));
  assert.is(run.frames.length, 0);
  assert.is(run.error?.code, 'DECODE_FAILED');
  assert.match(run.error?.stderrTail ?? '', 'Invalid data found when processing input');
});

test('a truncated file delivers the frames that decoded, then DECODE_FAILED', async () => {
  const truncated = join(tmp, 'truncated.mp4');
  writeFileSync(truncated, readFileSync(SAMPLE).subarray(0, Math.floor(statSync(SAMPLE).size * 0.4)));
  const run = await collect(fromVideo(truncated, { width: 80 }));
  assert.ok(run.frames.length > 50 && run.frames.length < SAMPLE_VIDEO.frames, `${run.frames.length} frames`);
  assert.is(run.error?.code, 'DECODE_FAILED');
  assert.match(run.error?.message ?? '', `after ${run.frames.length} frames`);
  assert.match(run.error?.stderrTail ?? '', '[error]');
});

test('a text file and a video with no frames are DECODE_FAILED with no frame, played once or looped', async () => {
  const text = join(tmp, 'notes.txt');
  writeFileSync(text, 'not a video\n'); // ffmpeg's tty demuxer would render it as one 640x400 picture
  const empty = join(tmp, 'empty.y4m');
  writeFileSync(empty, 'YUV4MPEG2 W320 H240 F25:1 Ip A1:1 C420jpeg\n'); // a video stream, zero frames: ffmpeg exits 0
  for (const options of [{}, { realtime: true, inputOptions: ['-stream_loop', '-1'] }]) {
    const textRun = await collect(fromVideo(text, options));
    assert.is(textRun.frames.length, 0);
    assert.is(textRun.error?.code, 'DECODE_FAILED');
    assert.match(textRun.error?.message ?? '', 'is not a video: ffmpeg can only read it as text (tty)');
    const emptyRun = await collect(fromVideo(empty, options));
    assert.is(emptyRun.frames.length, 0);
    assert.is(emptyRun.error?.code, 'DECODE_FAILED');
    assert.match(emptyRun.error?.message ?? '', 'has no video frames');
  }
});

test('a missing ffmpeg is FFMPEG_NOT_FOUND', async () => {
  const run = await collect(fromVideo(SAMPLE, { ffmpegPath: join(tmp, 'no-ffmpeg') }));
  assert.is(run.error?.code, 'FFMPEG_NOT_FOUND');
  assert.match(run.error?.message ?? '', 'FFMPEG_PATH');
});

test('invalid options throw INVALID_OPTION at the call', () => {
  assert.throws(() => fromVideo(SAMPLE, { width: 0 }), (e: { code?: string }) => e.code === 'INVALID_OPTION');
  assert.throws(() => fromVideo(SAMPLE, { height: 1.5 }), (e: { code?: string }) => e.code === 'INVALID_OPTION');
});

test('unsubscribing mid-stream ends ffmpeg: no process left behind', async () => {
  const source = join(tmp, 'unsubscribe-me.mp4');
  copyFileSync(SAMPLE, source);
  let pids: number[] = [];
  // Paced, ffmpeg would run for the whole video: only the unsubscribe can end it within the wait below.
  const run = await collect(fromVideo(source, { realtime: true }).pipe(take(5)), (frame) => {
    if (frame.index === 0) pids = processesMentioning(source);
  });
  assert.is(run.frames.length, 5);
  assert.is(pids.length, 1, 'one ffmpeg was running');
  assert.ok(await until(() => processesMentioning(source).length === 0, 3000), 'ffmpeg still running after unsubscribe');
});

test('flow control: no more than the window ahead of acknowledgements, and every frame in the end', async () => {
  const acknowledge = new Subject<void>();
  let emitted = 0;
  let acking = false;
  const finished = collect(fromVideo(SAMPLE, { width: 80, flow: { acknowledge, window: 3 } }), () => {
    emitted += 1;
    if (acking) setImmediate(() => acknowledge.next());
  });
  await new Promise((r) => setTimeout(r, 400));
  assert.is(emitted, 3, 'frames emitted without acknowledgement');
  acking = true;
  for (let i = 0; i < 3; i += 1) acknowledge.next();
  const run = await finished;
  assert.is(run.error, undefined);
  assert.is(run.frames.length, SAMPLE_VIDEO.frames);
});

test('flow control: a consumer that acknowledges from inside next (a frame it skips) still gets every frame once, in order, with its own index', async () => {
  const acknowledge = new Subject<void>();
  const reference = await collect(fromVideo(SAMPLE, { width: 80 }));
  const run = await collect(fromVideo(SAMPLE, { width: 80, flow: { acknowledge, window: 1 } }), (frame) => {
    // The first frame is acknowledged late, so that frames queue up behind it; every later one at once, inside
    // next, as replay --report's frame selection acknowledges the frames before the selection.
    if (frame.index === 0) setTimeout(() => acknowledge.next(), 300);
    else acknowledge.next();
  });
  assert.is(run.error, undefined);
  assert.equal(run.frames.map((frame) => frame.index), reference.frames.map((_, i) => i));
  assert.equal(run.means, reference.means, 'each index carries its own frame');
});

test('http: a live network source delivers every frame, then SOURCE_LOST when the stream ends', async () => {
  const server = createServer((_, response) => createReadStream(SAMPLE).pipe(response));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sample.mp4`;
  try {
    const live = await collect(fromVideo(url, { width: 80 }));
    assert.is(live.frames.length, SAMPLE_VIDEO.frames);
    assert.is(live.error?.code, 'SOURCE_LOST');
    const replay = await collect(fromVideo(url, { width: 80, live: false }));
    assert.is(replay.error, undefined);
    assert.is(replay.frames.length, SAMPLE_VIDEO.frames);
  } finally {
    server.close();
  }
});

test('udp: a real ffmpeg stream on loopback is decoded; silence after it ends is SOURCE_LOST', async () => {
  const probe = createSocket('udp4');
  probe.bind(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = probe.address().port;
  probe.close();
  const url = `udp://127.0.0.1:${port}`;
  const received = collect(fromVideo(url, { width: 80, stallTimeoutMs: 1000 }));
  await new Promise((r) => setTimeout(r, 300)); // let the receiver bind first
  const sender = spawn(resolveFfmpeg().path, [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-i', SAMPLE, '-t', '1.5',
    '-c', 'copy', '-f', 'mpegts', `${url}?pkt_size=1316`,
  ], { stdio: 'ignore' });
  const [senderCode] = (await once(sender, 'close')) as [number];
  assert.is(senderCode, 0);
  const run = await received;
  assert.ok(run.frames.length >= 10, `${run.frames.length} frames received`);
  assert.is(run.error?.code, 'SOURCE_LOST');
  const pts = run.frames.map((f) => f.pts);
  assert.ok(pts.every((t, i) => i === 0 || t > (pts[i - 1] as number)), 'timestamps increase');
  assert.ok(await until(() => processesMentioning(url).length === 0, 4000), 'receiver ffmpeg left behind');
});

test('no unhandled rejections', () => {
  assert.equal(unhandled, []);
});

test.after(() => {
  process.off('unhandledRejection', recordUnhandled);
  rmSync(tmp, { recursive: true, force: true });
});

test.run();
