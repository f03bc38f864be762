/**
 * Does aligning a sweep before the clip (3D) heads improve their masks? Runs the SDK's clip path on the simulated
 * test sweeps that `lfusion.clips` writes (build/clips/test: frames.u8, masks.u8 [N, 16, 224, 224], index.json)
 * twice: on the frames as simulated, and on the frames aligned to the sweep's first frame by `alignFrames`, with
 * the clip maps mapped back onto each frame (`warpToOriginal`), as the pipeline's `clip.align` does. Dice is
 * against each frame's own mask, so both settings answer the same question: how well is the head in this frame
 * segmented. Writes build/results/clip-alignment.json.
 *
 *   node --import tsx models/tools/clip_alignment.ts [--clips build/clips/test] [--package packages/lfusion-hc18] [--limit N]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import { alignFrames } from '../../src/operators/alignFrames.js';
import { warpToOriginal } from '../../src/operators/alignFrames/warp.js';
import { encodeFrames } from '../../src/operators/encodeFrames.js';
import { dice } from '../../src/report/metrics.js';
import { labelMapAt, resample } from '../../src/report/overlay.js';
import { lfusionClipUncertainty } from '../../src/operators/lfusionClipUncertainty.js';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { loadModelPackage } from '../../src/runtime/model-package.js';
import type { AlignedFrame, ClipWindow, EncodedFrame, Frame } from '../../src/runtime/types/frames.js';

const here = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    clips: { type: 'string', default: join(here, 'build/clips/test') },
    package: { type: 'string', default: join(here, 'packages/lfusion-hc18') },
    out: { type: 'string', default: join(here, 'build/results/clip-alignment.json') },
    limit: { type: 'string' },
  },
});

const index = JSON.parse(await readFile(join(values.clips!, 'index.json'), 'utf8')) as { count: number; frames: number; size: number; names?: string[] };
const frames = await readFile(join(values.clips!, 'frames.u8'));
const masks = await readFile(join(values.clips!, 'masks.u8'));
const { frames: length, size } = index;
const pixels = size * size;
const count = Math.min(index.count, values.limit ? Number(values.limit) : index.count);

const pkg = await loadModelPackage(values.package!);
const pool = await InferencePool.open(pkg, { workers: 1 });
const encode = encodeFrames(pool, pkg.manifest);
const analyse = lfusionClipUncertainty(pool, pkg.manifest);

const frameAt = (clip: number, t: number): Frame => {
  const offset = (clip * length + t) * pixels;
  return { index: t, pts: t, captureTime: 0, width: size, height: size, data: new Uint8Array(frames.subarray(offset, offset + pixels)) };
};
const maskAt = (clip: number, t: number) => {
  const offset = (clip * length + t) * pixels;
  return { width: size, height: size, data: masks.subarray(offset, offset + pixels) };
};

/** The clip heads' foreground probability for each frame of one window, at the frame's size. */
async function clipProbabilities(window: Frame[]): Promise<Float32Array[]> {
  const encoded: EncodedFrame[] = [];
  for (const frame of window) encoded.push(await lastValueFrom(of(frame).pipe(encode)));
  const clip: ClipWindow = { frames: window, features: encoded, start: 0, end: window.length, partial: false };
  const result = await lastValueFrom(of(clip).pipe(analyse));
  const side = Math.sqrt(result.maps.mean_prob![0]!.length);
  return result.maps.mean_prob!.map((p) => resample({ width: side, height: side, data: p }, size, size));
}

const rows: { name: string; unaligned: number; aligned: number; alignMs: number; rejected: number }[] = [];
for (let clip = 0; clip < count; clip++) {
  const original = Array.from({ length }, (_, t) => frameAt(clip, t));
  const started = performance.now();
  const aligned: AlignedFrame[] = await lastValueFrom(from(original).pipe(alignFrames({ rekeyAfter: Infinity }), toArray()));
  const alignMs = (performance.now() - started) / length;
  const unalignedProbabilities = await clipProbabilities(original);
  const alignedProbabilities = (await clipProbabilities(aligned.map((a) => a.frame))).map((p, t) =>
    aligned[t]!.aligned ? warpToOriginal({ width: size, height: size, data: p }, aligned[t]!.transform, original[t]!) : p,
  );
  const meanDice = (probabilities: Float32Array[]) =>
    probabilities.map((p, t) => dice(labelMapAt({ width: size, height: size, data: p }, size, size), maskAt(clip, t))).reduce((a, b) => a + b, 0) / length;
  rows.push({ name: index.names?.[clip] ?? String(clip), unaligned: meanDice(unalignedProbabilities), aligned: meanDice(alignedProbabilities), alignMs, rejected: aligned.filter((a) => !a.aligned).length });
  process.stderr.write(`\r${clip + 1}/${count} clips`);
}
await pool.close();

const mean = (key: 'unaligned' | 'aligned' | 'alignMs') => rows.reduce((a, r) => a + r[key], 0) / rows.length;
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
const summary = {
  command: `node --import tsx models/tools/clip_alignment.ts${values.limit ? ` --limit ${values.limit}` : ''}`,
  clips: rows.length,
  framesPerClip: length,
  diceUnaligned: mean('unaligned'),
  diceAligned: mean('aligned'),
  alignedBetterClips: rows.filter((r) => r.aligned > r.unaligned).length,
  medianDiceGain: median(rows.map((r) => r.aligned - r.unaligned)),
  alignMsPerFrameMean: mean('alignMs'),
  framesRejected: rows.reduce((a, r) => a + r.rejected, 0),
  sampling: pkg.manifest.clip?.sampling,
  perClip: rows,
};
await mkdir(resolve(values.out!, '..'), { recursive: true });
await writeFile(values.out!, `${JSON.stringify(summary, null, 1)}\n`);
process.stderr.write('\n');
console.log(JSON.stringify({ ...summary, perClip: undefined }, null, 1));
