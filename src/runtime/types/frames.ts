/**
 * Frames as they flow from the source to the encoder: decoded, cut to the ultrasound region, aligned, windowed; and the live source's events between them.
 */

/** A decoded video frame, 8-bit grey. */
export interface Frame {
  /** 0-based index in the source, counting every decoded frame (dropped ones included). */
  index: number;
  /** Presentation timestamp in seconds, from the source's own clock. */
  pts: number;
  /** Wall-clock time (ms since the epoch) when the frame left the decoder. */
  captureTime: number;
  width: number;
  height: number;
  /** `width * height` grey pixels, row-major. */
  data: Uint8Array;
}

/** Milliseconds spent per named pipeline stage for one frame. */
export type StageTimings = Record<string, number>;

/** A frame after the encoder (one encoder run per frame, whatever the sample counts). */
export interface EncodedFrame {
  frame: Frame;
  /** Normalised model input `[1, 1, 224, 224]`. */
  image: Float32Array;
  /** Encoder output `[1, F, 14, 14]`. */
  features: Float32Array;
  timings: StageTimings;
}

/** A rectangle in screen pixels: the ultrasound image inside the scanner's full frame. */
export interface Region {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Width and height in pixels of a full source frame (the scanner's screen). */
export interface ScreenSize {
  width: number;
  height: number;
}

/**
 * A region as applied to one frame. `origin`: `manual` (configured), `detected` (found in the image), or
 * `full-frame` (detection found nothing yet: the frame passed whole, and the region is the whole screen).
 */
export interface ScreenRegion extends Region {
  origin: 'manual' | 'detected' | 'full-frame';
}

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

/** What `reconnecting` reports about a live source between the frames, and `source` messages carry. */
export type SourceEvent = SourceLostEvent | SourceRestoredEvent;

/**
 * A similarity transform from a frame's pixel coordinates to its reference's, about the image centre
 * `c = ((width - 1) / 2, (height - 1) / 2)` (pixel centres at integer coordinates):
 * `p_reference = scale * R(rotation) * (p - c) + c + (tx, ty)`.
 */
export interface SimilarityTransform {
  scale: number;
  /** Radians, positive from +x towards +y (clockwise on screen, y pointing down). */
  rotation: number;
  /** Translation in pixels of the frame's centre. */
  tx: number;
  ty: number;
  /** The same map as a row-major 2x3 affine matrix `[a, b, c, d, e, f]`: `x' = a x + b y + c`, `y' = d x + e y + f`. */
  matrix: readonly [number, number, number, number, number, number];
}

/** A frame after `alignFrames`. */
export interface AlignedFrame {
  /** The frame resampled onto its reference's geometry (same size, index and timestamps as the source frame). */
  frame: Frame;
  /** The source frame as decoded, for overlays in its own geometry. */
  original: Frame;
  /** Source frame -> reference coordinates; the identity when the estimate was rejected (`quality < minQuality`). */
  transform: SimilarityTransform;
  /** `index` of the reference frame. */
  referenceIndex: number;
  /**
   * Normalised cross-correlation of the aligned, smoothed frame with the reference over their overlap, times
   * `min(1, overlap / 0.5)`: 0 (nothing in common) to 1 (identical up to the transform).
   */
  quality: number;
  /** Whether `transform` is the estimate (`quality >= minQuality`) rather than the identity fallback. */
  aligned: boolean;
}

/** A window of consecutive encoded frames from `windowClips`. */
export interface ClipWindow {
  frames: Frame[];
  /** One entry per frame, the same `EncodedFrame` objects for every window sharing a frame (encoded once). */
  features: EncodedFrame[];
  /**
   * Positions `[start, end)` of the window in the stream of frames the operator processed (0-based,
   * `end - start === frames.length`): the frame indices when no frame was dropped before it.
   */
  start: number;
  end: number;
  /** Fewer than `length` frames: the stream ended first (see `WindowClipsOptions.end`). */
  partial: boolean;
}
