/**
 * Benchmark runner: imports every `bench/*.bench.ts` (or those whose file name contains one of the
 * arguments), prints a table of medians and writes them with the machine and the command to the untracked
 * `bench/results.local.json`; `--update` writes the committed `bench/results.json` instead (README numbers).
 *
 *   npm run bench                       # all benchmarks
 *   npm run bench -- encoder            # bench/encoder.bench.ts only
 *   npm run bench -- --update           # all benchmarks, into bench/results.json
 */
import { readdir, writeFile } from 'node:fs/promises';
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** One measured quantity: repeated samples, summarised by their median. */
export interface BenchResult {
  name: string;
  unit: string;
  samples: number[];
  /** Conditions worth recording with the numbers (model, thread counts...). */
  notes?: Record<string, string | number>;
}

/** What a `*.bench.ts` module default-exports. */
export interface BenchModule {
  title: string;
  run(): Promise<BenchResult[]>;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const benchDir = fileURLToPath(new URL('.', import.meta.url));

/** Where a run's results go: the committed file only when asked, so a run does not dirty the checkout. */
export function resultsFile(args: readonly string[]): { file: string; filters: string[] } {
  const update = args.includes('--update');
  return { file: update ? 'results.json' : 'results.local.json', filters: args.filter((arg) => arg !== '--update') };
}

async function main(args: string[]): Promise<void> {
  const { file: output, filters } = resultsFile(args);
  const files = (await readdir(benchDir)).filter((file) => file.endsWith('.bench.ts') && (filters.length === 0 || filters.some((f) => file.includes(f)))).sort();
  if (files.length === 0) throw new Error(`no bench/*.bench.ts matches ${filters.join(', ')}`);
  const results: { bench: string; name: string; unit: string; median: number; samples: number[]; notes?: BenchResult['notes'] }[] = [];
  for (const file of files) {
    const module = (await import(pathToFileURL(`${benchDir}/${file}`).href)).default as BenchModule;
    process.stderr.write(`running ${file}: ${module.title}\n`);
    for (const result of await module.run()) results.push({ bench: file, ...result, median: median(result.samples) });
  }
  const rows = results.map((r) => [r.bench.replace('.bench.ts', ''), r.name, r.median.toPrecision(4), r.unit, String(r.samples.length)]);
  const header = ['bench', 'case', 'median', 'unit', 'n'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ');
  console.log([line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  const cpu = cpus();
  const report = {
    date: new Date().toISOString(),
    command: `node --import tsx bench/run.ts ${args.join(' ')}`.trim(),
    machine: { cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, memoryGiB: +(totalmem() / 2 ** 30).toFixed(1), platform: `${platform()} ${release()} ${arch()}`, node: process.version, loadavg: loadavg() },
    results,
  };
  await writeFile(`${benchDir}/${output}`, `${JSON.stringify(report, null, 2)}\n`);
  process.stderr.write(`wrote bench/${output}\n`);
}

// Only when run as a script: bench modules import this file's types and helpers.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) await main(process.argv.slice(2));
