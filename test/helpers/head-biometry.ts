import type { Biometry, HeadMeasures } from '../../src/runtime/types/biometry.js';

const POOLED: HeadMeasures = { hc: { median: 175.2, low: 171.4, high: 179.9 }, bpd: { median: 48, low: 47, high: 49 }, ofd: { median: 64, low: 63, high: 65 }, fitted: 20, samples: 20 };

/**
 * A head measured `ok` on a 640x480 frame at 0.16 mm per pixel: ellipse centred (a = 200, b = 150 px), HC 175.2 mm
 * (171.4-179.9), BPD 48, OFD 64, GA 20.0 weeks, each path half of the 20 samples.
 */
export const HEAD: Biometry = {
  status: 'ok',
  unit: 'mm',
  spacing: { x: 0.16, y: 0.16 },
  ellipse: { cx: 320, cy: 240, a: 200, b: 150, angle: 0 },
  ellipseMm: { cx: 51.2, cy: 38.4, a: 32, b: 24, angle: 0 },
  residual: 1,
  visible: 1,
  pooled: POOLED,
  laplace: { ...POOLED, fitted: 10, samples: 10 },
  dropout: { ...POOLED, fitted: 10, samples: 10 },
  ga: { median: 20.0, low: 19.7, high: 20.5, inRange: true },
  intervalScale: 1,
  outlineResidual: 0.02,
};
