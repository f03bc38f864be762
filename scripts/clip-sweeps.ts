/**
 * The simulated sweeps `lfusion.clips` writes raw (frames.u8 and, for labelled sets, masks.u8: uint8 [count, frames,
 * size, size]; index.json), read as SDK frames, and one sweep run as one window of the SDK's clip path. Shared by
 * scripts/clip-biometry.ts and models/tools/clip_ood_scores.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { from, lastValueFrom, of, toArray, type OperatorFunction } from 'rxjs';
import { CLIP_GRAPHS } from '../src/runtime/clip-model.js';
import { InferencePool } from '../src/runtime/inference-pool.js';
import type { ModelPackage } from '../src/runtime/model-package.js';
import type { ClipWindow, EncodedFrame, Frame } from '../src/runtime/types/frames.js';
import type { ClipWindowMaps } from '../src/runtime/types/uncertainty.js';

export interface Sweeps {
  count: number;
  /** Frames per sweep. */
  length: number;
  size: number;
  names: string[];
  /** Sweep `sweep`'s frames; frame `t` has index `sweep * length + t`. */
  window(sweep: number): Frame[];
  /** The annotation mask (0/1) of frame `t` of sweep `sweep`; read with `{ masks: true }` only. */
  mask(sweep: number, t: number): Uint8Array;
}

/** A folder of raw sweeps; `masks` also reads masks.u8. Throws when a file does not hold what index.json says. */
export function readSweeps(folder: string, options: { masks?: boolean } = {}): Sweeps {
  const index = JSON.parse(readFileSync(join(folder, 'index.json'), 'utf8')) as { count: number; frames: number; size: number; names: string[] };
  const { count, frames: length, size, names } = index;
  const pixels = size * size;
  const frames = readFileSync(join(folder, 'frames.u8'));
  const masks = options.masks ? readFileSync(join(folder, 'masks.u8')) : undefined;
  for (const [file, bytes] of [['frames.u8', frames], ['masks.u8', masks]] as const) {
    if (bytes && bytes.length !== count * length * pixels) throw new Error(`${folder}: ${file} does not hold ${count} x ${length} x ${size}^2 bytes`);
  }
  const at = (sweep: number, t: number) => (sweep * length + t) * pixels;
  return {
    count,
    length,
    size,
    names,
    window: (sweep) =>
      Array.from({ length }, (_, t) => ({ index: sweep * length + t, pts: t, captureTime: 0, width: size, height: size, data: Uint8Array.from(frames.subarray(at(sweep, t), at(sweep, t) + pixels)) })),
    mask: (sweep, t) => {
      if (!masks) throw new Error(`${folder}: masks were not read`);
      return masks.subarray(at(sweep, t), at(sweep, t) + pixels);
    },
  };
}

/** One inference pool for the 2D graphs and one for the clip graphs (each path in its own worker, as the pipeline runs them). */
export async function openPathPools(model: ModelPackage): Promise<{ pool: InferencePool; clipPool: InferencePool; close: () => Promise<void> }> {
  const pool = await InferencePool.open(model, { graphs: Object.keys(model.manifest.graphs).filter((graph) => !(CLIP_GRAPHS as readonly string[]).includes(graph)) });
  const clipPool = await InferencePool.open(model, { graphs: [...CLIP_GRAPHS] });
  return { pool, clipPool, close: () => Promise.all([pool.close(), clipPool.close()]).then(() => undefined) };
}

/** A sweep's frames encoded, and the sweep through the clip path as one window. */
export async function runWindow(
  window: Frame[],
  encode: OperatorFunction<Frame, EncodedFrame>,
  clip: OperatorFunction<ClipWindow, ClipWindowMaps>,
): Promise<{ encoded: EncodedFrame[]; maps: ClipWindowMaps }> {
  const encoded = await lastValueFrom(from(window).pipe(encode, toArray()));
  const [maps] = await lastValueFrom(of({ frames: window, features: encoded, start: 0, end: window.length, partial: false }).pipe(clip, toArray()));
  return { encoded, maps: maps! };
}
