/**
 * Per-frame cost of the fused OOD decision's additions, on the shipped package's reference frames: the feature
 * density (`featureDensity`: pooling + the quadratic form with the package's statistics) and the segmentation
 * and acquisition evidence (`evidenceScores` on a 224x224 frame). Both run on data the pipeline already has.
 *
 *   npm run bench -- oodDecision
 */
import { evidenceScores } from '../src/operators/decideOod/evidence.js';
import { featureDensity } from '../src/operators/scoreFeatureDensity.js';
import { loadModelPackage } from '../src/runtime/model-package.js';
import { loadReferenceVectors } from '../src/runtime/reference-vectors.js';
import { SHIPPED_PACKAGE } from '../test/helpers/shipped-package.js';
import type { BenchModule, BenchResult } from './run.js';

const FRAMES = Number(process.env.BENCH_OOD_FRAMES ?? 200);
const REPEATS = Number(process.env.BENCH_OOD_REPEATS ?? 5);

function msPerCall(calls: number, call: (i: number) => void): number {
  const started = performance.now();
  for (let i = 0; i < calls; i++) call(i);
  return (performance.now() - started) / calls;
}

const bench: BenchModule = {
  title: `OOD decision: feature density and evidence per frame, ${FRAMES} frames x ${REPEATS}`,
  async run(): Promise<BenchResult[]> {
    const { manifest } = await loadModelPackage(SHIPPED_PACKAGE);
    if (!manifest.density) throw new Error('the shipped package has no density statistics (make -C models density)');
    const density = manifest.density;
    const reference = (await loadReferenceVectors(SHIPPED_PACKAGE)).cases.find((c) => c.arrays.features && c.arrays.image && c.arrays.fused)!;
    const features = reference.arrays.features!.data as Float32Array;
    const image = reference.arrays.image!.data as Float32Array;
    const meanProb = new Float32Array(image.length).map((_, i) => ((i % 224) - 112) ** 2 + (Math.floor(i / 224) - 100) ** 2 < 60 ** 2 ? 0.9 : 0.1);
    const scratch = new Float64Array(density.dimension);
    const densityMs: number[] = [];
    const evidenceMs: number[] = [];
    msPerCall(20, () => featureDensity(features, density, scratch)); // warm-up
    for (let r = 0; r < REPEATS; r++) {
      densityMs.push(msPerCall(FRAMES, () => featureDensity(features, density, scratch)));
      evidenceMs.push(msPerCall(FRAMES, () => evidenceScores({ uncertainty: 0, meanProb, image }, manifest.input, manifest.input.normalization)));
    }
    const notes = { dimension: density.dimension, pooling: density.pooling, frames: FRAMES };
    return [
      { name: 'featureDensity', unit: 'ms/frame', samples: densityMs, notes },
      { name: 'segmentation + acquisition evidence', unit: 'ms/frame', samples: evidenceMs, notes: { size: '224x224', frames: FRAMES } },
    ];
  },
};

export default bench;
