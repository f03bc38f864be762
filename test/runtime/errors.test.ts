import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LfusionError, SourceError } from '../../src/runtime/errors.js';

test('SourceError carries its code, source and ffmpeg stderr tail', () => {
  const error = new SourceError('DECODE_FAILED', 'decode failed', 'clip.mp4', 'moov atom not found');
  assert.instance(error, LfusionError);
  assert.is(error.code, 'DECODE_FAILED');
  assert.is(error.name, 'SourceError');
  assert.is(error.context.stderrTail, 'moov atom not found');
});

test.run();
