/** Smoke tests: each example runs with one command on a short input and does what its header says. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { shippedPackagePresent, SHIPPED_PACKAGE } from '../helpers/shipped-package.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';
import { RecordingClient } from '../helpers/ws-client.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const example = (name: string): string => join(ROOT, 'src/examples', name);

function runExample(name: string, args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', example(name), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
}

test('live-overlay: serves the sample paced like a scanner, with the viewer; Ctrl-C stops it and its ffmpeg', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', example('live-overlay.ts'), 'assets/sample.mp4', '--once', '--port', '0', '--model', TINY_PACKAGE], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const urls = await new Promise<{ viewer: string; websocket: string }>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const viewer = /viewer: (\S+)/.exec(stdout)?.[1];
      const websocket = /websocket: (\S+)/.exec(stdout)?.[1];
      if (viewer && websocket) resolve({ viewer, websocket });
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${stderr}`)));
  });
  const client = await RecordingClient.connect(`${urls.websocket}?streams=image,mask`);
  await client.until(() => client.frames().length >= 3, 20_000);
  assert.equal(client.frames()[0]!.planes.map((plane) => plane.name), ['mask', 'image']);
  const page = await fetch(urls.viewer);
  assert.is(page.status, 200);
  const children = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
  assert.ok(children.length >= 1, 'ffmpeg runs as a child');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGINT');
  assert.is(await exited, 0, stderr);
  const deadline = Date.now() + 5000;
  while (children.some((pid) => existsSync(`/proc/${pid}`)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
  for (const pid of children) assert.not.ok(existsSync(`/proc/${pid}`), `child ${pid} left behind`);
  client.close();
});

test('embed-in-node: results as an Observable in a plain Node process, head box in screen coordinates', () => {
  const run = runExample('embed-in-node.ts', ['assets/sample.mp4', '--frames', '3', '--model', TINY_PACKAGE]);
  assert.is(run.status, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.equal(lines.slice(0, 3).map((line) => /^frame (\d+) t=\d+\.\d\ds head \d+\.\d% (at \(\d+,\d+\)-\(\d+,\d+\) on screen|none)/.exec(line)?.[1]), ['0', '1', '2']);
  assert.match(lines[3]!, /^3 frames, \d+\.\d fps, 0 dropped$/);
});

test('replay-scan: every frame of a recording, a CSV line each, and a report', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfusion-replay-scan-'));
  const csv = join(dir, 'frames.csv');
  // The uncertainty chain needs the trained package; the tiny one runs the segmentation-only replay.
  const trained = shippedPackagePresent('replay-scan with the uncertainty chain (running it with --segment on the tiny package)');
  const args = trained ? ['--model', SHIPPED_PACKAGE] : ['--model', TINY_PACKAGE, '--segment'];
  const run = runExample('replay-scan.ts', ['assets/sample.mp4', '--frames', '4', '--csv', csv, ...args]);
  assert.is(run.status, 0, run.stderr);
  const rows = (await readFile(csv, 'utf8')).trim().split('\n');
  assert.is(rows[0], 'index,pts,head_fraction,mean_fused,ood_score,ood_above');
  assert.equal(rows.slice(1).map((row) => row.split(',')[0]), ['0', '1', '2', '3']);
  if (trained) assert.ok(rows.slice(1).every((row) => row.split(',').every((cell) => cell !== '')), 'fused and OOD columns filled');
  assert.match(run.stdout, /assets\/sample\.mp4: 4 frames, head in \d+/);
  assert.match(run.stdout, /OOD alert episodes: \d+/);
  assert.match(run.stdout, /stage medians \(ms\): .*encoder \d/);
  // Not silent while it works, on a terminal or not (here stderr is a pipe): a start line, then progress.
  assert.match(run.stderr, /replay-scan: loading the model and opening assets\/sample\.mp4/);
  assert.match(run.stderr, /\n1\/4 frames, \d+\.\d\d frames\/s, \d+ s\n/);
  await rm(dir, { recursive: true, force: true });
});

test.run();
