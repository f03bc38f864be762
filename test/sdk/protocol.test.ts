import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LfusionError } from '../../src/runtime/errors.js';
import { decodeFrameMessage, encodeFrameMessage, parseClientMessage } from '../../src/sdk/protocol.js';
import type { FrameResult, Plane } from '../../src/runtime/types/results.js';
import { HEAD } from '../helpers/head-biometry.js';

function plane(name: string, fill: (i: number) => number, min = 0, scale = 1): Plane {
  return { name, width: 4, height: 3, data: Uint8Array.from({ length: 12 }, (_, i) => fill(i)), min, scale };
}

const result: FrameResult = {
  frame: { index: 7, pts: 0.28, captureTime: 1_700_000_000_000, width: 640, height: 480 },
  planes: [plane('mask', (i) => i % 2), plane('fused', (i) => i * 20, -0.5, 0.01), plane('laplace.mutual_information', (i) => 255 - i)],
  ood: { score: 0.42, threshold: 0.3, map: 'fused', above: true },
  timings: { encoder: 12.5, head: 3.25 },
};

test('a frame message decodes to the header and planes it was encoded from', () => {
  const decoded = decodeFrameMessage(encodeFrameMessage(result, 99));
  assert.is(decoded.header.type, 'frame');
  assert.is(decoded.header.seq, 99);
  assert.equal(decoded.header.frame, result.frame);
  assert.equal(decoded.header.ood, result.ood);
  assert.equal(decoded.header.timings, result.timings);
  assert.equal(
    decoded.planes.map((p) => ({ ...p, data: Array.from(p.data) })),
    result.planes.map((p) => ({ ...p, data: Array.from(p.data) })),
  );
});

test('the header names the path: frame for a 2D result (also when unnamed), clip for a clip result with its window score', () => {
  assert.is(decodeFrameMessage(encodeFrameMessage(result, 1)).header.path, 'frame');
  const clipOod = { score: 0.1, threshold: 0.3, map: 'fused', above: false, window: { first: 0, last: 15 } };
  const clip: FrameResult = { frame: result.frame, path: 'clip', planes: [plane('clip.mask', (i) => i % 2)], clipOod, timings: { 'clip.heads': 900 } };
  const header = decodeFrameMessage(encodeFrameMessage(clip, 2)).header;
  assert.equal([header.path, header.clipOod, header.ood], ['clip', clipOod, undefined]);
});

test('the region and screen of a cropped frame travel in the header; absent ones stay absent', () => {
  const placed: FrameResult = { ...result, region: { x: 560, y: 140, width: 640, height: 480, origin: 'detected' }, screen: { width: 1920, height: 1080 } };
  const decoded = decodeFrameMessage(encodeFrameMessage(placed, 5));
  assert.equal(decoded.header.region, placed.region);
  assert.equal(decoded.header.screen, placed.screen);
  const plain = decodeFrameMessage(encodeFrameMessage(result, 6)).header;
  assert.not.ok('region' in plain || 'screen' in plain);
});

test('a frame\'s biometry travels in the header with every field; without it the field is absent', () => {
  const decoded = decodeFrameMessage(encodeFrameMessage({ ...result, biometry: HEAD }, 8)).header;
  assert.equal(decoded.biometry, HEAD);
  assert.not.ok('biometry' in decodeFrameMessage(encodeFrameMessage(result, 9)).header);
});

test('only the chosen streams are encoded', () => {
  const message = encodeFrameMessage(result, 1, new Set(['fused']));
  const decoded = decodeFrameMessage(message);
  assert.equal(decoded.planes.map((p) => p.name), ['fused']);
  assert.equal(decoded.header.planes[0]!.offset, 0);
  assert.is(message.byteLength, 4 + message.readUInt32LE(0) + 12, 'length prefix + header + one 4x3 plane');
});

test('truncated or corrupt frame messages are PROTOCOL_ERRORs', () => {
  const message = encodeFrameMessage(result, 1);
  const expectProtocolError = (bytes: Uint8Array, pattern: RegExp) => {
    try {
      decodeFrameMessage(bytes);
      assert.unreachable('decoded a bad message');
    } catch (error) {
      assert.instance(error, LfusionError);
      assert.is((error as LfusionError).code, 'PROTOCOL_ERROR');
      assert.match((error as Error).message, pattern);
    }
  };
  expectProtocolError(message.subarray(0, 2), /shorter than its length prefix/);
  expectProtocolError(message.subarray(0, 20), /exceeds/);
  expectProtocolError(message.subarray(0, message.byteLength - 1), /does not fit/);
  const corrupt = Buffer.from(message);
  corrupt[4] = 0x7b + 1;
  expectProtocolError(corrupt, /not JSON/);
});

test('client messages are validated', () => {
  assert.equal(parseClientMessage('{"type":"subscribe","streams":["mask"]}'), { type: 'subscribe', streams: ['mask'] });
  assert.throws(() => parseClientMessage('{"type":'), /not JSON/);
  assert.throws(() => parseClientMessage('{"type":"launch"}'), /unknown message type "launch"/);
  assert.throws(() => parseClientMessage('{"type":"subscribe","streams":"mask"}'), /array of stream names/);
  assert.throws(() => parseClientMessage('null'), /unknown message type/);
});

test.run();
