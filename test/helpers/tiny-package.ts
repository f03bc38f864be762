/** Throwaway copies of the tiny test model package (test/fixtures/tiny-package), edited per test. */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TINY_PACKAGE = fileURLToPath(new URL('../fixtures/tiny-package', import.meta.url));

/** Copies the tiny package into a fresh temp folder, lets `edit` change its manifest, returns the folder. */
export async function tinyPackageCopy(edit: (manifest: any) => void = () => {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lfusion-pkg-'));
  await cp(TINY_PACKAGE, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  edit(manifest);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

export function removeDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}
