#!/usr/bin/env node
/**
 * `lfusion serve <source>`: the live pipeline behind a WebSocket server.
 * `lfusion replay <video> --out <dir>`: every frame of a recording, written as JSON lines and PNG planes.
 * The commands are in cli/ (one file each, plus what they share); this file dispatches and prints errors.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LfusionError } from '../runtime/errors.js';
import { parseCommandLine, USAGE, usageError } from './cli/args.js';
import { replay } from './cli/replay.js';
import { serve } from './cli/serve.js';

export async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  const [command, source, ...extra] = parsed.positionals;
  if (parsed.values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  if (!source || extra.length > 0) throw usageError(`${command} takes exactly one source`);
  if (command === 'serve') await serve(source, parsed.values);
  else if (command === 'replay') return replay(source, parsed.values);
  else throw usageError(`unknown command "${command}"`);
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
      process.exit(1);
    },
  );
}
