import { defer, map, type OperatorFunction } from 'rxjs';
import { LfusionError, ShapeError } from '../runtime/errors.js';
import type { AlignedFrame, Frame } from '../runtime/types/frames.js';
import { describe, type Affine } from './alignFrames/affine.js';
import { checkFrame, estimate, makeReference } from './alignFrames/estimate.js';
import { alignKernels, type KernelChoice } from './alignFrames/kernels.js';
import { resampleFrame } from './alignFrames/warp.js';

export interface AlignFramesOptions {
  /** A fixed reference frame. Default: the first frame received (and later keyframes, see `rekeyAfter`). */
  reference?: Frame;
  /** `similarity` (default): scale, rotation, translation. `rigid`: scale fixed at 1. */
  model?: 'similarity' | 'rigid';
  /** Estimates below this quality are rejected: the frame passes unaligned with the identity. Default 0.4. */
  minQuality?: number;
  /**
   * After this many consecutive rejected frames the view has changed for good, and the current frame becomes the
   * reference (a keyframe). Default 8; `Infinity` keeps the first reference. Ignored with a fixed `reference`.
   */
  rekeyAfter?: number;
  /**
   * The per-pixel kernels: `auto` (default) the native addon where it was built at install (`native/`), else
   * JavaScript; `javascript` or `native` to force one (`native` without the addon throws `INVALID_OPTION`).
   * Both give bit-identical results; native is faster (docs/decisions.md).
   */
  kernels?: KernelChoice;
}

const DEFAULTS = { model: 'similarity', minQuality: 0.4, rekeyAfter: 8, kernels: 'auto' } as const;
const IDENTITY: Affine = [1, 0, 0, 0, 1, 0];

/**
 * Aligns each grey frame to a reference frame with a similarity (or rigid) transform, so that a clip of a
 * moving probe reaches the 3D head as if the probe had held still; the transform travels on so that masks
 * computed on the aligned frames can be drawn on the frames as shown (see {@link warpToOriginal}).
 *
 * The estimate is global, then local: Fourier–Mellin on a 128x128 grid of the speckle-smoothed frame (any
 * rotation, scale 0.5-2, shifts up to half the frame), then inverse-compositional Gauss–Newton on the smoothed
 * intensities (up to 256 pixels a side) for sub-pixel precision. Its quality is the normalised cross-correlation
 * with the reference over the overlap; an estimate under `minQuality` is rejected and the frame passes with the
 * identity (a frame of another view or of noise is not bent onto the reference). The reference is the first
 * frame, replaced by the current frame after `rekeyAfter` consecutive rejections (the view changed), or fixed.
 *
 * @example
 * fromVideo('assets/sample.mp4', { width: 224, height: 224 })
 *   .pipe(alignFrames({ rekeyAfter: 8 }))
 *   .subscribe(({ frame, transform, quality }) => console.log(frame.index, transform.rotation, quality));
 *
 * @param options See {@link AlignFramesOptions}.
 * @return One {@link AlignedFrame} per frame. A frame whose pixel count is not `width * height`, smaller than
 * 8x8, or of another size than the reference ends the stream with a `ShapeError`; a bad option throws
 * `INVALID_OPTION` at once.
 */
export function alignFrames(options: AlignFramesOptions = {}): OperatorFunction<Frame, AlignedFrame> {
  const { model, minQuality, rekeyAfter } = { ...DEFAULTS, ...options };
  const kernels = alignKernels(options.kernels ?? DEFAULTS.kernels);
  if (model !== 'similarity' && model !== 'rigid') throw new LfusionError('INVALID_OPTION', `alignFrames model must be "similarity" or "rigid", got ${JSON.stringify(model)}`);
  if (!(minQuality >= 0 && minQuality <= 1)) throw new LfusionError('INVALID_OPTION', `alignFrames minQuality must be in [0, 1], got ${minQuality}`);
  if (!(rekeyAfter >= 1)) throw new LfusionError('INVALID_OPTION', `alignFrames rekeyAfter must be at least 1, got ${rekeyAfter}`);
  if (options.reference) checkFrame(options.reference);
  const fixed = options.reference ? makeReference(options.reference, kernels) : undefined;
  return (frames) =>
    defer(() => {
      let reference = fixed;
      let rejected = 0;
      return frames.pipe(
        map((frame): AlignedFrame => {
          checkFrame(frame);
          if (!reference || (!fixed && rejected >= rekeyAfter)) {
            reference = makeReference(frame, kernels);
            rejected = 0;
          }
          const { width, height } = reference.frame;
          if (frame.width !== width || frame.height !== height) {
            throw new ShapeError(`frame ${frame.index} is ${frame.width}x${frame.height}, its reference ${reference.frame.index} is ${width}x${height}`, [width, height], [frame.width, frame.height]);
          }
          const referenceIndex = reference.frame.index;
          if (reference.frame === frame) {
            return { frame, original: frame, transform: describe(IDENTITY, width, height), referenceIndex, quality: 1, aligned: true };
          }
          const { transform, quality } = estimate(reference, frame, model === 'rigid');
          const aligned = quality >= minQuality;
          rejected = aligned ? 0 : rejected + 1;
          if (!aligned) return { frame, original: frame, transform: describe(IDENTITY, width, height), referenceIndex, quality, aligned };
          return { frame: resampleFrame(frame, transform, kernels), original: frame, transform, referenceIndex, quality, aligned };
        }),
      );
    });
}
