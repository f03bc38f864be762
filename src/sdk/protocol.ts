/**
 * The wire format of the WebSocket delivery (docs/protocol.md). Frame results are binary:
 * `[u32 LE header length][UTF-8 JSON FrameHeader][plane bytes...]`; everything else is JSON text.
 * Both the server and TypeScript clients use these functions.
 */
import { LfusionError } from '../runtime/errors.js';
import type { FrameResult, Plane } from '../runtime/types/results.js';
import type { ClientMessage, FrameHeader, PlaneDescriptor, TextMessage } from './wire.js';

export const PROTOCOL_VERSION = 1;
const LENGTH_BYTES = 4;

/**
 * Encodes a frame result as one binary message, carrying only the planes named in `streams`
 * (all planes when `streams` is omitted).
 */
export function encodeFrameMessage(result: FrameResult, seq: number, streams?: ReadonlySet<string>): Buffer {
  const planes = streams ? result.planes.filter((plane) => streams.has(plane.name)) : result.planes;
  let offset = 0;
  const descriptors: PlaneDescriptor[] = planes.map(({ name, width, height, min, scale, data }) => {
    const descriptor = { name, width, height, min, scale, offset, length: data.byteLength };
    offset += data.byteLength;
    return descriptor;
  });
  const header: FrameHeader = {
    type: 'frame',
    seq,
    frame: result.frame,
    path: result.path ?? 'frame',
    planes: descriptors,
    ...(result.ood ? { ood: result.ood } : {}),
    ...(result.clipOod ? { clipOod: result.clipOod } : {}),
    ...(result.biometry ? { biometry: result.biometry } : {}),
    timings: result.timings,
    ...(result.region ? { region: result.region } : {}),
    ...(result.screen ? { screen: result.screen } : {}),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const message = Buffer.allocUnsafe(LENGTH_BYTES + json.length + offset);
  message.writeUInt32LE(json.length, 0);
  json.copy(message, LENGTH_BYTES);
  let at = LENGTH_BYTES + json.length;
  for (const plane of planes) {
    message.set(plane.data, at);
    at += plane.data.byteLength;
  }
  return message;
}

/** A decoded binary frame message: the header and the planes (views into the message, not copies). */
export interface DecodedFrame {
  header: FrameHeader;
  planes: Plane[];
}

function protocolError(message: string): LfusionError {
  return new LfusionError('PROTOCOL_ERROR', message);
}

/**
 * Decodes a binary frame message.
 * @throws LfusionError `PROTOCOL_ERROR` for a truncated message, a bad header or planes outside the body.
 */
export function decodeFrameMessage(message: Uint8Array): DecodedFrame {
  if (message.byteLength < LENGTH_BYTES) throw protocolError(`frame message of ${message.byteLength} bytes is shorter than its length prefix`);
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const headerLength = view.getUint32(0, true);
  const bodyStart = LENGTH_BYTES + headerLength;
  if (bodyStart > message.byteLength) throw protocolError(`frame header of ${headerLength} bytes exceeds the ${message.byteLength}-byte message`);
  let header: FrameHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(message.subarray(LENGTH_BYTES, bodyStart))) as FrameHeader;
  } catch (cause) {
    throw protocolError(`frame header is not JSON: ${(cause as Error).message}`);
  }
  if (header?.type !== 'frame' || !Number.isInteger(header.seq) || !Array.isArray(header.planes)) throw protocolError('frame header lacks type "frame", seq or planes');
  const bodyLength = message.byteLength - bodyStart;
  const planes = header.planes.map(({ name, width, height, min, scale, offset, length }) => {
    if (!(offset >= 0 && length === width * height && offset + length <= bodyLength)) {
      throw protocolError(`plane "${name}" (${width}x${height} at ${offset}+${length}) does not fit the ${bodyLength}-byte body`);
    }
    return { name, width, height, min, scale, data: message.subarray(bodyStart + offset, bodyStart + offset + length) };
  });
  return { header, planes };
}

/** Serialises a text message (JSON). */
export function encodeTextMessage(message: TextMessage): string {
  return JSON.stringify(message);
}

/**
 * Parses and validates a client's text message.
 * @throws LfusionError `PROTOCOL_ERROR` saying what is wrong.
 */
export function parseClientMessage(text: string): ClientMessage {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch (cause) {
    throw protocolError(`message is not JSON: ${(cause as Error).message}`);
  }
  const candidate = message as Partial<ClientMessage> | null;
  if (typeof candidate !== 'object' || candidate === null || candidate.type !== 'subscribe') {
    throw protocolError(`unknown message type ${JSON.stringify(candidate?.type)?.slice(0, 64)}; expected "subscribe"`);
  }
  if (!Array.isArray(candidate.streams) || !candidate.streams.every((name) => typeof name === 'string')) {
    throw protocolError('"subscribe" needs "streams": an array of stream names');
  }
  return { type: 'subscribe', streams: candidate.streams };
}
