import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCommandLine, pipelineOptions } from '../../src/sdk/cli/args.js';

test("--mode chooses the sampling mode of the uncertainty chain; without it the command's default", () => {
  const values = (args: string[]) => parseCommandLine(['serve', 'video.mp4', ...args]).values;
  for (const mode of ['live', 'exact'] as const) {
    assert.is(pipelineOptions('video.mp4', values(['--uncertainty', '--mode', 'live']), mode).uncertainty?.mode, 'live');
    assert.is(pipelineOptions('video.mp4', values(['--uncertainty', '--mode', 'exact']), mode).uncertainty?.mode, 'exact');
    assert.is(pipelineOptions('video.mp4', values(['--uncertainty']), mode).uncertainty?.mode, mode);
  }
  assert.throws(() => pipelineOptions('video.mp4', values(['--uncertainty', '--mode', 'fast']), 'live'), /--mode must be live or exact/);
  assert.throws(() => pipelineOptions('video.mp4', values(['--mode', 'live']), 'live'), /--mode needs --uncertainty/);
});

test('--biometry measures on each path asked for: the frame path with --uncertainty, the clip path on its own', () => {
  const values = (args: string[]) => parseCommandLine(['serve', 'video.mp4', ...args]).values;
  const clipOnly = pipelineOptions('video.mp4', values(['--paths', 'clip', '--biometry', '--pixel-spacing', '0.2']), 'live');
  assert.equal(clipOnly.clip?.uncertainty?.biometry, { pixelSpacing: { x: 0.2, y: 0.2 } });
  assert.is(clipOnly.uncertainty?.biometry, undefined, 'the frame path runs no uncertainty chain here');
  const both = pipelineOptions('video.mp4', values(['--paths', 'frame,clip', '--uncertainty', '--biometry']), 'live');
  assert.is(both.uncertainty?.biometry, true);
  assert.is(both.clip?.uncertainty?.biometry, true);
  assert.throws(() => pipelineOptions('video.mp4', values(['--biometry']), 'live'), /--biometry needs --uncertainty \(or the clip path\)/);
});

test.run();
