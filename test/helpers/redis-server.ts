/**
 * A real Redis for queue tests: Debian's redis-server on a free 127.0.0.1 port, with a password, its data in a temp
 * folder (append-only file, fsync on every write, so that a restart loses nothing), stopped when the test ends or
 * the process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './loopback-stream.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

/** True when redis-server is installed; otherwise says which tests are skipped and why. */
export function redisServerPresent(what: string): boolean {
  if (existsSync(REDIS_SERVER)) return true;
  console.warn(`skipped: ${what} (no ${REDIS_SERVER}; install it with the README's setup line: apt-get install redis-server)`);
  return false;
}

export interface TestRedis {
  /** redis://:password@127.0.0.1:port */
  url: string;
  port: number;
  /** Kills the server (SIGKILL: nothing flushed beyond what was fsynced) and starts it again on the same port and data. */
  restart(downMs?: number): Promise<void>;
  /** Stops the server and removes its data. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

async function launch(port: number, password: string, dir: string): Promise<ChildProcess> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', password, '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction', '--logfile', ''];
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within 10 s:\n${output}`)), 10_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}):\n${output}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'lfusion-redis-'));
  let child = await launch(port, password, dir);
  return {
    url: `redis://:${password}@127.0.0.1:${port}`,
    port,
    async restart(downMs = 0) {
      await kill(child);
      await new Promise((resolve) => setTimeout(resolve, downMs));
      child = await launch(port, password, dir);
    },
    async stop() {
      await kill(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
