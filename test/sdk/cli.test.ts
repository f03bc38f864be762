import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { freePort } from '../helpers/loopback-stream.js';
import { writeScannerScreenVideo } from '../helpers/scanner-video.js';
import { RecordingClient } from '../helpers/ws-client.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'src/sdk/cli.ts');
const SAMPLE = join(ROOT, 'assets/sample.mp4');
const SAMPLE_FRAMES = 340;

function runCli(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
}

test('replay writes one JSON line and one mask PNG per frame of the sample, with progress', async () => {
  const out = await mkdtemp(join(tmpdir(), 'lfusion-replay-'));
  const run = runCli(['replay', SAMPLE, '--out', out, '--model', TINY_PACKAGE]);
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stderr, new RegExp(`${SAMPLE_FRAMES}/${SAMPLE_FRAMES} frames`));
  const lines = (await readFile(join(out, 'results.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line));
  assert.equal(lines.map((line) => line.frame.index), [...Array(SAMPLE_FRAMES).keys()]);
  assert.equal(lines[0].planes[0].file, 'mask/000000.png');
  assert.is((await readdir(join(out, 'mask'))).length, SAMPLE_FRAMES);
  const png = await readFile(join(out, 'mask/000339.png'));
  assert.equal([...png.subarray(1, 4)], [...Buffer.from('PNG')]);
  assert.equal([png.readUInt32BE(16), png.readUInt32BE(20)], [224, 224], 'IHDR width and height');
  await rm(out, { recursive: true, force: true });
});

test('replay of a truncated file writes a result for every frame decoded, then fails with DECODE_FAILED', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfusion-truncated-'));
  const truncated = join(dir, 'truncated.mp4');
  await writeFile(truncated, (await readFile(SAMPLE)).subarray(0, 400_000));
  const run = runCli(['replay', truncated, '--out', join(dir, 'out'), '--model', TINY_PACKAGE]);
  assert.is(run.status, 1);
  const decoded = Number(/after (\d+) frames \[DECODE_FAILED\]/.exec(run.stderr)?.[1]);
  assert.ok(decoded > 0, run.stderr);
  assert.match(run.stderr, /\n  ffmpeg: .*\[error\]/, 'ffmpeg\'s own reason is shown');
  const lines = (await readFile(join(dir, 'out/results.jsonl'), 'utf8')).trim().split('\n');
  assert.is(lines.length, decoded);
  await rm(dir, { recursive: true, force: true });
});

test('a text file and an empty video: replay (--out, --report) and serve all exit 1 with DECODE_FAILED', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfusion-not-video-'));
  await writeFile(join(dir, 'notes.txt'), 'not a video\n');
  await writeFile(join(dir, 'empty.y4m'), 'YUV4MPEG2 W320 H240 F25:1 Ip A1:1 C420jpeg\n');
  for (const [name, reason] of [['notes.txt', /is not a video/], ['empty.y4m', /has no video frames/]] as const) {
    const source = join(dir, name);
    // The report runs the uncertainty chain, which the tiny package lacks: it takes the default package.
    const tiny = ['--model', TINY_PACKAGE];
    for (const args of [['replay', source, '--out', join(dir, 'out'), ...tiny], ['replay', source, '--report', join(dir, 'report'), '--m', '2', '--n', '2', '--k', '2'], ['serve', source, '--port', '0', ...tiny]]) {
      const run = runCli(args);
      assert.is(run.status, 1, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, reason);
      assert.match(run.stderr, /\[DECODE_FAILED\]/);
    }
  }
  await rm(dir, { recursive: true, force: true });
});

test('bad usage is a clear error with exit code 1', () => {
  const noOut = runCli(['replay', SAMPLE]);
  assert.is(noOut.status, 1);
  assert.match(noOut.stderr, /replay needs --out <dir>/);
  const missing = runCli(['replay', '/nonexistent.mp4', '--out', join(tmpdir(), 'unused'), '--model', TINY_PACKAGE]);
  assert.is(missing.status, 1);
  assert.match(missing.stderr, /SOURCE_NOT_FOUND/);
  const badModel = runCli(['replay', SAMPLE, '--out', join(tmpdir(), 'unused'), '--model', '/nonexistent']);
  assert.is(badModel.status, 1);
  assert.match(badModel.stderr, /manifest\.json.*\[MODEL_INVALID\]/);
  const countsWithoutUncertainty = runCli(['serve', SAMPLE, '--m', '2']);
  assert.is(countsWithoutUncertainty.status, 1);
  assert.match(countsWithoutUncertainty.stderr, /--m, --n, --k and --seed need --uncertainty/);
  const badCount = runCli(['serve', SAMPLE, '--uncertainty', '--k', '0']);
  assert.is(badCount.status, 1);
  assert.match(badCount.stderr, /--k must be a whole number >= 1/);
  const help = runCli(['--help']);
  assert.is(help.status, 0);
  assert.match(help.stdout, /^usage:/);
  const unknown = runCli(['frobnicate', 'x']);
  assert.is(unknown.status, 1);
  assert.match(unknown.stderr, /unknown command "frobnicate" \(commands: serve, replay, queue, worker\)/);
  const missingServed = runCli(['serve', '/nonexistent.mp4', '--model', TINY_PACKAGE]);
  assert.is(missingServed.status, 1);
  assert.match(missingServed.stderr, /\/nonexistent\.mp4 does not exist \[SOURCE_NOT_FOUND\]/);
  assert.is(missingServed.stdout, '', 'no URL printed before the failure');
  const exposed = runCli(['serve', SAMPLE, '--host', '0.0.0.0', '--model', TINY_PACKAGE]);
  assert.is(exposed.status, 1);
  assert.match(exposed.stderr, /refusing to serve ultrasound images on 0\.0\.0\.0 without an access token/);
  assert.is(exposed.stdout, '', 'no URL printed');
  const shortToken = spawnSync(process.execPath, ['--import', 'tsx', CLI, 'serve', SAMPLE, '--host', '0.0.0.0'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, LFUSION_TOKEN: 'short' } });
  assert.match(shortToken.stderr, /access token must be at least 16 characters/);
  const aboveMaximum = runCli(['replay', SAMPLE, '--out', join(tmpdir(), 'unused'), '--uncertainty', '--m', '1e9']);
  assert.is(aboveMaximum.status, 1);
  assert.match(aboveMaximum.stderr, /sample count m = 1000000000 exceeds the model package's maximum of 50 \(sampling\.maxM\) \[INVALID_OPTION\]/);
});

test('serve prints the WebSocket URL, streams results, and stops cleanly on Ctrl-C', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', SAMPLE, '--port', '0', '--model', TINY_PACKAGE], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString().trim()));
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  const client = await RecordingClient.connect(url);
  await client.until(() => client.frames().length >= 5, 20_000);
  const children = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
  assert.ok(children.length >= 1, 'ffmpeg runs as a child of serve');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGINT');
  assert.is(await exited, 130);
  // ffmpeg gets SIGTERM when the pipeline stops; give it the kill grace to go.
  const deadline = Date.now() + 5000;
  while (children.some((pid) => existsSync(`/proc/${pid}`)) && Date.now() < deadline) await sleep(100);
  for (const pid of children) assert.not.ok(existsSync(`/proc/${pid}`), `child ${pid} left behind`);
  client.close();
});

test('replay --region x,y,w,h cuts a recorded scanner screen; results.jsonl says where', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lfusion-region-'));
  const place = { x: 640, y: 300, width: 480, height: 324 };
  const { path } = await writeScannerScreenVideo(dir, { place }, 3);
  const run = runCli(['replay', path, '--out', join(dir, 'out'), '--model', TINY_PACKAGE, '--region', '640,300,480,324']);
  assert.is(run.status, 0, run.stderr);
  const lines = (await readFile(join(dir, 'out/results.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line));
  assert.is(lines.length, 3);
  for (const line of lines) {
    assert.equal(line.region, { ...place, origin: 'manual' });
    assert.equal(line.screen, { width: 1920, height: 1080 });
    assert.equal([line.frame.width, line.frame.height], [480, 324]);
  }
  const auto = runCli(['replay', path, '--out', join(dir, 'auto'), '--model', TINY_PACKAGE, '--region', 'auto']);
  assert.is(auto.status, 0, auto.stderr);
  const first = JSON.parse((await readFile(join(dir, 'auto/results.jsonl'), 'utf8')).split('\n')[0]!);
  assert.is(first.region.origin, 'detected');
  await rm(dir, { recursive: true, force: true });
});

test('region and reconnect flags: bad values are usage errors; --no-reconnect ends on a source that is not there', async () => {
  for (const [args, message] of [
    [['--region', '1,2,3'], /--region must be "auto" or x,y,width,height/],
    [['--region', 'auto', '--no-region'], /--region and --no-region exclude each other/],
  ] as const) {
    const run = runCli(['replay', SAMPLE, '--out', join(tmpdir(), 'unused'), '--model', TINY_PACKAGE, ...args]);
    assert.is(run.status, 1);
    assert.match(run.stderr, message);
  }
  const badSize = runCli(['serve', '/dev/video9', '--video-size', '1920', '--port', '0', '--model', TINY_PACKAGE]);
  assert.is(badSize.status, 1);
  assert.match(badSize.stderr, /--video-size must be WIDTHxHEIGHT, got 1920/);
  const url = `http://127.0.0.1:${await freePort()}/nothing.ts`;
  const run = runCli(['serve', url, '--port', '0', '--model', TINY_PACKAGE, '--no-reconnect']);
  assert.is(run.status, 1, run.stderr);
  assert.match(run.stderr, /\[SOURCE_NOT_FOUND\]/);
});

test.run();
