import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileAtomic } from '../../src/report/atomic-write.js';

const EXIT_MID_WRITE = fileURLToPath(new URL('../helpers/exit-mid-write.ts', import.meta.url));

test('replaces the file and leaves no temporary file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lfusion-atomic-'));
  const path = join(dir, 'run.json');
  writeFileSync(path, '{"status":"running"}\n');
  await writeFileAtomic(path, '{"status":"stopped"}\n');
  assert.is(readFileSync(path, 'utf8'), '{"status":"stopped"}\n');
  assert.equal(readdirSync(dir), ['run.json']);
  rmSync(dir, { recursive: true, force: true });
});

test('a process that exits in the middle of a write leaves the previous file whole', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lfusion-atomic-'));
  const path = join(dir, 'report.html');
  const previous = 'the previous report\n';
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      writeFileSync(path, previous);
      const child = spawnSync(process.execPath, ['--import', 'tsx', EXIT_MID_WRITE, path], { encoding: 'utf8', timeout: 60_000 });
      assert.is(child.status, 0, child.stderr);
      const size = statSync(path).size;
      assert.ok(size === previous.length || size === 64 * 2 ** 20, `attempt ${attempt}: a file of ${size} bytes`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
