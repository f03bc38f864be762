/**
 * The fleet page: one offline HTML file over every completed recording under a report root (the folders queue
 * workers write, each with its completion marker): a row per recording linking to its own report, alerts by
 * reason, the distribution of head biometry and, where there is ground truth, of the errors, across the whole set.
 * It reads only the report folders (frames.jsonl streamed, a few numbers kept per frame), so it needs no Redis and
 * covers reports written by any number of machines.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Alert } from '../runtime/types/results.js';
import { writeFileAtomic } from './atomic-write.js';
import { escapeHtml, fmt, loadPlotLibrary, pageHead, scriptJson, type ReportSummary } from './html.js';
import type { FrameRecord } from './records.js';

/** The file whose presence in a report folder says a queue job completed it. */
export const COMPLETED_MARKER = 'completed.json';

/** What the fleet page shows of one completed recording. */
export interface FleetRow {
  /** The report folder, relative to the page's folder (the link to its report.html). */
  dir: string;
  recording: string;
  worker: string;
  seconds: number;
  finished: string;
  status: string;
  summary: ReportSummary;
  /** Median over frames of the biometry's gestational age (weeks); null without pixel spacing. */
  gaMedianWeeks: number | null;
}

/** A failed job, as `lfusion queue status` lists it. */
export interface FleetFailure {
  jobId: string;
  recording: string;
  reason: string;
  attempts: number;
}

/** Per-frame numbers pooled over the whole set, and alert counts by reason. */
export interface FleetPool {
  /** Biometry HC (posterior median, mm) of frames whose biometry is in mm. */
  hcMm: number[];
  gaWeeks: number[];
  hcAbsErrorMm: number[];
  hcSignedErrorMm: number[];
  dice: number[];
  /** Frames with a reference HC whose 95% interval covers it, of those with an interval. */
  covered: number;
  coverable: number;
  biometryStatus: Record<string, number>;
  /** Alert episodes (raised) by reason, and how many recordings had at least one of each. */
  alertsByReason: Record<string, { episodes: number; recordings: number }>;
}

export interface Histogram {
  /** Bin centres. */
  x: number[];
  counts: number[];
  width: number;
}

/** `bins` equal bins from the smallest to the largest value (one bin when all are equal); empty input, empty histogram. */
export function histogram(values: readonly number[], bins = 20): Histogram {
  if (values.length === 0) return { x: [], counts: [], width: 0 };
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  const count = high > low ? bins : 1;
  const width = high > low ? (high - low) / count : 1;
  const counts = new Array<number>(count).fill(0);
  for (const v of values) counts[Math.min(count - 1, Math.floor((v - low) / width))]! += 1;
  return { x: counts.map((_, i) => low + (i + 0.5) * width), counts, width };
}

function median(values: number[]): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const finite = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

export function emptyPool(): FleetPool {
  return { hcMm: [], gaWeeks: [], hcAbsErrorMm: [], hcSignedErrorMm: [], dice: [], covered: 0, coverable: 0, biometryStatus: {}, alertsByReason: {} };
}

/** Adds one frame's numbers to the pool; returns its GA (weeks) when it has one. */
export function poolFrame(pool: FleetPool, record: Partial<FrameRecord>): number | undefined {
  if (record.biometryStatus) pool.biometryStatus[record.biometryStatus] = (pool.biometryStatus[record.biometryStatus] ?? 0) + 1;
  if (record.biometryUnit === 'mm' && finite(record.hcFit)) pool.hcMm.push(record.hcFit);
  if (finite(record.hcAbsErrorMm)) pool.hcAbsErrorMm.push(record.hcAbsErrorMm);
  if (finite(record.hcSignedErrorMm)) pool.hcSignedErrorMm.push(record.hcSignedErrorMm);
  if (finite(record.dice)) pool.dice.push(record.dice);
  if (typeof record.hcCovered === 'boolean') {
    pool.coverable += 1;
    if (record.hcCovered) pool.covered += 1;
  }
  if (finite(record.gaWeeks)) {
    pool.gaWeeks.push(record.gaWeeks);
    return record.gaWeeks;
  }
  return undefined;
}

/** Adds one recording's alerts: each raised episode counts once for each reason that fired (`score` without a fused decision). */
export function poolAlerts(pool: FleetPool, alerts: readonly Pick<Alert, 'kind' | 'reasons'>[]): void {
  const seen = new Set<string>();
  for (const alert of alerts) {
    if (alert.kind !== 'raised') continue;
    const reasons = alert.reasons?.length ? [...new Set(alert.reasons.map((r) => r.reason))] : ['score'];
    for (const reason of reasons) {
      const entry = (pool.alertsByReason[reason] ??= { episodes: 0, recordings: 0 });
      entry.episodes += 1;
      if (!seen.has(reason)) entry.recordings += 1;
      seen.add(reason);
    }
  }
}

async function lines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

/** The completed report folders under `root` (any depth; dot-folders, staging and failed attempts, left out), in name order. */
async function completedFolders(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
    if (entries.some((entry) => entry.isFile() && entry.name === COMPLETED_MARKER)) {
      found.push(folder);
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (entry.isDirectory() && !entry.name.startsWith('.')) await walk(join(folder, entry.name));
    }
  };
  await walk(root);
  return found;
}

/** Reads every completed report under `root` into rows (folders relative to `linkBase`) and the pooled numbers. */
export async function readFleet(root: string, linkBase = root): Promise<{ rows: FleetRow[]; pool: FleetPool }> {
  const pool = emptyPool();
  const rows: FleetRow[] = [];
  for (const folder of await completedFolders(root)) {
    const marker = JSON.parse(await readFile(join(folder, COMPLETED_MARKER), 'utf8')) as { recording: string; worker: string; seconds: number; finished: string };
    const run = JSON.parse(await readFile(join(folder, 'run.json'), 'utf8')) as { status: string; summary: ReportSummary };
    const ga: number[] = [];
    const frames = createInterface({ input: createReadStream(join(folder, 'frames.jsonl')), crlfDelay: Infinity });
    for await (const line of frames) {
      if (!line) continue;
      const weeks = poolFrame(pool, JSON.parse(line) as Partial<FrameRecord>);
      if (weeks !== undefined) ga.push(weeks);
    }
    poolAlerts(pool, (await lines(join(folder, 'alerts.jsonl'))).map((line) => JSON.parse(line) as Alert));
    rows.push({ dir: relative(linkBase, folder), recording: marker.recording, worker: marker.worker, seconds: marker.seconds, finished: marker.finished, status: run.status, summary: run.summary, gaMedianWeeks: median(ga) });
  }
  return { rows, pool };
}

export interface FleetReportInput {
  title: string;
  rows: FleetRow[];
  pool: FleetPool;
  /** Failed jobs; `undefined` when the queue could not be asked. */
  failed?: FleetFailure[];
  plotLibrary: { js: string; css: string };
}

/** The fleet page. */
export function renderFleetReport(input: FleetReportInput): string {
  const { rows, pool } = input;
  const frames = rows.reduce((sum, row) => sum + row.summary.frames, 0);
  const withTruth = rows.filter((row) => row.summary.groundTruth);
  const summary: [string, string][] = [
    ['Completed recordings', String(rows.length)],
    ['Frames', String(frames)],
    ['Failed jobs', input.failed ? String(input.failed.length) : 'unknown (the queue did not answer)'],
    ['Recordings with an OOD alert', String(rows.filter((row) => row.summary.alertEpisodes > 0).length)],
    ['Processing time, all recordings (s)', fmt(rows.reduce((sum, row) => sum + row.seconds, 0), 1)],
    ['Biometry HC median over frames (mm)', fmt(median(pool.hcMm), 1)],
    ['Recordings / frames with ground truth', `${withTruth.length} / ${Math.max(pool.dice.length, pool.hcAbsErrorMm.length)}`],
  ];
  if (pool.hcAbsErrorMm.length) summary.push(['HC absolute error median / mean (mm)', `${fmt(median(pool.hcAbsErrorMm), 2)} / ${fmt(pool.hcAbsErrorMm.reduce((s, v) => s + v, 0) / pool.hcAbsErrorMm.length, 2)}`]);
  if (pool.dice.length) summary.push(['Dice median', fmt(median(pool.dice))]);
  if (pool.coverable) summary.push(['95% HC interval covers the reference', `${pool.covered} of ${pool.coverable} frames (${fmt((100 * pool.covered) / pool.coverable, 1)}%)`]);
  const tableRow = (row: FleetRow) => {
    const s = row.summary;
    const cells = [
      `<a href="${escapeHtml(`${row.dir}/report.html`.split('/').map(encodeURIComponent).join('/'))}">${escapeHtml(row.recording)}</a>`,
      escapeHtml(row.status),
      String(s.frames),
      s.alertEpisodes ? `<b class="bad">${s.alertEpisodes}</b>` : '0',
      String(s.framesAboveThreshold),
      fmt(s.oodScoreMax),
      fmt(s.meanUncertaintyMean, 4),
      fmt(s.hcMedianMm, 1),
      fmt(row.gaMedianWeeks, 1),
      fmt(s.groundTruth?.diceMean ?? null),
      fmt(s.groundTruth?.hcAbsErrorMeanMm ?? null, 2),
      fmt(row.seconds, 1),
      escapeHtml(row.worker),
    ];
    return `<tr>${cells.map((cell) => `<td>${cell}</td>`).join('')}</tr>`;
  };
  const reasons = Object.entries(pool.alertsByReason).sort((a, b) => b[1].episodes - a[1].episodes);
  const failed = input.failed?.map((job) => `<li><b>${escapeHtml(job.recording)}</b> (${job.attempts} attempt(s)): ${escapeHtml(job.reason)}</li>`).join('') ?? '';
  const plots = {
    reasons: { labels: reasons.map(([reason]) => reason), episodes: reasons.map(([, entry]) => entry.episodes) },
    hc: histogram(pool.hcMm),
    ga: histogram(pool.gaWeeks),
    hcError: histogram(pool.hcAbsErrorMm),
    hcSigned: histogram(pool.hcSignedErrorMm),
    dice: histogram(pool.dice),
  };
  const css = `#recordings td:first-child { color: var(--text); }
#recordings th { text-align: left; color: var(--muted); font-weight: normal; padding-right: 14px; }
a { color: #7fb3ff; }
`;
  return `${pageHead(input.title, input.plotLibrary.css, css)}
<header><h1>${escapeHtml(input.title)}</h1></header>
<main>
<h2>Summary</h2>
<table id="summary">${summary.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`).join('')}</table>
${failed ? `<h2>Failed jobs</h2><ul id="failed">${failed}</ul>` : ''}
<h2>Alerts by reason</h2>
${reasons.length ? `<table id="reasons"><tr><td>reason</td><td>alert episodes</td><td>recordings</td></tr>${reasons.map(([reason, entry]) => `<tr><td>${escapeHtml(reason)}</td><td>${entry.episodes}</td><td>${entry.recordings}</td></tr>`).join('')}</table><div class="plot" id="plot-reasons"></div>` : '<p>no alerts</p>'}
<h2>Biometry across the set</h2>
<p class="legend-note">Per frame: the biometry's posterior-median HC (frames with a pixel spacing) and gestational age. Status of the biometry: ${Object.entries(pool.biometryStatus).map(([status, count]) => `${escapeHtml(status)} ${count}`).join(', ') || 'none'}.</p>
<div class="plot" id="plot-hc"></div>
<div class="plot" id="plot-ga"></div>
${withTruth.length ? '<h2>Errors against ground truth</h2><div class="plot" id="plot-hc-error"></div><div class="plot" id="plot-hc-signed"></div><div class="plot" id="plot-dice"></div>' : ''}
<h2>Recordings</h2>
<table id="recordings"><tr>${['recording (its report)', 'status', 'frames', 'alerts', 'frames above', 'OOD max', 'mean uncertainty', 'HC median (mm)', 'GA median (weeks)', 'Dice mean', 'HC abs. error mean (mm)', 'seconds', 'worker'].map((h) => `<th>${h}</th>`).join('')}</tr>
${rows.map(tableRow).join('\n')}
</table>
</main>
<script>${input.plotLibrary.js}</script>
<script>
const data = ${scriptJson(plots)};
const plots = [];
/** A bar chart of counts over x (bin centres, or category positions with labels). */
function bars(id, title, x, counts, halfWidth, xLabel, labels) {
  const element = document.getElementById(id);
  if (!element || x.length === 0) { if (element) element.remove(); return; }
  const options = {
    title,
    width: Math.max(400, element.clientWidth - 12),
    height: 200,
    scales: { x: { time: false, range: (u, min, max) => [min - halfWidth, max + halfWidth] } },
    axes: [
      { label: xLabel, stroke: '#8a949e', grid: { stroke: '#2a2f35' }, ticks: { stroke: '#2a2f35' }, ...(labels ? { values: (u, splits) => splits.map((v) => labels[v] ?? '') } : {}) },
      { label: 'count', stroke: '#8a949e', grid: { stroke: '#2a2f35' }, ticks: { stroke: '#2a2f35' } },
    ],
    series: [{ label: xLabel }, { label: 'count', stroke: '#7fb3ff', fill: 'rgba(127,179,255,0.4)', paths: uPlot.paths.bars({ size: [0.9, 60] }), points: { show: false } }],
  };
  plots.push(new uPlot(options, [x, counts], element));
}
const histogram = (id, title, h, xLabel) => bars(id, title, h.x, h.counts, h.width / 2, xLabel);
bars('plot-reasons', 'Alert episodes by reason', data.reasons.labels.map((_, i) => i), data.reasons.episodes, 0.5, 'reason', data.reasons.labels);
histogram('plot-hc', 'Head circumference, biometry (mm)', data.hc, 'HC (mm)');
histogram('plot-ga', 'Gestational age (weeks)', data.ga, 'weeks');
histogram('plot-hc-error', 'HC absolute error (mm)', data.hcError, '|HC - reference| (mm)');
histogram('plot-hc-signed', 'HC signed error (mm)', data.hcSigned, 'HC - reference (mm)');
histogram('plot-dice', 'Dice against the ground truth', data.dice, 'Dice');
window.lfusionFleet = { plots: plots.length, recordings: ${rows.length} };
</script>
</body>
</html>
`;
}

/**
 * Reads the root and writes the fleet page (default `<root>/index.html`), replaced whole.
 *
 * @example
 * const { path, recordings } = await writeFleetReport({ root: '/mnt/qa', failed: (await queueStatus(queue)).failed });
 * console.log(`${recordings} recordings: open ${path}`);
 */
export async function writeFleetReport(options: { root: string; out?: string; failed?: FleetFailure[] }): Promise<{ path: string; recordings: number; frames: number }> {
  const path = resolve(options.out ?? join(options.root, 'index.html'));
  const { rows, pool } = await readFleet(options.root, dirname(path));
  const title = `L-FUSION fleet replay: ${rows.length} recordings`;
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, renderFleetReport({ title, rows, pool, ...(options.failed ? { failed: options.failed } : {}), plotLibrary: await loadPlotLibrary() }));
  return { path, recordings: rows.length, frames: rows.reduce((sum, row) => sum + row.summary.frames, 0) };
}
