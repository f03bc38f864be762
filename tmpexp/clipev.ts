import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { from, lastValueFrom, of, toArray } from 'rxjs';
import { encodeFrames } from '../src/operators/encodeFrames.js';
import { lfusionClipUncertainty } from '../src/operators/lfusionClipUncertainty.js';
import { segmentationEvidence } from '../src/operators/decideOod/evidence.js';
import { CLIP_GRAPHS } from '../src/runtime/clip-model.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';
import type { Frame } from '../src/runtime/types/frames.js';
const model = await loadModelPackage(DEFAULT_MODEL_PATH);
const manifest = model.manifest;
const pool = await InferencePool.open(model, { graphs: Object.keys(manifest.graphs).filter((g) => !CLIP_GRAPHS.includes(g)) });
const clipPool = await InferencePool.open(model, { graphs: [...CLIP_GRAPHS] });
const encode = encodeFrames(pool, manifest);
const clip = lfusionClipUncertainty(clipPool, manifest);
const out: Record<string, unknown[]> = {};
for (const folder of process.argv.slice(3)) {
  const index = JSON.parse(readFileSync(join(folder, 'index.json'), 'utf8'));
  const frames = readFileSync(join(folder, 'frames.u8'));
  const { count, frames: length, size } = index;
  const rows: unknown[] = [];
  for (let sweep = 0; sweep < count; sweep++) {
    const window: Frame[] = [];
    for (let t = 0; t < length; t++) {
      const at = (sweep * length + t) * size * size;
      window.push({ index: sweep * length + t, pts: t, captureTime: 0, width: size, height: size, data: Uint8Array.from(frames.subarray(at, at + size * size)) });
    }
    const encoded = await lastValueFrom(from(window).pipe(encode, toArray()));
    const [maps] = await lastValueFrom(of({ frames: window, features: encoded, start: 0, end: length, partial: false }).pipe(clip, toArray()));
    const s = maps!.size;
    const per = maps!.maps.mean_prob!.map((p) => segmentationEvidence(p, s, s));
    rows.push({ area: per.map((e) => e.area), misfit: per.map((e) => e.misfit), score: maps!.ood.score, evidence: maps!.ood.evidence, reasons: maps!.ood.reasons });
  }
  out[folder.split('/').pop()!] = rows;
  process.stderr.write(`${folder} ${count}\n`);
}
writeFileSync(process.argv[2]!, JSON.stringify(out));
await Promise.all([pool.close(), clipPool.close()]);
