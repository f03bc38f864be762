/**
 * The fused OOD decision: feature density, L-FUSION's uncertainty score and segmentation and acquisition
 * evidence, each against its own threshold, with the reasons that fired.
 */
import { map, type OperatorFunction } from 'rxjs';
import { evidenceScores, EVIDENCE } from './decideOod/evidence.js';
import type { ModelManifest, OodDecisionManifest } from '../runtime/types/model.js';
import type { OodReason } from '../runtime/types/results.js';
import type { ScoredFrame } from '../runtime/types/uncertainty.js';

/** A scored frame with what the decision needs besides its maps: the normalised image and the density score. */
export interface EvidenceFrame extends ScoredFrame {
  image: Float32Array;
  /** Feature-density score (`scoreFeatureDensity`); absent when the package has no density statistics. */
  density?: number;
}

/** The evidence above its threshold, in {@link EVIDENCE} order; an evidence score without a threshold never fires. */
export function firedReasons(evidence: Record<string, number>, decision: OodDecisionManifest): OodReason[] {
  return EVIDENCE.flatMap((name) => {
    const limit = decision.thresholds[name];
    const score = evidence[name];
    return limit && score !== undefined && score > limit.threshold ? [{ reason: limit.reason, evidence: name, score, threshold: limit.threshold }] : [];
  });
}

/**
 * Replaces each frame's `ood.above` by the fused decision and adds `ood.evidence` (every score) and `ood.reasons`
 * (what fired). Without a manifest `oodDecision` the scores are still added and `above` stays the uncertainty
 * score's, so scores can be collected to choose thresholds.
 *
 * @example
 * scored$.pipe(decideOod(pkg.manifest)).subscribe((f) => f.ood.reasons?.forEach((r) => console.warn(r.reason, r.score, '>', r.threshold)));
 */
export function decideOod(manifest: Pick<ModelManifest, 'input' | 'oodDecision'>): OperatorFunction<EvidenceFrame, ScoredFrame> {
  const { input, oodDecision } = manifest;
  return map(({ image, density, ...frame }) => {
    const started = performance.now();
    const evidence = evidenceScores({ density, uncertainty: frame.ood.score, meanProb: frame.meanProb, image }, input, input.normalization) as Record<string, number>;
    const reasons = oodDecision ? firedReasons(evidence, oodDecision) : [];
    const above = oodDecision ? reasons.length > 0 : frame.ood.above;
    return { ...frame, ood: { ...frame.ood, above, evidence, reasons }, timings: { ...frame.timings, decision: performance.now() - started } };
  });
}
