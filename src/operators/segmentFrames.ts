import { concatMap, type OperatorFunction } from 'rxjs';
import { ShapeError } from '../runtime/errors.js';
import { headGrid } from '../runtime/model-package.js';
import { maskPlane } from '../runtime/quantize.js';
import type { EncodedFrame } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { FrameResult } from '../runtime/types/results.js';
import { headMapsOnInputGrid } from '../runtime/upsample.js';

/**
 * The lightweight MAP segmentation: one `laplace_head` run per frame with a single weight sample, zero
 * weight noise and `posterior_scale = 0` (the head's MAP weights), thresholded at probability 0.5.
 *
 * Why: the cheapest path to a mask when uncertainty is not needed. It is a drop-in for the uncertainty
 * chain (`lfusionUncertainty`), which yields the same `FrameResult` with more planes.
 *
 * @example
 * fromVideo('assets/sample.mp4')
 *   .pipe(encodeFrames(pool, pkg.manifest), segmentFrames(pool, pkg.manifest))
 *   .subscribe((result) => console.log(result.frame.index, result.planes[0].name));
 *
 * @param pool runs the package's graphs (an `InferencePool`).
 * @param manifest the package's manifest (input size, Laplace weight count).
 * @return One result per encoded frame, in order, with the `mask` plane (224x224 class indices) and
 * `timings.head` in ms added to the encoder's timings. The encoded frame's `image` and `features` buffers
 * are copied to the inference worker, never transferred, so the frame stays usable (as with `sampleHeads`).
 */
export function segmentFrames(pool: GraphRunner, manifest: ModelManifest): OperatorFunction<EncodedFrame, FrameResult> {
  const { width, height } = manifest.input;
  // Heads at half resolution give logits on a half grid: upsampled as the full heads would have (before the sigmoid).
  const grid = headGrid(manifest);
  const pixels = grid.width * grid.height;
  const onInputGrid = headMapsOnInputGrid(manifest);
  const weightNoise = { data: new Float32Array(manifest.laplace.weightCount), dims: [1, manifest.laplace.weightCount] };
  const posteriorScale = { data: new Float32Array([0]), dims: [1] };
  const features = manifest.graphs.laplace_head!.inputs.features!;
  return concatMap(async (encoded): Promise<FrameResult> => {
    const started = performance.now();
    const outputs = await pool.run(
      'laplace_head',
      {
        features: { data: encoded.features, dims: features.map((dim) => (typeof dim === 'number' ? dim : 1)) },
        image: { data: encoded.image, dims: [1, 1, height, width] },
        weight_noise: weightNoise,
        posterior_scale: posteriorScale,
      },
      // The encoded frame may go on to other stages (the clip path stacks it into windows): copy, never move, its buffers.
      { keep: ['features', 'image', 'weight_noise', 'posterior_scale'] },
    );
    const logits = outputs.logit_mean;
    if (!logits || logits.data.length !== pixels) {
      throw new ShapeError(`laplace_head returned logit_mean of shape [${logits?.dims.join(', ')}]`, [1, pixels], logits?.dims ?? []);
    }
    const probability = (onInputGrid?.(logits.data, 1) ?? logits.data).map((logit) => 1 / (1 + Math.exp(-logit)));
    const { data: _pixels, ...frame } = encoded.frame;
    return {
      frame,
      planes: [maskPlane(probability, width, height)],
      timings: { ...encoded.timings, head: performance.now() - started },
    };
  });
}
