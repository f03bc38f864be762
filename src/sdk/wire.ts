/**
 * WebSocket messages (docs/protocol.md). `seq` is one counter per server.
 */
import type { Biometry } from '../runtime/types/biometry.js';
import type { Frame, ScreenRegion, ScreenSize, SourceEvent, StageTimings } from '../runtime/types/frames.js';
import type { Alert, ClipOodScore, FrameResult, OodScore, PipelineStats } from '../runtime/types/results.js';

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

/** JSON header of a binary frame message. */
export interface FrameHeader {
  type: 'frame';
  seq: number;
  frame: Omit<Frame, 'data'>;
  /** Which path's result: `frame` (2D) or `clip` (a frame's clip result, its own message, after the frame's 2D one). */
  path: 'frame' | 'clip';
  planes: PlaneDescriptor[];
  ood?: OodScore;
  clipOod?: ClipOodScore;
  /** Head biometry of the frame (docs/protocol.md), with the uncertainty chain and `biometry` on. */
  biometry?: Biometry;
  timings: StageTimings;
  /** As in {@link FrameResult}: where the processed crop lies on the source screen. */
  region?: ScreenRegion;
  screen?: ScreenSize;
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
  | { type: 'error'; seq: number; code: string; message: string };

/** Client -> server messages (JSON text). */
export type ClientMessage = { type: 'subscribe'; streams: string[] };
