/**
 * Recorded-scan replay: every frame of a recording through the L-FUSION uncertainty chain, then a report of the
 * scan: frames with a head, OOD alert episodes, the most uncertain frames, and the time each stage took.
 * Optionally one CSV line per frame.
 *
 *   node --import tsx src/examples/replay-scan.ts <video> [--csv frames.csv] [--frames N] [--segment] [--model <package>]
 *
 * --segment skips the uncertainty chain (mask only: much faster, no fused map, no OOD). Progress goes to stderr.
 */
import { createWriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { lastValueFrom, map, take, tap } from 'rxjs';
import { createPipeline, dequantizePlane, type Alert, type FrameResult } from '../sdk/index.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { csv: { type: 'string' }, frames: { type: 'string' }, segment: { type: 'boolean' }, model: { type: 'string' } },
});
const video = positionals[0] ?? 'assets/sample.mp4';
const limit = values.frames ? Number(values.frames) : undefined;
// Progress goes to stderr (stdout is the report): the uncertainty chain takes about a second per frame on a laptop.
console.error(`replay-scan: loading the model and opening ${video}...`);
const pipeline = await createPipeline({
  source: video,
  ...(values.model ? { modelPath: values.model } : {}),
  live: false, // a recording: every frame, in order
  analysis: values.segment ? 'segment' : 'uncertainty',
});

interface FrameSummary {
  index: number;
  pts: number;
  headFraction: number;
  meanFused?: number;
  oodScore?: number;
  above?: boolean;
}

function summarise(result: FrameResult): FrameSummary {
  const plane = (name: string) => result.planes.find((p) => p.name === name);
  const mask = plane('mask')!;
  const fused = plane('fused');
  return {
    index: result.frame.index,
    pts: result.frame.pts,
    headFraction: mask.data.reduce((sum, q) => sum + q, 0) / mask.data.length,
    ...(fused ? { meanFused: dequantizePlane(fused).reduce((sum, v) => sum + v, 0) / fused.data.length } : {}),
    ...(result.ood ? { oodScore: result.ood.score, above: result.ood.above } : {}),
  };
}

const started = Date.now();
let lastLine = 0;
/** On a terminal one line redrawn per frame; otherwise (CI, a pipe) the first frame, then a line every 5 s. */
function showProgress(done: number): void {
  const seconds = (Date.now() - started) / 1000;
  const line = `${done}${limit === undefined ? '' : `/${limit}`} frames, ${(done / seconds).toFixed(2)} frames/s, ${seconds.toFixed(0)} s`;
  if (process.stderr.isTTY) {
    process.stderr.write(`\r${line}`);
  } else if (done === 1 || Date.now() - lastLine >= 5000) {
    process.stderr.write(`${line}\n`);
    lastLine = Date.now();
  }
}
console.error(`replay-scan: ${pipeline.model.manifest.name} loaded; ${values.segment ? 'segmentation only' : 'uncertainty chain'} on every frame (Ctrl-C stops)`);

const csv = values.csv ? createWriteStream(values.csv) : undefined;
csv?.write('index,pts,head_fraction,mean_fused,ood_score,ood_above\n');
const alerts: Alert[] = [];
const alerting = pipeline.alerts$.subscribe((alert) => alerts.push(alert));
const frames: FrameSummary[] = [];
try {
  await lastValueFrom(
    pipeline.results$.pipe(
      take(limit ?? Number.POSITIVE_INFINITY),
      map(summarise), // one summary per frame: the planes themselves are not kept
      tap((s) => {
        frames.push(s);
        csv?.write(`${s.index},${s.pts.toFixed(3)},${s.headFraction.toFixed(4)},${s.meanFused ?? ''},${s.oodScore ?? ''},${s.above ?? ''}\n`);
        showProgress(frames.length);
      }),
    ),
    { defaultValue: undefined },
  );
} catch (error) {
  console.error(`\nstopped after ${frames.length} frames: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  alerting.unsubscribe();
  await new Promise<void>((resolve) => (csv ? csv.end(resolve) : resolve()));
  await pipeline.close();
}

const stats = pipeline.stats.snapshot();
const withHead = frames.filter((f) => f.headFraction > 0.01).length;
console.log(`\n${video}: ${frames.length} frames, head in ${withHead} (${((withHead / Math.max(1, frames.length)) * 100).toFixed(0)}%)`);
const raised = alerts.filter((alert) => alert.kind === 'raised');
console.log(`OOD alert episodes: ${raised.length}${raised.map((a) => `\n  from frame ${a.startFrame}, peak ${a.peakScore.toFixed(3)} at frame ${a.peakFrame}`).join('')}`);
const uncertain = frames.filter((f) => f.meanFused !== undefined).sort((a, b) => b.meanFused! - a.meanFused!).slice(0, 3);
if (uncertain.length > 0) console.log(`most uncertain frames (mean fused): ${uncertain.map((f) => `${f.index} (${f.meanFused!.toExponential(2)})`).join(', ')}`);
console.log(`stage medians (ms): ${Object.entries(stats.latency).map(([stage, l]) => `${stage} ${l.p50.toFixed(1)}`).join(', ')}`);
