/**
 * WebSocket messages (docs/protocol.md). `seq` is one counter per server.
 */
import type { SourceEvent } from '../runtime/types/frames.js';
import type { BestPlane } from '../operators/suggestBestPlane.js';
import type { Alert, FrameResult, PipelineStats } from '../runtime/types/results.js';

/** Where a plane's bytes lie in the body of a binary frame message. */
export interface PlaneDescriptor {
  name: string;
  width: number;
  height: number;
  min: number;
  scale: number;
  /** Byte offset from the start of the body (the first byte after the JSON header). */
  offset: number;
  length: number;
}

/**
 * JSON header of a binary frame message: the {@link FrameResult} with its planes described (their bytes follow in
 * the body) and `path` always present.
 */
export interface FrameHeader extends Omit<FrameResult, 'planes' | 'path'> {
  type: 'frame';
  seq: number;
  /** Which path's result: `frame` (2D) or `clip` (a frame's clip result, its own message, after the frame's 2D one). */
  path: 'frame' | 'clip';
  planes: PlaneDescriptor[];
}

/** Model facts a client needs, sent in `hello`. */
export interface ModelInfo {
  name: string;
  classes: string[];
  input: { width: number; height: number };
}

/** Server -> client text messages (JSON). */
export type TextMessage =
  | {
      type: 'hello';
      seq: number;
      protocol: 1;
      model: ModelInfo;
      streams: string[];
      subscribed: string[];
      time: number;
      /** The latest source event, i.e. the source's current state; absent while none has happened (all well since start). */
      source?: SourceEvent;
    }
  | { type: 'subscribed'; seq: number; streams: string[] }
  | { type: 'stats'; seq: number; stats: PipelineStats }
  | { type: 'alert'; seq: number; alert: Alert }
  | { type: 'source'; seq: number; event: SourceEvent }
  /** The frame just sent is the best head plane of the last few seconds (`suggestBestPlane`): "freeze now". */
  | { type: 'best-plane'; seq: number; best: BestPlane }
  | { type: 'error'; seq: number; code: string; message: string };

/** Client -> server messages (JSON text). */
export type ClientMessage = { type: 'subscribe'; streams: string[] };
