import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createNativeState, stopWhenIdle, whileBusy } from '../../src/runtime/native-guard.js';

const EXIT_MID_RUN = fileURLToPath(new URL('../helpers/exit-mid-run.ts', import.meta.url));

function exitMidRun(afterMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', EXIT_MID_RUN, String(afterMs)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

test('a stopped worker state refuses native calls; stopping waits for the call in flight', async () => {
  const state = createNativeState();
  let finish!: () => void;
  const events: string[] = [];
  const call = whileBusy(state, () => new Promise<void>((resolve) => (finish = resolve)).then(() => events.push('call returned')));
  const stopped = stopWhenIdle(state).then(() => events.push('stopped'));
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(events, [], 'not stopped while busy');
  finish();
  await Promise.all([call, stopped]);
  assert.equal(events, ['call returned', 'stopped']);
  let called = false;
  assert.is(await whileBusy(state, async () => (called = true)), undefined);
  assert.not.ok(called, 'no native call after stop');
});

test('process.exit while a worker is inside ONNX Runtime exits with its code instead of aborting', async () => {
  // Several moments, so that at least some land inside a run (a 128-frame batch runs for about 20 ms here).
  for (const afterMs of [150, 260]) {
    const { code, signal, stderr } = await exitMidRun(afterMs);
    assert.not.match(stderr, /terminate called/);
    assert.is(signal, null, `killed by ${signal}: ${stderr}`);
    assert.is(code, 3, stderr);
  }
});

test.run();
