/**
 * What starting ffmpeg costs this process afterwards, by each way of spawning it (src/runtime/child-process.ts):
 * with a heap of BENCH_SPAWN_MB written (as the inference workers' and the pipeline's buffers are), ffmpeg is started
 * and waited for, then the heap is written once more. After a fork (Node's spawn) every page written takes a
 * copy-on-write fault; after posix_spawn none does. Per method: the milliseconds and page faults of that rewrite,
 * and the spawn itself; the methods take turns in each repeat.
 *
 *   npm run bench -- spawn
 *   BENCH_SPAWN_MB=512 npm run bench -- spawn
 */
import { spawnChild, type SpawnMethod } from '../src/runtime/child-process.js';
import { resolveFfmpeg } from '../src/runtime/ffmpeg.js';
import { nativeKernels } from '../src/runtime/native-kernels.js';
import type { BenchModule, BenchResult } from './run.js';

const MEGABYTES = Number(process.env.BENCH_SPAWN_MB ?? 256);
const REPEATS = Number(process.env.BENCH_SPAWN_REPEATS ?? 5);
const PAGE = 4096;

/** Writes one byte of every page of `heap`. */
function writeEveryPage(heap: readonly Uint8Array[]): void {
  for (const block of heap) for (let i = 0; i < block.length; i += PAGE) block[i]! += 1;
}

/** Milliseconds and page faults of `work`. */
function measured(work: () => void): { ms: number; faults: number } {
  const faults = process.resourceUsage().minorPageFault;
  const started = performance.now();
  work();
  return { ms: performance.now() - started, faults: process.resourceUsage().minorPageFault - faults };
}

async function spawnAndWait(method: SpawnMethod): Promise<number> {
  const started = performance.now();
  const child = spawnChild(resolveFfmpeg().path, ['-hide_banner', '-version'], ['ignore', 'pipe', 'pipe'], method);
  child.stdout!.resume();
  child.stderr!.resume();
  await new Promise((resolve) => child.once('close', resolve));
  return performance.now() - started;
}

const bench: BenchModule = {
  title: `spawning ffmpeg beside a ${MEGABYTES} MB written heap: the cost of writing it afterwards, fork vs posix_spawn`,
  async run(): Promise<BenchResult[]> {
    if (!nativeKernels) {
      process.stderr.write('spawn bench skipped: the native addon (posix_spawn) is not loaded\n');
      return [];
    }
    const heap = Array.from({ length: MEGABYTES }, () => new Uint8Array(1 << 20).fill(1));
    writeEveryPage(heap);
    const methods: SpawnMethod[] = ['node', 'posix_spawn'];
    const rewrite = new Map(methods.map((method) => [method, { ms: [] as number[], faults: [] as number[], spawn: [] as number[] }]));
    const baseline: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      baseline.push(measured(() => writeEveryPage(heap)).ms);
      for (const method of r % 2 === 0 ? methods : [...methods].reverse()) {
        const spawnMs = await spawnAndWait(method);
        const { ms, faults } = measured(() => writeEveryPage(heap));
        const row = rewrite.get(method)!;
        row.ms.push(ms);
        row.faults.push(faults);
        row.spawn.push(spawnMs);
      }
    }
    const notes = { heap: `${MEGABYTES} MB, every page written before`, child: 'ffmpeg -version', repeats: REPEATS };
    return [
      { name: 'writing the heap, no child started', unit: 'ms', samples: baseline, notes },
      ...methods.flatMap((method) => {
        const label = method === 'node' ? "Node's spawn (fork)" : 'posix_spawn (native)';
        const row = rewrite.get(method)!;
        return [
          { name: `${label}: writing the heap after it`, unit: 'ms', samples: row.ms, notes },
          { name: `${label}: page faults writing the heap after it`, unit: 'faults', samples: row.faults, notes },
          { name: `${label}: ffmpeg -version, spawn to close`, unit: 'ms', samples: row.spawn, notes },
        ];
      }),
    ];
  },
};
export default bench;
