/**
 * Per-frame OOD evidence scores of sets of 224x224 grey frames, computed by the SDK itself (encoder, L-FUSION
 * heads with the SDK's draws, `decideOod`'s evidence): the scores `lfusion.ood_decision` chooses thresholds on
 * and evaluates. Reads the sets `lfusion.density --write-sets` writes (<sets>/index.json and <name>.u8 [N, 224,
 * 224]); writes { set: [{ evidence }] } JSON, and each frame's head mask (`<out>.masks/<name>.u8`, [N, 224, 224]
 * of 0/1) so that `--evidence-only` recomputes the evidence from those masks, the frames and the recorded density
 * and uncertainty scores in seconds, without the heads (for work on the evidence scores themselves).
 *
 *   node --import tsx models/tools/ood_scores.ts --sets build/ood-scores/sets --out build/ood-scores/scores.json [--package packages/lfusion-hc18] [--limit N: frames per OOD set, evenly spaced; in-distribution sets whole] [--evidence-only]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { lastValueFrom, of } from 'rxjs';
import { evidenceScores } from '../../src/operators/decideOod/evidence.js';
import { encodeFrames, greyResizer, normaliseGrey } from '../../src/operators/encodeFrames.js';
import { lfusionUncertainty } from '../../src/operators/lfusionUncertainty.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';

const here = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    sets: { type: 'string', default: join(here, 'build/ood-scores/sets') },
    package: { type: 'string', default: join(here, 'packages/lfusion-hc18') },
    out: { type: 'string', default: join(here, 'build/ood-scores/scores.json') },
    limit: { type: 'string' },
    'evidence-only': { type: 'boolean', default: false },
  },
});

const index = JSON.parse(await readFile(join(values.sets!, 'index.json'), 'utf8')) as { size: number; sets: Record<string, number> };
const pkg = await loadModelPackage(values.package!);
const pixels = index.size * index.size;
const masksDir = `${values.out!}.masks`;
const rank = (name: string) => (name === 'val' || name === 'hc18-unlabelled' ? 0 : name.startsWith('ood-') ? 1 : 2);
// The calibration scans first (thresholds), then the OOD sets, the test scans last: each set is saved when done.
const order = Object.entries(index.sets).sort(([a], [b]) => rank(a) - rank(b));
// Evenly spaced over the set (its files are sorted by subject): a subset covers every subject.
const frameAt = (n: number, count: number, total: number) => Math.floor((n * total) / count);
const save = (scores: Record<string, Record<string, number>[]>) => writeFile(values.out!, JSON.stringify({ package: pkg.manifest.name, sampling: pkg.manifest.sampling, scores }) + '\n');

if (values['evidence-only']) {
  // Same frames as the recorded scores; the evidence again from their masks, frames, density and uncertainty.
  const recorded = JSON.parse(await readFile(values.out!, 'utf8')) as { scores: Record<string, Record<string, number>[]> };
  const resize = greyResizer(index.size, index.size, pkg.manifest.input.width, pkg.manifest.input.height);
  const resized = new Uint8Array(pkg.manifest.input.width * pkg.manifest.input.height);
  const scores: Record<string, Record<string, number>[]> = {};
  for (const [name, total] of order) {
    const records = recorded.scores[name];
    if (!records) continue;
    const data = await readFile(join(values.sets!, `${name}.u8`));
    const masks = await readFile(join(masksDir, `${name}.u8`));
    scores[name] = records.map((record, n) => {
      const i = frameAt(n, records.length, total);
      resize(data.subarray(i * pixels, (i + 1) * pixels), resized);
      const meanProb = Float32Array.from(masks.subarray(n * resized.length, (n + 1) * resized.length));
      const image = normaliseGrey(resized, pkg.manifest.input.normalization);
      return evidenceScores({ density: record.density, uncertainty: record.uncertainty!, meanProb, image }, pkg.manifest.input, pkg.manifest.input.normalization);
    }) as Record<string, number>[];
  }
  await save(scores);
} else {
  const pool = await InferencePool.open(pkg, { workers: 1 });
  const analyse = lfusionUncertainty(pool, pkg.manifest);
  const encode = encodeFrames(pool, pkg.manifest);
  const scores: Record<string, Record<string, number>[]> = {};
  await mkdir(masksDir, { recursive: true });
  try {
    for (const [name, total] of order) {
      const data = await readFile(join(values.sets!, `${name}.u8`));
      const count = name.startsWith('ood-') && values.limit ? Math.min(total, Number(values.limit)) : total;
      scores[name] = [];
      const masks: Uint8Array[] = [];
      for (let n = 0; n < count; n++) {
        const i = frameAt(n, count, total);
        const frame = { index: i, pts: i, captureTime: 0, width: index.size, height: index.size, data: new Uint8Array(data.subarray(i * pixels, (i + 1) * pixels)) };
        const result = await lastValueFrom(of(frame).pipe(encode, analyse));
        scores[name].push(result.ood!.evidence!);
        masks.push(result.planes.find((plane) => plane.name === 'mask')!.data);
        process.stderr.write(`\r${name} ${n + 1}/${count}   `);
      }
      await writeFile(join(masksDir, `${name}.u8`), Buffer.concat(masks));
      await save(scores);
    }
  } finally {
    await pool.close();
  }
  process.stderr.write('\n');
}
