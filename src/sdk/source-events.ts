/**
 * Events about a live source's connection, emitted by `reconnecting` between the frames they separate.
 * (To move into types.ts: they cross the WebSocket.)
 */
import type { Frame } from './types.js';

/** A live source stopped (or could not be reached) and a reconnection is scheduled. */
export interface SourceLostEvent {
  type: 'source-lost';
  /** The source as given to the decoder (file, URL or device), when the error named it. */
  source?: string;
  /** `SOURCE_LOST`: it was delivering and stopped; `SOURCE_NOT_FOUND`: the attempt could not open it. */
  code: 'SOURCE_LOST' | 'SOURCE_NOT_FOUND';
  message: string;
  /** ffmpeg's last lines of output, for diagnosing why. */
  stderrTail: string;
  /** 1-based number of the reconnection attempt scheduled: consecutive failures so far. */
  attempt: number;
  /** When that attempt starts, in ms from now. */
  retryInMs: number;
  /** Index of the last frame delivered before the loss; -1 when none ever was. */
  lastIndex: number;
  /** Wall-clock time (ms epoch) of the event. */
  time: number;
}

/** Frames flow again after one or more `source-lost` events. Emitted just before the first of them. */
export interface SourceRestoredEvent {
  type: 'source-restored';
  source?: string;
  /** Reconnection attempts it took. */
  attempts: number;
  /** From the first `source-lost` of this outage to now. */
  downtimeMs: number;
  /** Index of the frame that follows: indices continue across the outage. */
  firstIndex: number;
  time: number;
}

export type SourceEvent = SourceLostEvent | SourceRestoredEvent;

/** Tells a source event from a frame in the stream `reconnecting` emits. */
export function isSourceEvent(value: Frame | SourceEvent): value is SourceEvent {
  return 'type' in value;
}

/** Tells a frame from a source event, e.g. `items$.pipe(filter(isFrame))` for the frames alone. */
export function isFrame(value: Frame | SourceEvent): value is Frame {
  return !isSourceEvent(value);
}
