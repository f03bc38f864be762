/**
 * Report files are replaced whole or not at all: a second Ctrl-C (which exits at once) or a crash in the middle of a
 * write leaves the previous version, never an empty or half-written file.
 */
import { rename, rm, writeFile } from 'node:fs/promises';

/** Writes `data` to a temporary file beside `path`, then renames it over `path` (atomic on one file system). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(temporary, data);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}
