/**
 * Head biometry of one frame (`measureBiometry`): the skull ellipse, HC, BPD, OFD and gestational age with
 * credible intervals from the L-FUSION posterior, and whether the measurement can be trusted.
 */

/** An ellipse: centre, semi-axes `a >= b`, `angle` of the `a` axis in radians from +x towards +y (y down). */
export interface Ellipse {
  cx: number;
  cy: number;
  a: number;
  b: number;
  angle: number;
}

/** A measurement's posterior median and the ends of its 95% credible interval. */
export interface Interval {
  median: number;
  low: number;
  high: number;
}

/**
 * `ok`, or why the measurement is not to be trusted: `no-head` (no head-like ellipse in most posterior samples),
 * `ood` (the frame's OOD score is above threshold), `clipped` (too little of the skull inside the image),
 * `uncertain` (the HC interval is wider than allowed).
 */
export type BiometryStatus = 'ok' | 'no-head' | 'ood' | 'clipped' | 'uncertain';

/** HC, BPD (2 b) and OFD (2 a) in `unit`. */
export interface HeadMeasures {
  hc: Interval;
  bpd: Interval;
  ofd: Interval;
  /** Posterior samples that gave a head ellipse, of how many. */
  fitted: number;
  samples: number;
}

export interface Biometry {
  status: BiometryStatus;
  /** `mm` when the pixel spacing is known, else source pixels of the frame. */
  unit: 'mm' | 'px';
  /** mm per source pixel used (null without). */
  spacing: { x: number; y: number } | null;
  /** The posterior-median ellipse in the frame's pixels (null for `no-head`). */
  ellipse: Ellipse | null;
  /** The same in mm (null without a spacing or an ellipse). */
  ellipseMm: Ellipse | null;
  /** RMS distance (frame pixels) of the boundary points kept by the robust fit, median over samples. */
  residual: number | null;
  /** Fraction of the ellipse's outline inside the image. */
  visible: number | null;
  /** Pooled over both paths (null for `no-head`). */
  pooled: HeadMeasures | null;
  /** Per path: Laplace weight samples (each the mean of its logit samples), dropout passes. */
  laplace: HeadMeasures | null;
  dropout: HeadMeasures | null;
  /** Hadlock gestational age (weeks) from the pooled HC; `inRange` false outside the formula's 14-42 weeks. Null without mm. */
  ga: (Interval & { inRange: boolean }) | null;
  /** The scale applied to the raw posterior intervals (manifest `biometry.intervalScale`, 1 when uncalibrated). */
  intervalScale: number;
  /**
   * RMS distance of the head's boundary on the posterior mean from its ellipse, as a fraction of the ellipse's size
   * (geometric mean of the semi-axes): about 0.01-0.03 for a clean skull outline, 0.1 and more for a blob that is not
   * one head. A calibrated interval widens with it. Null when no head component was found.
   */
  outlineResidual: number | null;
}
