import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { firstValueFrom, of } from 'rxjs';
import { decideOod, firedReasons, type EvidenceFrame } from '../../src/operators/decideOod.js';
import { acquisitionEvidence, segmentationEvidence } from '../../src/operators/decideOod/evidence.js';
import { beamShadow } from '../../src/operators/decideOod/shadow.js';
import type { OodDecisionManifest } from '../../src/runtime/types/model.js';

const SIZE = 64;

/** Foreground probability 1 inside the ellipse with centre (32, 30) and semi-axes (a, b), 0 outside. */
function ellipseProb(a: number, b: number): Float32Array {
  const prob = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) prob[y * SIZE + x] = ((x - 32) / a) ** 2 + ((y - 30) / b) ** 2 <= 1 ? 1 : 0;
  return prob;
}

test('an elliptic mask: its area, and its moment ellipse fits it', () => {
  const { area, misfit, ellipse } = segmentationEvidence(ellipseProb(20, 12), SIZE, SIZE);
  assert.ok(Math.abs(area - (Math.PI * 20 * 12) / SIZE ** 2) < 0.01, `area ${area}`);
  assert.ok(misfit < 0.05, `misfit ${misfit}`);
  assert.is(ellipse.reduce((a, b) => a + b, 0) > 0.9 * Math.PI * 20 * 12, true);
});

test('no mask: area 0, misfit 1; a ragged mask (two blobs) fits badly', () => {
  assert.equal(segmentationEvidence(new Float32Array(SIZE * SIZE), SIZE, SIZE).misfit, 1);
  const blobs = new Float32Array(SIZE * SIZE);
  for (let y = 5; y < 15; y++) for (let x = 5; x < 15; x++) blobs[y * SIZE + x] = blobs[(y + 45) * SIZE + x + 45] = 1;
  assert.ok(segmentationEvidence(blobs, SIZE, SIZE).misfit > 0.5);
});

test('acquisition: mean grey level, and the share of the head in a shadow reaching the far edge', () => {
  const normalization = { mean: 0.5, std: 0.25 };
  const size = { width: 4, height: 2 };
  const head = Uint8Array.from([1, 1, 1, 1, 0, 0, 0, 0]); // the top row
  const frame = (top: number, bottom: number) => Float32Array.from({ length: 8 }, (_, i) => ((i < 4 ? top : bottom) - 0.5) / 0.25);
  const lit = acquisitionEvidence(frame(0.9, 0.02), normalization, head, size);
  assert.ok(Math.abs(lit.brightness - (0.9 + 0.02) / 2) < 1e-6);
  assert.is(lit.shadow, 0, 'a bright head above dark tissue is not in a shadow');
  assert.is(acquisitionEvidence(frame(0.02, 0.02), normalization, head, size).shadow, 1, 'a dark head over dark tissue to the far edge is');
});

/** Tissue at grey 0.4 with the head of {@link ellipseProb}(20, 12); `paint` darkens (or blanks) pixels. */
function scan(paint: (x: number, y: number) => number | undefined): Float32Array {
  const grey = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) grey[y * SIZE + x] = paint(x, y) ?? 0.4;
  return grey;
}

test('beam shadow: a dark band from inside the head to the far edge counts, fluid bounded by tissue and a black box do not', () => {
  const head = Uint8Array.from(ellipseProb(20, 12));
  const headPixels = head.reduce((a, b) => a + b, 0);
  assert.is(beamShadow(scan(() => undefined), head, SIZE, SIZE), 0);
  // A vertical band 8 columns wide, dark (with an attenuated echo the run jumps) from the head's centre row down.
  const band = scan((x, y) => (x >= 28 && x < 36 && y >= 30 ? (y === 40 ? 0.3 : 0.03) : undefined));
  let shadowed = 0;
  for (let y = 30; y < SIZE; y++) for (let x = 28; x < 36; x++) shadowed += head[y * SIZE + x]!;
  const score = beamShadow(band, head, SIZE, SIZE);
  assert.ok(Math.abs(score - shadowed / headPixels) < 0.03, `band ${score} vs ${shadowed / headPixels}`);
  // The same dark band ending in tissue 6 pixels below the head (amniotic fluid): no shadow.
  assert.is(beamShadow(scan((x, y) => (x >= 28 && x < 36 && y >= 30 && y < 48 ? 0.03 : undefined)), head, SIZE, SIZE), 0);
  // An exactly black overlay box over the bottom of the head and below: no image, not a shadow.
  assert.is(beamShadow(scan((x, y) => (x >= 28 && x < 36 && y >= 36 ? 0 : undefined)), head, SIZE, SIZE), 0);
  assert.is(beamShadow(band, new Uint8Array(SIZE * SIZE), SIZE, SIZE), 0);
});

const DECISION: OodDecisionManifest = {
  falseAlarmRate: 0.025,
  thresholds: { density: { reason: 'wrong-anatomy', threshold: 10 }, 'head-area-low': { reason: 'no-head', threshold: -0.05 }, uncertainty: { reason: 'uncertain-shape', threshold: 0.2 } },
};

test('only scores strictly above their threshold fire, in evidence order; scores without a threshold never do', () => {
  assert.equal(firedReasons({ density: 10, uncertainty: 0.1, 'head-area-low': -0.5, 'ellipse-misfit': 1 }, DECISION), []);
  assert.equal(firedReasons({ 'head-area-low': -0.01, density: 12 }, DECISION), [
    { reason: 'wrong-anatomy', evidence: 'density', score: 12, threshold: 10 },
    { reason: 'no-head', evidence: 'head-area-low', score: -0.01, threshold: -0.05 },
  ]);
});

function frame(density: number | undefined, uncertainty: number, meanProb: Float32Array): EvidenceFrame {
  const pixels = SIZE * SIZE;
  return {
    frame: { index: 0, pts: 0, captureTime: 0, width: SIZE, height: SIZE, data: new Uint8Array(pixels) },
    counts: { m: 1, n: 1, k: 1 },
    maps: { order: [], pixels, laplace: new Float32Array(0), dropout: new Float32Array(0) },
    meanProb,
    fused: new Float32Array(pixels),
    ood: { score: uncertainty, threshold: 0.15, map: 'fused', above: uncertainty > 0.15 },
    image: new Float32Array(pixels),
    density,
    timings: {},
  };
}

const INPUT = { width: SIZE, height: SIZE, channels: 1, resize: 'stretch' as const, normalization: { mean: 0, std: 1 } };

test('with oodDecision: above is the fused decision, with the reasons that fired', async () => {
  const head = ellipseProb(20, 12);
  const normal = await firstValueFrom(of(frame(5, 0.18, head)).pipe(decideOod({ input: INPUT, oodDecision: DECISION })));
  assert.is(normal.ood.above, false, 'uncertainty 0.18 is above the old 0.15 but below the decision\'s 0.2');
  assert.equal(normal.ood.reasons, []);
  assert.is(normal.ood.evidence!.density, 5);
  const heart = await firstValueFrom(of(frame(40, 0.05, new Float32Array(SIZE * SIZE))).pipe(decideOod({ input: INPUT, oodDecision: DECISION })));
  assert.is(heart.ood.above, true);
  assert.equal(heart.ood.reasons!.map((r) => r.reason), ['wrong-anatomy', 'no-head']);
  assert.not.ok('image' in heart, 'the image is not carried on');
});

test('without oodDecision: evidence is collected and above stays the uncertainty score\'s', async () => {
  const result = await firstValueFrom(of(frame(undefined, 0.18, new Float32Array(SIZE * SIZE))).pipe(decideOod({ input: INPUT })));
  assert.is(result.ood.above, true);
  assert.equal(result.ood.reasons, []);
  assert.is(result.ood.evidence!.density, undefined);
  assert.is(result.ood.evidence!['ellipse-misfit'], 1);
});

test.run();
