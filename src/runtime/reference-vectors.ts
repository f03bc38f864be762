/**
 * A model package's reference vectors (`reference/index.json` and its raw arrays): fixed inputs and draws
 * with the factory's float64 outputs, against which the SDK checks its own results.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ModelError } from './errors.js';

export interface ReferenceArray {
  /** `uint8` arrays (raw frames, e.g. `images_u8`) come as Uint8Array. */
  data: Float32Array | Float64Array | Uint8Array;
  dims: number[];
}

export interface ReferenceCase {
  name: string;
  /** `frame` (default): one frame through the 2D heads; `clip`: a window through the clip heads. */
  kind: 'frame' | 'clip';
  m: number;
  n: number;
  k: number;
  /** The OOD map and aggregation its `ood_score` used, when the index says. */
  ood?: { map: string; aggregation: string };
  /** Inputs (`image`, `weight_noise`, ...) and expected outputs (`features`, `laplace_maps`, `fused`, ...). */
  arrays: Record<string, ReferenceArray>;
}

export interface ReferenceVectors {
  /** Elementwise agreement the factory promises: `|actual - expected| <= abs + rel * |expected|`. */
  tolerance: { abs: number; rel: number };
  cases: ReferenceCase[];
}

const BYTES = { uint8: 1, float32: 4, float64: 8 } as const;

/**
 * Reads `reference/index.json` of a package and every array it names (little-endian, C order).
 * @throws ModelError for a missing or malformed index, an unknown dtype, or a file whose size disagrees with its shape.
 * @example
 * const { tolerance, cases } = await loadReferenceVectors('models/packages/lfusion-hc18');
 */
export async function loadReferenceVectors(packagePath: string): Promise<ReferenceVectors> {
  const root = resolve(packagePath);
  const folder = join(root, 'reference');
  const fail = (message: string, details: Record<string, unknown> = {}): never => {
    throw new ModelError(`reference vectors: ${message}`, root, details);
  };
  let index: { tolerance?: { abs?: unknown; rel?: unknown }; cases?: unknown };
  try {
    index = JSON.parse(await readFile(join(folder, 'index.json'), 'utf8'));
  } catch (cause) {
    return fail(`cannot read reference/index.json: ${(cause as Error).message}`, { file: 'reference/index.json' });
  }
  const { abs, rel } = index.tolerance ?? {};
  if (typeof abs !== 'number' || typeof rel !== 'number') fail('index.json needs tolerance.abs and tolerance.rel numbers');
  if (!Array.isArray(index.cases) || index.cases.length === 0) fail('index.json needs a non-empty cases array');
  const cases = await Promise.all(
    (index.cases as Record<string, unknown>[]).map(async (entry, i) => {
      const { name, m, n, k, arrays, ood, kind = 'frame' } = entry;
      if (kind !== 'frame' && kind !== 'clip') fail(`case ${i}: kind must be "frame" or "clip", got ${JSON.stringify(kind)}`, { case: i });
      if (typeof name !== 'string' || ![m, n, k].every(Number.isInteger) || typeof arrays !== 'object' || arrays === null) {
        fail(`case ${i} needs name, integer m, n, k and arrays`, { case: i });
      }
      const loaded: Record<string, ReferenceArray> = {};
      for (const [arrayName, spec] of Object.entries(arrays as Record<string, { file?: unknown; dtype?: unknown; shape?: unknown }>)) {
        loaded[arrayName] = await readArray(folder, spec, (message) => fail(`case "${String(name)}" array "${arrayName}": ${message}`, { case: name, array: arrayName }));
      }
      const caseOod = ood as { map?: unknown; aggregation?: unknown } | undefined;
      if (caseOod !== undefined && (typeof caseOod.map !== 'string' || typeof caseOod.aggregation !== 'string')) fail(`case "${String(name)}": ood needs map and aggregation strings`, { case: name });
      return {
        name: name as string,
        kind: kind as 'frame' | 'clip',
        m: m as number,
        n: n as number,
        k: k as number,
        ...(caseOod ? { ood: { map: caseOod.map as string, aggregation: caseOod.aggregation as string } } : {}),
        arrays: loaded,
      };
    }),
  );
  return { tolerance: { abs: abs as number, rel: rel as number }, cases };
}

async function readArray(folder: string, spec: { file?: unknown; dtype?: unknown; shape?: unknown }, fail: (message: string) => never): Promise<ReferenceArray> {
  const { file, dtype, shape } = spec;
  if (typeof file !== 'string') fail('needs a file');
  if (!(typeof dtype === 'string' && dtype in BYTES)) fail(`dtype must be uint8, float32 or float64, got ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) fail('shape must be an array of integers');
  const dims = shape as number[];
  const bytesPerValue = BYTES[dtype as keyof typeof BYTES];
  let bytes: Buffer;
  try {
    bytes = await readFile(join(folder, file as string));
  } catch (cause) {
    return fail(`cannot read ${String(file)}: ${(cause as Error).message}`);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * bytesPerValue) fail(`${String(file)} has ${bytes.length} bytes, shape [${dims.join(', ')}] of ${String(dtype)} needs ${count * bytesPerValue}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'uint8') return { data: new Uint8Array(bytes), dims };
  const data = dtype === 'float32' ? new Float32Array(count) : new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = dtype === 'float32' ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true);
  return { data, dims };
}

/** The worst elementwise disagreement between an actual and an expected array. */
export interface Agreement {
  ok: boolean;
  maxAbs: number;
  /** The largest `|actual - expected| / (abs + rel * |expected|)`: at most 1 when `ok`. */
  worstRatio: number;
  worstIndex: number;
}

/**
 * Compares elementwise with `|actual - expected| <= abs + rel * |expected|` (numpy's `allclose`); NaN never agrees.
 * @example
 * const agreement = compareToReference(laplaceMaps, reference.arrays.laplace_maps.data, tolerance);
 */
export function compareToReference(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: { abs: number; rel: number }): Agreement {
  if (actual.length !== expected.length) return { ok: false, maxAbs: Infinity, worstRatio: Infinity, worstIndex: -1 };
  let maxAbs = 0;
  let worstRatio = 0;
  let worstIndex = -1;
  for (let i = 0; i < expected.length; i++) {
    const difference = Math.abs(actual[i]! - expected[i]!);
    const ratio = Number.isNaN(difference) ? Infinity : difference === 0 ? 0 : difference / (tolerance.abs + tolerance.rel * Math.abs(expected[i]!));
    if (difference > maxAbs || Number.isNaN(difference)) maxAbs = Number.isNaN(difference) ? Infinity : difference;
    if (ratio > worstRatio || worstIndex < 0) {
      worstRatio = ratio;
      worstIndex = i;
    }
  }
  return { ok: worstRatio <= 1, maxAbs, worstRatio, worstIndex };
}
