/** The pipeline's clip path end to end, with the shipped package's clip heads. */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromVideo } from '../../src/operators/fromVideo.js';
import type { LfusionError } from '../../src/runtime/errors.js';
import { createPipeline } from '../../src/sdk/pipeline.js';
import type { Alert, FrameResult } from '../../src/runtime/types/results.js';
import { writeGreyVideo } from '../helpers/scanner-video.js';
import { SHIPPED_PACKAGE } from '../helpers/shipped-package.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

const SAMPLE = fileURLToPath(new URL('../../assets/sample.mp4', import.meta.url));
const FRAMES = 20;
const ONE_SAMPLE = { m: 1, n: 1, k: 1 };
let dir: string;
let video: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lfusion-clip-'));
  video = join(dir, 'short.mkv');
  await writeGreyVideo(video, await lastValueFrom(fromVideo(SAMPLE, { width: 224, height: 224 }).pipe(take(FRAMES), toArray())));
});
test.after(() => rm(dir, { recursive: true, force: true }));

const planeNames = (result: FrameResult) => result.planes.map((plane) => plane.name);

test('both paths: every frame\'s 2D result at once and its clip result as an item of its own, each path in frame order', async () => {
  const pipeline = await createPipeline({
    source: video,
    modelPath: SHIPPED_PACKAGE,
    analysis: 'uncertainty',
    uncertainty: ONE_SAMPLE,
    paths: ['frame', 'clip'],
    clip: { uncertainty: { ...ONE_SAMPLE, planes: ['laplace.mutual_information'] } },
    pool: { threadsPerWorker: 1 },
  });
  const clip = pipeline.model.manifest.clip!;
  assert.ok(clip, 'the shipped package has clip heads');
  assert.equal(pipeline.streams, ['mask', 'fused', 'clip.mask', 'clip.fused', 'clip.laplace.mutual_information']);
  const alerts: Alert[] = [];
  pipeline.alerts$.subscribe((alert) => alerts.push(alert));
  const results = await lastValueFrom(pipeline.results$.pipe(toArray()));
  await pipeline.close();
  const twoD = results.filter((r) => r.path !== 'clip');
  const clipResults = results.filter((r) => r.path === 'clip');
  assert.equal(twoD.map((r) => r.frame.index), [...Array(FRAMES).keys()]);
  assert.equal(clipResults.map((r) => r.frame.index), [...Array(FRAMES).keys()]);
  for (const result of twoD) {
    assert.equal(planeNames(result), ['mask', 'fused']);
    assert.ok(result.ood && !result.clipOod, 'the 2D score only');
  }
  for (const result of clipResults) {
    assert.equal(planeNames(result), ['clip.mask', 'clip.fused', 'clip.laplace.mutual_information']);
    const mask = result.planes[0]!;
    assert.equal([mask.width, mask.height], [clip.outputSize, clip.outputSize]);
    assert.ok(mask.data.every((q) => q === 0 || q === 1), 'clip.mask holds class indices');
    assert.ok(result.clipOod && !result.ood, 'the window score only');
    assert.is(result.clipOod.map, clip.ood.map);
  }
  // The first clip result needs the window [0, 16): every 2D result of its frames came before it, not with it.
  const firstClip = results.findIndex((r) => r.path === 'clip');
  assert.ok(results.slice(0, firstClip).filter((r) => r.path !== 'clip').length >= 16, 'the 2D results of the first window were delivered before its clip results');
  // Windows of 16 every 8 frames; the stream's end shifts the last one back to [4, 20).
  const windows = clipResults.map((r) => `${r.clipOod!.window.first}-${r.clipOod!.window.last}`);
  assert.equal(windows, [...Array(4).fill('0-15'), ...Array(16).fill('4-19')]);
  assert.ok(alerts.every((alert) => alert.path === 'frame' || alert.path === 'clip'));
  const stats = pipeline.stats.snapshot();
  assert.equal([stats.framesOut, stats.dropped], [FRAMES, 0], 'frames out counts the frame path\'s results');
  assert.is(stats.latency['clip.total']?.count, FRAMES, 'the clip results\' latency apart');
});

test('the clip path alone, aligned: only clip planes (and the image asked for) and the head biometry, mapped back onto each frame', async () => {
  const pipeline = await createPipeline({
    source: video,
    modelPath: SHIPPED_PACKAGE,
    paths: ['clip'],
    image: true,
    clip: { align: true, stride: 16, uncertainty: { ...ONE_SAMPLE, biometry: { pixelSpacing: { x: 0.2, y: 0.2 } } } },
    pool: { threadsPerWorker: 1 },
  });
  assert.equal(pipeline.streams, ['image', 'clip.mask', 'clip.fused']);
  const results = await lastValueFrom(pipeline.results$.pipe(toArray()));
  await pipeline.close();
  assert.equal(results.map((r) => r.frame.index), [...Array(FRAMES).keys()]);
  for (const result of results) {
    assert.equal(planeNames(result), ['image', 'clip.mask', 'clip.fused']);
    assert.is(result.path, 'clip');
    assert.is(result.ood, undefined, 'no 2D score without the frame path');
    const { biometry } = result;
    assert.ok(biometry && biometry.unit === 'mm', `frame ${result.frame.index}: a biometry in mm`);
    if (biometry.ellipse) {
      const { cx, cy } = biometry.ellipse;
      assert.ok(cx >= 0 && cx < result.frame.width && cy >= 0 && cy < result.frame.height, `frame ${result.frame.index}: the head centre (${cx}, ${cy}) on the frame`);
    }
  }
  assert.ok(results.some((r) => r.biometry?.pooled), 'the sample\'s head is measured');
});

test('a truncated recording: every decoded frame gets its clip result, then the decode error', async () => {
  const truncated = join(dir, 'truncated.mp4');
  await writeFile(truncated, (await readFile(SAMPLE)).subarray(0, 60_000));
  const decoded = await new Promise<number[]>((resolve) => {
    const seen: number[] = [];
    fromVideo(truncated).subscribe({ next: (frame) => seen.push(frame.index), error: () => resolve(seen), complete: () => resolve(seen) });
  });
  const pipeline = await createPipeline({ source: truncated, modelPath: SHIPPED_PACKAGE, paths: ['clip'], clip: { uncertainty: ONE_SAMPLE }, pool: { threadsPerWorker: 1 } });
  const results: FrameResult[] = [];
  const error = await new Promise<LfusionError | undefined>((resolve) => pipeline.results$.subscribe({ next: (r) => results.push(r), error: resolve, complete: () => resolve(undefined) }));
  await pipeline.close();
  assert.is(error?.code, 'DECODE_FAILED');
  assert.ok(decoded.length > 16, `${decoded.length} frames decode: more than one window`);
  assert.equal(results.map((r) => r.frame.index), decoded, 'one clip result per decoded frame, in order, before the error');
});

test('bad clip options are INVALID_OPTION before anything runs', async () => {
  const code = (promise: Promise<unknown>) => promise.then(() => 'resolved', (error: LfusionError) => error.code);
  assert.is(await code(createPipeline({ source: video, modelPath: TINY_PACKAGE, paths: ['clip'] })), 'INVALID_OPTION', 'a package without clip heads');
  assert.is(await code(createPipeline({ source: video, modelPath: SHIPPED_PACKAGE, paths: [] })), 'INVALID_OPTION');
  assert.is(await code(createPipeline({ source: video, modelPath: SHIPPED_PACKAGE, paths: ['clip'], clip: { stride: 17 } })), 'INVALID_OPTION', 'a stride beyond the window');
});

test.run();
