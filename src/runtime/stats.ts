/**
 * Pipeline statistics: frame rates in and out, drops, and per-stage latency percentiles over a sliding
 * window, read as an Observable of `PipelineStats`.
 */
import { interval, map, type Observable } from 'rxjs';
import type { FrameResult, PipelineStats } from './types/results.js';

/** Options of {@link StatsRecorder}. */
export interface StatsOptions {
  /** Latency samples kept per stage for the percentiles. Default 512. */
  latencySamples?: number;
  /** Time window of the frame rates, in ms. Default 2000. */
  rateWindowMs?: number;
  /** Clock in ms (tests pass a fake). Default `Date.now`. */
  now?: () => number;
}

/** A fixed-size ring of the most recent samples. */
class Ring {
  private readonly values: Float64Array;
  private size = 0;
  private next = 0;
  total = 0;

  constructor(capacity: number) {
    this.values = new Float64Array(capacity);
  }

  push(value: number): void {
    this.values[this.next] = value;
    this.next = (this.next + 1) % this.values.length;
    this.size = Math.min(this.size + 1, this.values.length);
    this.total += 1;
  }

  sorted(): Float64Array {
    return this.values.slice(0, this.size).sort();
  }
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Event times within the rate window, for a frames-per-second estimate. */
class RateMeter {
  private readonly times: number[] = [];
  count = 0;

  constructor(
    private readonly windowMs: number,
    private readonly started: number,
  ) {}

  mark(now: number): void {
    this.times.push(now);
    this.count += 1;
    this.prune(now);
  }

  perSecond(now: number): number {
    this.prune(now);
    const span = Math.min(this.windowMs, now - this.started);
    return span > 0 ? (this.times.length * 1000) / span : 0;
  }

  private prune(now: number): void {
    while (this.times.length > 0 && this.times[0]! <= now - this.windowMs) this.times.shift();
  }
}

/**
 * Collects what the pipeline does: frames in (`frameIn`), frames dropped (`dropped`), results out with their
 * stage timings (`frameOut`). The end-to-end latency `total` is capture time to result.
 *
 * @example
 * const stats = new StatsRecorder();
 * frames$.pipe(tap(() => stats.frameIn()), keepLatest(process, { onDrop: () => stats.dropped() }), tap((r) => stats.frameOut(r)));
 * stats.stats$(1000).subscribe((s) => console.log(`${s.fpsOut.toFixed(1)} fps, p90 ${s.latency.total?.p90} ms`));
 */
export class StatsRecorder {
  private readonly now: () => number;
  private readonly samples: number;
  private readonly latencies = new Map<string, Ring>();
  private readonly framesIn: RateMeter;
  private readonly framesOut: RateMeter;
  private drops = 0;

  constructor(options: StatsOptions = {}) {
    this.now = options.now ?? Date.now;
    this.samples = options.latencySamples ?? 512;
    const started = this.now();
    this.framesIn = new RateMeter(options.rateWindowMs ?? 2000, started);
    this.framesOut = new RateMeter(options.rateWindowMs ?? 2000, started);
  }

  /** A frame left the source. */
  frameIn(): void {
    this.framesIn.mark(this.now());
  }

  /** `count` frames were dropped before processing. */
  dropped(count = 1): void {
    this.drops += count;
  }

  /** A result came out: records its stage timings and the latency since capture (`total`). */
  frameOut(result: FrameResult): void {
    const now = this.now();
    this.framesOut.mark(now);
    for (const [stage, ms] of Object.entries(result.timings)) this.record(stage, ms);
    this.record('total', now - result.frame.captureTime);
  }

  /**
   * Records a clip result delivered besides the frame's 2D result: its stage timings and its latency `clip.total`
   * (capture time to result), without counting it as a frame out.
   */
  clipOut(result: FrameResult): void {
    for (const [stage, ms] of Object.entries(result.timings)) this.record(stage, ms);
    this.record('clip.total', this.now() - result.frame.captureTime);
  }

  /** Records one latency sample of a named stage, in ms. */
  record(stage: string, ms: number): void {
    let ring = this.latencies.get(stage);
    if (!ring) this.latencies.set(stage, (ring = new Ring(this.samples)));
    ring.push(ms);
  }

  /** The statistics now. */
  snapshot(): PipelineStats {
    const now = this.now();
    const latency: PipelineStats['latency'] = {};
    for (const [stage, ring] of this.latencies) {
      const sorted = ring.sorted();
      latency[stage] = { p50: percentile(sorted, 0.5), p90: percentile(sorted, 0.9), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? 0, count: ring.total };
    }
    return {
      fpsIn: this.framesIn.perSecond(now),
      fpsOut: this.framesOut.perSecond(now),
      framesIn: this.framesIn.count,
      framesOut: this.framesOut.count,
      dropped: this.drops,
      latency,
      time: now,
    };
  }

  /** A snapshot every `periodMs` milliseconds. */
  stats$(periodMs = 1000): Observable<PipelineStats> {
    return interval(periodMs).pipe(map(() => this.snapshot()));
  }
}
