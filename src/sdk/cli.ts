#!/usr/bin/env node
/**
 * `lfusion serve <source>`: the live pipeline behind a WebSocket server.
 * `lfusion replay <video> --out <dir>`: every frame of a recording, written as JSON lines and PNG planes.
 * `lfusion queue add|status|report` and `lfusion worker`: replays on a Redis job queue, on many machines.
 * The commands are in cli/ (one file each, plus what they share); this file dispatches and prints errors.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LfusionError, SourceError } from '../runtime/errors.js';
import { parseCommandLine, USAGE, usageError } from './cli/args.js';
import { replay } from './cli/replay.js';
import { queueCommand } from './cli/queue.js';
import { serve } from './cli/serve.js';
import { worker } from './cli/worker.js';

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  const [command, source, ...extra] = parsed.positionals;
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!command) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  if (command === 'queue') return queueCommand(parsed.positionals.slice(1), parsed.values);
  if (command === 'worker') {
    if (source !== undefined) throw usageError('worker takes no positional arguments');
    return worker(parsed.values);
  }
  if (command !== 'serve' && command !== 'replay') throw usageError(`unknown command "${command}" (commands: serve, replay, queue, worker)`);
  if (!source || extra.length > 0) throw usageError(`${command} takes exactly one source`);
  if (command === 'replay') return replay(source, parsed.values);
  await serve(source, parsed.values);
  return 0;
}

function isMainModule(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isMainModule()) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      const code = error instanceof LfusionError ? ` [${error.code}]` : '';
      process.stderr.write(`lfusion: ${error instanceof Error ? error.message : String(error)}${code}\n`);
      // ffmpeg's own reason ("moov atom not found", "matches no streams") is in its last error lines.
      const reasons = error instanceof SourceError ? error.stderrTail.split('\n').filter((line) => /\[(error|fatal)\]/.test(line)).slice(-3) : [];
      for (const line of reasons) process.stderr.write(`  ffmpeg: ${line.trim()}\n`);
      process.exit(1);
    },
  );
}
