/**
 * What the queue tests and bench share: recordings cut from assets/sample.mp4, a client of the test queue, waiting
 * for its counts, and `lfusion worker` processes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { connectionOptions } from '../../src/sdk/queue/connection.js';
import type { ReplayJobData, ReplayJobResult } from '../../src/sdk/queue/jobs.js';
import { resolveFfmpeg } from '../../src/runtime/ffmpeg.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'src/sdk/cli.ts');
const SAMPLE = join(ROOT, 'assets/sample.mp4');

/** `frames` frames of the sample (20 fps) from `startFrame` on, by default at 96x64: a recording a worker replays in a few seconds. */
export function makeRecording(path: string, startFrame: number, frames = 1, size = '96:64'): string {
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-ss', String(startFrame / 20), '-i', SAMPLE, '-frames:v', String(frames), '-vf', `scale=${size}`, '-c:v', 'mpeg4', '-q:v', '3', path];
  const result = spawnSync(resolveFfmpeg().path, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ffmpeg could not cut ${path}: ${result.stderr}`);
  return path;
}

/** A file that ends with the `.mp4` name and random bytes: ffmpeg fails on it with DECODE_FAILED. */
export function makeCorruptRecording(dir: string): string {
  const path = join(dir, 'corrupt.mp4');
  writeFileSync(path, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)));
  return path;
}

export function testQueue(url: string, name: string): Queue<ReplayJobData, ReplayJobResult> {
  const queue = new Queue<ReplayJobData, ReplayJobResult>(name, { connection: connectionOptions(url, true) });
  queue.on('error', () => {}); // the Redis restart test drops the connection on purpose
  return queue;
}

/** Waits until `check(counts)` holds (polling the queue), or throws with the last counts. */
export async function untilCounts(queue: Queue, check: (counts: Record<string, number>) => boolean, ms: number): Promise<Record<string, number>> {
  const deadline = Date.now() + ms;
  let counts: Record<string, number> = {};
  for (;;) {
    counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized').catch(() => counts);
    if (check(counts)) return counts;
    if (Date.now() > deadline) throw new Error(`queue counts not reached within ${ms} ms: ${JSON.stringify(counts)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** `lfusion worker` in its own process, Redis URL in the environment (as on a real machine); its stdout lines kept. */
export class WorkerProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  private stderr = '';

  constructor(redisUrl: string, queue: string, extra: string[] = []) {
    this.child = spawn(process.execPath, ['--import', 'tsx', CLI, 'worker', '--queue', queue, ...extra], { cwd: ROOT, env: { ...process.env, LFUSION_REDIS_URL: redisUrl }, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      const text = partial + chunk.toString();
      const lines = text.split('\n');
      partial = lines.pop()!;
      this.lines.push(...lines);
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)));
  }

  get name(): string {
    return `${hostname()}:${this.child.pid}`;
  }

  completed(): string[] {
    return this.lines.filter((line) => line.startsWith('completed ')).map((line) => line.split(' ')[1]!);
  }

  /** Ctrl-C: finishes its running job, then exits. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
  }

  async kill9(): Promise<void> {
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }

  /** Resolves when the worker says it is ready (connected, taking jobs). */
  async ready(ms = 60_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.stderr.includes('worker ready')) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`worker not ready within ${ms} ms:\n${this}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  toString(): string {
    return `${this.name}\n${this.lines.join('\n')}\n${this.stderr}`;
  }
}
