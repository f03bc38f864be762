/**
 * Per-window OOD evidence of simulated sweeps through the SDK's clip path (encoder per frame, the clip heads with the
 * SDK's draws, `lfusionClipUncertainty`'s window evidence): what `lfusion.ood_decision --clip` chooses the clip
 * decision's thresholds on (validation sweeps) and evaluates (test sweeps and the clip OOD sets). Each sweep folder
 * holds frames.u8 (uint8 [count, frames, 224, 224]) and index.json, as `lfusion.clips` writes them (`--raw-val`,
 * `--raw-test`, `--raw-ood`); a sweep is one window of the package's clip length. Writes { scores: { set: [evidence] } }
 * in the layout of `ood_scores.ts`.
 *
 *   node --import tsx models/tools/clip_ood_scores.ts --set val=build/clips/val --set test=build/clips/test \
 *     --ood build/clips/ood --out build/clip-ood-scores/scores.json [--package packages/lfusion-hc18]
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openPathPools, readSweeps, runWindow } from '../../scripts/clip-sweeps.js';
import { encodeFrames } from '../../src/operators/encodeFrames.js';
import { lfusionClipUncertainty } from '../../src/operators/lfusionClipUncertainty.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';

const here = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    set: { type: 'string', multiple: true, default: [] },
    ood: { type: 'string' },
    package: { type: 'string', default: join(here, 'packages/lfusion-hc18') },
    out: { type: 'string', default: join(here, 'build/clip-ood-scores/scores.json') },
  },
});

const sets: [string, string][] = values.set!.map((spec) => {
  const [name, folder] = spec.split('=');
  if (!name || !folder) throw new Error(`--set takes name=folder, got ${spec}`);
  return [name, folder];
});
// The clip OOD sets (`lfusion.clips --raw-ood`): one folder per set, named as in the clip cache (ood-test-no_head, ...).
if (values.ood) for (const name of (await readdir(values.ood)).sort()) sets.push([name, join(values.ood, name)]);

const model = await loadModelPackage(values.package!);
const { manifest } = model;
if (!manifest.clip) throw new Error(`${values.package}: the package has no clip heads`);
const { pool, clipPool, close } = await openPathPools(model);
const encode = encodeFrames(pool, manifest);
const clip = lfusionClipUncertainty(clipPool, manifest);
const scores: Record<string, Record<string, number>[]> = {};
await mkdir(dirname(values.out!), { recursive: true });
try {
  for (const [name, folder] of sets) {
    const sweeps = readSweeps(folder);
    if (sweeps.length !== manifest.clip.frames) throw new Error(`${folder}: sweeps of ${sweeps.length} frames, the package's clip windows have ${manifest.clip.frames}`);
    scores[name] = [];
    for (let sweep = 0; sweep < sweeps.count; sweep++) scores[name]!.push((await runWindow(sweeps.window(sweep), encode, clip)).maps.ood.evidence!);
    process.stderr.write(`${name}: ${sweeps.count} windows\n`);
    // Saved after each set: a long run keeps what it has.
    await writeFile(values.out!, JSON.stringify({ package: manifest.name, sampling: manifest.clip.sampling, scores }) + '\n');
  }
} finally {
  await close();
}
