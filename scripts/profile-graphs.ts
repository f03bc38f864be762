/**
 * Where the time of one frame goes inside the package's 2D graphs: runs encoder, laplace_head, dropout_head and
 * measures in this thread on the package's reference image with ONNX Runtime's profiler on, and prints each graph's
 * median milliseconds and its costliest nodes (milliseconds per run, op type, node name). For deciding what to
 * change in the graphs (models/lfusion/export.py) or in the session options.
 *
 *   node --import tsx scripts/profile-graphs.ts [--m 10 --n 4 --k 10] [--runs 3] [--top 8] [--threads 2]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { referenceFrame } from '../bench/uncertainty.bench.js';
import { drawDimensions, drawSamples } from '../src/runtime/draws.js';
import { DEFAULT_MODEL_PATH, loadModelPackage } from '../src/runtime/model-package.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL_PATH },
    m: { type: 'string', default: '10' },
    n: { type: 'string', default: '4' },
    k: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    top: { type: 'string', default: '8' },
    threads: { type: 'string' },
  },
});
const pkg = await loadModelPackage(values.model!);
const { manifest } = pkg;
const [m, n, k] = [values.m, values.n, values.k].map(Number) as [number, number, number];
const runs = Number(values.runs);
const frame = await referenceFrame(pkg);
const { mean, std } = manifest.input.normalization;
const image = new ort.Tensor('float32', Float32Array.from(frame.data, (v) => (v / 255 - mean) / std), [1, 1, manifest.input.height, manifest.input.width]);
const draws = drawSamples(manifest.sampling.seed, { m, n, k }, drawDimensions(manifest));
const tensor = ({ data, dims }: { data: Float32Array; dims: number[] }) => new ort.Tensor('float32', data, dims);
const dir = mkdtempSync(join(tmpdir(), 'lfusion-profile-'));
const graphs = ['encoder', 'laplace_head', 'dropout_head', 'measures'] as const;
const sessions = Object.fromEntries(
  await Promise.all(
    graphs.map(async (graph) => [
      graph,
      await ort.InferenceSession.create(join(pkg.path, manifest.graphs[graph]!.file), {
        enableProfiling: true,
        profileFilePrefix: join(dir, graph),
        extra: { session: { intra_op: { allow_spinning: '0' } } }, // as the inference pool runs them
        ...(values.threads ? { intraOpNumThreads: Number(values.threads), interOpNumThreads: 1 } : {}),
      }),
    ]),
  ),
) as Record<(typeof graphs)[number], ort.InferenceSession>;
const times: Record<string, number[]> = Object.fromEntries(graphs.map((graph) => [graph, []]));
const timed = async <T>(graph: string, run: () => Promise<T>): Promise<T> => {
  const started = performance.now();
  const result = await run();
  times[graph]!.push(performance.now() - started);
  return result;
};
const load = [loadavg()[0]!];
for (let run = 0; run < runs; run++) {
  const { features } = await timed('encoder', () => sessions.encoder.run({ image }));
  const laplace = await timed('laplace_head', () =>
    sessions.laplace_head.run({ features: features!, image, weight_noise: tensor(draws.weightNoise), posterior_scale: new ort.Tensor('float32', Float32Array.of(manifest.laplace.posteriorScale), [1]) }),
  );
  const dropout = await timed('dropout_head', () => sessions.dropout_head.run({ features: features!, image, dropout_masks: tensor(draws.dropoutMasks) }));
  await timed('measures', () =>
    sessions.measures.run({ logit_mean: laplace.logit_mean!, cov_factor: laplace.cov_factor!, cov_diag: laplace.cov_diag!, factor_noise: tensor(draws.factorNoise), diag_noise: tensor(draws.diagNoise), dropout_logits: dropout.logits! }),
  );
}
load.push(loadavg()[0]!);
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
console.log(`(m,n,k)=(${m},${n},${k}), ${runs} runs, load average ${load.map((value) => value.toFixed(2)).join(' -> ')}`);
for (const graph of graphs) {
  sessions[graph].endProfiling(); // writes <dir>/<graph>_<date>.json
  const file = join(dir, readdirSync(dir).find((name) => name.startsWith(`${graph}_`))!);
  const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
  const byNode = new Map<string, number>();
  for (const event of events) {
    if (event.cat !== 'Node' || !event.name.endsWith('_kernel_time')) continue;
    const node = `${event.args?.op_name ?? '?'} ${event.name.slice(0, -'_kernel_time'.length)}`;
    byNode.set(node, (byNode.get(node) ?? 0) + event.dur);
  }
  const total = [...byNode.values()].reduce((a, b) => a + b, 0);
  const byOp = new Map<string, number>();
  for (const [node, us] of byNode) byOp.set(node.split(' ')[0]!, (byOp.get(node.split(' ')[0]!) ?? 0) + us);
  const share = (us: number) => `${((100 * us) / total).toFixed(0)}%`;
  console.log(`\n${graph}: median ${median(times[graph]!).toFixed(1)} ms; by op type: ${[...byOp].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([op, us]) => `${op} ${share(us)}`).join(', ')}`);
  for (const [node, us] of [...byNode].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`  ${(us / runs / 1000).toFixed(2).padStart(8)} ms  ${share(us).padStart(4)}  ${node}`);
}
for (const session of Object.values(sessions)) await session.release();
rmSync(dir, { recursive: true, force: true });
