/**
 * What the pipeline delivers per frame and over time: planes, OOD scores, alerts, statistics.
 */
import type { Biometry } from './biometry.js';
import type { Frame, ScreenRegion, ScreenSize, StageTimings } from './frames.js';
import type { OodReasonName } from './model.js';

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
  /** With a fused decision (manifest `oodDecision`): true when any evidence fired, else `score > threshold`. */
  above: boolean;
  /** Every evidence score of the fused decision (`density`, `uncertainty`, `head-area-low`, ...), fired or not. */
  evidence?: Record<string, number>;
  /** The evidence that fired, each with its reason, score and threshold; empty when none did. */
  reasons?: OodReason[];
}

/** One piece of evidence that made the fused OOD decision fire. */
export interface OodReason {
  reason: OodReasonName;
  /** The evidence score's name, e.g. `density` (for `wrong-anatomy`) or `head-area-low` (for `no-head`). */
  evidence: string;
  score: number;
  threshold: number;
}

/** The clip path's OOD score of the window a frame's clip result came from (frame indices `first..last`). */
export interface ClipOodScore extends OodScore {
  window: { first: number; last: number };
}

/** What one analysis path produced for one frame. */
export interface FrameResult {
  frame: Omit<Frame, 'data'>;
  /**
   * Which path: `frame` (2D heads; also when absent) or `clip`. A frame's clip result is an item of its own,
   * delivered when the last window containing the frame is done, after the frame's 2D result.
   */
  path?: 'frame' | 'clip';
  /** `mask` first (class indices), then `fused` and any per-path maps requested; on the clip path `clip.*`. */
  planes: Plane[];
  ood?: OodScore;
  /** On the clip path: the OOD score of the last window containing the frame. */
  clipOod?: ClipOodScore;
  /** Head biometry (ellipse, HC/BPD/OFD/GA with credible intervals, status), with the uncertainty chain. */
  biometry?: Biometry;
  timings: StageTimings;
  /**
   * Where `frame` (the crop the model saw) lies on the source screen, when the pipeline cut the frame to its
   * ultrasound region. A plane pixel `(x, y)` of a `W x H` plane lies at screen
   * `(region.x + x * region.width / W, region.y + y * region.height / H)`.
   */
  region?: ScreenRegion;
  /** Size of the source screen (the full decoded frame), with `region`. */
  screen?: ScreenSize;
}

/** An OOD alert. `raised` when the score stays above threshold long enough; `cleared` when it stays below. */
export interface Alert {
  kind: 'raised' | 'cleared';
  /** Which path's scores raised it: `frame` (2D, counts frames) or `clip` (counts windows). */
  path: 'frame' | 'clip';
  /** Same id for the `raised` and the `cleared` of one episode (ids count per path). */
  id: number;
  /** First frame index of the episode (the first frame above threshold). */
  startFrame: number;
  /** Last frame index above threshold seen so far (for `cleared`: the episode's last one). */
  endFrame: number;
  peakScore: number;
  peakFrame: number;
  map: string;
  threshold: number;
  /** With a fused decision: the evidence that fired during the episode, the highest score of each. */
  reasons?: OodReason[];
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
