// ONNX Runtime (onnxruntime-node, the SDK's runtime) against the package's PyTorch float64
// reference vectors. Debian has no python3-onnxruntime, so the model factory checks parity here.
//
//   node models/tools/ort_parity.mjs models/packages/lfusion-hc18 [--max]
//
// Runs every graph on each reference case's inputs, compares every expected output the case
// lists (|actual - expected| <= abs + rel * |expected|), prints a JSON report and exits 1 on a
// mismatch. A clip case ("kind": "clip") runs the clip path from raw frames: normalisation,
// the encoder per frame, clip_laplace_head, clip_dropout_head, clip_measures, then the fused map and
// the OOD score (docs/model-format.md formulas). With --max it also runs the heads and measures
// once at the manifest's maxM/maxN/maxK (and the clip section's; shapes and finiteness only).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

const packageDir = process.argv[2];
const runMax = process.argv.includes('--max');
if (!packageDir) {
  console.error('usage: node ort_parity.mjs <package folder> [--max]');
  process.exit(2);
}

const manifest = JSON.parse(readFileSync(join(packageDir, 'manifest.json'), 'utf8'));
const index = JSON.parse(readFileSync(join(packageDir, 'reference', 'index.json'), 'utf8'));
const { abs, rel } = index.tolerance;

function readArray(entry) {
  const bytes = readFileSync(join(packageDir, 'reference', entry.file));
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const arrays = { float64: Float64Array, float32: Float32Array, uint8: Uint8Array };
  return { data: Float32Array.from(new arrays[entry.dtype](buffer)), dims: entry.shape };
}

const tensor = ({ data, dims }) => new ort.Tensor('float32', data, dims);

function compare(name, actual, expected) {
  if (actual.data.length !== expected.data.length) {
    return { name, ok: false, error: `length ${actual.data.length} != ${expected.data.length}` };
  }
  let maxAbs = 0;
  let worst = 0; // largest |diff| / (abs + rel * |expected|)
  let worstIndex = -1;
  for (let i = 0; i < actual.data.length; i += 1) {
    const diff = Math.abs(actual.data[i] - expected.data[i]);
    if (!(diff <= maxAbs)) maxAbs = diff; // also catches NaN
    const ratio = diff / (abs + rel * Math.abs(expected.data[i]));
    if (!(ratio <= worst)) {
      worst = ratio;
      worstIndex = i;
    }
  }
  const at = { index: worstIndex, actual: actual.data[worstIndex], expected: expected.data[worstIndex] };
  return { name, ok: worst <= 1, maxAbs, worstToleranceRatio: worst, worst: at };
}

const sessions = {};
for (const [graph, spec] of Object.entries(manifest.graphs)) {
  sessions[graph] = await ort.InferenceSession.create(join(packageDir, spec.file), { intraOpNumThreads: 2 });
}

async function run(graph, feeds) {
  const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, tensor(v)]));
  const outputs = await sessions[graph].run(inputs);
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, { data: v.data, dims: v.dims }]));
}

// The SDK's fused map and OOD score (docs/model-format.md, "Fused map and OOD score"), in float64.
function fusedAndScore(laplaceMaps, dropoutMaps, auxiliaryName, ood) {
  const order = manifest.measures.order;
  const eps = manifest.measures.entropyEpsilon;
  const pixels = laplaceMaps.dims[1];
  const row = (maps, name) => maps.data.subarray(order.indexOf(name) * pixels, (order.indexOf(name) + 1) * pixels);
  const [auxPath, auxMeasure] = auxiliaryName.split('.');
  const auxiliary = row(auxPath === 'laplace' ? laplaceMaps : dropoutMaps, auxMeasure);
  let mean = 0;
  for (const v of auxiliary) mean += v / pixels;
  let variance = 0;
  for (const v of auxiliary) variance += (v - mean) ** 2 / pixels;
  const entropy = (p) => {
    const q = Math.min(Math.max(p, eps), 1 - eps);
    return -(q * Math.log(q) + (1 - q) * Math.log1p(-q));
  };
  const [lv, dv, lp, dp] = [row(laplaceMaps, 'logit_variance'), row(dropoutMaps, 'logit_variance'), row(laplaceMaps, 'mean_prob'), row(dropoutMaps, 'mean_prob')];
  const fused = new Float64Array(pixels);
  for (let i = 0; i < pixels; i += 1) fused[i] = Math.sqrt(lv[i] + dv[i]) * entropy(0.5 * (lp[i] + dp[i])) * variance;
  let values = fused;
  if (ood.map !== 'fused') {
    const [path, measure] = ood.map.split('.');
    values = Float64Array.from(row(path === 'laplace' ? laplaceMaps : dropoutMaps, measure));
  }
  let score;
  if (ood.aggregation === 'mean') {
    score = values.reduce((a, b) => a + b, 0) / values.length;
  } else {
    const q = Number(ood.aggregation.split(':')[1]);
    const sorted = Float64Array.from(values).sort();
    const position = q * (sorted.length - 1);
    const lower = Math.floor(position);
    const upper = Math.min(lower + 1, sorted.length - 1);
    score = sorted[lower] + (position - lower) * (sorted[upper] - sorted[lower]);
  }
  return { fused: { data: fused, dims: [pixels] }, score: { data: [score], dims: [1] } };
}

async function clipChecks(ref, check, ood) {
  const { mean, std } = manifest.input.normalization;
  const [frames, height, width] = ref.images_u8.dims;
  const images = { data: ref.images_u8.data.map((p) => (p / 255 - mean) / std), dims: [frames, 1, height, width] };
  const { features } = await run('encoder', { image: images });
  const head = await run('clip_laplace_head', { features, images, weight_noise: ref.weight_noise, posterior_scale: ref.posterior_scale });
  check('clip_logit_mean', head.logit_mean);
  const { logits } = await run('clip_dropout_head', { features, images, dropout_masks: ref.dropout_masks });
  check('clip_dropout_logits', logits);
  const maps = await run('clip_measures', {
    logit_mean: head.logit_mean, cov_factor: head.cov_factor, cov_diag: head.cov_diag,
    factor_noise: ref.factor_noise, diag_noise: ref.diag_noise, dropout_logits: logits,
  });
  const { fused, score } = fusedAndScore(maps.laplace_maps, maps.dropout_maps, manifest.clip.fusion.auxiliary, ood);
  check('clip_fused', fused);
  check('clip_ood_score', score);
}

const report = [];
for (const testCase of index.cases) {
  const ref = Object.fromEntries(Object.entries(testCase.arrays).map(([k, v]) => [k, readArray(v)]));
  const results = [];
  const check = (name, actual) => {
    if (ref[name]) results.push(compare(name, actual, ref[name]));
  };
  if (testCase.kind === 'clip') {
    await clipChecks(ref, check, testCase.ood);
    report.push({ case: testCase.name, checks: results });
    continue;
  }
  const { features } = await run('encoder', { image: ref.image });
  check('features', features);
  const head = await run('laplace_head', { features, image: ref.image, weight_noise: ref.weight_noise, posterior_scale: ref.posterior_scale });
  for (const name of ['logit_mean', 'cov_factor', 'cov_diag']) check(name, head[name]);
  const mapHead = await run('laplace_head', {
    features, image: ref.image, weight_noise: ref.weight_noise, posterior_scale: { data: new Float32Array([0]), dims: [1] },
  });
  check('map_logit_mean', mapHead.logit_mean);
  const { logits } = await run('dropout_head', { features, image: ref.image, dropout_masks: ref.dropout_masks });
  check('dropout_logits', logits);
  const maps = await run('measures', {
    logit_mean: head.logit_mean, cov_factor: head.cov_factor, cov_diag: head.cov_diag,
    factor_noise: ref.factor_noise, diag_noise: ref.diag_noise, dropout_logits: logits,
  });
  check('laplace_maps', maps.laplace_maps);
  check('dropout_maps', maps.dropout_maps);
  report.push({ case: testCase.name, checks: results });
}

if (runMax) {
  const { maxM, maxN, maxK } = manifest.sampling;
  // The heads' maps (and so the measures'): the input's pixels, or a quarter of them for heads at half resolution.
  const headPixels = manifest.graphs.laplace_head.outputs.logit_mean[1];
  const spec = manifest.graphs.laplace_head.inputs;
  const zeros = (dims) => ({ data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims });
  const features = zeros(spec.features);
  const image = zeros(spec.image);
  const started = Date.now();
  const head = await run('laplace_head', { features, image, weight_noise: zeros([maxM, spec.weight_noise[1]]), posterior_scale: { data: new Float32Array([1]), dims: [1] } });
  const masks = { data: new Float32Array(maxK * manifest.dropout.maskCount).fill(1), dims: [maxK, manifest.dropout.maskCount] };
  const { logits } = await run('dropout_head', { features, image, dropout_masks: masks });
  const maps = await run('measures', {
    ...head, factor_noise: zeros([maxM, maxN, manifest.laplace.rank]), diag_noise: zeros([maxM, maxN, headPixels]), dropout_logits: logits,
  });
  const finite = [...Object.values(head), logits, ...Object.values(maps)].every((t) => t.data.every(Number.isFinite));
  report.push({ case: `max m=${maxM} n=${maxN} k=${maxK}`, checks: [{ name: 'shapes+finite', ok: finite && maps.laplace_maps.dims[1] === headPixels, seconds: (Date.now() - started) / 1000 }] });
  if (manifest.clip) {
    const clip = manifest.clip;
    const clipSpec = manifest.graphs.clip_laplace_head.inputs;
    const pixels = clip.frames * clip.outputSize * clip.outputSize;
    const clipFeatures = zeros(clipSpec.features);
    const images = zeros(clipSpec.images);
    const clipStarted = Date.now();
    const clipHead = await run('clip_laplace_head', {
      features: clipFeatures, images, weight_noise: zeros([clip.sampling.maxM, clip.laplace.weightCount]), posterior_scale: { data: new Float32Array([1]), dims: [1] },
    });
    const clipMasks = { data: new Float32Array(clip.sampling.maxK * clip.dropout.maskCount).fill(1), dims: [clip.sampling.maxK, clip.dropout.maskCount] };
    const clipLogits = (await run('clip_dropout_head', { features: clipFeatures, images, dropout_masks: clipMasks })).logits;
    const clipMaps = await run('clip_measures', {
      ...clipHead, factor_noise: zeros([clip.sampling.maxM, clip.sampling.maxN, clip.laplace.rank]), diag_noise: zeros([clip.sampling.maxM, clip.sampling.maxN, pixels]), dropout_logits: clipLogits,
    });
    const clipFinite = [...Object.values(clipHead), clipLogits, ...Object.values(clipMaps)].every((t) => t.data.every(Number.isFinite));
    report.push({
      case: `clip max m=${clip.sampling.maxM} n=${clip.sampling.maxN} k=${clip.sampling.maxK}`,
      checks: [{ name: 'shapes+finite', ok: clipFinite && clipMaps.laplace_maps.dims[1] === pixels, seconds: (Date.now() - clipStarted) / 1000 }],
    });
  }
}

const ok = report.every((r) => r.checks.every((c) => c.ok));
console.log(JSON.stringify({ ok, onnxruntime: 'onnxruntime-node', report }, null, 1));
process.exit(ok ? 0 : 1);
