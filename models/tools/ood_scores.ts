/**
 * Per-frame OOD evidence scores of sets of 224x224 grey frames, computed by the SDK itself (encoder, L-FUSION
 * heads with the SDK's draws, `decideOod`'s evidence): the scores `lfusion.ood_decision` chooses thresholds on
 * and evaluates. Reads the sets `lfusion.density --write-sets` writes (<sets>/index.json and <name>.u8 [N, 224,
 * 224]); writes { set: [{ evidence }] } JSON.
 *
 *   node --import tsx models/tools/ood_scores.ts --sets build/ood-scores/sets --out build/ood-scores/scores.json [--package packages/lfusion-hc18] [--limit N: frames per OOD set, evenly spaced; in-distribution sets whole]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { lastValueFrom, of } from 'rxjs';
import { encodeFrames } from '../../src/operators/encodeFrames.js';
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
  },
});

const index = JSON.parse(await readFile(join(values.sets!, 'index.json'), 'utf8')) as { size: number; sets: Record<string, number> };
const pkg = await loadModelPackage(values.package!);
const pool = await InferencePool.open(pkg, { workers: 1 });
const analyse = lfusionUncertainty(pool, pkg.manifest);
const encode = encodeFrames(pool, pkg.manifest);
const pixels = index.size * index.size;
const scores: Record<string, Record<string, number>[]> = {};
const rank = (name: string) => (name === 'val' || name === 'hc18-unlabelled' ? 0 : name.startsWith('ood-') ? 1 : 2);
try {
  // The calibration scans first (thresholds), then the OOD sets, the test scans last: each set is saved when done.
  const order = Object.entries(index.sets).sort(([a], [b]) => rank(a) - rank(b));
  for (const [name, total] of order) {
    const data = await readFile(join(values.sets!, `${name}.u8`));
    const count = name.startsWith('ood-') && values.limit ? Math.min(total, Number(values.limit)) : total;
    scores[name] = [];
    for (let n = 0; n < count; n++) {
      // Evenly spaced over the set (its files are sorted by subject): a subset covers every subject.
      const i = Math.floor((n * total) / count);
      const frame = { index: i, pts: i, captureTime: 0, width: index.size, height: index.size, data: new Uint8Array(data.subarray(i * pixels, (i + 1) * pixels)) };
      const result = await lastValueFrom(of(frame).pipe(encode, analyse));
      scores[name].push(result.ood!.evidence!);
      process.stderr.write(`\r${name} ${n + 1}/${count}   `);
    }
    await writeFile(values.out!, JSON.stringify({ package: pkg.manifest.name, sampling: pkg.manifest.sampling, scores }) + '\n');
  }
} finally {
  await pool.close();
}
process.stderr.write('\n');
