/** Synthetic frames and a recording fake of the inference pool, for operator tests. */
import type { Frame } from '../../src/runtime/types/frames.js';
import type { GraphRunner, TensorData } from '../../src/runtime/types/inference.js';

export function syntheticFrame(index: number, width = 64, height = 48, pixel = (x: number, y: number) => (x * 3 + y * 5 + index * 7) % 256): Frame {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = pixel(x, y);
  return { index, pts: index / 25, captureTime: Date.now(), width, height, data };
}

/** A GraphRunner that records each call's feeds (copied) and answers with `respond`. */
export class RecordingRunner implements GraphRunner {
  readonly calls: { graph: string; feeds: Record<string, TensorData>; keep: readonly string[] }[] = [];
  constructor(private readonly respond: (graph: string, feeds: Record<string, TensorData>) => Record<string, TensorData>) {}

  async run(graph: string, feeds: Record<string, TensorData>, options: { keep?: readonly string[] } = {}): Promise<Record<string, TensorData>> {
    const copied = Object.fromEntries(Object.entries(feeds).map(([name, feed]) => [name, { data: feed.data.slice(), dims: [...feed.dims] }]));
    this.calls.push({ graph, feeds: copied, keep: options.keep ?? [] });
    return this.respond(graph, copied);
  }
}
