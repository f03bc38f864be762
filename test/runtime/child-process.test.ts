import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnChild, type ChildHandle, type SpawnMethod } from '../../src/runtime/child-process.js';
import { nativeKernels, nativeKernelsStatus } from '../../src/runtime/native-kernels.js';

const methods: SpawnMethod[] = nativeKernels ? ['posix_spawn', 'node'] : ['node'];
if (!nativeKernels) console.log(`child-process: posix_spawn not tested, the native addon is ${nativeKernelsStatus}`);

/** Everything a child wrote on its pipes, and the order and arguments of its events. */
async function outcome(child: ChildHandle): Promise<{ stdout: string; stderr: string; events: string[] }> {
  let stdout = '';
  let stderr = '';
  const events: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.on('error', (error) => events.push(`error ${error.code}`));
  child.on('exit', (code, signal) => events.push(`exit ${code} ${signal}`));
  await new Promise<void>((resolve) => child.on('close', (code, signal) => resolve(void events.push(`close ${code} ${signal}`))));
  return { stdout, stderr, events };
}

for (const method of methods) {
  test(`${method}: pipes, exit code, the environment, and 'exit' before 'close'`, async () => {
    process.env.LFUSION_CHILD_TEST = 'inherited';
    const child = spawnChild('/bin/sh', ['-c', 'echo "out $LFUSION_CHILD_TEST"; echo err >&2; exit 3'], ['ignore', 'pipe', 'pipe'], method);
    assert.type(child.pid, 'number');
    const { stdout, stderr, events } = await outcome(child);
    assert.is(stdout, 'out inherited\n');
    assert.is(stderr, 'err\n');
    assert.equal(events, ['exit 3 null', 'close 3 null']);
    assert.is(child.exitCode, 3);
    assert.is(child.signalCode, null);
    delete process.env.LFUSION_CHILD_TEST;
  });

  test(`${method}: a large output arrives whole and in order, through pauses`, async () => {
    const child = spawnChild('/bin/sh', ['-c', 'seq 1 300000'], ['ignore', 'pipe', 'ignore'], method);
    assert.is(child.stderr, null);
    const chunks: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      // Back-pressure as fromVideo applies it: the child blocks on a full pipe until reading resumes.
      child.stdout!.pause();
      setTimeout(() => child.stdout!.resume(), 1);
    });
    const [code] = await once(child, 'close');
    assert.is(code, 0);
    const lines = Buffer.concat(chunks).toString().trimEnd().split('\n');
    assert.is(lines.length, 300000);
    assert.is(lines[0], '1');
    assert.is(lines.at(-1), '300000');
  });

  test(`${method}: kill ends it with the signal; a kill after the exit is refused`, async () => {
    const child = spawnChild('/bin/sleep', ['30'], ['ignore', 'pipe', 'pipe'], method);
    const ended = outcome(child);
    assert.ok(child.kill('SIGTERM'));
    const { events } = await ended;
    assert.equal(events, ['exit null SIGTERM', 'close null SIGTERM']);
    assert.is(child.signalCode, 'SIGTERM');
    assert.is(child.exitCode, null);
    assert.not.ok(child.kill('SIGKILL'), 'an exited child is not signalled');
  });

  test(`${method}: SIGPIPE is not ignored in the child, as it is here; closing its pipe ends a writer`, async () => {
    // Node ignores SIGPIPE; a child that inherited that would only see failed writes.
    if (existsSync('/proc/self/status')) {
      const status = spawnChild('/bin/sh', ['-c', 'grep SigIgn /proc/self/status'], ['ignore', 'pipe', 'ignore'], method);
      const { stdout } = await outcome(status);
      const ignored = BigInt(`0x${stdout.split(/\s+/)[1]}`);
      assert.is(ignored & (1n << BigInt(constants.signals.SIGPIPE - 1)), 0n, `SigIgn ${stdout}`);
    }
    const writer = spawnChild('/usr/bin/yes', [], ['ignore', 'pipe', 'ignore'], method);
    writer.stdout!.once('data', () => writer.stdout!.destroy());
    await once(writer, 'close');
    assert.ok(writer.exitCode !== 0, `ended by ${writer.signalCode ?? `code ${writer.exitCode}`}`);
  });

  test(`${method}: a missing program is an 'error' with its code, then 'close'`, async () => {
    const child = spawnChild('/nonexistent/ffmpeg', ['-version'], ['ignore', 'pipe', 'pipe'], method);
    assert.is(child.pid, undefined);
    const { stdout, events } = await outcome(child);
    assert.equal(events, ['error ENOENT', 'close -2 null']);
    assert.is(stdout, '', 'its pipes exist, empty');
  });
}

test('a child closing its pipes before it exits: exit and close wait for the exit', async () => {
  for (const method of methods) {
    const child = spawnChild('/bin/sh', ['-c', 'exec >&- 2>&-; sleep 0.3; exit 5'], ['ignore', 'pipe', 'pipe'], method);
    const started = Date.now();
    const { events } = await outcome(child);
    assert.equal(events, ['exit 5 null', 'close 5 null'], method);
    assert.ok(Date.now() - started >= 250, `${method}: closed after the exit, not at the pipes' end`);
  }
});

test.run();
