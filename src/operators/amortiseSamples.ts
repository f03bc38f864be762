/**
 * Live mode of the uncertainty chain: posterior samples amortised over consecutive frames (Huang et al., ECCV 2018).
 * Each frame samples a share of the m weight samples and k dropout passes and runs the `measures` graph on them
 * alone; its maps are the measures of the samples of the last frames pooled (combine.ts), which together hold
 * at least (m, n, k); with `live.align`, each earlier frame's resampled onto the newest through the motion since
 * (align.ts).
 */
import { concatMap, defer, map, of, type OperatorFunction } from 'rxjs';
import { drawDimensions, drawSamples } from '../runtime/draws.js';
import { LfusionError } from '../runtime/errors.js';
import { headGrid, mapPixels } from '../runtime/model-package.js';
import type { EncodedFrame } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { HeadSamples, MeasuredFrame, SampleCounts } from '../runtime/types/uncertainty.js';
import { compose, type Affine } from './alignFrames/affine.js';
import { estimateSmallMotion, motionTemplate, type MotionTemplate } from './alignFrames/estimate.js';
import { alignKernels, type KernelChoice } from './alignFrames/kernels.js';
import { greyOnGrid, largestDisplacement, warpSampleSets } from './amortiseSamples/align.js';
import { combineSampleSets, laplaceSampleMean, meanAbsoluteDifference, measureRows, rowMean, type SampleSet } from './amortiseSamples/combine.js';
import { measureUncertainty, toInputGrid } from './measureUncertainty.js';
import { sampleCounts, sampleHeads, type SampleOptions } from './sampleHeads.js';

export interface LiveSamplingOptions {
  /** Frames the samples are spread over: each samples about 1/frames of m and of k. Default 5. */
  frames?: number;
  /**
   * Mean absolute difference of consecutive model inputs (normalised grey levels) above which the scene counts as
   * cut or moved too far: the pool is emptied (see `reset`). Default 0.25.
   */
  resetDifference?: number;
  /**
   * Resample the earlier frames' samples onto the newest frame before pooling, through the motion between
   * consecutive frames (alignFrames' Gauss–Newton, similarity, on the heads' grid), so that a moving probe's
   * pooled samples describe the same anatomy: on drifting sweeps 0.6 Dice points more (above exact mode's), the
   * OOD AUROC about as without (docs/results.md), for about 5 ms of the main thread a frame (0.6 ms the motion,
   * the rest resampling the pool). Default false: pooled where they were taken.
   */
  align?: boolean;
  /**
   * What the frame that empties the pool (a stream's first, a scene cut) samples. `full` (default): all of (m, n, k),
   * so every result holds at least (m, n, k); that frame costs about what an exact frame does, and a live queue drops
   * the frames behind it. `ramp`: its share, as any frame does, so no frame takes longer than another; the pool
   * refills over the next `frames - 1` frames, whose results hold fewer samples (each result's `counts` says how
   * many) and score OOD input less well. Measured (docs/results.md): a stream's first second, 7-18 of 30 frames not
   * delivered with `full`, 4-10 with `ramp`; on a frame that empties the pool, up to 0.16 AUROC lost with `ramp`.
   */
  reset?: 'full' | 'ramp';
  /** Below this quality of a motion estimate (alignFrames' NCC, 0..1) the pool is emptied as at a cut. Default 0.4. */
  minQuality?: number;
  /** Alignment kernels, as `alignFrames`' `kernels`. Default `auto`. */
  kernels?: KernelChoice;
}

/** One frame's contribution to the pool. */
interface PoolEntry {
  counts: SampleCounts;
  laplace: SampleSet;
  dropout: SampleSet;
  /** Pixel of the newest frame -> pixel of this entry's frame, on the heads' grid. */
  toEntry: Affine;
}

const IDENTITY: Affine = [1, 0, 0, 0, 1, 0];

/** Weight sample rows (and dropout pass rows) `[from, from + count)` of the common draws, for each share. */
function shares(total: number, frames: number): { from: number; count: number }[] {
  return Array.from({ length: frames }, (_, s) => {
    const from = Math.floor((s * total) / frames);
    return { from, count: Math.floor(((s + 1) * total) / frames) - from };
  });
}

/**
 * Encoded frames in, measured frames out (as `sampleHeads` then `measureUncertainty`), with samples amortised over
 * consecutive frames. On a still scene the pooled samples are exactly those of the common draws of (m, n, k): frame
 * after frame the shares cycle through their rows. `counts` of each result is the pool's total. The pool is the
 * operator's, shared by its subscriptions (a pipeline subscribes once per frame): feed it one stream, in order.
 *
 * @param sampled runs on each frame's own head samples before the measures (e.g. `measureBiometry`).
 * @throws LfusionError `INVALID_OPTION` at set-up for `draws` other than `common`, a bad `frames`, `resetDifference`,
 * `reset` or `minQuality`, or `kernels: 'native'` without the addon.
 * @example
 * encoded$.pipe(amortiseSamples(pool, manifest, { m: 10, n: 4, k: 10 }, { frames: 5 }), fuseUncertainty(manifest));
 */
export function amortiseSamples<S extends HeadSamples>(
  pool: GraphRunner,
  manifest: ModelManifest,
  options: SampleOptions = {},
  live: LiveSamplingOptions = {},
  sampled?: OperatorFunction<HeadSamples, S>,
): OperatorFunction<EncodedFrame, MeasuredFrame & Omit<S, keyof HeadSamples>> {
  if (options.draws !== undefined && options.draws !== 'common') {
    throw new LfusionError('INVALID_OPTION', 'live mode draws its samples from the common draws; draws must be "common"', { draws: typeof options.draws === 'function' ? 'function' : options.draws });
  }
  const spread = live.frames ?? 5;
  if (!(Number.isInteger(spread) && spread >= 1)) throw new LfusionError('INVALID_OPTION', `live.frames must be an integer >= 1, got ${spread}`, { frames: spread });
  const counts = sampleCounts(manifest, options);
  // Every share needs at least one weight sample and one dropout pass.
  const frames = Math.min(spread, counts.m, counts.k);
  const resetDifference = live.resetDifference ?? 0.25;
  if (!(resetDifference >= 0)) throw new LfusionError('INVALID_OPTION', `live.resetDifference must be a number >= 0, got ${resetDifference}`, { resetDifference });
  const reset = live.reset ?? 'full';
  if (reset !== 'full' && reset !== 'ramp') throw new LfusionError('INVALID_OPTION', `live.reset must be "full" or "ramp", got ${JSON.stringify(reset)}`, { reset });
  const minQuality = live.minQuality ?? 0.4;
  if (!(minQuality >= 0 && minQuality <= 1)) throw new LfusionError('INVALID_OPTION', `live.minQuality must be in [0, 1], got ${minQuality}`, { minQuality });
  const kernels = live.align === true ? alignKernels(live.kernels ?? 'auto') : undefined;
  const grid = headGrid(manifest);
  const order = manifest.measures.order;
  measureRows(order);
  // Pooled at the heads' resolution (the measures graph's maps), brought to the input's grid afterwards, so that
  // the pooled entropy and spreads are taken where exact mode takes them.
  const pixels = mapPixels(manifest);
  const placed = toInputGrid(manifest);
  const seed = options.seed ?? manifest.sampling.seed;
  const dims = drawDimensions(manifest);
  const { n } = counts;
  const mShares = shares(counts.m, frames);
  const kShares = shares(counts.k, frames);
  /** A sampler for the full counts (a `full` reset) and one per share, each with its slice of the common draws, drawn once. */
  const sampler = (first: { m: number; k: number }, share: SampleCounts) => {
    let draws: ReturnType<typeof drawSamples> | undefined;
    return sampleHeads(pool, manifest, { ...options, ...share, draws: () => (draws ??= { ...drawSamples(seed, share, dims, first), reused: true }) });
  };
  const full = sampler({ m: 0, k: 0 }, counts);
  const parts = mShares.map((mShare, s) => sampler({ m: mShare.from, k: kShares[s]!.from }, { m: mShare.count, n, k: kShares[s]!.count }));
  const measure = measureUncertainty(pool, manifest, { upsample: false });
  const eps = manifest.measures.entropyEpsilon;
  const afterSampling = sampled ?? map((samples: HeadSamples) => samples as S);

  // The pool belongs to the operator, not to a subscription: pipelines subscribe once per frame (keep-latest).
  let previous: Float32Array | undefined;
  let template: MotionTemplate | undefined;
  let next = 0;
  let entries: PoolEntry[] = [];
  return (encoded$) =>
    defer(() =>
      encoded$.pipe(
        concatMap((encoded) => {
          // A previous image of another size (or no longer readable) counts as a cut; NaN never passes for still.
          let moved = previous?.length !== encoded.image.length || !(meanAbsoluteDifference(previous, encoded.image) <= resetDifference);
          previous = encoded.image;
          // The motion since the previous frame (this frame -> that one); an estimate that does not hold is a cut.
          let motion: Affine = IDENTITY;
          if (kernels) {
            const current = motionTemplate(greyOnGrid(encoded.image, manifest.input, grid, manifest.input.normalization, encoded.frame.index), kernels);
            if (!moved && template) {
              const estimate = estimateSmallMotion(template, current);
              if (estimate.quality >= minQuality) motion = [...estimate.transform.matrix];
              else moved = true;
            }
            template = current;
          }
          if (moved) {
            entries = [];
            next = 0;
          }
          const sample = moved && reset === 'full' ? full : parts[next++ % frames]!;
          return of(encoded).pipe(
            sample,
            afterSampling,
            concatMap((samples) => {
              // The logit sample means are taken before the measures graph moves the head outputs to its worker.
              const laplaceMean = laplaceSampleMean(samples, pixels);
              const dropoutMean = rowMean(samples.dropoutLogits.data, pixels);
              return of(samples).pipe(
                measure,
                map((measured) => {
                  const started = performance.now();
                  const own = samples.draws.counts;
                  const newest: PoolEntry = {
                    counts: own,
                    laplace: { samples: own.m * own.n, maps: measured.maps.laplace, logitMean: laplaceMean },
                    dropout: { samples: own.k, maps: measured.maps.dropout, logitMean: dropoutMean },
                    toEntry: IDENTITY,
                  };
                  // Without live.align there is no motion: the entries keep their identity transforms.
                  const carried = motion === IDENTITY ? entries : entries.map((entry) => ({ ...entry, toEntry: compose(entry.toEntry, motion) }));
                  entries = retained([...carried, newest], counts);
                  const onNewest = entries.map((entry, slot) => alignedTo(entry, newest, order, grid, slot));
                  const pooled = { m: sum(entries, 'm'), n, k: sum(entries, 'k') };
                  const { draws: _draws, laplace: _laplace, dropoutLogits: _dropout, frame: _frame, timings: _timings, ...extra } = samples;
                  return {
                    ...extra,
                    ...measured,
                    counts: pooled,
                    maps: placed({
                      ...measured.maps,
                      laplace: combineSampleSets(onNewest.map((entry) => entry.laplace), order, pixels, eps),
                      dropout: combineSampleSets(onNewest.map((entry) => entry.dropout), order, pixels, eps),
                    }),
                    timings: { ...measured.timings, pool: performance.now() - started },
                  };
                }),
              );
            }),
          );
        }),
      ),
    );
}

/**
 * An entry's sample sets on the newest frame's grid (as they are while the motion since is under a thousandth of a
 * pixel); `slot` names the working arrays of the resampled ones.
 */
function alignedTo(entry: PoolEntry, newest: PoolEntry, order: readonly string[], grid: { width: number; height: number }, slot: number): Pick<PoolEntry, 'laplace' | 'dropout'> {
  if (largestDisplacement(entry.toEntry, grid.width, grid.height) < 1e-3) return entry;
  return warpSampleSets({ laplace: entry.laplace, dropout: entry.dropout }, { laplace: newest.laplace, dropout: newest.dropout }, order, grid, entry.toEntry, slot);
}

function sum(entries: readonly PoolEntry[], key: 'm' | 'k'): number {
  return entries.reduce((total, entry) => total + entry.counts[key], 0);
}

/** The newest entries that still hold at least m weight samples and k dropout passes (all of them while fewer). */
function retained(entries: PoolEntry[], target: SampleCounts): PoolEntry[] {
  let start = 0;
  while (start < entries.length - 1) {
    const rest = entries.slice(start + 1);
    if (sum(rest, 'm') < target.m || sum(rest, 'k') < target.k) break;
    start++;
  }
  return entries.slice(start);
}
