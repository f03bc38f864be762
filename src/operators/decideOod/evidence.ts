/**
 * Per-frame evidence scores of the fused OOD decision, each oriented so that higher means less like a fetal
 * head scan. The segmentation evidence uses a moment ellipse (the ellipse with the mask's centroid and second
 * moments): enough to tell a head-shaped mask from none or a ragged one; head biometry has its own fit.
 */

import { beamShadow } from './shadow.js';

/** Evidence score names, in the order alerts list them. */
export const EVIDENCE = ['density', 'uncertainty', 'head-area-low', 'head-area-high', 'ellipse-misfit', 'brightness-high', 'brightness-low', 'beam-shadow'] as const;
export type EvidenceName = (typeof EVIDENCE)[number];

/** Below this many mask pixels there is no shape to fit: the misfit is 1. */
const MIN_FIT_PIXELS = 20;

export interface SegmentationEvidence {
  /** Fraction of the frame the head mask covers. */
  area: number;
  /** 1 - IoU of the mask and its moment ellipse (1 with no mask). */
  misfit: number;
  /** Per pixel: inside the moment ellipse (all false with no mask). */
  ellipse: Uint8Array;
}

/** Mask (`meanProb > 0.5`), its area fraction and how far it is from its moment ellipse. */
export function segmentationEvidence(meanProb: Float32Array, width: number, height: number): SegmentationEvidence {
  let count = 0;
  let sx = 0;
  let sy = 0;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (meanProb[i]! > 0.5) {
        count += 1;
        sx += x;
        sy += y;
      }
    }
  }
  const ellipse = new Uint8Array(width * height);
  const area = count / (width * height);
  if (count < MIN_FIT_PIXELS) return { area, misfit: 1, ellipse };
  const cx = sx / count;
  const cy = sy / count;
  let sxx = 0;
  let syy = 0;
  let sxy = 0;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      if (meanProb[i]! > 0.5) {
        sxx += (x - cx) ** 2;
        syy += (y - cy) ** 2;
        sxy += (x - cx) * (y - cy);
      }
    }
  }
  // A uniform ellipse with semi-axes a, b has second moments a^2/4, b^2/4: inside when d^T C^-1 d <= 4.
  const cxx = sxx / count + 1 / 12;
  const cyy = syy / count + 1 / 12;
  const cxy = sxy / count;
  const det = cxx * cyy - cxy * cxy;
  let both = 0;
  let either = 0;
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i++) {
      const dx = x - cx;
      const dy = y - cy;
      const inside = (cyy * dx * dx - 2 * cxy * dx * dy + cxx * dy * dy) / det <= 4;
      const masked = meanProb[i]! > 0.5;
      ellipse[i] = inside ? 1 : 0;
      if (inside && masked) both += 1;
      if (inside || masked) either += 1;
    }
  }
  return { area, misfit: 1 - both / either, ellipse };
}

/** Mean grey level (0..1) of a normalised frame: gain far too high or too low (also per clip window). */
export function brightness(image: Float32Array, normalization: { mean: number; std: number }): number {
  let sum = 0;
  for (let i = 0; i < image.length; i++) sum += image[i]! * normalization.std + normalization.mean;
  return sum / image.length;
}

/** Mean grey level (0..1) of the frame and the fraction of the head (its moment ellipse) in a dark band along the beam ({@link beamShadow}). */
export function acquisitionEvidence(
  image: Float32Array,
  normalization: { mean: number; std: number },
  ellipse: Uint8Array,
  size: { width: number; height: number },
): { brightness: number; shadow: number } {
  // The 8-bit levels the frame had: exactly black stays exactly 0 (no image, for beamShadow).
  const greys = new Float32Array(image.length);
  for (let i = 0; i < image.length; i++) greys[i] = Math.round((image[i]! * normalization.std + normalization.mean) * 255) / 255;
  return { brightness: brightness(image, normalization), shadow: beamShadow(greys, ellipse, size.width, size.height) };
}

/** Every evidence score of one frame. */
export function evidenceScores(
  input: { density?: number; uncertainty: number; meanProb: Float32Array; image: Float32Array },
  size: { width: number; height: number },
  normalization: { mean: number; std: number },
): Partial<Record<EvidenceName, number>> {
  const segmentation = segmentationEvidence(input.meanProb, size.width, size.height);
  const acquisition = acquisitionEvidence(input.image, normalization, segmentation.ellipse, size);
  return {
    ...(input.density === undefined ? {} : { density: input.density }),
    uncertainty: input.uncertainty,
    'head-area-low': -segmentation.area,
    'head-area-high': segmentation.area,
    'ellipse-misfit': segmentation.misfit,
    'brightness-high': acquisition.brightness,
    'brightness-low': -acquisition.brightness,
    'beam-shadow': acquisition.shadow,
  };
}
