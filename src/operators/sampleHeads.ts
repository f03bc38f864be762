/**
 * Posterior sampling of both heads: one `laplace_head` run for all m weight samples and one `dropout_head`
 * run for all k dropout passes per frame, whatever m and k are.
 */
import { concatMap, type OperatorFunction } from 'rxjs';
import { totalmem } from 'node:os';
import { checkSampleCounts, createDrawSource, drawDimensions, sampleMemoryBytes, type DrawMode } from '../runtime/draws.js';
import { LfusionError, ShapeError } from '../runtime/errors.js';
import { headPixels } from '../runtime/model-package.js';
import type { EncodedFrame } from '../runtime/types/frames.js';
import type { GraphRunner, TensorData } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { Draws, HeadSamples, SampleCounts } from '../runtime/types/uncertainty.js';

export interface SampleOptions {
  /** Laplace weight samples; default manifest `sampling.m`. */
  m?: number;
  /** Logit samples per weight sample (drawn in the `measures` graph); default manifest `sampling.n`. */
  n?: number;
  /** Dropout passes; default manifest `sampling.k`. */
  k?: number;
  /** Seed of every random draw. Default manifest `sampling.seed`, the seed the OOD threshold was calibrated with. */
  seed?: number;
  /**
   * `common` (default): the same draws every frame, so the overlay does not flicker; `fresh`: new draws per
   * frame; or a function supplying each frame's draws (e.g. stored ones: mark draws you keep `reused: true`
   * so their buffers are sent to each worker once and kept there, not moved).
   */
  draws?: DrawMode | ((frameIndex: number, counts: SampleCounts) => Draws);
  /** Multiplies the posterior standard deviation: 1 samples the fitted posterior, 0 gives the MAP head. Default manifest `laplace.posteriorScale`. */
  posteriorScale?: number;
}

/** Memory one frame's sampling may take: half of this machine's. */
const SAMPLE_MEMORY_BUDGET = totalmem() / 2;

/**
 * The sample counts of `options`, defaulting to the manifest's, checked before anything is allocated: each at most
 * the manifest's `sampling.maxM`/`maxN`/`maxK`, and together within half this machine's memory.
 * @throws LfusionError `INVALID_OPTION` saying which count is too large.
 */
export function sampleCounts(manifest: Pick<ModelManifest, 'sampling' | 'laplace' | 'dropout' | 'input' | 'graphs'>, options: SampleOptions): SampleCounts {
  const { sampling } = manifest;
  const counts = { m: options.m ?? sampling.m, n: options.n ?? sampling.n, k: options.k ?? sampling.k };
  checkSampleCounts(counts);
  const maxima = { m: sampling.maxM, n: sampling.maxN, k: sampling.maxK };
  for (const key of ['m', 'n', 'k'] as const) {
    if (counts[key] > maxima[key]) {
      throw new LfusionError('INVALID_OPTION', `sample count ${key} = ${counts[key]} exceeds the model package's maximum of ${maxima[key]} (sampling.max${key.toUpperCase()})`, { [key]: counts[key], max: maxima[key] });
    }
  }
  const bytes = sampleMemoryBytes(counts, drawDimensions(manifest));
  if (bytes > SAMPLE_MEMORY_BUDGET) {
    const gib = (value: number) => (value / 2 ** 30).toFixed(1);
    throw new LfusionError('INVALID_OPTION', `sample counts (m, n, k) = (${counts.m}, ${counts.n}, ${counts.k}) need about ${gib(bytes)} GiB per frame, more than half this machine's memory (${gib(SAMPLE_MEMORY_BUDGET)} GiB)`, { ...counts, bytes });
  }
  return counts;
}

/** A graph output with exactly the expected shape, else a `ShapeError` naming graph and output. */
export function requireOutput(outputs: Record<string, TensorData>, graph: string, name: string, expected: readonly number[]): Float32Array {
  const output = outputs[name];
  const dims = output?.dims ?? [];
  if (!output || dims.length !== expected.length || dims.some((dim, i) => dim !== expected[i]) || output.data.length !== dims.reduce((a, b) => a * b, 1)) {
    throw new ShapeError(`graph "${graph}" output "${name}" has shape [${dims.join(', ')}], expected [${expected.join(', ')}]`, expected, dims);
  }
  return output.data;
}

/**
 * Draws m posterior weight samples of the Laplacian head and k dropout passes for each encoded frame and
 * runs both heads once, batched. The encoded frame's buffers are copied, never transferred, so it stays usable.
 *
 * @param pool runs the package's graphs (the SDK's inference pool).
 * @param manifest the package's manifest: sizes, default sample counts and posterior scale.
 * @param options sample counts, seed, draw mode, posterior scale.
 * @throws ShapeError (as an error notification) for an encoded frame whose image or features have the wrong size.
 * @example
 * encoded$.pipe(sampleHeads(pool, manifest, { m: 10, k: 10, seed: 1 })).subscribe((s) => console.log(s.laplace.logitMean.dims));
 */
export function sampleHeads(pool: GraphRunner, manifest: ModelManifest, options: SampleOptions = {}): OperatorFunction<EncodedFrame, HeadSamples> {
  const counts = sampleCounts(manifest, options);
  const posteriorScale = options.posteriorScale ?? manifest.laplace.posteriorScale;
  if (!(Number.isFinite(posteriorScale) && posteriorScale >= 0)) {
    throw new LfusionError('INVALID_OPTION', `posteriorScale must be a finite number >= 0, got ${posteriorScale}`, { posteriorScale });
  }
  // One draw source per operator, not per subscription: pipelines subscribe once per frame, and common
  // random numbers must stay the same from frame to frame.
  const supplied = typeof options.draws === 'function' ? options.draws : undefined;
  const drawsFor = supplied ?? createDrawSource({ seed: options.seed ?? manifest.sampling.seed, mode: (options.draws as DrawMode | undefined) ?? 'common', dims: drawDimensions(manifest) });
  const featureDims = (manifest.graphs.laplace_head?.inputs.features ?? []).map((dim) => (typeof dim === 'number' ? dim : 1));
  // One image per set of features: 1 for a frame, the window length for the clip heads.
  const imageDims = [featureDims[0] ?? 1, 1, manifest.input.height, manifest.input.width];
  const pixels = headPixels(manifest);
  const { m, k } = counts;
  const rank = manifest.laplace.rank;
  return concatMap(async (encoded) => {
    const started = performance.now();
    const image = encodedTensor(encoded.image, imageDims, 'image');
    const features = encodedTensor(encoded.features, featureDims, 'features');
    const draws = drawsFor(encoded.frame.index, counts);
    checkDraws(draws, counts);
    // Draws reused by later frames stay in the workers (sent once); fresh ones are moved.
    const resident = draws.reused ? ['weight_noise', 'dropout_masks'] : [];
    const [laplace, dropout] = await Promise.all([
      pool.run(
        'laplace_head',
        { features, image, weight_noise: draws.weightNoise, posterior_scale: { data: Float32Array.of(posteriorScale), dims: [1] } },
        { keep: ['features', 'image'], resident },
      ),
      pool.run('dropout_head', { features, image, dropout_masks: draws.dropoutMasks }, { keep: ['features', 'image'], resident }),
    ]);
    return {
      frame: encoded.frame,
      draws,
      laplace: {
        logitMean: { data: requireOutput(laplace, 'laplace_head', 'logit_mean', [m, pixels]), dims: [m, pixels] },
        covFactor: { data: requireOutput(laplace, 'laplace_head', 'cov_factor', [m, rank, pixels]), dims: [m, rank, pixels] },
        covDiag: { data: requireOutput(laplace, 'laplace_head', 'cov_diag', [m, pixels]), dims: [m, pixels] },
      },
      dropoutLogits: { data: requireOutput(dropout, 'dropout_head', 'logits', [k, pixels]), dims: [k, pixels] },
      timings: { ...encoded.timings, heads: performance.now() - started },
    };
  });
}

function encodedTensor(data: Float32Array, dims: number[], name: string): TensorData {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (!(data instanceof Float32Array) || data.length !== expected) {
    const actual = data instanceof Float32Array ? [data.length] : [];
    throw new ShapeError(`EncodedFrame.${name} must hold [${dims.join(', ')}] = ${expected} float32 values, got ${actual[0] ?? 'no Float32Array'}`, dims, actual);
  }
  return { data, dims };
}

function checkDraws(draws: Draws, counts: SampleCounts): void {
  const { m, n, k } = draws.counts;
  if (m !== counts.m || n !== counts.n || k !== counts.k) {
    throw new LfusionError('INVALID_OPTION', `the draws are for (m, n, k) = (${m}, ${n}, ${k}), the sampler for (${counts.m}, ${counts.n}, ${counts.k})`, { draws: draws.counts, counts });
  }
}
