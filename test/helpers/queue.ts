/** What the queue tests share: tiny recordings cut from assets/sample.mp4, a client of the test queue, waiting for its counts. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { connectionOptions } from '../../src/sdk/queue/connection.js';
import type { ReplayJobData, ReplayJobResult } from '../../src/sdk/queue/jobs.js';
import { resolveFfmpeg } from '../../src/runtime/ffmpeg.js';

const SAMPLE = fileURLToPath(new URL('../../assets/sample.mp4', import.meta.url));

/** `frames` frames of the sample from `startFrame` on, at 96x64: a recording a worker replays in a few seconds. */
export function makeRecording(path: string, startFrame: number, frames = 1): string {
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-ss', String(startFrame / 20), '-i', SAMPLE, '-frames:v', String(frames), '-vf', 'scale=96:64', '-c:v', 'mpeg4', '-q:v', '5', path];
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
