/**
 * The whole L-FUSION uncertainty chain as one operator: encoded frames in, frame results out.
 */
import { concatMap, map, of, type OperatorFunction } from 'rxjs';
import { amortiseSamples, type LiveSamplingOptions } from './amortiseSamples.js';
import { decideOod } from './decideOod.js';
import { fuseUncertainty, type FuseOptions } from './fuseUncertainty.js';
import { measureBiometry, withOod, type BiometryOptions } from './measureBiometry.js';
import { checkMapName, measureUncertainty, selectMap } from './measureUncertainty.js';
import { sampleHeads, type SampleOptions } from './sampleHeads.js';
import { scoreFeatureDensity } from './scoreFeatureDensity.js';
import { scoreOod, type OodOptions } from './scoreOod.js';
import { LfusionError } from '../runtime/errors.js';
import { defaultRange, maskPlane, quantizePlane, type QuantizeRange } from '../runtime/quantize.js';
import type { EncodedFrame } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { Biometry } from '../runtime/types/biometry.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { FrameResult } from '../runtime/types/results.js';
import type { HeadSamples, MeasuredFrame, ScoredFrame } from '../runtime/types/uncertainty.js';

export interface UncertaintyOptions extends SampleOptions {
  /** The auxiliary map of the fused map (default manifest `fusion.auxiliary`). */
  fusion?: FuseOptions;
  /** OOD map, aggregation and threshold (defaults from manifest `ood`). */
  ood?: OodOptions;
  /** Per-path maps delivered besides `mask` and `fused`, e.g. `['laplace.mutual_information']`. Default none. */
  planes?: readonly string[];
  /** Quantisation range per plane name, overriding {@link defaultRange}. */
  ranges?: Readonly<Record<string, QuantizeRange>>;
  /** Head biometry on every frame (`measureBiometry`): `true` for the defaults, or its options. Default off. */
  biometry?: boolean | BiometryOptions;
  /**
   * `exact` (default): every frame samples all of (m, n, k). `live`: each frame samples a share of them and its maps
   * pool the samples of the last frames (`amortiseSamples`), reset on a scene cut; several times faster, for a
   * live overlay (quality against exact in docs/results.md). Biometry then uses the frame's own share.
   */
  mode?: 'exact' | 'live';
  /** Spread and reset of `live` mode. */
  live?: LiveSamplingOptions;
}

/**
 * Turns a scored frame into the result subscribers receive: `mask` (class 1 where the mean of the two
 * paths' mean foreground probabilities exceeds 0.5), `fused`, then the requested per-path planes.
 */
export function toFrameResult(
  scored: ScoredFrame,
  size: { width: number; height: number },
  planes: readonly string[] = [],
  ranges: Readonly<Record<string, QuantizeRange>> = {},
  biometry?: Biometry,
): FrameResult {
  const started = performance.now();
  const { data: _pixels, ...frame } = scored.frame;
  const { width, height } = size;
  const plane = (name: string) => quantizePlane(name, selectMap(scored.maps, name, scored.fused), width, height, ranges[name] ?? defaultRange(name));
  return {
    frame,
    planes: [maskPlane(scored.meanProb, width, height), plane('fused'), ...planes.map(plane)],
    ood: scored.ood,
    ...(biometry ? { biometry: withOod(biometry, scored.ood) } : {}),
    timings: { ...scored.timings, planes: performance.now() - started },
  };
}

/**
 * L-FUSION on every encoded frame: posterior samples of both heads, per-path measures, the fused map, the
 * OOD score, the fused OOD decision (`decideOod`: feature density when the package has it, uncertainty,
 * segmentation and acquisition evidence) and the quantised planes. Frames are processed one at a time, in order, so at most one frame's
 * samples are in memory; put it behind the pipeline's frame-dropping queue. Drop-in for `segmentFrames`.
 * For alerts, share the results and pipe them into `raiseAlerts` before any lossy delivery.
 *
 * @param pool runs the package's graphs (the SDK's inference pool).
 * @param manifest the loaded package's manifest (every default comes from it).
 * @param options sample counts, seed, draw mode, posterior scale, fusion and OOD overrides, extra planes.
 * @throws LfusionError `INVALID_OPTION` at set-up for a bad option; ShapeError (as an error notification) for a malformed frame.
 * @example
 * const results$ = encoded$.pipe(lfusionUncertainty(pool, pkg.manifest, { m: 10, n: 4, k: 10, planes: ['laplace.mutual_information'] }), share());
 * results$.pipe(raiseAlerts(pkg.manifest)).subscribe((alert) => console.warn(alert));
 */
export function lfusionUncertainty(pool: GraphRunner, manifest: ModelManifest, options: UncertaintyOptions = {}): OperatorFunction<EncodedFrame, FrameResult> {
  const planes = options.planes ?? [];
  for (const name of planes) {
    checkMapName(name, manifest.measures.order);
    if (name === 'fused') throw new LfusionError('INVALID_OPTION', '"fused" is always delivered; list only per-path maps in planes', { planes });
  }
  for (const missing of ['dropout_head', 'measures'].filter((graph) => !(graph in manifest.graphs))) {
    throw new LfusionError('INVALID_OPTION', `this model package has no "${missing}" graph, which uncertainty needs`, { graph: missing });
  }
  if (options.mode !== undefined && options.mode !== 'exact' && options.mode !== 'live') {
    throw new LfusionError('INVALID_OPTION', `mode must be "exact" or "live", got ${JSON.stringify(options.mode)}`, { mode: options.mode });
  }
  const fuse = fuseUncertainty(manifest, options.fusion);
  const score = scoreOod(manifest, options.ood);
  const density: OperatorFunction<EncodedFrame, EncodedFrame & { density?: number }> = manifest.density?.statistics ? scoreFeatureDensity(manifest) : map((encoded) => encoded);
  const decide = decideOod(manifest);
  const biometry = options.biometry ? measureBiometry(manifest, options.biometry === true ? {} : options.biometry) : undefined;
  // Biometry reads the per-sample head outputs before the measures graph releases them.
  const sampleAndMeasure: OperatorFunction<EncodedFrame, MeasuredFrame & { biometry?: Biometry }> =
    options.mode === 'live' ? amortiseSamples(pool, manifest, options, options.live, biometry) : exactSamples(pool, manifest, options, biometry);
  return concatMap((encoded) =>
    of(encoded).pipe(
      density,
      concatMap((withDensity) =>
        of(withDensity).pipe(
          sampleAndMeasure,
          concatMap((measured) =>
            of(measured).pipe(
              fuse,
              score,
              map((scored) => ({ ...scored, image: withDensity.image, density: withDensity.density })),
              decide,
              map((decided) => toFrameResult(decided, manifest.input, planes, options.ranges, measured.biometry)),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Every sample fresh for the frame: `sampleHeads` (then `sampled`, e.g. biometry) and `measureUncertainty`. */
function exactSamples(
  pool: GraphRunner,
  manifest: ModelManifest,
  options: SampleOptions,
  sampled?: OperatorFunction<HeadSamples, HeadSamples & { biometry?: Biometry }>,
): OperatorFunction<EncodedFrame, MeasuredFrame & { biometry?: Biometry }> {
  const sample = sampleHeads(pool, manifest, options);
  const measure = measureUncertainty(pool, manifest);
  const sampleAll: OperatorFunction<EncodedFrame, HeadSamples & { biometry?: Biometry }> = sampled ? (encoded$) => encoded$.pipe(sample, sampled) : sample;
  return concatMap((encoded) =>
    of(encoded).pipe(
      sampleAll,
      concatMap((samples) => of(samples).pipe(measure, map((measured) => (samples.biometry ? { ...measured, biometry: samples.biometry } : measured)))),
    ),
  );
}
