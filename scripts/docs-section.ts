/** A generated section of a Markdown document (docs/results.md), between its own begin and end marker lines. */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';

/** `text` with the section from `begin` to `end` replaced by `section` (which holds both markers), or appended. */
export function replaceSection(text: string, section: string, begin: string, end: string): string {
  const start = text.indexOf(begin);
  const stop = start < 0 ? -1 : text.indexOf(end, start);
  if (stop < 0) return `${text.trimEnd()}\n\n${section}\n`;
  return text.slice(0, start) + section + text.slice(stop + end.length);
}

/** Writes `lines` (the section, markers included) into the document at `path`, creating it when absent. */
export async function writeSection(path: string, lines: readonly string[], begin: string, end: string): Promise<void> {
  const previous = existsSync(path) ? await readFile(path, 'utf8') : '';
  await writeFile(path, replaceSection(previous, lines.join('\n'), begin, end));
}
