/**
 * Minimal vendor embedding: the pipeline as RxJS Observables inside your own Node process, no WebSocket server.
 * Prints, per frame, how much of the image is fetal head and where the head lies on the source screen (so a
 * vendor can draw it on their own display), plus source events and OOD alerts as they happen.
 *
 *   node --import tsx src/examples/embed-in-node.ts [source] [--frames N] [--model <package>]
 *
 * `source` defaults to the bundled sample (every frame, as a replay); a device or URL runs live.
 */
import { parseArgs } from 'node:util';
import { take } from 'rxjs';
import { createPipeline, toScreenPoint, type FrameResult, type Plane } from '../sdk/index.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { frames: { type: 'string' }, model: { type: 'string' } } });
const source = positionals[0] ?? 'assets/sample.mp4';
const pipeline = await createPipeline({ source, ...(values.model ? { modelPath: values.model } : {}) });

/** The bounding box of the head pixels of a mask plane, in plane pixels; null when there is no head. */
function headBox(mask: Plane): { x0: number; y0: number; x1: number; y1: number } | null {
  let box: { x0: number; y0: number; x1: number; y1: number } | null = null;
  for (let y = 0; y < mask.height; y++) {
    for (let x = 0; x < mask.width; x++) {
      if (mask.data[y * mask.width + x] === 0) continue;
      box = box ? { x0: Math.min(box.x0, x), y0: Math.min(box.y0, y), x1: Math.max(box.x1, x + 1), y1: Math.max(box.y1, y + 1) } : { x0: x, y0: y, x1: x + 1, y1: y + 1 };
    }
  }
  return box;
}

function describe(result: FrameResult): string {
  const mask = result.planes.find((plane) => plane.name === 'mask')!;
  const head = mask.data.reduce((sum, q) => sum + q, 0) / mask.data.length;
  // Without a region the crop is the whole frame.
  const region = result.region ?? { x: 0, y: 0, width: result.frame.width, height: result.frame.height };
  const box = headBox(mask);
  let where = 'none';
  if (box) {
    const topLeft = toScreenPoint({ x: box.x0, y: box.y0 }, region, mask);
    const bottomRight = toScreenPoint({ x: box.x1, y: box.y1 }, region, mask);
    where = `at (${topLeft.x.toFixed(0)},${topLeft.y.toFixed(0)})-(${bottomRight.x.toFixed(0)},${bottomRight.y.toFixed(0)}) on screen`;
  }
  const ood = result.ood ? ` ood ${result.ood.score.toFixed(3)}${result.ood.above ? ' ABOVE' : ''}` : '';
  return `frame ${result.frame.index} t=${result.frame.pts.toFixed(2)}s head ${(head * 100).toFixed(1)}% ${where}${ood}`;
}

pipeline.sourceEvents$.subscribe((event) => console.warn(`source: ${event.type}`));
pipeline.alerts$.subscribe((alert) => console.warn(`OOD alert ${alert.kind}: frames ${alert.startFrame}-${alert.endFrame}, peak ${alert.peakScore.toFixed(3)}`));
pipeline.results$.pipe(take(values.frames ? Number(values.frames) : Number.POSITIVE_INFINITY)).subscribe({
  next: (result) => console.log(describe(result)),
  error: async (error: Error) => {
    console.error(`failed: ${error.message}`);
    process.exitCode = 1;
    await pipeline.close();
  },
  complete: async () => {
    const { framesOut, fpsOut, dropped } = pipeline.stats.snapshot();
    console.log(`${framesOut} frames, ${fpsOut.toFixed(1)} fps, ${dropped} dropped`);
    await pipeline.close();
  },
});
