import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import { clipModel } from '../../src/runtime/clip-model.js';
import { lfusionClipUncertainty, stackWindow } from '../../src/operators/lfusionClipUncertainty.js';
import { LfusionError, ShapeError } from '../../src/runtime/errors.js';
import { validateManifest } from '../../src/runtime/model-package.js';
import type { ClipWindow, EncodedFrame } from '../../src/runtime/types/frames.js';
import type { GraphRunner, TensorData } from '../../src/runtime/types/inference.js';
import type { ModelManifest } from '../../src/runtime/types/model.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

const T = 4, F = 8, S = 2, L = T * S * S, RANK = 2, WEIGHTS = 5, MASKS = 3;
const HW = 224 * 224;
const ORDER = ['mean_prob', 'expected_entropy', 'mutual_information', 'expected_pairwise_kl', 'pixel_variance', 'total_entropy', 'logit_variance'];
const sha = 'a'.repeat(64);

/** The tiny package's manifest with clip heads of T frames and `size` x `size` output maps (graphs declared, never run). */
function clipManifest(images = true, size = S): ModelManifest {
  const L = T * size * size;
  const json = JSON.parse(readFileSync(join(TINY_PACKAGE, 'manifest.json'), 'utf8'));
  const headInputs = { features: [T, F, 14, 14], ...(images ? { images: [T, 1, 224, 224] } : {}) };
  json.graphs.clip_laplace_head = { file: 'x.onnx', sha256: sha, inputs: { ...headInputs, weight_noise: ['m', WEIGHTS], posterior_scale: [1] }, outputs: { logit_mean: ['m', L], cov_factor: ['m', RANK, L], cov_diag: ['m', L] } };
  json.graphs.clip_dropout_head = { file: 'y.onnx', sha256: sha, inputs: { ...headInputs, dropout_masks: ['k', MASKS] }, outputs: { logits: ['k', L] } };
  json.graphs.clip_measures = {
    file: 'z.onnx', sha256: sha,
    inputs: { logit_mean: ['m', L], cov_factor: ['m', RANK, L], cov_diag: ['m', L], factor_noise: ['m', 'n', RANK], diag_noise: ['m', 'n', L], dropout_logits: ['k', L] },
    outputs: { laplace_maps: [7, L], dropout_maps: [7, L] },
  };
  json.clip = {
    frames: T, outputSize: size,
    laplace: { rank: RANK, weightCount: WEIGHTS, priorPrecision: 2, posteriorScale: 1, covered: 'tiny 3D head' },
    dropout: { rate: 0.5, maskCount: MASKS },
    sampling: { m: 3, n: 2, k: 2, maxM: 4, maxN: 4, maxK: 4, seed: 5 },
    fusion: { auxiliary: 'laplace.mutual_information' },
    ood: { map: 'laplace.expected_entropy', aggregation: 'mean', threshold: 0.3, raiseAfter: 2, clearAfter: 2 },
  };
  return validateManifest(json, TINY_PACKAGE);
}

/**
 * A runner answering the clip graphs with fixed maps: both paths' mean_prob at pixel i is i / L, expected entropy 0.5;
 * every head sample's logits `logit(i)` at window pixel i (frame-major, `size` x `size` maps; default 0).
 */
function fakeRunner(size = S, logit: (i: number) => number = () => 0) {
  const L = T * size * size;
  const calls: { graph: string; feeds: Record<string, TensorData> }[] = [];
  const filled = (dims: number[], value: (i: number) => number) => ({ data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => value(i)), dims });
  const runner: GraphRunner = {
    async run(graph, feeds): Promise<Record<string, TensorData>> {
      calls.push({ graph, feeds });
      const m = feeds.weight_noise?.dims[0] ?? feeds.logit_mean?.dims[0] ?? 0;
      const k = feeds.dropout_masks?.dims[0] ?? feeds.dropout_logits?.dims[0] ?? 0;
      if (graph === 'clip_laplace_head') return { logit_mean: filled([m, L], (i) => logit(i % L)), cov_factor: filled([m, RANK, L], () => 0), cov_diag: filled([m, L], () => 1) };
      if (graph === 'clip_dropout_head') return { logits: filled([k, L], (i) => logit(i % L)) };
      if (graph === 'clip_measures') {
        const maps = () => filled([7, L], (i) => {
          const [row, pixel] = [Math.floor(i / L), i % L];
          return ORDER[row] === 'mean_prob' ? pixel / L : ORDER[row] === 'expected_entropy' ? 0.5 : (pixel % 3) / 10;
        });
        return { laplace_maps: maps(), dropout_maps: maps() };
      }
      throw new Error(`unexpected graph ${graph}`);
    },
  };
  return { runner, calls };
}

function encoded(index: number): EncodedFrame {
  return {
    frame: { index, pts: index, captureTime: 0, width: 8, height: 8, data: new Uint8Array(64) },
    image: new Float32Array(HW).fill(index),
    features: new Float32Array(F * 14 * 14).fill(100 + index),
    timings: {},
  };
}
function clipWindow(start: number, count: number): ClipWindow {
  const features = Array.from({ length: count }, (_, t) => encoded(10 + start + t));
  return { frames: features.map((f) => f.frame), features, start, end: start + count, partial: count < T };
}

test('stackWindow: frames stacked in order; a partial window padded with its last frame', () => {
  const full = stackWindow(clipWindow(0, T), T);
  assert.is(full.features.length, T * F * 196);
  assert.equal([0, 1, 2, 3].map((t) => full.features[t * F * 196]), [110, 111, 112, 113]);
  assert.equal([0, 3].map((t) => full.image[t * HW]), [10, 13]);
  assert.is(full.frame.index, 13);
  const partial = stackWindow(clipWindow(0, 2), T);
  assert.equal([0, 1, 2, 3].map((t) => partial.features[t * F * 196]), [110, 111, 111, 111]);
  assert.throws(() => stackWindow(clipWindow(0, T + 1), T), (e: unknown) => e instanceof ShapeError);
  const bad = clipWindow(0, 2);
  bad.features[1] = { ...bad.features[1]!, features: new Float32Array(3) };
  assert.throws(() => stackWindow(bad, T), (e: unknown) => e instanceof ShapeError);
});

test('clipModel: no clip section is INVALID_OPTION; the view swaps heads and settings', () => {
  const tiny = validateManifest(JSON.parse(readFileSync(join(TINY_PACKAGE, 'manifest.json'), 'utf8')), TINY_PACKAGE);
  assert.throws(() => clipModel(tiny), (e: unknown) => (e as LfusionError).code === 'INVALID_OPTION');
  const manifest = clipManifest();
  const { manifest: view } = clipModel(manifest);
  assert.equal(view.graphs.laplace_head!.inputs.image, [T, 1, 224, 224], 'images appears as image to the 2D operators');
  assert.is(view.laplace.weightCount, WEIGHTS);
  assert.is(view.sampling.seed, 5);
  assert.is(view.ood.threshold, 0.3);
  assert.is(view.graphs.encoder, manifest.graphs.encoder);
});

test('one run of each clip graph per window; per-frame maps are the window maps cut frame by frame', async () => {
  const { runner, calls } = fakeRunner();
  const manifest = clipManifest();
  const results = await lastValueFrom(from([clipWindow(0, T), clipWindow(2, 2)]).pipe(lfusionClipUncertainty(runner, manifest, { planes: ['dropout.total_entropy'] }), toArray()));
  assert.equal(calls.map((c) => c.graph), ['clip_laplace_head', 'clip_dropout_head', 'clip_measures', 'clip_laplace_head', 'clip_dropout_head', 'clip_measures']);
  const laplace = calls[0]!.feeds;
  assert.equal(Object.keys(laplace).sort(), ['features', 'images', 'posterior_scale', 'weight_noise']);
  assert.equal(laplace.images!.dims, [T, 1, 224, 224]);
  assert.equal(laplace.features!.dims, [T, F, 14, 14]);
  assert.equal(laplace.weight_noise!.dims, [3, WEIGHTS], 'm and Pw from manifest.clip');
  assert.equal(calls[1]!.feeds.dropout_masks!.dims, [2, MASKS]);
  assert.equal(calls[2]!.feeds.diag_noise!.dims, [3, 2, L], 'logit noise over the clip pixels');

  const [first, partial] = results;
  assert.equal(Object.keys(first!.maps).sort(), ['dropout.total_entropy', 'fused', 'mean_prob']);
  assert.is(first!.maps.mean_prob!.length, T);
  for (let t = 0; t < T; t++) {
    assert.equal([...first!.maps.mean_prob![t]!], [0, 1, 2, 3].map((i) => Math.fround((t * S * S + i) / L)), `frame ${t}`);
  }
  const { evidence, ...score } = first!.ood;
  assert.equal(score, { score: 0.5, threshold: 0.3, map: 'laplace.expected_entropy', above: true, window: { first: 10, last: 13 } }, 'no fused decision: above is the clip score\'s');
  // Frame t's mask holds the pixels of (t S^2 + i) / L above 0.5: areas 0, 0, 3/4, 1, median 3/8.
  assert.equal({ low: evidence!['head-area-low'], high: evidence!['head-area-high'], uncertainty: evidence!.uncertainty }, { low: -0.375, high: 0.375, uncertainty: 0.5 });
  assert.is(partial!.maps.fused!.length, 2, 'the padding frames are dropped');
  assert.equal(partial!.ood.window, { first: 12, last: 13 });
  assert.is(partial!.start, 2);
});

test('a clip graph without an images input gets no images feed', async () => {
  const { runner, calls } = fakeRunner();
  await lastValueFrom(of(clipWindow(0, T)).pipe(lfusionClipUncertainty(runner, clipManifest(false))));
  assert.equal(Object.keys(calls[0]!.feeds).sort(), ['features', 'posterior_scale', 'weight_noise']);
});

test('with a fused OOD decision, a window fires wrong-anatomy on its median frame density, acquisition on its median brightness, uncertain-shape on its clip score', async () => {
  const manifest = clipManifest();
  // Mean pooling, identity precision scaled by 1e-6: frame i's features are all 100 + i, its density 8e-6 (100 + i)^2.
  manifest.density = { file: 'density.bin', sha256: sha, dtype: 'float32', dimension: F, pooling: 'mean', precisionBlocks: 1, statistics: { mean: new Float64Array(F), precision: Float64Array.from({ length: F * F }, (_, i) => (i % (F + 1) === 0 ? 1e-6 : 0)) } };
  const decision = (densityThreshold: number) => ({ falseAlarmRate: 0.025, thresholds: { density: { reason: 'wrong-anatomy' as const, threshold: densityThreshold } } });
  const median = (8e-6 * (111 ** 2 + 112 ** 2)) / 2; // frames 10..13 have features 110..113
  const windowOod = async (densityThreshold: number, clipThreshold: number) => {
    manifest.oodDecision = decision(densityThreshold);
    const [result] = await lastValueFrom(of(clipWindow(0, T)).pipe(lfusionClipUncertainty(fakeRunner().runner, manifest, { ood: { threshold: clipThreshold } }), toArray()));
    return result!.ood;
  };
  const anatomy = await windowOod(0.05, 0.9);
  assert.ok(Math.abs(anatomy.evidence!.density! - median) < 1e-9);
  assert.equal(anatomy.reasons!.map((r) => r.reason), ['wrong-anatomy']);
  assert.is(anatomy.above, true);
  const both = await windowOod(0.05, 0.3);
  assert.equal(both.reasons!.map((r) => `${r.reason}:${r.evidence}`), ['wrong-anatomy:density', 'uncertain-shape:uncertainty']);
  const none = await windowOod(1, 0.9);
  assert.equal(none.reasons, []);
  assert.is(none.above, false, 'the clip score 0.5 is under 0.9 and the density under 1');
  // Brightness: the window's median frame grey level (frames 10..13 hold normalised values 10..13) against the 2D thresholds.
  const { mean, std } = manifest.input.normalization;
  const light = 11.5 * std + mean;
  assert.ok(Math.abs(none.evidence!['brightness-high']! - light) < 1e-6 && none.evidence!['brightness-low'] === -none.evidence!['brightness-high']!);
  manifest.oodDecision = { falseAlarmRate: 0.025, thresholds: { ...decision(1).thresholds, 'brightness-high': { reason: 'acquisition', threshold: light - 0.01 } } };
  const [bright] = await lastValueFrom(of(clipWindow(0, T)).pipe(lfusionClipUncertainty(fakeRunner().runner, manifest, { ood: { threshold: 0.9 } }), toArray()));
  assert.equal(bright!.ood.reasons!.map((r) => `${r.reason}:${r.evidence}`), ['acquisition:brightness-high']);
});

test('clip.oodDecision applies its own thresholds, the clip masks\' evidence included; the 2D mask thresholds never apply to clip masks', async () => {
  const manifest = clipManifest();
  const windowOod = async () => (await lastValueFrom(of(clipWindow(0, T)).pipe(lfusionClipUncertainty(fakeRunner().runner, manifest, { ood: { threshold: 0.3 } }), toArray())))[0]!.ood;
  // The window's median frame head area is 3/8 (previous test); its clip score 0.5.
  manifest.oodDecision = { falseAlarmRate: 0.025, thresholds: { 'head-area-high': { reason: 'no-head', threshold: 0.1 } } };
  assert.equal((await windowOod()).reasons!.map((r) => `${r.reason}:${r.evidence}`), ['uncertain-shape:uncertainty'], 'without a clip decision: the clip score against its own threshold, no 2D mask threshold');
  manifest.clip!.oodDecision = { falseAlarmRate: 0.025, thresholds: { 'head-area-high': { reason: 'no-head', threshold: 0.3 }, uncertainty: { reason: 'uncertain-shape', threshold: 0.9 } } };
  const decided = await windowOod();
  assert.equal(decided.reasons, [{ reason: 'no-head', evidence: 'head-area-high', score: 0.375, threshold: 0.3 }]);
  assert.is(decided.above, true);
  manifest.clip!.oodDecision.thresholds['head-area-high']!.threshold = 0.5;
  const quiet = await windowOod();
  assert.equal([quiet.above, quiet.reasons], [false, []], 'the clip decision\'s uncertainty threshold (0.9), not the clip score\'s (0.3)');
});

test('with biometry, every frame of a window gets its head measured on the clip heads\' samples of that frame', async () => {
  const size = 32;
  // Frame t of the window shows a disc of radius 6 + 2t map pixels about the map's centre (logit: distance inside the rim).
  const radius = (t: number) => 6 + 2 * t;
  const logit = (i: number) => {
    const t = Math.floor(i / (size * size));
    const p = i % (size * size);
    return radius(t) - Math.hypot((p % size) - 15.5, Math.floor(p / size) - 15.5);
  };
  const window = clipWindow(0, T);
  // Source frames of 64 x 64 pixels at 0.5 mm: a map pixel is 2 frame pixels, 1 mm.
  window.frames = window.frames.map((frame) => ({ ...frame, width: 64, height: 64, data: new Uint8Array(64 * 64).fill(120) }));
  const [result] = await lastValueFrom(of(window).pipe(lfusionClipUncertainty(fakeRunner(size, logit).runner, clipManifest(true, size), { biometry: { pixelSpacing: { x: 0.5, y: 0.5 } } }), toArray()));
  assert.is(result!.biometry!.length, T);
  result!.biometry!.forEach((biometry, t) => {
    const hc = biometry.pooled!.hc;
    assert.ok(Math.abs(hc.median - 2 * Math.PI * radius(t)) < 0.03 * 2 * Math.PI * radius(t), `frame ${t}: HC ${hc.median} mm for a ${radius(t)} mm radius`);
    assert.is(biometry.unit, 'mm');
    assert.ok(Math.abs(biometry.ellipse!.cx - 31.5) < 0.5 && Math.abs(biometry.ellipse!.cy - 31.5) < 0.5, 'centred in frame pixels');
    assert.is(biometry.pooled!.fitted, 3 + 2, 'every weight sample and dropout pass fitted');
  });
  // The window's OOD decision applies: expected entropy 0.5 is above the clip threshold 0.3.
  assert.equal(result!.biometry!.map((b) => b.status), ['ood', 'ood', 'ood', 'ood']);
  const [quiet] = await lastValueFrom(of(window).pipe(lfusionClipUncertainty(fakeRunner(size, logit).runner, clipManifest(true, size)), toArray()));
  assert.is(quiet!.biometry, undefined, 'off unless asked for');
  assert.ok(result!.timings.biometry! >= 0 && quiet!.timings.biometry === undefined, 'timed when measured');
});

test('bad options fail at set-up', () => {
  const { runner } = fakeRunner();
  assert.throws(() => lfusionClipUncertainty(runner, clipManifest(), { planes: ['fused'] }), (e: unknown) => (e as LfusionError).code === 'INVALID_OPTION');
  assert.throws(() => lfusionClipUncertainty(runner, clipManifest(), { m: 0 }), (e: unknown) => (e as LfusionError).code === 'INVALID_OPTION');
});

test.run();
