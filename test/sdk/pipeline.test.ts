import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { firstValueFrom, lastValueFrom, map, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { greyResizer } from '../../src/operators/encodeFrames.js';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { ModelError } from '../../src/sdk/errors.js';
import { createPipeline } from '../../src/sdk/pipeline.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

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

test.run();
