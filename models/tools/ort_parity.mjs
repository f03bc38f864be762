// ONNX Runtime (onnxruntime-node, the SDK's runtime) against the package's PyTorch float64
// reference vectors. Debian has no python3-onnxruntime, so the model factory checks parity here.
//
//   node models/tools/ort_parity.mjs models/packages/lfusion-hc18 [--max]
//
// Runs every graph on each reference case's inputs, compares every expected output the case
// lists (|actual - expected| <= abs + rel * |expected|), prints a JSON report and exits 1 on a
// mismatch. With --max it also runs the heads and measures once at the manifest's maxM/maxN/maxK
// (shapes and finiteness only).
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
  const values = entry.dtype === 'float64' ? new Float64Array(buffer) : new Float32Array(buffer);
  return { data: Float32Array.from(values), dims: entry.shape };
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

const report = [];
for (const testCase of index.cases) {
  const ref = Object.fromEntries(Object.entries(testCase.arrays).map(([k, v]) => [k, readArray(v)]));
  const results = [];
  const check = (name, actual) => {
    if (ref[name]) results.push(compare(name, actual, ref[name]));
  };
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
  const hw = 224 * 224;
  const spec = manifest.graphs.laplace_head.inputs;
  const zeros = (dims) => ({ data: new Float32Array(dims.reduce((a, b) => a * b, 1)), dims });
  const features = zeros(spec.features);
  const image = zeros(spec.image);
  const started = Date.now();
  const head = await run('laplace_head', { features, image, weight_noise: zeros([maxM, spec.weight_noise[1]]), posterior_scale: { data: new Float32Array([1]), dims: [1] } });
  const masks = { data: new Float32Array(maxK * manifest.dropout.maskCount).fill(1), dims: [maxK, manifest.dropout.maskCount] };
  const { logits } = await run('dropout_head', { features, image, dropout_masks: masks });
  const maps = await run('measures', {
    ...head, factor_noise: zeros([maxM, maxN, manifest.laplace.rank]), diag_noise: zeros([maxM, maxN, hw]), dropout_logits: logits,
  });
  const finite = [...Object.values(head), logits, ...Object.values(maps)].every((t) => t.data.every(Number.isFinite));
  report.push({ case: `max m=${maxM} n=${maxN} k=${maxK}`, checks: [{ name: 'shapes+finite', ok: finite && maps.laplace_maps.dims[1] === hw, seconds: (Date.now() - started) / 1000 }] });
}

const ok = report.every((r) => r.checks.every((c) => c.ok));
console.log(JSON.stringify({ ok, onnxruntime: 'onnxruntime-node', report }, null, 1));
process.exit(ok ? 0 : 1);
