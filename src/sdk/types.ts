/**
 * Types for every value that crosses a thread or a socket. Each side imports them from here.
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

/**
 * A named 2-D map carried to subscribers, quantised to uint8:
 * `value = min + q * scale` for each byte `q`.
 */
export interface Plane {
  name: string;
  width: number;
  height: number;
  data: Uint8Array;
  min: number;
  scale: number;
}

/** Image-level out-of-distribution score of one frame. */
export interface OodScore {
  score: number;
  threshold: number;
  /** The map the score aggregates, e.g. `fused` or `laplace.mutual_information`. */
  map: string;
  above: boolean;
}

/** Everything the pipeline produced for one frame. */
export interface FrameResult {
  frame: Omit<Frame, 'data'>;
  /** `mask` first (class indices), then `fused` and any per-path maps requested. */
  planes: Plane[];
  ood?: OodScore;
  timings: StageTimings;
}

/** A tensor as it crosses the worker boundary. */
export interface TensorData {
  data: Float32Array;
  dims: number[];
}

/** An OOD alert. `raised` when the score stays above threshold long enough; `cleared` when it stays below. */
export interface Alert {
  kind: 'raised' | 'cleared';
  /** Same id for the `raised` and the `cleared` of one episode. */
  id: number;
  /** First frame index of the episode (the first frame above threshold). */
  startFrame: number;
  /** Last frame index above threshold seen so far (for `cleared`: the episode's last one). */
  endFrame: number;
  peakScore: number;
  peakFrame: number;
  map: string;
  threshold: number;
  /** Wall-clock time (ms epoch) the alert was emitted. */
  time: number;
}

/** Pipeline statistics, emitted periodically. Latencies in ms. */
export interface PipelineStats {
  fpsIn: number;
  fpsOut: number;
  framesIn: number;
  framesOut: number;
  dropped: number;
  latency: Record<string, { p50: number; p90: number; p99: number; max: number; count: number }>;
  time: number;
}
