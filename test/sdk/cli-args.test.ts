import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCommandLine, pipelineOptions } from '../../src/sdk/cli/args.js';

test('--mode chooses the sampling mode of the uncertainty chain; exact without it', () => {
  const values = (args: string[]) => parseCommandLine(['serve', 'video.mp4', ...args]).values;
  assert.is(pipelineOptions('video.mp4', values(['--uncertainty', '--mode', 'live'])).uncertainty?.mode, 'live');
  assert.is(pipelineOptions('video.mp4', values(['--uncertainty', '--mode', 'exact'])).uncertainty?.mode, 'exact');
  assert.is(pipelineOptions('video.mp4', values(['--uncertainty'])).uncertainty?.mode, 'exact');
  assert.throws(() => pipelineOptions('video.mp4', values(['--uncertainty', '--mode', 'fast'])), /--mode must be live or exact/);
  assert.throws(() => pipelineOptions('video.mp4', values(['--mode', 'live'])), /--mode needs --uncertainty/);
});

test.run();
