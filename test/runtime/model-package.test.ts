import { createHash } from 'node:crypto';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ModelError } from '../../src/runtime/errors.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { headGrid, headPixels, loadModelPackage } from '../../src/runtime/model-package.js';
import { TINY_PACKAGE, removeDir, tinyPackageCopy } from '../helpers/tiny-package.js';

async function rejection(promise: Promise<unknown>): Promise<ModelError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, ModelError);
    assert.is((error as ModelError).code, 'MODEL_INVALID');
    return error as ModelError;
  }
  throw new assert.Assertion({ message: 'expected a ModelError, the promise resolved' } as never);
}

async function loadEdited(edit: (manifest: any) => void): Promise<ModelError> {
  const dir = await tinyPackageCopy(edit);
  try {
    return await rejection(loadModelPackage(dir));
  } finally {
    await removeDir(dir);
  }
}

test('the tiny package loads with its manifest', async () => {
  const pkg = await loadModelPackage(TINY_PACKAGE);
  assert.is(pkg.manifest.name, 'tiny-test-package');
  assert.equal(pkg.manifest.graphs.encoder!.outputs.features, ['batch', 8, 14, 14]);
  assert.ok(pkg.graphPath('encoder').endsWith('encoder.onnx'));
  assert.throws(() => pkg.graph('no_such_graph'), /no graph "no_such_graph"/);
});

test('a missing manifest names the file', async () => {
  const error = await rejection(loadModelPackage('/nonexistent/package'));
  assert.match(error.message, /manifest\.json/);
});

test('a manifest that is not JSON is rejected', async () => {
  const dir = await tinyPackageCopy();
  await writeFile(join(dir, 'manifest.json'), '{"format": ');
  const error = await rejection(loadModelPackage(dir));
  assert.match(error.message, /not valid JSON/);
  await removeDir(dir);
});

test('malformed fields are rejected with the field named', async () => {
  assert.match((await loadEdited((m) => (m.formatVersion = 2))).message, /field "formatVersion" must be one of 1, got 2/);
  assert.match((await loadEdited((m) => delete m.input.normalization.std)).message, /"input\.normalization\.std" .* it is missing/);
  assert.match((await loadEdited((m) => (m.sampling.m = 0))).message, /"sampling\.m" must be a finite integer > 0/);
  assert.match((await loadEdited((m) => (m.sampling.k = m.sampling.maxK + 1))).message, /"sampling\.k" must be at most sampling\.maxK \(4\), got 5/);
  assert.match((await loadEdited((m) => delete m.graphs.laplace_head)).message, /"graphs\.laplace_head"/);
  assert.match((await loadEdited((m) => (m.graphs.encoder.file = '../outside.onnx'))).message, /"graphs\.encoder\.file" must be a path inside the package/);
  assert.match((await loadEdited((m) => (m.ood.aggregation = 'median'))).message, /"ood\.aggregation"/);
  assert.match((await loadEdited((m) => (m.graphs.encoder.inputs.image = ['batch', 1, -224, 224]))).message, /"graphs\.encoder\.inputs\.image\[2\]"/);
});

test('settings that disagree with a graph\'s declared dimensions are rejected at load, not at the first frame', async () => {
  assert.match((await loadEdited((m) => (m.input.width = 200))).message, /"input\.width" must be 224, as graphs\.encoder\.inputs\.image\[3\] declares, got 200/);
  assert.match((await loadEdited((m) => (m.input.height = 256))).message, /"input\.height" must be 224, as graphs\.encoder\.inputs\.image\[2\] declares, got 256/);
  assert.match((await loadEdited((m) => (m.laplace.weightCount = 10))).message, /"laplace\.weightCount" must be 9, as graphs\.laplace_head\.inputs\.weight_noise\[1\] declares, got 10/);
  assert.match((await loadEdited((m) => (m.laplace.rank = 3))).message, /"laplace\.rank" must be 2, as graphs\.laplace_head\.outputs\.cov_factor\[1\] declares/);
  assert.match((await loadEdited((m) => (m.dropout.maskCount = 7))).message, /"dropout\.maskCount" must be 8, as graphs\.dropout_head\.inputs\.dropout_masks\[1\] declares/);
});

/** Declares the tiny package's 2D heads with maps of `pixels` (the tiny package has no measures graph). */
function headMaps(m: any, pixels: number, dropoutPixels = pixels): void {
  const out = m.graphs.laplace_head.outputs;
  out.logit_mean[1] = out.cov_diag[1] = out.cov_factor[2] = pixels;
  m.graphs.dropout_head.outputs.logits[1] = dropoutPixels;
}

test('heads at half resolution: maps of a quarter of the input\'s load, with their grid; any other size is rejected', async () => {
  const dir = await tinyPackageCopy((m) => headMaps(m, 112 * 112));
  try {
    const { manifest } = await loadModelPackage(dir);
    assert.equal(headPixels(manifest), 112 * 112);
    assert.equal(headGrid(manifest), { width: 112, height: 112 });
    assert.equal(headGrid({ input: manifest.input }), { width: 224, height: 224 }, 'no graphs: the input grid (the clip path names its own)');
  } finally {
    await removeDir(dir);
  }
  const { manifest } = await loadModelPackage(TINY_PACKAGE);
  assert.equal([headPixels(manifest), headGrid(manifest)], [224 * 224, { width: 224, height: 224 }]);
  assert.match((await loadEdited((m) => headMaps(m, 100 * 100))).message, /"graphs\.laplace_head\.outputs\.logit_mean\[1\]" must be the input's 50176 pixels or, for heads at half resolution, 12544, got 10000/);
  assert.match((await loadEdited((m) => headMaps(m, 112 * 112, 224 * 224))).message, /"graphs\.dropout_head\.outputs\.logits\[1\]" must be 12544, the pixels of laplace_head's maps, got 50176/);
});

test('an out-of-range number is reported as written, not as null', async () => {
  const dir = await tinyPackageCopy();
  try {
    const file = join(dir, 'manifest.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace(/"threshold": ?0\.5/, '"threshold": 1e999'));
    assert.match((await rejection(loadModelPackage(dir))).message, /"ood\.threshold" must be a finite number, got Infinity/);
  } finally {
    await removeDir(dir);
  }
});

test('a clip section is validated like the root heads, and needs the clip graphs', async () => {
  const withClip = (edit: (clip: any) => void) => (m: any) => {
    m.clip = { frames: 16, outputSize: 56, laplace: m.laplace, dropout: m.dropout, sampling: m.sampling, fusion: m.fusion, ood: m.ood };
    for (const name of ['clip_laplace_head', 'clip_dropout_head', 'clip_measures']) m.graphs[name] = m.graphs.laplace_head;
    edit(m);
  };
  assert.match((await loadEdited(withClip((m) => delete m.graphs.clip_measures))).message, /"graphs\.clip_measures" must be present/);
  assert.match((await loadEdited(withClip((m) => (m.clip.frames = 0)))).message, /"clip\.frames" must be a finite integer > 0/);
  assert.match((await loadEdited(withClip((m) => (m.clip.sampling = { ...m.sampling, seed: -1 })))).message, /"clip\.sampling\.seed"/);
  assert.match((await loadEdited(withClip((m) => (m.clip.ood = { ...m.ood, aggregation: 'max' })))).message, /"clip\.ood\.aggregation"/);
  // The clip decision is validated like the root one, errors named by its path.
  assert.match((await loadEdited(withClip((m) => (m.clip.oodDecision = { falseAlarmRate: 0.025, thresholds: { 'head-area-low': { reason: 'head', threshold: 1 } } })))).message, /"clip\.oodDecision\.thresholds\.head-area-low\.reason"/);
  const conformal = { level: 0.0021, calibrationScans: 116, rank: 114, tailSize: 12, expectedFalseAlarmRate: 3 / 117 };
  assert.match((await loadEdited(withClip((m) => (m.clip.oodDecision = { falseAlarmRate: 0.025, conformal, thresholds: {} })))).message, /"clip\.oodDecision\.conformal\.rank" must be at most calibrationScans/);
});

test('a checksum mismatch names the file and both hashes', async () => {
  const dir = await tinyPackageCopy();
  await appendFile(join(dir, 'encoder.onnx'), Buffer.from([0]));
  const error = await rejection(loadModelPackage(dir));
  assert.match(error.message, /checksum mismatch for "encoder\.onnx"/);
  assert.is(error.context.file, 'encoder.onnx');
  await removeDir(dir);
});

test('a listed extra file that is missing is rejected', async () => {
  const error = await loadEdited((m) => (m.files['reference/index.json'] = 'a'.repeat(64)));
  assert.match(error.message, /cannot read package file "reference\/index\.json"/);
});

async function openEdited(edit: (manifest: any) => void): Promise<ModelError> {
  const dir = await tinyPackageCopy(edit);
  try {
    const pkg = await loadModelPackage(dir);
    return await rejection(InferencePool.open(pkg, { graphs: ['encoder', 'laplace_head'], threadsPerWorker: 1 }));
  } finally {
    await removeDir(dir);
  }
}

test('graph I/O that disagrees with the ONNX session is rejected when the sessions open', async () => {
  const wrongChannels = await openEdited((m) => (m.graphs.encoder.outputs.features = ['batch', 9, 14, 14]));
  assert.match(wrongChannels.message, /graph "encoder" .* output "features": dimension 1 is 8 in the ONNX graph but 9 in the manifest/);
  const wrongName = await openEdited((m) => {
    m.graphs.laplace_head.inputs.noise = m.graphs.laplace_head.inputs.weight_noise;
    delete m.graphs.laplace_head.inputs.weight_noise;
  });
  assert.match(wrongName.message, /manifest inputs \[features, image, noise, posterior_scale\] differ from the ONNX session's \[features, image, posterior_scale, weight_noise\]/);
  const wrongRank = await openEdited((m) => (m.graphs.laplace_head.inputs.posterior_scale = [1, 1]));
  assert.match(wrongRank.message, /"posterior_scale": manifest shape \[1, 1\] has rank 2/);
});

test('a graph file that is not ONNX is rejected when the sessions open, naming the graph', async () => {
  const dir = await tinyPackageCopy();
  const garbage = Buffer.from('not an onnx model');
  await writeFile(join(dir, 'encoder.onnx'), garbage);
  const manifestPath = join(dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
  manifest.graphs.encoder.sha256 = createHash('sha256').update(garbage).digest('hex');
  await writeFile(manifestPath, JSON.stringify(manifest));
  const error = await rejection(InferencePool.open(await loadModelPackage(dir), { graphs: ['encoder'], threadsPerWorker: 1 }));
  assert.match(error.message, /cannot open graph "encoder" \(encoder\.onnx\) with the cpu provider/);
  await removeDir(dir);
});


/** A tiny package copy with a 2-dimensional density section over `bytes` (their sha256 in the manifest). */
async function withDensity(bytes: Buffer, dimension = 2): Promise<string> {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const dir = await tinyPackageCopy((m) => (m.density = { file: 'density.bin', sha256, dtype: 'float32', dimension, pooling: 'mean', precisionBlocks: 1 }));
  await writeFile(join(dir, 'density.bin'), bytes);
  return dir;
}

const DENSITY = Buffer.from(Float32Array.from([0.5, 2, 2, 1, 1, 3]).buffer);

test('density statistics are read at load: mean, then the precision matrix', async () => {
  const dir = await withDensity(DENSITY);
  try {
    const { statistics } = (await loadModelPackage(dir)).manifest.density!;
    assert.equal(Array.from(statistics!.mean), [0.5, 2]);
    assert.equal(Array.from(statistics!.precision), [2, 1, 1, 3]);
  } finally {
    await removeDir(dir);
  }
});

test('a corrupt, truncated or missing density statistics file is a ModelError at load', async () => {
  const corrupt = await withDensity(DENSITY);
  await appendFile(join(corrupt, 'density.bin'), Buffer.from([0]));
  assert.match((await rejection(loadModelPackage(corrupt))).message, /checksum mismatch for "density\.bin": manifest density\.sha256/);
  await removeDir(corrupt);
  const truncated = await withDensity(DENSITY.subarray(0, 20));
  assert.match((await rejection(loadModelPackage(truncated))).message, /"density\.bin" has 20 bytes, expected 24 \(float32 mean \[2\] and 1 precision blocks/);
  await removeDir(truncated);
  const notFinite = await withDensity(Buffer.from(Float32Array.from([0.5, NaN, 2, 1, 1, 3]).buffer));
  assert.match((await rejection(loadModelPackage(notFinite))).message, /non-finite/);
  await removeDir(notFinite);
  assert.match((await loadEdited((m) => (m.density = { file: 'density.bin', sha256: '0'.repeat(64), dtype: 'float32', dimension: 2, pooling: 'mean', precisionBlocks: 1 }))).message, /cannot read package file "density\.bin"/);
  assert.match((await loadEdited((m) => (m.density = { file: 'density.bin', sha256: '0'.repeat(64), dtype: 'float64', dimension: 2, pooling: 'mean', precisionBlocks: 1 }))).message, /"density\.dtype"/);
  assert.match((await loadEdited((m) => (m.density = { file: 'density.bin', sha256: '0'.repeat(64), dtype: 'float32', dimension: 6, pooling: 'mean_std', precisionBlocks: 2 }))).message, /"density\.precisionBlocks" must be a divisor/);
  assert.match((await loadEdited((m) => (m.oodDecision = { falseAlarmRate: 0.025, thresholds: { density: { reason: 'anatomy', threshold: 1 } } }))).message, /"oodDecision\.thresholds\.density\.reason"/);
});

const CONFORMAL = { level: 0.0021, calibrationScans: 116, rank: 115, tailSize: 12, expectedFalseAlarmRate: 2 / 117 };
const withDecision = (conformal: Record<string, unknown>, falseAlarmRate = 0.025) => (m: any) =>
  (m.oodDecision = { falseAlarmRate, conformal, thresholds: { density: { reason: 'wrong-anatomy', threshold: 3.5 } } });

test('a conformal OOD decision loads, and one that cannot hold its false-alarm rate is a ModelError', async () => {
  const dir = await tinyPackageCopy(withDecision(CONFORMAL));
  try {
    const { manifest } = await loadModelPackage(dir);
    assert.equal(manifest.oodDecision!.conformal, CONFORMAL);
    assert.equal(manifest.oodDecision!.thresholds.density, { reason: 'wrong-anatomy', threshold: 3.5 });
  } finally {
    await removeDir(dir);
  }
  // The 114th of 116 bounds new false alarms by 3/117 = 2.56%, above the stated 2.5%.
  assert.match((await loadEdited(withDecision({ ...CONFORMAL, rank: 114, expectedFalseAlarmRate: 3 / 117 }))).message, /"oodDecision\.conformal\.rank" must be at most calibrationScans \(116\) with/);
  assert.match((await loadEdited(withDecision({ ...CONFORMAL, calibrationScans: 30, rank: 31, tailSize: 5 }))).message, /"oodDecision\.conformal\.rank"/);
  assert.match((await loadEdited(withDecision({ ...CONFORMAL, expectedFalseAlarmRate: 0.001 }))).message, /"oodDecision\.conformal\.expectedFalseAlarmRate"/);
  assert.match((await loadEdited(withDecision({ ...CONFORMAL, level: 1.5 }))).message, /"oodDecision\.conformal\.level" must be a p-value below 1/);
  assert.match((await loadEdited(withDecision({ ...CONFORMAL, tailSize: 116 }))).message, /"oodDecision\.conformal\.tailSize" must be below calibrationScans/);
  assert.match((await loadEdited(withDecision({ ...CONFORMAL, level: undefined }))).message, /"oodDecision\.conformal\.level" .* it is missing/);
  // Training-conditional: with 451 scans the 445th leaves P(rate > 2.5%) = P(Binomial(451, 0.025) <= 6) = 0.0656.
  const conditional = { ...CONFORMAL, calibrationScans: 451, rank: 445, expectedFalseAlarmRate: 7 / 452, confidence: 0.9, chanceAbove: 0.065606195571747 };
  const dir2 = await tinyPackageCopy(withDecision(conditional));
  try {
    assert.equal((await loadModelPackage(dir2)).manifest.oodDecision!.conformal, conditional);
  } finally {
    await removeDir(dir2);
  }
  assert.match((await loadEdited(withDecision({ ...conditional, confidence: 0.95 }))).message, /"oodDecision\.conformal\.rank" must be high enough that the false-alarm rate exceeds 0\.025 with probability at most 0\.05/);
  assert.match((await loadEdited(withDecision({ ...conditional, chanceAbove: 0.01 }))).message, /"oodDecision\.conformal\.chanceAbove" must be P\(Binomial/);
  assert.match((await loadEdited(withDecision({ ...conditional, confidence: 1 }))).message, /"oodDecision\.conformal\.confidence" must be below 1/);
  assert.match((await loadEdited(withDecision(CONFORMAL, 0))).message, /"oodDecision\.falseAlarmRate" must be a finite number > 0/);
  assert.match((await loadEdited(withDecision(CONFORMAL, 1))).message, /"oodDecision\.falseAlarmRate" must be below 1/);
});

test('a biometry section is validated at load: the interval method, a positive scale, a floor >= 0, and the same for its clip part', async () => {
  const calibration = { method: 'test', split: 'val' };
  const clip = { interval: 'normalised-conformal-outline', intervalScale: 2, intervalFloor: 0.005, calibration };
  const good = await tinyPackageCopy((m) => (m.biometry = { interval: 'normalised-conformal-outline', intervalScale: 4.2, intervalFloor: 0.005, calibration, clip }));
  try {
    const { biometry } = (await loadModelPackage(good)).manifest;
    assert.equal(biometry, { interval: 'normalised-conformal-outline', intervalScale: 4.2, intervalFloor: 0.005, calibration, clip });
  } finally {
    await removeDir(good);
  }
  // A section from the older calibration (one asymmetric scale, no method): the error says which field.
  assert.match((await loadEdited((m) => (m.biometry = { intervalScale: 6.7, calibration }))).message, /"biometry\.interval"/);
  assert.match((await loadEdited((m) => (m.biometry = { interval: 'normalised-conformal-outline', intervalScale: 0, intervalFloor: 0, calibration }))).message, /"biometry\.intervalScale"/);
  assert.match((await loadEdited((m) => (m.biometry = { interval: 'normalised-conformal-outline', intervalScale: 2, intervalFloor: -1, calibration }))).message, /"biometry\.intervalFloor"/);
  assert.match((await loadEdited((m) => (m.biometry = { ...clip, clip: { ...clip, intervalScale: -2 } }))).message, /"biometry\.clip\.intervalScale"/);
  assert.match((await loadEdited((m) => (m.biometry = { ...clip, clip: 'wide' }))).message, /"biometry\.clip"/);
});

test.run();
