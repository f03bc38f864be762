/** `lfusion serve` and `lfusion replay --out` with both paths (`--paths frame,clip`), with and without `--uncertainty`. */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, take, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromVideo } from '../../src/operators/fromVideo.js';
import { writeGreyVideo } from '../helpers/scanner-video.js';
import { SHIPPED_PACKAGE, shippedPackagePresent } from '../helpers/shipped-package.js';
import { RecordingClient } from '../helpers/ws-client.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'src/sdk/cli.ts');
const SAMPLE = join(ROOT, 'assets/sample.mp4');
const FRAMES = 20;
// One sample of each kind keeps the clip heads quick; the defaults run the same code.
const ONE_SAMPLE = ['--m', '1', '--n', '1', '--k', '1'];
const VARIANTS = [
  { name: 'without --uncertainty', flags: [], frameMaps: ['mask'] },
  { name: 'with --uncertainty', flags: ['--uncertainty'], frameMaps: ['mask', 'fused'] },
];
const CLIP_MAPS = ['clip.mask', 'clip.fused'];

let dir: string;
let video: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lfusion-cli-clip-'));
  video = join(dir, 'short.mkv');
  await writeGreyVideo(video, await lastValueFrom(fromVideo(SAMPLE, { width: 224, height: 224 }).pipe(take(FRAMES), toArray())));
});
test.after(() => rm(dir, { recursive: true, force: true }));

/** Plane names delivered per frame index, over every result item of that frame. */
function planesByFrame(items: { frame: { index: number }; planes: { name: string }[] }[]): Map<number, Set<string>> {
  const byFrame = new Map<number, Set<string>>();
  for (const item of items) {
    const names = byFrame.get(item.frame.index) ?? new Set<string>();
    for (const plane of item.planes) names.add(plane.name);
    byFrame.set(item.frame.index, names);
  }
  return byFrame;
}

if (shippedPackagePresent('serve and replay with --paths frame,clip (the clip heads)')) {
  for (const { name, flags, frameMaps } of VARIANTS) {
    test(`replay --out --paths frame,clip ${name}: every frame gets its 2D and its clip planes`, async () => {
      const out = join(dir, `replay${flags.join('')}`);
      const run = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'replay', video, '--out', out, '--model', SHIPPED_PACKAGE, '--paths', 'frame,clip', ...flags, ...ONE_SAMPLE], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 180_000,
      });
      assert.is(run.status, 0, run.stderr);
      const lines = (await readFile(join(out, 'results.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line));
      assert.match(run.stderr, new RegExp(`${FRAMES}/${FRAMES} frames`), 'progress counts frames, not result items');
      // Each frame: its 2D line, then (later) its clip line.
      assert.equal(lines.filter((line) => line.path === 'frame').map((line) => line.frame.index), [...Array(FRAMES).keys()]);
      assert.equal(lines.filter((line) => line.path === 'clip').map((line) => line.frame.index), [...Array(FRAMES).keys()]);
      const byFrame = planesByFrame(lines);
      assert.equal([...byFrame.keys()].sort((a, b) => a - b), [...Array(FRAMES).keys()]);
      for (const [index, names] of byFrame) assert.equal([...names].sort(), [...frameMaps, ...CLIP_MAPS].sort(), `frame ${index}`);
      for (const plane of [...frameMaps, ...CLIP_MAPS]) assert.is((await readdir(join(out, plane))).length, FRAMES, plane);
    });

    test(`serve --paths frame,clip ${name}: streams 2D and clip planes, keeps running, stops on Ctrl-C`, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', video, '--port', '0', '--model', SHIPPED_PACKAGE, '--paths', 'frame,clip', ...flags, ...ONE_SAMPLE], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
        void exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
      });
      const client = await RecordingClient.connect(url);
      client.socket.send(JSON.stringify({ type: 'subscribe', streams: [...frameMaps, ...CLIP_MAPS] }));
      const names = () => new Set(client.frames().flatMap((frame) => frame.planes.map((plane) => plane.name)));
      // Two windows' worth: the looped recording keeps going past the first.
      await client.until(() => client.frames().filter((frame) => frame.planes.some((plane) => plane.name === 'clip.mask')).length >= FRAMES, 120_000);
      assert.equal([...names()].sort(), [...frameMaps, ...CLIP_MAPS].sort());
      for (const frame of client.frames()) {
        const expected = frame.header.path === 'clip' ? CLIP_MAPS : frameMaps;
        assert.equal(frame.planes.map((plane) => plane.name), expected, 'one path per message');
      }
      assert.is(child.exitCode, null, `serve still running: ${stderr}`);
      child.kill('SIGINT');
      assert.is(await exited, 130, stderr);
      client.close();
    });
  }
}

test.run();
