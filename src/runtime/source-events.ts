/**
 * Telling the events `reconnecting` emits between frames from the frames. The event types live in `types.ts`
 * (they cross the WebSocket) and are re-exported here for the operator's users.
 */
import type { Frame, SourceEvent } from './types/frames.js';

export type { SourceEvent, SourceLostEvent, SourceRestoredEvent } from './types/frames.js';

/** Tells a source event from a frame in the stream `reconnecting` emits. */
export function isSourceEvent(value: Frame | SourceEvent): value is SourceEvent {
  return 'type' in value;
}

/** Tells a frame from a source event, e.g. `items$.pipe(filter(isFrame))` for the frames alone. */
export function isFrame(value: Frame | SourceEvent): value is Frame {
  return !isSourceEvent(value);
}
