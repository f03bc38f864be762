/**
 * The L-FUSION chain on clips: windows of encoded frames in, per-frame clip maps and a window OOD score out.
 * The clip heads run through the 2D operators (`clipModel` gives them the clip view of the package).
 */
import { concatMap, map, of, type OperatorFunction } from 'rxjs';
import { firedReasons } from './decideOod.js';
import { biometryMeasurer, withOod } from './measureBiometry.js';
import { fuseUncertainty } from './fuseUncertainty.js';
import { checkMapName, measureUncertainty, selectMap } from './measureUncertainty.js';
import { sampleHeads } from './sampleHeads.js';
import { brightness, segmentationEvidence } from './decideOod/evidence.js';
import { featureDensity } from './scoreFeatureDensity.js';
import { scoreOod } from './scoreOod.js';
import { clipModel } from '../runtime/clip-model.js';
import { LfusionError, ShapeError } from '../runtime/errors.js';
import type { ClipWindow, EncodedFrame } from '../runtime/types/frames.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { ClipOodScore } from '../runtime/types/results.js';
import type { Biometry } from '../runtime/types/biometry.js';
import type { ClipWindowMaps, HeadSamples } from '../runtime/types/uncertainty.js';
import type { UncertaintyOptions } from './lfusionUncertainty.js';

/**
 * The window as the clip heads take it: features `[T, F, 14, 14]` and images `[T, 1, H, W]` of its frames,
 * stacked in order. A partial window (a stream shorter than `T`) is padded by repeating its last frame; the
 * padding's maps are dropped afterwards.
 */
export function stackWindow(window: ClipWindow, frames: number): EncodedFrame {
  const encoded = window.features;
  if (encoded.length === 0 || encoded.length > frames) {
    throw new ShapeError(`a clip window must hold 1 to ${frames} encoded frames, got ${encoded.length}`, [frames], [encoded.length]);
  }
  const at = (t: number) => encoded[Math.min(t, encoded.length - 1)]!;
  const stack = (part: 'features' | 'image') => {
    const size = encoded[0]![part].length;
    const out = new Float32Array(frames * size);
    for (let t = 0; t < frames; t++) {
      const values = at(t)[part];
      // An empty buffer was moved to a worker by a stage that should have copied it (GraphRunner `keep`).
      if (values.length === 0) throw new ShapeError(`frame ${at(t).frame.index} of the window has no ${part} left: its buffer was transferred to an inference worker`, [size], [0]);
      if (values.length !== size) throw new ShapeError(`frame ${at(t).frame.index} of the window has ${values.length} ${part} values, the first has ${size}`, [size], [values.length]);
      out.set(values, t * size);
    }
    return out;
  };
  const last = encoded[encoded.length - 1]!;
  return { frame: last.frame, features: stack('features'), image: stack('image'), timings: last.timings };
}

/**
 * Head biometry of each frame of a window from the clip heads' samples: every sample's map of frame `t` (each
 * weight sample's logit mean, each dropout pass), measured like a 2D frame's samples at the clip maps' size, with
 * the clip heads' interval calibration (manifest `biometry.clip`; without one, the posterior's own intervals).
 */
function windowBiometry(manifest: ModelManifest, size: number, options: UncertaintyOptions['biometry']): ((samples: HeadSamples, frames: ClipWindow['frames']) => Biometry[]) | undefined {
  if (!options) return undefined;
  const calibration = manifest.biometry?.clip;
  const measure = biometryMeasurer({ input: { width: size, height: size }, ...(calibration ? { biometry: calibration } : {}) }, options === true ? {} : options);
  const pixels = size * size;
  // Frame t of every sample row, gathered into one buffer per path, kept from window to window (a measurement keeps
  // no reference to it).
  const buffers = { laplace: new Float32Array(0), dropout: new Float32Array(0) };
  const gather = (rows: Float32Array, count: number, t: number, path: keyof typeof buffers): Float32Array => {
    if (buffers[path].length !== count * pixels) buffers[path] = new Float32Array(count * pixels);
    const into = buffers[path];
    const stride = rows.length / count;
    for (let row = 0; row < count; row++) into.set(rows.subarray(row * stride + t * pixels, row * stride + (t + 1) * pixels), row * pixels);
    return into;
  };
  return (samples, frames) => {
    const { logitMean } = samples.laplace;
    const m = logitMean.dims[0]!;
    const k = samples.dropoutLogits.dims[0]!;
    return frames.map((frame, t) =>
      measure({
        frame,
        laplace: { logitMean: { data: gather(logitMean.data as Float32Array, m, t, 'laplace'), dims: [m, size, size] } },
        dropoutLogits: { data: gather(samples.dropoutLogits.data as Float32Array, k, t, 'dropout'), dims: [k, size, size] },
      }),
    );
  };
}

/**
 * L-FUSION on each window with the package's clip heads: m weight samples of the 3D Laplacian head (n logit
 * samples each) and k passes of the 3D Dropout head, one run of each for the whole window; the per-path
 * measures, the fused map and the window's OOD score, all with the clip settings of the manifest (`clip`)
 * unless `options` overrides them. The window's `ood.evidence` holds its median frame density (`density`, with
 * density statistics), median frame brightness, the median frame's head area and ellipse misfit of the clip heads'
 * masks, and the clip score (`uncertainty`); with a fused decision `ood.above` is that decision, with `reasons`: the
 * thresholds of `clip.oodDecision` (chosen on validation sweeps), or in a package without them the 2D decision's
 * density and brightness thresholds and the clip score's own threshold. Per-frame maps come out `outputSize x outputSize`; merge overlapping windows
 * with `mergeClipFrames`. With `options.biometry`, each frame's head biometry from the clip heads' samples of that
 * frame (`biometry`, one per frame, status `ood` under the window's decision; `timings.biometry` for the window).
 *
 * @param pool runs the package's graphs (the SDK's inference pool).
 * @param manifest a manifest with a `clip` section.
 * @param options as for the 2D chain ({@link UncertaintyOptions}); `planes` names the per-path maps to keep.
 * @throws LfusionError `INVALID_OPTION` at set-up without clip heads or for a bad option; ShapeError for a malformed window.
 * @example
 * const clips$ = frames$.pipe(
 *   windowClips(encode, { length: 16, stride: 8 }, (window) => of(window).pipe(lfusionClipUncertainty(pool, manifest))),
 *   mergeClipFrames(),
 * );
 */
export function lfusionClipUncertainty(pool: GraphRunner, manifest: ModelManifest, options: UncertaintyOptions = {}): OperatorFunction<ClipWindow, ClipWindowMaps> {
  const clip = clipModel(manifest);
  const view = clip.manifest;
  const runner = clip.runner(pool);
  const planes = options.planes ?? [];
  for (const name of planes) {
    checkMapName(name, view.measures.order);
    if (name === 'fused') throw new LfusionError('INVALID_OPTION', '"fused" is always delivered; list only per-path maps in planes', { planes });
  }
  const { frames, outputSize: size } = clip.settings;
  const sample = sampleHeads(runner, view, options);
  const measure = measureUncertainty(runner, view);
  const fuse = fuseUncertainty(view, options.fusion);
  const score = scoreOod(view, options.ood);
  // The fused decision per window on the window's evidence: median frame density (`wrong-anatomy`), median frame
  // brightness (`acquisition`), the median frame's head area and ellipse misfit of the clip heads' masks (`no-head`)
  // and the clip score (`uncertain-shape`). Thresholds: the clip section's own, chosen on validation sweeps' windows;
  // in packages without them the 2D decision's density and brightness thresholds and the clip score's threshold (the
  // 2D mask thresholds were chosen on 2D masks at another resolution, so they are not applied to clip masks).
  const fallback = manifest.oodDecision && {
    falseAlarmRate: manifest.oodDecision.falseAlarmRate,
    thresholds: Object.fromEntries(['density', 'brightness-high', 'brightness-low'].flatMap((name) => (manifest.oodDecision!.thresholds[name] ? [[name, manifest.oodDecision!.thresholds[name]!]] : []))),
  };
  const decision = manifest.clip?.oodDecision;
  const density = manifest.density?.statistics ? manifest.density : undefined;
  const frameEvidence = new WeakMap<EncodedFrame, { density?: number; brightness: number }>(); // a frame is in several windows: scored once
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
  };
  const decideWindow = (ood: ClipOodScore, encoded: readonly EncodedFrame[], masks: readonly Float32Array[]): ClipOodScore => {
    const scores = encoded.map((frame) => {
      if (!frameEvidence.has(frame)) {
        frameEvidence.set(frame, { ...(density ? { density: featureDensity(frame.features, density) } : {}), brightness: brightness(frame.image, manifest.input.normalization) });
      }
      return frameEvidence.get(frame)!;
    });
    const light = median(scores.map((s) => s.brightness));
    const shapes = masks.map((meanProb) => segmentationEvidence(meanProb, size, size));
    const area = median(shapes.map((s) => s.area));
    const evidence: Record<string, number> = {
      ...(density ? { density: median(scores.map((s) => s.density!)) } : {}),
      uncertainty: ood.score,
      'head-area-low': -area,
      'head-area-high': area,
      'ellipse-misfit': median(shapes.map((s) => s.misfit)),
      'brightness-high': light,
      'brightness-low': -light,
    };
    const applied = decision ?? (fallback && { ...fallback, thresholds: { ...fallback.thresholds, uncertainty: { reason: 'uncertain-shape' as const, threshold: ood.threshold } } });
    if (!applied) return { ...ood, evidence }; // no fused decision: `above` stays the clip score's
    const reasons = firedReasons(evidence, applied);
    return { ...ood, above: reasons.length > 0, evidence, reasons };
  };
  // Views into the window's maps: mergeClipFrames copies what it keeps.
  const perFrame = (values: Float32Array, count: number) => Array.from({ length: count }, (_, t) => values.subarray(t * size * size, (t + 1) * size * size));
  const biometry = windowBiometry(manifest, size, options.biometry);
  return concatMap((window) => {
    // Read from the samples before the measures graph releases them.
    let measured: { biometry: Biometry[]; ms: number } | undefined;
    return of(stackWindow(window, frames)).pipe(
      sample,
      map((samples) => {
        const started = performance.now();
        if (biometry) measured = { biometry: biometry(samples, window.frames), ms: performance.now() - started };
        return samples;
      }),
      measure,
      fuse,
      score,
      map((scored): ClipWindowMaps => {
        const count = window.frames.length;
        const maps: Record<string, Float32Array[]> = { mean_prob: perFrame(scored.meanProb, count), fused: perFrame(scored.fused, count) };
        for (const name of planes) maps[name] = perFrame(selectMap(scored.maps, name), count);
        const span = { first: window.frames[0]!.index, last: window.frames[count - 1]!.index };
        const ood = decideWindow({ ...scored.ood, window: span }, window.features, maps.mean_prob!);
        if (!measured) return { start: window.start, frames: window.frames, size, maps, ood, timings: scored.timings };
        const timings = { ...scored.timings, biometry: measured.ms };
        return { start: window.start, frames: window.frames, size, maps, ood, biometry: measured.biometry.map((b) => withOod(b, ood)), timings };
      }),
    );
  });
}
