import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { firstValueFrom, lastValueFrom, map, takeWhile, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { greyResizer } from '../../src/operators/encodeFrames.js';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { regionIou } from '../../src/operators/ultrasoundRegion.js';
import { LfusionError, ModelError } from '../../src/runtime/errors.js';
import { createPipeline } from '../../src/sdk/pipeline.js';
import { modelInfo, ResultServer } from '../../src/sdk/server.js';
import type { Frame, SourceEvent } from '../../src/runtime/types/frames.js';
import type { FrameResult } from '../../src/runtime/types/results.js';
import type { TextMessage } from '../../src/sdk/wire.js';
import { freePort, startStreamer, stopStreamer } from '../helpers/loopback-stream.js';
import { writeScannerScreenVideo } from '../helpers/scanner-video.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';
import { RecordingClient } from '../helpers/ws-client.js';

const SAMPLE = fileURLToPath(new URL('../../assets/sample.mp4', import.meta.url));
const FRAMES = 340;

test('live: keeps only the newest frame while busy; every frame is either processed or counted as dropped', async () => {
  const pipeline = await createPipeline({
    source: SAMPLE,
    modelPath: TINY_PACKAGE,
    live: true,
    video: { width: 160 },
    pool: { threadsPerWorker: 1 },
    // A deliberately slow analysis, so that decoding outpaces it.
    analysis: () => (encoded$) => encoded$.pipe(map((encoded) => {
      const until = performance.now() + 15;
      while (performance.now() < until);
      const { data: _pixels, ...frame } = encoded.frame;
      return { frame, planes: [], timings: encoded.timings };
    })),
  });
  const indices = await lastValueFrom(pipeline.results$.pipe(map((result) => result.frame.index), toArray()));
  const stats = pipeline.stats.snapshot();
  await pipeline.close();
  assert.ok(indices.every((index, i) => i === 0 || index > indices[i - 1]!), 'results in frame order');
  assert.is(stats.framesIn, FRAMES);
  assert.ok(stats.dropped > 0, 'a slow stage makes the live pipeline drop frames');
  assert.is(stats.framesOut + stats.dropped, FRAMES);
  assert.is(indices.at(-1), FRAMES - 1, 'the newest frame is processed when the source ends');
});

if (shippedPackagePresent('live with both paths (the clip heads)')) {
  test('live with both paths: 2D results keep coming while a window is analysed; the clip result comes on its own', async () => {
    const pipeline = await createPipeline({ source: SAMPLE, live: true, modelPath: SHIPPED_PACKAGE, paths: ['frame', 'clip'], image: true });
    // Up to the first clip result: the first window's analysis (seconds at the package's clip sampling) is under way meanwhile.
    const results = await lastValueFrom(pipeline.results$.pipe(takeWhile((result) => result.path !== 'clip', true), toArray()));
    await pipeline.close();
    const clip = results.at(-1)!;
    assert.is(clip.path, 'clip');
    assert.equal(clip.planes.map((plane) => plane.name), ['image', 'clip.mask', 'clip.fused']);
    const twoD = results.filter((result) => result.path !== 'clip');
    assert.ok(twoD.every((result) => result.planes.every((plane) => !plane.name.startsWith('clip.'))), '2D results carry no clip planes');
    const after = twoD.filter((result) => result.frame.index > clip.clipOod!.window.last);
    assert.ok(after.length > 0, `2D results of frames after the first window (${clip.clipOod!.window.first}..${clip.clipOod!.window.last}) came before its clip result`);
  });
}

test('replay: processes every frame in order; the image plane is the frame the model saw', async () => {
  const pipeline = await createPipeline({ source: SAMPLE, modelPath: TINY_PACKAGE, video: { width: 160 }, pool: { threadsPerWorker: 1 }, image: true });
  assert.is(pipeline.live, false);
  assert.equal(pipeline.streams, ['mask', 'image']);
  const results = await lastValueFrom(pipeline.results$.pipe(toArray()));
  await pipeline.close();
  assert.equal(results.map((result) => result.frame.index), [...Array(FRAMES).keys()]);
  assert.is(pipeline.stats.snapshot().dropped, 0);
  const first = await firstValueFrom(fromVideo(SAMPLE, { width: 160 }));
  const expected = new Uint8Array(224 * 224);
  greyResizer(first.width, first.height, 224, 224)(first.data, expected);
  const image = results[0]!.planes.find((plane) => plane.name === 'image')!;
  assert.equal([image.width, image.height, image.min, image.scale], [224, 224, 0, 1]);
  assert.equal(Array.from(image.data), Array.from(expected));
});

test('an invalid model package fails createPipeline with a ModelError', async () => {
  try {
    await createPipeline({ source: SAMPLE, modelPath: join(TINY_PACKAGE, 'missing') });
    assert.unreachable('created a pipeline without a model');
  } catch (error) {
    assert.instance(error, ModelError);
  }
});

test('a live stream killed and restarted: the pipeline runs on, and WebSocket clients get source lost and restored', async () => {
  const url = `http://127.0.0.1:${await freePort()}/live.ts`;
  let streamer = startStreamer(SAMPLE, url);
  await new Promise((resolve) => setTimeout(resolve, 300)); // let it listen
  const pipeline = await createPipeline({
    source: url,
    modelPath: TINY_PACKAGE,
    video: { width: 160, stallTimeoutMs: 1000, openTimeoutMs: 4000 },
    reconnect: { backoff: { initialMs: 100, factor: 2, maxMs: 400 } },
    pool: { threadsPerWorker: 1 },
  });
  assert.equal([pipeline.live, pipeline.reconnect, pipeline.region], [true, true, true], 'a network source is live, reconnecting, region-detecting by default');
  const server = await ResultServer.listen({ port: 0, model: modelInfo(pipeline.model.manifest), streams: pipeline.streams });
  const client = await RecordingClient.connect(server.url);
  const events: SourceEvent[] = [];
  const eventLog = pipeline.sourceEvents$.subscribe((event) => events.push(event));
  const delivery = server.deliver(pipeline, { statsIntervalMs: 200 });
  let ended: string | undefined;
  delivery.done.then(() => (ended = 'complete'), (error: Error) => (ended = `error ${error.message}`));
  const frameCount = (): number => client.frames().length;
  const sourceMessages = (): Extract<TextMessage, { type: 'source' }>[] => client.texts('source') as Extract<TextMessage, { type: 'source' }>[];
  try {
    await client.until(() => frameCount() >= 5, 15_000);
    await stopStreamer(streamer);
    await client.until(() => sourceMessages().some((m) => m.event.type === 'source-lost'), 5000);
    await new Promise((resolve) => setTimeout(resolve, 600)); // down long enough for failed attempts
    const framesBefore = frameCount();
    streamer = startStreamer(SAMPLE, url);
    await client.until(() => sourceMessages().some((m) => m.event.type === 'source-restored') && frameCount() >= framesBefore + 5, 15_000);
    // A client connecting now learns the source's state from hello.
    const late = await RecordingClient.connect(server.url);
    await late.until(() => late.texts('hello').length === 1);
    const hello = late.texts('hello')[0] as Extract<TextMessage, { type: 'hello' }>;
    assert.is(hello.source?.type, 'source-restored');
    late.close();
    assert.is(ended, undefined, 'the pipeline neither errored nor completed');
  } finally {
    delivery.stop();
    eventLog.unsubscribe();
    client.close();
    await server.close();
    await pipeline.close();
    await stopStreamer(streamer);
  }
  const messages = sourceMessages();
  assert.equal(messages.map((m) => m.event), events, 'every source event reached the client, in order');
  assert.is(messages[0]!.event.type, 'source-lost');
  assert.is(messages.at(-1)!.event.type, 'source-restored');
  const restored = messages.at(-1)!.event as Extract<SourceEvent, { type: 'source-restored' }>;
  const indices = client.frames().map((f) => f.header.frame.index);
  assert.ok(indices.every((index, i) => i === 0 || index > indices[i - 1]!), 'frame indices increase across the outage');
  assert.ok(indices.some((index) => index >= restored.firstIndex), 'frames after the restoration');
  const seqs = client.received.map((r) => r.seq);
  assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), 'seq increases over frames and source messages');
  const lostAt = client.received.findIndex((r) => r.kind === 'text' && r.message.type === 'source');
  assert.ok(client.received.slice(0, lostAt).some((r) => r.kind === 'frame'), 'frames before the loss were delivered');
});

/** The `image` plane a pipeline should produce for `region` of `screen`: the crop, resized as encodeFrames does. */
function expectedImage(screen: Frame, region: { x: number; y: number; width: number; height: number }): Uint8Array {
  const crop = new Uint8Array(region.width * region.height);
  for (let y = 0; y < region.height; y++) crop.set(screen.data.subarray((region.y + y) * screen.width + region.x, (region.y + y) * screen.width + region.x + region.width), y * region.width);
  const out = new Uint8Array(224 * 224);
  greyResizer(region.width, region.height, 224, 224)(crop, out);
  return out;
}

test('a recorded scanner screen: the pipeline finds the ultrasound region, the model sees the crop, results carry region and screen', async () => {
  const layout = { place: { x: 600, y: 260, width: 800, height: 540 }, seed: 3 };
  const dir = await mkdtemp(join(tmpdir(), 'lfusion-screen-'));
  try {
    const { path: video, screens } = await writeScannerScreenVideo(dir, layout, 6);
    const run = async (region: { region?: typeof layout.place }): Promise<FrameResult[]> => {
      const pipeline = await createPipeline({ source: video, modelPath: TINY_PACKAGE, region, image: true, pool: { threadsPerWorker: 1 } });
      assert.equal([pipeline.live, pipeline.reconnect, pipeline.region], [false, false, true]);
      const results = await lastValueFrom(pipeline.results$.pipe(toArray()));
      await pipeline.close();
      return results;
    };

    const detected = await run({});
    assert.is(detected.length, screens.length);
    for (const [i, result] of detected.entries()) {
      const { truth, frame: screen } = screens[i]!;
      const region = result.region!;
      assert.is(region.origin, 'detected');
      assert.ok(regionIou(region, truth) > 0.9, `frame ${i}: IoU ${regionIou(region, truth).toFixed(3)}, found ${JSON.stringify(region)}, truth ${JSON.stringify(truth)}`);
      assert.equal(result.screen, { width: 1920, height: 1080 });
      assert.equal([result.frame.width, result.frame.height], [region.width, region.height], 'the frame the model saw is the crop');
      assert.ok(result.timings.region! >= 0, 'the region stage is timed');
      const image = result.planes.find((plane) => plane.name === 'image')!;
      assert.equal(Array.from(image.data), Array.from(expectedImage(screen, region)), `frame ${i}: the model input is the crop`);
    }

    const manual = await run({ region: layout.place });
    assert.equal(manual.map((r) => r.region), screens.map(() => ({ ...layout.place, origin: 'manual' })));
    const image = manual[2]!.planes.find((plane) => plane.name === 'image')!;
    assert.equal(Array.from(image.data), Array.from(expectedImage(screens[2]!.frame, layout.place)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('files: no region and no reconnection unless asked; reconnect on a replay is an INVALID_OPTION', async () => {
  const pipeline = await createPipeline({ source: SAMPLE, modelPath: TINY_PACKAGE, video: { realtime: true }, pool: { threadsPerWorker: 1 } });
  assert.equal([pipeline.live, pipeline.reconnect, pipeline.region], [true, false, false]);
  await pipeline.close();
  for (const options of [{ reconnect: {} }, { live: true, reconnect: { backoff: { initialMs: -1 } } }, { region: { redetectEvery: 0 } }]) {
    try {
      await createPipeline({ source: SAMPLE, modelPath: TINY_PACKAGE, ...options });
      assert.unreachable(`created a pipeline with ${JSON.stringify(options)}`);
    } catch (error) {
      assert.instance(error, LfusionError);
      assert.is((error as LfusionError).code, 'INVALID_OPTION', (error as Error).message);
    }
  }
});

test.run();
