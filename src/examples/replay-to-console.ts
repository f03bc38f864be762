/**
 * Minimal embedding: the pipeline as an RxJS Observable inside your own Node process, no server.
 * Prints, for every frame of a recording, the fraction of the image the model labels as fetal head.
 *
 *   node --import tsx src/examples/replay-to-console.ts [video] [model-package]
 */
import { createPipeline } from '../sdk/index.js';

const [source = 'assets/sample.mp4', modelPath] = process.argv.slice(2);
const pipeline = await createPipeline({ source, ...(modelPath ? { modelPath } : {}), live: false });

pipeline.results$.subscribe({
  next: (result) => {
    const mask = result.planes.find((plane) => plane.name === 'mask')!;
    const head = mask.data.reduce((sum, q) => sum + q, 0) / mask.data.length;
    console.log(`frame ${result.frame.index} t=${result.frame.pts.toFixed(2)}s head ${(head * 100).toFixed(1)}%`);
  },
  error: async (error: unknown) => {
    console.error(error);
    await pipeline.close();
    process.exitCode = 1;
  },
  complete: async () => {
    const { framesOut, fpsOut } = pipeline.stats.snapshot();
    console.log(`${framesOut} frames, ${fpsOut.toFixed(1)} fps`);
    await pipeline.close();
  },
});
