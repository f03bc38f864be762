/**
 * Loading and validating a model package (docs/model-format.md): the manifest's fields, every file's
 * SHA-256, and each ONNX graph's inputs/outputs against what its session reports.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModelError } from './errors.js';
import type { DensityManifest, DensityStatistics, Dimension, GraphSpec, HeadSettings, ModelManifest, OodConformalCalibration, OodDecisionManifest, OodReasonName } from './types/model.js';

/** The model package shipped with the SDK. */
export const DEFAULT_MODEL_PATH = fileURLToPath(new URL('../../models/packages/lfusion-hc18', import.meta.url));

export const MANIFEST_FILE = 'manifest.json';
export const FORMAT = 'lfusion-model-package';
export const FORMAT_VERSION = 1;
/** Graphs the SDK cannot work without; the others are checked when present. */
export const REQUIRED_GRAPHS = ['encoder', 'laplace_head'] as const;

/** A validated model package on disk. */
export interface ModelPackage {
  /** Absolute path of the package folder. */
  readonly path: string;
  readonly manifest: ModelManifest;
  /** Absolute path of a graph's ONNX file; a `ModelError` if the package has no such graph. */
  graphPath(graph: string): string;
  /** The manifest's declaration of a graph; a `ModelError` if the package has no such graph. */
  graph(graph: string): GraphSpec;
}

/**
 * Reads `manifest.json`, validates every field and checks every file's SHA-256.
 * Graph I/O is checked when the inference pool opens the sessions (see {@link checkGraphIo}).
 * @throws ModelError naming the field or file at fault.
 */
export async function loadModelPackage(packagePath: string): Promise<ModelPackage> {
  const root = resolve(packagePath);
  const manifest = validateManifest(await readManifestJson(root), root);
  const checks = [
    ...Object.entries(manifest.graphs).map(([name, spec]) => verifyChecksum(root, spec.file, spec.sha256, `graphs.${name}.sha256`)),
    ...Object.entries(manifest.files).map(([file, sha]) => verifyChecksum(root, file, sha, `files["${file}"]`)),
    ...(manifest.density ? [verifyChecksum(root, manifest.density.file, manifest.density.sha256, 'density.sha256')] : []),
  ];
  await Promise.all(checks);
  if (manifest.density) manifest.density.statistics = await readDensityStatistics(root, manifest.density);
  const graph = (name: string): GraphSpec => {
    const spec = manifest.graphs[name];
    if (!spec) throw new ModelError(`model package has no graph "${name}" (it has: ${Object.keys(manifest.graphs).join(', ')})`, root, { graph: name });
    return spec;
  };
  return { path: root, manifest, graph, graphPath: (name) => join(root, graph(name).file) };
}

async function readManifestJson(root: string): Promise<unknown> {
  const file = join(root, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ModelError(`cannot read ${file}: ${(cause as Error).message}`, root, { file: MANIFEST_FILE });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new ModelError(`${MANIFEST_FILE} is not valid JSON: ${(cause as Error).message}`, root, { file: MANIFEST_FILE });
  }
}

/** The density file as float64 `mean` and `precision`; its size must match `dimension`. */
async function readDensityStatistics(root: string, density: DensityManifest): Promise<DensityStatistics> {
  const bytes = await readFile(join(root, density.file));
  const d = density.dimension;
  const block = d / density.precisionBlocks;
  const values = new Float64Array(d + d * block);
  const expected = 4 * values.length;
  if (bytes.length !== expected) {
    throw new ModelError(`density statistics "${density.file}" has ${bytes.length} bytes, expected ${expected} (float32 mean [${d}] and ${density.precisionBlocks} precision blocks [${block}, ${block}])`, root, {
      file: density.file,
      field: 'density.dimension',
      expected,
      actual: bytes.length,
    });
  }
  for (let i = 0; i < values.length; i++) values[i] = bytes.readFloatLE(4 * i);
  if (!values.every(Number.isFinite)) throw new ModelError(`density statistics "${density.file}" hold non-finite values`, root, { file: density.file });
  return { mean: values.subarray(0, d), precision: values.subarray(d) };
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function verifyChecksum(root: string, file: string, expected: string, field: string): Promise<void> {
  let actual: string;
  try {
    actual = await sha256OfFile(join(root, file));
  } catch (cause) {
    throw new ModelError(`cannot read package file "${file}" (named by ${field}): ${(cause as Error).message}`, root, { file, field });
  }
  if (actual !== expected) {
    throw new ModelError(`checksum mismatch for "${file}": manifest ${field} is ${expected}, file is ${actual}`, root, { file, field, expected, actual });
  }
}

/** Field-by-field validation with messages that name the field (`input.normalization.std`). */
class ManifestReader {
  constructor(private readonly root: string) {}

  fail(field: string, expectation: string, value: unknown): never {
    // JSON.stringify writes Infinity (a manifest's 1e999) as null: numbers are shown as they are.
    const got = value === undefined ? 'it is missing' : `got ${typeof value === 'number' ? String(value) : JSON.stringify(value)}`;
    throw new ModelError(`${MANIFEST_FILE}: field "${field}" must be ${expectation}, ${got}`, this.root, { field });
  }

  object(value: unknown, field: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(field, 'an object', value);
    return value as Record<string, unknown>;
  }

  string(value: unknown, field: string): string {
    if (typeof value !== 'string' || value.length === 0) this.fail(field, 'a non-empty string', value);
    return value;
  }

  number(value: unknown, field: string, { min = -Infinity, integer = false, positive = false } = {}): number {
    const ok = typeof value === 'number' && Number.isFinite(value) && value >= min && (!integer || Number.isInteger(value)) && (!positive || value > 0);
    if (!ok) this.fail(field, `a finite ${integer ? 'integer' : 'number'}${positive ? ' > 0' : min > -Infinity ? ` >= ${min}` : ''}`, value);
    return value as number;
  }

  literal<T extends string | number>(value: unknown, field: string, allowed: readonly T[]): T {
    if (!allowed.includes(value as T)) this.fail(field, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value);
    return value as T;
  }

  stringArray(value: unknown, field: string): string[] {
    if (!Array.isArray(value) || value.length === 0) this.fail(field, 'a non-empty array of strings', value);
    return value.map((item, i) => this.string(item, `${field}[${i}]`));
  }

  sha256(value: unknown, field: string): string {
    if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) this.fail(field, 'a lowercase hex SHA-256 (64 characters)', value);
    return value;
  }

  relativeFile(value: unknown, field: string): string {
    const file = this.string(value, field);
    const normalised = normalize(file);
    if (isAbsolute(file) || normalised.startsWith('..') || normalised.split(sep).includes('..')) this.fail(field, 'a path inside the package', value);
    return file;
  }

  shapes(value: unknown, field: string): Record<string, Dimension[]> {
    const entries = Object.entries(this.object(value, field));
    if (entries.length === 0) this.fail(field, 'a non-empty object of tensor shapes', value);
    return Object.fromEntries(
      entries.map(([name, shape]) => {
        if (!Array.isArray(shape) || shape.length === 0) this.fail(`${field}.${name}`, 'a non-empty array of dimensions', shape);
        const dims = shape.map((dim, i) =>
          typeof dim === 'string' ? this.string(dim, `${field}.${name}[${i}]`) : this.number(dim, `${field}.${name}[${i}]`, { integer: true, positive: true }),
        );
        return [name, dims];
      }),
    );
  }

  graph(value: unknown, field: string): GraphSpec {
    const spec = this.object(value, field);
    return {
      file: this.relativeFile(spec.file, `${field}.file`),
      sha256: this.sha256(spec.sha256, `${field}.sha256`),
      inputs: this.shapes(spec.inputs, `${field}.inputs`),
      outputs: this.shapes(spec.outputs, `${field}.outputs`),
    };
  }
}

/** Validates a parsed `manifest.json`; throws a `ModelError` naming the first field at fault. */
export function validateManifest(json: unknown, packagePath: string): ModelManifest {
  const read = new ManifestReader(packagePath);
  const m = read.object(json, '(root)');
  read.literal(m.format, 'format', [FORMAT]);
  read.literal(m.formatVersion, 'formatVersion', [FORMAT_VERSION]);
  const input = read.object(m.input, 'input');
  const normalization = read.object(input.normalization, 'input.normalization');
  const graphsJson = read.object(m.graphs, 'graphs');
  for (const name of REQUIRED_GRAPHS) if (!(name in graphsJson)) read.fail(`graphs.${name}`, 'present (a graph the SDK needs)', undefined);
  const filesJson = read.object(m.files, 'files');
  const measures = read.object(m.measures, 'measures');
  const count = (value: unknown, field: string) => read.number(value, field, { integer: true, positive: true });
  const graphs = Object.fromEntries(Object.entries(graphsJson).map(([name, spec]) => [name, read.graph(spec, `graphs.${name}`)]));
  const manifest: ModelManifest = {
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    name: read.string(m.name, 'name'),
    classes: read.stringArray(m.classes, 'classes'),
    input: {
      width: count(input.width, 'input.width'),
      height: count(input.height, 'input.height'),
      channels: read.literal(input.channels, 'input.channels', [1]),
      resize: read.literal(input.resize, 'input.resize', ['stretch']),
      normalization: {
        mean: read.number(normalization.mean, 'input.normalization.mean'),
        std: read.number(normalization.std, 'input.normalization.std', { positive: true }),
      },
    },
    pixelSpacing: read.literal(m.pixelSpacing, 'pixelSpacing', ['carried']),
    graphs,
    files: Object.fromEntries(
      Object.entries(filesJson).map(([file, sha]) => [read.relativeFile(file, `files["${file}"]`), read.sha256(sha, `files["${file}"]`)]),
    ),
    ...headSettings(read, m, ''),
    measures: {
      order: read.stringArray(measures.order, 'measures.order'),
      entropyEpsilon: read.number(measures.entropyEpsilon, 'measures.entropyEpsilon', { positive: true }),
    },
    provenance: read.object(m.provenance, 'provenance'),
    metrics: read.object(m.metrics, 'metrics'),
  };
  if (m.clip !== undefined) {
    const clip = read.object(m.clip, 'clip');
    for (const name of CLIP_GRAPHS) if (!(name in graphs)) read.fail(`graphs.${name}`, 'present (the manifest has a "clip" section)', undefined);
    manifest.clip = {
      frames: count(clip.frames, 'clip.frames'),
      outputSize: count(clip.outputSize, 'clip.outputSize'),
      ...headSettings(read, clip, 'clip.'),
      ...(clip.metrics === undefined ? {} : { metrics: read.object(clip.metrics, 'clip.metrics') }),
      ...(clip.oodDecision === undefined ? {} : { oodDecision: oodDecisionSection(read, clip.oodDecision, 'clip.oodDecision') }),
    };
  }
  if (m.biometry !== undefined) {
    const biometry = read.object(m.biometry, 'biometry');
    const calibration = (section: Record<string, unknown>, at: string) => ({
      interval: read.literal(section.interval, `${at}.interval`, ['normalised-conformal-outline'] as const),
      intervalScale: read.number(section.intervalScale, `${at}.intervalScale`, { positive: true }),
      intervalFloor: read.number(section.intervalFloor, `${at}.intervalFloor`, { min: 0 }),
      calibration: read.object(section.calibration, `${at}.calibration`),
    });
    manifest.biometry = {
      ...calibration(biometry, 'biometry'),
      ...(biometry.clip === undefined ? {} : { clip: calibration(read.object(biometry.clip, 'biometry.clip'), 'biometry.clip') }),
    };
  }
  if (m.density !== undefined) manifest.density = densitySection(read, m.density);
  if (m.oodDecision !== undefined) manifest.oodDecision = oodDecisionSection(read, m.oodDecision);
  checkSharedDimensions(read, manifest);
  return manifest;
}

/**
 * Sizes the manifest states twice, as a setting and as a fixed dimension of a graph's declared tensor, must agree:
 * otherwise the package would load and fail at the first frame (a resized image or a weight-noise draw of the wrong
 * length). Graph declarations are checked against the ONNX files themselves when the sessions open.
 */
function checkSharedDimensions(read: ManifestReader, manifest: ModelManifest): void {
  const { input, laplace, dropout, clip } = manifest;
  // [setting, its value, graph, 'inputs' | 'outputs', tensor, dimension index]
  const shared: [string, number, string, 'inputs' | 'outputs', string, number][] = [
    ...(['encoder', 'laplace_head', 'dropout_head'] as const).flatMap((graph): typeof shared => [
      ['input.channels', input.channels, graph, 'inputs', 'image', 1],
      ['input.height', input.height, graph, 'inputs', 'image', 2],
      ['input.width', input.width, graph, 'inputs', 'image', 3],
    ]),
    ['laplace.weightCount', laplace.weightCount, 'laplace_head', 'inputs', 'weight_noise', 1],
    ['laplace.rank', laplace.rank, 'laplace_head', 'outputs', 'cov_factor', 1],
    ['laplace.rank', laplace.rank, 'measures', 'inputs', 'factor_noise', 2],
    ['dropout.maskCount', dropout.maskCount, 'dropout_head', 'inputs', 'dropout_masks', 1],
    ...(clip
      ? ([
          ['clip.laplace.weightCount', clip.laplace.weightCount, 'clip_laplace_head', 'inputs', 'weight_noise', 1],
          ['clip.laplace.rank', clip.laplace.rank, 'clip_measures', 'inputs', 'factor_noise', 2],
          ['clip.dropout.maskCount', clip.dropout.maskCount, 'clip_dropout_head', 'inputs', 'dropout_masks', 1],
        ] satisfies typeof shared)
      : []),
  ];
  for (const [field, value, graph, kind, tensor, index] of shared) {
    const declared = manifest.graphs[graph]?.[kind][tensor]?.[index];
    if (typeof declared === 'number' && declared !== value) read.fail(field, `${declared}, as graphs.${graph}.${kind}.${tensor}[${index}] declares`, value);
  }
  // The heads' maps: the input's size, or half of it each side (the SDK upsamples the measure maps); the dropout
  // head's and the measures graph's maps the same.
  const heads = headPixels(manifest);
  const halfGrid = (input.width / 2) * (input.height / 2);
  if (heads !== input.width * input.height && heads !== halfGrid) {
    read.fail('graphs.laplace_head.outputs.logit_mean[1]', `the input's ${input.width * input.height} pixels or, for heads at half resolution, ${halfGrid}`, heads);
  }
  for (const [graph, kind, tensor, index] of [['dropout_head', 'outputs', 'logits', 1], ['measures', 'inputs', 'logit_mean', 1], ['measures', 'inputs', 'diag_noise', 2], ['measures', 'outputs', 'laplace_maps', 1], ['measures', 'outputs', 'dropout_maps', 1]] as const) {
    const declared = manifest.graphs[graph]?.[kind][tensor]?.[index];
    if (typeof declared === 'number' && declared !== heads) read.fail(`graphs.${graph}.${kind}.${tensor}[${index}]`, `${heads}, the pixels of laplace_head's maps`, declared);
  }
}

function densitySection(read: ManifestReader, value: unknown): DensityManifest {
  const density = read.object(value, 'density');
  const section: DensityManifest = {
    file: read.relativeFile(density.file, 'density.file'),
    sha256: read.sha256(density.sha256, 'density.sha256'),
    dtype: read.literal(density.dtype, 'density.dtype', ['float32']),
    dimension: read.number(density.dimension, 'density.dimension', { integer: true, positive: true }),
    pooling: read.literal(density.pooling, 'density.pooling', ['mean', 'mean_std']),
    precisionBlocks: read.number(density.precisionBlocks, 'density.precisionBlocks', { integer: true, positive: true }),
  };
  if (section.dimension % (section.pooling === 'mean' ? 1 : 2) !== 0 || (section.dimension / (section.pooling === 'mean' ? 1 : 2)) % section.precisionBlocks !== 0) {
    read.fail('density.precisionBlocks', `a divisor of the ${section.pooling === 'mean' ? 'dimension' : 'channel count (dimension / 2)'}`, section.precisionBlocks);
  }
  return section;
}

export const OOD_REASONS: readonly OodReasonName[] = ['wrong-anatomy', 'no-head', 'acquisition', 'uncertain-shape'];

/** `oodDecision` (at the root) or `clip.oodDecision` (`at`). */
function oodDecisionSection(read: ManifestReader, value: unknown, at = 'oodDecision'): OodDecisionManifest {
  const decision = read.object(value, at);
  const thresholds = read.object(decision.thresholds, `${at}.thresholds`);
  const falseAlarmRate = read.number(decision.falseAlarmRate, `${at}.falseAlarmRate`, { positive: true });
  if (falseAlarmRate >= 1) read.fail(`${at}.falseAlarmRate`, 'below 1', falseAlarmRate);
  return {
    falseAlarmRate,
    ...(decision.conformal === undefined ? {} : { conformal: conformalSection(read, decision.conformal, falseAlarmRate, `${at}.conformal`) }),
    thresholds: Object.fromEntries(
      Object.entries(thresholds).map(([score, entry]) => {
        const field = `${at}.thresholds.${score}`;
        const spec = read.object(entry, field);
        return [score, { reason: read.literal(spec.reason, `${field}.reason`, OOD_REASONS), threshold: read.number(spec.threshold, `${field}.threshold`) }];
      }),
    ),
  };
}

/** `<decision>.conformal` (`at`), checked to hold the decision's stated false-alarm rate. */
function conformalSection(read: ManifestReader, value: unknown, falseAlarmRate: number, at: string): OodConformalCalibration {
  const section = read.object(value, at);
  const field = (name: string) => `${at}.${name}`;
  const scans = read.number(section.calibrationScans, field('calibrationScans'), { integer: true, positive: true });
  const rank = read.number(section.rank, field('rank'), { integer: true, positive: true });
  const level = read.number(section.level, field('level'), { positive: true });
  const tailSize = read.number(section.tailSize, field('tailSize'), { integer: true, positive: true });
  const expected = read.number(section.expectedFalseAlarmRate, field('expectedFalseAlarmRate'), { min: 0 });
  if (level >= 1) read.fail(field('level'), 'a p-value below 1', level);
  if (tailSize >= scans) read.fail(field('tailSize'), `below calibrationScans (${scans})`, tailSize);
  // The rank-th of n calibration scores bounds new false alarms by (n + 1 - rank) / (n + 1): it must hold the stated rate.
  const bound = (scans + 1 - rank) / (scans + 1);
  if (rank > scans || bound > falseAlarmRate + 1e-12) read.fail(field('rank'), `at most calibrationScans (${scans}) with (${scans} + 1 - rank) / ${scans + 1} <= falseAlarmRate ${falseAlarmRate}`, rank);
  if (Math.abs(expected - bound) > 1e-9) read.fail(field('expectedFalseAlarmRate'), `(calibrationScans + 1 - rank) / (calibrationScans + 1) = ${bound}`, expected);
  const calibration: OodConformalCalibration = { level, calibrationScans: scans, rank, tailSize, expectedFalseAlarmRate: expected };
  if (section.confidence === undefined) return calibration;
  const confidence = read.number(section.confidence, field('confidence'), { positive: true });
  if (confidence >= 1) read.fail(field('confidence'), 'below 1', confidence);
  // The realised rate is Beta(n + 1 - rank, rank): above falseAlarmRate with probability P(Binomial(n, rate) <= n - rank).
  const chance = binomialCdf(scans - rank, scans, falseAlarmRate);
  const chanceAbove = read.number(section.chanceAbove, field('chanceAbove'), { min: 0 });
  if (Math.abs(chanceAbove - chance) > 1e-9 + 1e-6 * chance) read.fail(field('chanceAbove'), `P(Binomial(calibrationScans, falseAlarmRate) <= calibrationScans - rank) = ${chance}`, chanceAbove);
  if (chance > 1 - confidence + 1e-12) read.fail(field('rank'), `high enough that the false-alarm rate exceeds ${falseAlarmRate} with probability at most ${1 - confidence} (it is ${chance})`, rank);
  return { ...calibration, confidence, chanceAbove };
}

/** P(X <= k) for X ~ Binomial(n, p), 0 < p < 1, summed in log space (no underflow of (1 - p)^n). */
function binomialCdf(k: number, n: number, p: number): number {
  let logTerm = n * Math.log1p(-p);
  let sum = 0;
  for (let i = 0; i <= Math.min(k, n); i++) {
    sum += Math.exp(logTerm);
    logTerm += Math.log((n - i) / (i + 1)) + Math.log(p / (1 - p));
  }
  return Math.min(sum, 1);
}

/** The graphs of the clip path, required with a manifest `clip` section. */
export const CLIP_GRAPHS = ['clip_laplace_head', 'clip_dropout_head', 'clip_measures'] as const;

/** `laplace`, `dropout`, `sampling`, `fusion` and `ood` of one set of heads: the manifest's root (prefix '') or `clip` ('clip.'). */
function headSettings(read: ManifestReader, section: Record<string, unknown>, prefix: string): HeadSettings {
  const field = (name: string) => `${prefix}${name}`;
  const laplace = read.object(section.laplace, field('laplace'));
  const dropout = read.object(section.dropout, field('dropout'));
  const sampling = read.object(section.sampling, field('sampling'));
  const fusion = read.object(section.fusion, field('fusion'));
  const ood = read.object(section.ood, field('ood'));
  const count = (value: unknown, name: string) => read.number(value, field(name), { integer: true, positive: true });
  const settings: HeadSettings = {
    laplace: {
      rank: count(laplace.rank, 'laplace.rank'),
      weightCount: count(laplace.weightCount, 'laplace.weightCount'),
      priorPrecision: read.number(laplace.priorPrecision, field('laplace.priorPrecision'), { positive: true }),
      posteriorScale: read.number(laplace.posteriorScale, field('laplace.posteriorScale'), { min: 0 }),
      covered: read.string(laplace.covered, field('laplace.covered')),
    },
    dropout: {
      rate: read.number(dropout.rate, field('dropout.rate'), { min: 0 }),
      maskCount: count(dropout.maskCount, 'dropout.maskCount'),
    },
    sampling: {
      m: count(sampling.m, 'sampling.m'),
      n: count(sampling.n, 'sampling.n'),
      k: count(sampling.k, 'sampling.k'),
      maxM: count(sampling.maxM, 'sampling.maxM'),
      maxN: count(sampling.maxN, 'sampling.maxN'),
      maxK: count(sampling.maxK, 'sampling.maxK'),
      seed: read.number(sampling.seed, field('sampling.seed'), { min: 0, integer: true }),
    },
    fusion: { auxiliary: read.string(fusion.auxiliary, field('fusion.auxiliary')) },
    ood: {
      map: read.string(ood.map, field('ood.map')),
      aggregation: read.string(ood.aggregation, field('ood.aggregation')),
      threshold: read.number(ood.threshold, field('ood.threshold')),
      raiseAfter: count(ood.raiseAfter, 'ood.raiseAfter'),
      clearAfter: count(ood.clearAfter, 'ood.clearAfter'),
    },
  };
  if (settings.dropout.rate >= 1) read.fail(field('dropout.rate'), 'a probability in [0, 1)', settings.dropout.rate);
  for (const key of ['m', 'n', 'k'] as const) {
    const max = settings.sampling[`max${key.toUpperCase()}` as 'maxM' | 'maxN' | 'maxK'];
    if (settings.sampling[key] > max) read.fail(field(`sampling.${key}`), `at most sampling.max${key.toUpperCase()} (${max})`, settings.sampling[key]);
  }
  if (!/^(mean|quantile:(0(\.\d+)?|1(\.0+)?))$/.test(settings.ood.aggregation)) read.fail(field('ood.aggregation'), '"mean" or "quantile:<p>" with p in [0, 1]', settings.ood.aggregation);
  return settings;
}

/**
 * Pixels per output map of a set of heads: the second dimension of its `laplace_head`'s `logit_mean`, the same as
 * {@link mapPixels} (a quarter of the input's for 2D heads at half resolution: docs/model-format.md, "Heads at half
 * resolution"); {@link mapPixels} for a package without that graph.
 */
export function headPixels(manifest: Pick<ModelManifest, 'graphs'> & { input: { width: number; height: number } }): number {
  const declared = manifest.graphs.laplace_head?.outputs?.logit_mean?.[1];
  return typeof declared === 'number' ? declared : mapPixels(manifest);
}

/**
 * Width and height of the 2D heads' output maps (and so of the measures graph's): the model input's, or half of each
 * for heads at half resolution. The input's without `graphs` (a caller naming its own map size, as the clip path's
 * biometry does) and for heads of several images (the clip heads, whose maps are frame-major).
 */
export function headGrid(manifest: { input: { width: number; height: number } } & Partial<Pick<ModelManifest, 'graphs'>>): { width: number; height: number } {
  const { input, graphs } = manifest;
  const oneImage = graphs?.laplace_head?.inputs?.image?.[0] === 1;
  const half = oneImage && headPixels({ input, graphs: graphs! }) * 4 === input.width * input.height;
  return half ? { width: input.width / 2, height: input.height / 2 } : { width: input.width, height: input.height };
}

/**
 * Pixels per map of a set of heads: the second dimension of its `measures` graph's `laplace_maps` (224 * 224 for
 * the 2D heads, 112 * 112 for heads at half resolution, `frames * outputSize^2` for the clip heads), or the input
 * size for a package without that graph.
 */
export function mapPixels(manifest: Pick<ModelManifest, 'graphs'> & { input: { width: number; height: number } }): number {
  const declared = manifest.graphs.measures?.outputs.laplace_maps?.[1];
  return typeof declared === 'number' ? declared : manifest.input.width * manifest.input.height;
}

/** What an ONNX session reports about one input or output (onnxruntime's `ValueMetadata`, reduced). */
export interface SessionValue {
  name: string;
  /** Empty when the runtime does not know the shape. */
  shape: readonly Dimension[];
  /** Element type, e.g. `float32`; absent when the runtime does not report it. */
  type?: string;
}

/**
 * Compares a graph's manifest declaration with what its ONNX session reports: the same input and
 * output names, the same rank, the same fixed dimensions, and float32 tensors. A symbolic dimension
 * in the session accepts any manifest entry; a fixed one must equal the manifest's number.
 * @throws ModelError naming the graph, the tensor and the dimension at fault.
 */
export function checkGraphIo(graph: string, spec: GraphSpec, session: { inputs: SessionValue[]; outputs: SessionValue[] }, packagePath: string): void {
  const compare = (kind: 'inputs' | 'outputs', declared: Record<string, Dimension[]>, actual: SessionValue[]) => {
    const declaredNames = Object.keys(declared).sort();
    const actualNames = actual.map((value) => value.name).sort();
    if (declaredNames.join('\0') !== actualNames.join('\0')) {
      throw new ModelError(
        `graph "${graph}" (${spec.file}): manifest ${kind} [${declaredNames.join(', ')}] differ from the ONNX session's [${actualNames.join(', ')}]`,
        packagePath,
        { graph, field: `graphs.${graph}.${kind}`, declared: declaredNames, actual: actualNames },
      );
    }
    for (const value of actual) {
      const expected = declared[value.name] ?? [];
      const where = `graph "${graph}" (${spec.file}) ${kind.slice(0, -1)} "${value.name}"`;
      const details = { graph, field: `graphs.${graph}.${kind}.${value.name}`, declared: expected, actual: value.shape };
      if (value.type !== undefined && value.type !== 'float32') throw new ModelError(`${where} is ${value.type}, the SDK feeds and reads float32`, packagePath, details);
      if (value.shape.length === 0) continue;
      if (value.shape.length !== expected.length) {
        throw new ModelError(`${where}: manifest shape [${expected.join(', ')}] has rank ${expected.length}, the ONNX graph's [${value.shape.join(', ')}] has rank ${value.shape.length}`, packagePath, details);
      }
      value.shape.forEach((dim, i) => {
        if (typeof dim === 'number' && dim !== expected[i]) {
          throw new ModelError(`${where}: dimension ${i} is ${dim} in the ONNX graph but ${JSON.stringify(expected[i])} in the manifest`, packagePath, details);
        }
      });
    }
  };
  compare('inputs', spec.inputs, session.inputs);
  compare('outputs', spec.outputs, session.outputs);
}
