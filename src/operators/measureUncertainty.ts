/**
 * The `measures` graph: head outputs and logit noise in, the per-path uncertainty maps out.
 */
import { concatMap, type OperatorFunction } from 'rxjs';
import { LfusionError } from '../runtime/errors.js';
import { mapPixels } from '../runtime/model-package.js';
import type { GraphRunner } from '../runtime/types/inference.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { HeadSamples, MeasureMaps, MeasuredFrame } from '../runtime/types/uncertainty.js';
import { headMapsOnInputGrid } from '../runtime/upsample.js';
import { requireOutput } from './sampleHeads.js';

/** Path prefixes of the per-path maps: `laplace.<measure>`, `dropout.<measure>`. */
export const PATHS = ['laplace', 'dropout'] as const;

/**
 * Throws `INVALID_OPTION` unless `name` is `fused` or `<laplace|dropout>.<measure>` with a measure of `order`.
 * Call it where a user names a map, so a typo fails at set-up rather than on the first frame.
 */
export function checkMapName(name: string, order: readonly string[]): void {
  const [path, measure, extra] = name.split('.');
  const known = name === 'fused' || ((PATHS as readonly string[]).includes(path ?? '') && order.includes(measure ?? '') && extra === undefined);
  if (!known) {
    throw new LfusionError('INVALID_OPTION', `unknown map "${name}": expected "fused" or "<laplace|dropout>.<${order.join('|')}>"`, { map: name });
  }
}

/**
 * The map called `fused`, `laplace.<measure>` or `dropout.<measure>` (a view, not a copy; on maps from
 * {@link toInputGrid}, that row upsampled once).
 *
 * @example
 * const mi = selectMap(frame.maps, 'laplace.mutual_information');
 */
export function selectMap(maps: MeasureMaps, name: string, fused?: Float32Array): Float32Array {
  checkMapName(name, maps.order);
  if (name === 'fused') {
    if (!fused) throw new LfusionError('INVALID_OPTION', 'the "fused" map exists only after fuseUncertainty', { map: name });
    return fused;
  }
  const [path, measure] = name.split('.') as [(typeof PATHS)[number], string];
  const row = maps.order.indexOf(measure);
  const rowwise = (maps as Partial<RowwiseMaps>)[upsampledRow];
  return rowwise ? rowwise(path, row) : maps[path].subarray(row * maps.pixels, (row + 1) * maps.pixels);
}

/** Where {@link measureUncertainty}'s maps are. */
export interface MeasureOptions {
  /**
   * For heads at half resolution (docs/model-format.md): `true` (default) brings the maps to the input's grid, as the
   * heads' own final upsampling would have; `false` leaves them at the heads' resolution, for callers that combine
   * them first (live mode pools them, then upsamples with {@link toInputGrid}). No effect on other packages.
   */
  upsample?: boolean;
}

/** On maps from {@link toInputGrid}: one row at the input's grid, upsampled on first use. */
const upsampledRow = Symbol('upsampledRow');

/** {@link MeasureMaps} whose rows {@link selectMap} can take one at a time. */
interface RowwiseMaps extends MeasureMaps {
  [upsampledRow]: (path: (typeof PATHS)[number], row: number) => Float32Array;
}

/**
 * The maps at the model input's grid: upsampled 2x (`upsample2x`) for heads at half resolution, as given otherwise.
 * The upsampling is done when the maps are read, and row by row through {@link selectMap}: a frame's result reads
 * 5 of the 14 maps, and the other 9 (1.7 MB a frame at 224x224) are never made unless `laplace` or `dropout` is read.
 *
 * @example
 * const full = toInputGrid(manifest)(measured.maps); // full.pixels === 224 * 224
 */
export function toInputGrid(manifest: Pick<ModelManifest, 'input' | 'graphs'>): (maps: MeasureMaps) => MeasureMaps {
  const place = headMapsOnInputGrid(manifest);
  if (!place) return (maps) => maps;
  const pixels = manifest.input.width * manifest.input.height;
  return (maps) => {
    const { order } = maps;
    const whole: Partial<Record<(typeof PATHS)[number], Float32Array>> = {};
    const rows = new Map<string, Float32Array>();
    const all = (path: (typeof PATHS)[number]) => (whole[path] ??= place(maps[path], order.length));
    const one = (path: (typeof PATHS)[number], row: number): Float32Array => {
      const done = whole[path]?.subarray(row * pixels, (row + 1) * pixels) ?? rows.get(`${path}.${row}`);
      if (done) return done;
      const upsampled = place(maps[path].subarray(row * maps.pixels, (row + 1) * maps.pixels), 1);
      rows.set(`${path}.${row}`, upsampled);
      return upsampled;
    };
    const placed: RowwiseMaps = {
      order,
      pixels,
      get laplace() {
        return all('laplace');
      },
      get dropout() {
        return all('dropout');
      },
      [upsampledRow]: one,
    };
    return placed;
  };
}

/**
 * Runs the package's `measures` graph once per frame on all m x n Laplacian logit samples and all k dropout
 * logits, giving both paths' measure maps (rows in manifest `measures.order`) at the input's grid (see
 * {@link MeasureOptions.upsample}).
 *
 * @param pool runs the package's graphs (the SDK's inference pool).
 * @param manifest the package's manifest (`measures.order`, input size, the graphs' map sizes).
 * @param options `upsample`: where the maps are, for heads at half resolution.
 * @returns frames carrying `maps`; the head outputs are moved to the worker and released.
 * @example
 * encoded$.pipe(sampleHeads(pool, manifest), measureUncertainty(pool, manifest)).subscribe((f) => console.log(f.maps));
 */
export function measureUncertainty(pool: GraphRunner, manifest: Pick<ModelManifest, 'measures' | 'input' | 'graphs'>, options: MeasureOptions = {}): OperatorFunction<HeadSamples, MeasuredFrame> {
  const order = manifest.measures.order;
  const pixels = mapPixels(manifest);
  const placed = options.upsample === false ? (maps: MeasureMaps) => maps : toInputGrid(manifest);
  return concatMap(async (samples) => {
    const started = performance.now();
    const { laplace, draws } = samples;
    const outputs = await pool.run(
      'measures',
      {
        logit_mean: laplace.logitMean,
        cov_factor: laplace.covFactor,
        cov_diag: laplace.covDiag,
        factor_noise: draws.factorNoise,
        diag_noise: draws.diagNoise,
        dropout_logits: samples.dropoutLogits,
      },
      // Reused draws (about 200 MB at (50, 20, 50)) are sent to each worker once, not copied every frame.
      { resident: draws.reused ? ['factor_noise', 'diag_noise'] : [] },
    );
    const expected = [order.length, pixels];
    return {
      frame: samples.frame,
      counts: draws.counts,
      maps: placed({
        order,
        pixels,
        laplace: requireOutput(outputs, 'measures', 'laplace_maps', expected),
        dropout: requireOutput(outputs, 'measures', 'dropout_maps', expected),
      }),
      timings: { ...samples.timings, measures: performance.now() - started },
    };
  });
}
