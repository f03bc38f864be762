/**
 * Every ffmpeg the SDK starts goes through here, so that each one ends: with its consumer (`stopFfmpeg`: SIGTERM,
 * then SIGKILL after a grace, resolving once it has exited) or, at the latest, with this process (SIGKILL on exit).
 */
import { spawnChild, type ChildHandle, type ChildStdio } from './child-process.js';

/** After SIGTERM, how long ffmpeg gets before SIGKILL (blocked on a silent UDP input, it may ignore SIGTERM). */
export const KILL_GRACE_MS = 2000;

const running = new Set<ChildHandle>();

function killAllOnExit(): void {
  for (const child of running) child.kill('SIGKILL');
}

/** Starts ffmpeg; it is killed when this process exits, if it has not ended by then. */
export function spawnFfmpeg(path: string, args: readonly string[], stdio: ChildStdio): ChildHandle {
  const child = spawnChild(path, args, stdio);
  if (child.pid === undefined) return child; // failed to start: its 'error' event says why
  if (running.size === 0) process.on('exit', killAllOnExit);
  running.add(child);
  child.once('exit', () => {
    running.delete(child);
    if (running.size === 0) process.off('exit', killAllOnExit);
  });
  return child;
}

/** Whether the process has exited. */
function hasExited(child: ChildHandle): boolean {
  return child.exitCode !== null || child.signalCode !== null || child.pid === undefined;
}

/**
 * Ends ffmpeg: closes its stdout first (which unblocks a write it may be stuck in, so SIGTERM is seen promptly),
 * sends SIGTERM, and SIGKILL after `graceMs`. Resolves once it has exited.
 */
export function stopFfmpeg(child: ChildHandle, graceMs = KILL_GRACE_MS): Promise<void> {
  child.stdout?.destroy();
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** ffmpeg processes started here and still running (tests check that none is left behind). */
export function runningFfmpegCount(): number {
  return running.size;
}
