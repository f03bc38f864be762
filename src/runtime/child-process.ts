/**
 * Starting child processes (ffmpeg) without forking this process. Node's `child_process.spawn` forks on Linux
 * (libuv): the page tables of this whole process are copied, and every page it writes afterwards takes a
 * copy-on-write fault. Beside two inference workers that is about 45 thousand faults, a quarter of both cores for a
 * second and a half, each time a stream starts (docs/decisions.md, "ffmpeg started without a fork"). The native
 * addon's `spawnPiped` uses posix_spawn instead, which shares the memory until the child's exec.
 *
 * {@link spawnChild} takes the native path when the addon is loaded and Node's `spawn` otherwise (no compiler at
 * install, `LFUSION_NATIVE=0`, Windows, or `LFUSION_SPAWN=node` for this alone); both give a {@link ChildHandle}, the part of Node's `ChildProcess` the SDK
 * uses, with the same events in the same order.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { Readable } from 'node:stream';
import { getSystemErrorName } from 'node:util';
import { nativeKernels, type NativeKernels } from './native-kernels.js';

/** What a child's standard stream is connected to: a pipe this process reads, or /dev/null. */
export type StdioMode = 'pipe' | 'ignore';
/** stdin, stdout, stderr. stdin is never a pipe: nothing the SDK starts reads one. */
export type ChildStdio = readonly ['ignore', StdioMode, StdioMode];

/** A started child process: the subset of Node's `ChildProcess` the SDK uses. */
export interface ChildHandle extends EventEmitter {
  /** `undefined` when it could not be started (its `'error'` event says why). */
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** The exit code once it has exited normally (the negative errno when it could not start, as Node's), else `null`. */
  readonly exitCode: number | null;
  /** The signal that ended it, else `null`. */
  readonly signalCode: NodeJS.Signals | null;
  /** Sends `signal` (default SIGTERM); `false` when it has exited or was never started. */
  kill(signal?: NodeJS.Signals): boolean;
  on(event: 'exit' | 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (error: NodeJS.ErrnoException) => void): this;
  once(event: 'exit' | 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'error', listener: (error: NodeJS.ErrnoException) => void): this;
}

/** Which implementation {@link spawnChild} uses. */
export type SpawnMethod = 'posix_spawn' | 'node';

/** The implementation used when none is asked for: the addon's posix_spawn when it is loaded, unless `LFUSION_SPAWN=node`. */
export function defaultSpawnMethod(): SpawnMethod {
  return nativeKernels && process.env.LFUSION_SPAWN !== 'node' ? 'posix_spawn' : 'node';
}

/**
 * Starts `file` with `args` (no shell), its stdio as given, the environment of this process. Events: `'error'` when
 * it cannot be started (then `'close'`), else `'exit'` and, once its pipes are closed too, `'close'`.
 *
 * @example
 * const child = spawnChild('ffmpeg', ['-version'], ['ignore', 'pipe', 'ignore']);
 * child.stdout!.on('data', (chunk) => process.stdout.write(chunk));
 * child.on('close', (code) => console.log('exited with', code));
 */
export function spawnChild(file: string, args: readonly string[], stdio: ChildStdio, method: SpawnMethod = defaultSpawnMethod()): ChildHandle {
  if (method === 'posix_spawn') {
    if (!nativeKernels) throw new Error(`posix_spawn needs the native addon, which is not loaded`);
    return new SpawnedChild(nativeKernels, file, args, stdio);
  }
  return spawn(file, args, { stdio: [...stdio] });
}

/** How often a running child's exit is polled while its pipes are open, and at most once they are closed. */
const POLL_RUNNING_MS = 100;
const POLL_CLOSING_MS = 20;

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]));

/**
 * A child started by the addon's posix_spawn: its pipes are sockets on the descriptors; its exit is polled (waitpid,
 * no hang), slowly while its pipes are open, at once and then every few ms once they close (an exit closes them).
 * As Node's: `'exit'` when it has exited, `'close'` when it has exited and its pipes are closed.
 */
class SpawnedChild extends EventEmitter implements ChildHandle {
  readonly pid: number | undefined;
  readonly stdout: Readable | null = null;
  readonly stderr: Readable | null = null;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  #exited = false;
  #openPipes = 0;
  #poll: NodeJS.Timeout | undefined;

  constructor(private readonly addon: NativeKernels, file: string, args: readonly string[], stdio: ChildStdio) {
    super();
    const started = addon.spawnPiped(file, [...args], [stdio[1] === 'pipe', stdio[2] === 'pipe']);
    if (started.errno !== undefined) {
      // As Node's: the piped streams exist (empty), so listeners attach as for a started child.
      const empty = (mode: StdioMode): Readable | null => (mode === 'pipe' ? new Readable({ read() { this.push(null); } }) : null);
      [this.stdout, this.stderr] = [empty(stdio[1]), empty(stdio[2])];
      // As Node's ChildProcess: the exit code is the negative errno, and asynchronously 'error', then 'close'.
      this.exitCode = -started.errno;
      const code = getSystemErrorName(this.exitCode);
      const error: NodeJS.ErrnoException = Object.assign(new Error(`spawn ${file} ${code}`), { errno: this.exitCode, code, syscall: `spawn ${file}`, path: file });
      process.nextTick(() => {
        this.emit('error', error);
        this.emit('close', this.exitCode, null);
      });
      return;
    }
    this.pid = started.pid;
    const pipe = (fd: number): Socket | null => (fd >= 0 ? new Socket({ fd, readable: true, writable: false }) : null);
    for (const socket of [(this.stdout = pipe(started.stdout)), (this.stderr = pipe(started.stderr))]) {
      if (!socket) continue;
      this.#openPipes += 1;
      socket.once('close', () => {
        this.#openPipes -= 1;
        if (this.#openPipes > 0) return;
        if (this.#exited) this.emit('close', this.exitCode, this.signalCode);
        else this.#reap();
      });
    }
    this.#schedule(POLL_RUNNING_MS);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    // Never signal a reaped pid: it may belong to another process by now.
    if (this.pid === undefined || this.#exited) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#poll);
    this.#poll = setTimeout(() => this.#reap(delayMs), delayMs);
  }

  #reap(lastDelayMs = 0): void {
    const status = this.addon.reapChild(this.pid!);
    if (status === null) {
      this.#schedule(this.#openPipes > 0 ? POLL_RUNNING_MS : Math.min(POLL_CLOSING_MS, Math.max(1, 2 * lastDelayMs)));
      return;
    }
    clearTimeout(this.#poll);
    this.#exited = true;
    if (status.signal !== undefined) this.signalCode = SIGNAL_NAMES.get(status.signal) ?? null;
    else if (status.code !== undefined) this.exitCode = status.code;
    this.emit('exit', this.exitCode, this.signalCode);
    if (this.#openPipes === 0) this.emit('close', this.exitCode, this.signalCode);
  }
}
