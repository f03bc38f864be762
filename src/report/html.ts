/**
 * The replay report page: one self-contained HTML file (uPlot and its CSS inline, thumbnails as PNG data
 * URIs), so it opens offline from disk or an e-mail attachment.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Alert } from '../runtime/types/results.js';
import type { FrameRecord } from './records.js';

/** An OOD alert episode in run positions (`seq`), inclusive; `open` when the run ended while it was raised. */
export interface AlertInterval {
  id: number;
  start: number;
  end: number;
  peakScore: number;
  open: boolean;
}

/** The report's summary table (also in run.json). Means skip frames where a value does not apply. */
export interface ReportSummary {
  frames: number;
  sources: number;
  framesAboveThreshold: number;
  alertEpisodes: number;
  oodScoreMean: number | null;
  oodScoreMax: number | null;
  meanUncertaintyMean: number | null;
  hcMedianMm: number | null;
  groundTruth: {
    frames: number;
    diceMean: number | null;
    diceMin: number | null;
    hausdorffMmMean: number | null;
    /** Frames where exactly one of prediction and truth is empty (infinite distance, left out of the mean). */
    hausdorffInfinite: number;
    hcAbsErrorMeanMm: number | null;
    hcAbsErrorMedianMm: number | null;
  } | null;
  alertIntervals: AlertInterval[];
}

export interface ReportThumbnail {
  record: FrameRecord;
  /** RGB PNG, base64. */
  png: string;
}

export interface ReportInput {
  title: string;
  run: Record<string, unknown> & { partial: boolean; status: string; framesExpected: number | null; errors: { source: string; code: string; message: string }[] };
  records: FrameRecord[];
  alerts: Alert[];
  summary: ReportSummary;
  thumbnails: ReportThumbnail[];
  /** At most one thumbnail per this many consecutive frames of a video. */
  thumbnailWindow: number;
  plotLibrary: { js: string; css: string };
}

const meanOf = (values: number[]) => (values.length ? values.reduce((sum, v) => sum + v, 0) / values.length : null);
function medianOf(values: number[]): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
const present = (values: (number | null)[]) => values.filter((v): v is number => v !== null && !Number.isNaN(v));

/** Alert episodes from `raised`/`cleared` pairs; one still raised at the end runs to the last frame. */
export function alertIntervals(alerts: Alert[], lastSeq: number): AlertInterval[] {
  const intervals = new Map<number, AlertInterval>();
  for (const alert of alerts) {
    if (alert.kind === 'raised') intervals.set(alert.id, { id: alert.id, start: alert.startFrame, end: lastSeq, peakScore: alert.peakScore, open: true });
    else intervals.set(alert.id, { id: alert.id, start: alert.startFrame, end: alert.endFrame, peakScore: alert.peakScore, open: false });
  }
  return [...intervals.values()];
}

export function summarise(records: FrameRecord[], alerts: Alert[]): ReportSummary {
  const ood = present(records.map((r) => r.oodScore));
  const truth = records.filter((r) => r.dice !== null || r.hcTrueMm !== null);
  const hausdorff = present(truth.map((r) => r.hausdorffMm));
  const dices = present(truth.map((r) => r.dice));
  const hcErrors = present(truth.map((r) => r.hcAbsErrorMm));
  return {
    frames: records.length,
    sources: new Set(records.map((r) => r.source)).size,
    framesAboveThreshold: records.filter((r) => r.oodAbove).length,
    alertEpisodes: alerts.filter((a) => a.kind === 'raised').length,
    oodScoreMean: meanOf(ood),
    oodScoreMax: ood.length ? Math.max(...ood) : null,
    meanUncertaintyMean: meanOf(present(records.map((r) => r.meanUncertainty))),
    hcMedianMm: medianOf(present(records.map((r) => r.hcMm))),
    groundTruth: truth.length
      ? {
          frames: truth.length,
          diceMean: meanOf(dices),
          diceMin: dices.length ? Math.min(...dices) : null,
          hausdorffMmMean: meanOf(hausdorff.filter(Number.isFinite)),
          hausdorffInfinite: hausdorff.filter((d) => !Number.isFinite(d)).length,
          hcAbsErrorMeanMm: meanOf(hcErrors),
          hcAbsErrorMedianMm: medianOf(hcErrors),
        }
      : null,
    alertIntervals: alertIntervals(alerts, records.at(-1)?.seq ?? 0),
  };
}

export const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
/** JSON safe inside a <script> element. */
export const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');
export const fmt = (value: number | null | undefined, digits = 3) => (value === null || value === undefined ? '–' : Number.isFinite(value) ? value.toFixed(digits) : String(value));

/** uPlot's script and style, inlined in the pages so that they open offline. */
export async function loadPlotLibrary(): Promise<{ js: string; css: string }> {
  const require = createRequire(import.meta.url);
  const [js, css] = await Promise.all([readFile(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'), readFile(require.resolve('uplot/dist/uPlot.min.css'), 'utf8')]);
  return { js, css };
}

/** The report pages' look (the replay report and the fleet page). */
const REPORT_CSS = `:root { color-scheme: dark; --bg: #101214; --panel: #1b1e22; --text: #d8dde3; --muted: #8a949e; --bad: #c0392b; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, sans-serif; }
header { padding: 10px 16px; background: var(--panel); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 12px; margin: 18px 0 6px; text-transform: uppercase; letter-spacing: 0.05em; color: var(--muted); }
main { padding: 0 16px 24px; max-width: 1400px; }
#partial { background: var(--bad); color: #fff; font-weight: 600; padding: 8px 16px; }
table { border-collapse: collapse; }
td { padding: 3px 14px 3px 0; border-bottom: 1px solid #2a2f35; }
td:first-child { color: var(--muted); }
.plot { background: var(--panel); margin-bottom: 8px; padding: 6px; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; background: var(--panel); padding: 6px; }
figure img { display: block; width: 320px; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.bad { color: #ff6b5b; }
.legend-note { color: var(--muted); font-size: 12px; }
pre { background: var(--panel); padding: 8px; overflow: auto; font-size: 12px; }
.uplot, .u-legend { color: var(--text); }`;

/** A report page's start, up to its `<body>`: the title, the plot library's style, the shared look and `css`. */
export function pageHead(title: string, plotCss: string, css = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>${plotCss}</style>
<style>
${REPORT_CSS}
${css}</style>
</head>
<body>`;
}

function summaryRows(input: ReportInput): [string, string][] {
  const { summary, run } = input;
  const sampling = run.sampling as { m: number; n: number; k: number; seed: number };
  const model = run.model as { name: string; manifestSha256: string };
  const rows: [string, string][] = [
    ['Status', `${run.status}${run.partial ? ` (partial: ${summary.frames}${run.framesExpected === null ? '' : ` of ${run.framesExpected}`} frames)` : ''}`],
    ['Frames', String(summary.frames)],
    ['Sources', String(summary.sources)],
    ['Model package', `${model.name} (manifest sha256 ${model.manifestSha256.slice(0, 16)}…)`],
    ['Samples m / n / k, seed', `${sampling.m} / ${sampling.n} / ${sampling.k}, seed ${sampling.seed}`],
    ['Frames above OOD threshold', String(summary.framesAboveThreshold)],
    ['OOD alert episodes', String(summary.alertEpisodes)],
    ['OOD score mean / max', `${fmt(summary.oodScoreMean)} / ${fmt(summary.oodScoreMax)}`],
    ['Mean uncertainty (fused), mean over frames', fmt(summary.meanUncertaintyMean, 4)],
    ['Head circumference, median (mm)', fmt(summary.hcMedianMm, 1)],
  ];
  const truth = summary.groundTruth;
  if (truth) {
    rows.push(
      ['Ground-truth frames', String(truth.frames)],
      ['Dice mean / min', `${fmt(truth.diceMean)} / ${fmt(truth.diceMin)}`],
      ['Hausdorff distance mean (mm)', `${fmt(truth.hausdorffMmMean, 2)}${truth.hausdorffInfinite ? ` (${truth.hausdorffInfinite} frames with an empty mask left out)` : ''}`],
      ['HC absolute error mean / median (mm)', `${fmt(truth.hcAbsErrorMeanMm, 2)} / ${fmt(truth.hcAbsErrorMedianMm, 2)}`],
    );
  }
  return rows;
}

/** The report page. */
export function renderReport(input: ReportInput): string {
  const { records, summary } = input;
  const finiteOrNull = (v: number | null) => (v !== null && Number.isFinite(v) ? v : null);
  const series = {
    seq: records.map((r) => r.seq),
    label: records.map((r) => `${r.source} #${r.index}`),
    ood: records.map((r) => r.oodScore),
    threshold: records.map((r) => r.oodThreshold),
    uncertainty: records.map((r) => r.meanUncertainty),
    hc: records.map((r) => finiteOrNull(r.hcMm)),
    hcTrue: records.map((r) => finiteOrNull(r.hcTrueMm)),
    hcFit: records.map((r) => (r.biometryUnit === 'mm' ? r.hcFit : null)),
    hcLow: records.map((r) => (r.biometryUnit === 'mm' ? r.hcLow : null)),
    hcHigh: records.map((r) => (r.biometryUnit === 'mm' ? r.hcHigh : null)),
    dice: records.map((r) => r.dice),
    hausdorff: records.map((r) => finiteOrNull(r.hausdorffMm)),
    intervals: summary.alertIntervals,
  };
  const hasHc = series.hc.some((v) => v !== null) || series.hcTrue.some((v) => v !== null) || series.hcFit.some((v) => v !== null);
  const hasTruth = series.dice.some((v) => v !== null);
  const thumbnails = input.thumbnails
    .map(({ record, png }) => `<figure><img alt="frame ${record.seq}" src="data:image/png;base64,${png}"><figcaption>${escapeHtml(record.source)} #${record.index}<br>mean uncertainty ${fmt(record.meanUncertainty, 4)} · OOD ${fmt(record.oodScore)}${record.oodAbove ? ' <b class="bad">above</b>' : ''}${record.dice === null ? '' : ` · Dice ${fmt(record.dice)}`}</figcaption></figure>`)
    .join('\n');
  const errors = input.run.errors.map((e) => `<li><b>${escapeHtml(e.source)}</b> [${escapeHtml(e.code)}] ${escapeHtml(e.message)}</li>`).join('');
  const settings = JSON.stringify(input.run, null, 2);
  return `${pageHead(input.title, input.plotLibrary.css)}
<header><h1>${escapeHtml(input.title)}</h1></header>
${input.run.partial ? `<div id="partial">PARTIAL REPORT: the run ${input.run.status === 'failed' ? 'failed' : 'was stopped'} after ${records.length}${input.run.framesExpected === null ? '' : ` of ${input.run.framesExpected}`} frames; everything below covers only those.</div>` : ''}
<main>
<h2>Summary</h2>
<table id="summary">${summaryRows(input).map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`).join('')}</table>
${errors ? `<h2>Errors</h2><ul id="errors">${errors}</ul>` : ''}
<h2>Over time</h2>
<p class="legend-note">x axis: frame position in the run (${summary.sources > 1 ? 'sources one after another; ' : ''}frames.csv column <code>seq</code>). Red bands: OOD alert episodes (${summary.alertIntervals.length}).</p>
<div class="plot" id="plot-ood"></div>
<div class="plot" id="plot-uncertainty"></div>
${hasHc ? '<div class="plot" id="plot-hc"></div>' : ''}
${hasTruth ? '<div class="plot" id="plot-truth"></div>' : ''}
<h2>Most uncertain frames</h2>
<p class="legend-note">Green: head contour of the label map${hasTruth ? '; cyan: ground truth' : ''}. Heat: fused uncertainty, one scale for all thumbnails. Ranked by mean uncertainty; at most one per ${input.thumbnailWindow} frames of a video.</p>
<div class="gallery" id="thumbnails">${thumbnails || '<p>none</p>'}</div>
<h2>Settings</h2>
<details><summary>run.json: model package, checksums, sampling, command, versions</summary><pre id="settings">${escapeHtml(settings)}</pre></details>
</main>
<script>${input.plotLibrary.js}</script>
<script>
const data = ${scriptJson(series)};
const plots = [];
function alertBands(u) {
  const ctx = u.ctx;
  ctx.save();
  ctx.fillStyle = 'rgba(192, 57, 43, 0.3)';
  for (const band of data.intervals) {
    const left = u.valToPos(band.start - 0.5, 'x', true);
    const right = u.valToPos(band.end + 0.5, 'x', true);
    ctx.fillRect(left, u.bbox.top, Math.max(1, right - left), u.bbox.height);
  }
  ctx.restore();
}
/** yAxes: a label for the one y axis, or [{ scale, label }] for several (the second drawn on the right). */
function plot(id, title, seriesList, yAxes, bands = []) {
  const element = document.getElementById(id);
  if (!element) return;
  const options = {
    title,
    width: Math.max(400, element.clientWidth - 12),
    height: 220,
    scales: { x: { time: false } },
    axes: [
      { label: 'frame (seq)', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000], stroke: '#8a949e', grid: { stroke: '#2a2f35' }, ticks: { stroke: '#2a2f35' } },
      ...(typeof yAxes === 'string' ? [{ label: yAxes }] : yAxes).map((axis, i) => ({ stroke: '#8a949e', grid: { stroke: '#2a2f35', show: i === 0 }, ticks: { stroke: '#2a2f35' }, side: i === 0 ? 3 : 1, ...axis })),
    ],
    series: [{ label: 'frame', value: (u, v) => (v === null || v === undefined ? '–' : data.label[v] ?? v) }, ...seriesList.map((s) => ({ spanGaps: false, points: { show: data.seq.length < 60 }, ...s.options }))],
    hooks: { drawClear: [alertBands] },
    bands,
  };
  plots.push(new uPlot(options, [data.seq, ...seriesList.map((s) => s.values)], element));
}
plot('plot-ood', 'OOD score', [
  { values: data.ood, options: { label: 'OOD score', stroke: '#ffb347', width: 1.5 } },
  { values: data.threshold, options: { label: 'threshold', stroke: '#c0392b', dash: [6, 4] } },
], 'score');
plot('plot-uncertainty', 'Mean fused uncertainty', [{ values: data.uncertainty, options: { label: 'mean uncertainty', stroke: '#7fb3ff', width: 1.5 } }], 'uncertainty');
// The biometry's interval band first, so that the label map's HC (often the same ellipse) is drawn over it.
plot('plot-hc', 'Head circumference (mm)', [
  { values: data.hcFit, options: { label: 'HC biometry, posterior median (mm)', stroke: '#00e5ff', width: 1.5 } },
  { values: data.hcLow, options: { label: '95% interval low', stroke: 'rgba(0,229,255,0.4)' } },
  { values: data.hcHigh, options: { label: '95% interval high', stroke: 'rgba(0,229,255,0.4)' } },
  { values: data.hcTrue, options: { label: 'HC reference (mm)', stroke: '#d8dde3', dash: [4, 3] } },
  { values: data.hc, options: { label: 'HC of the label map (mm)', stroke: '#00d26a', width: 1.5 } },
], 'mm', [{ series: [3, 2], fill: 'rgba(0,229,255,0.15)' }]);
plot('plot-truth', 'Agreement with ground truth', [
  { values: data.dice, options: { label: 'Dice', stroke: '#00d26a', scale: 'dice' } },
  { values: data.hausdorff, options: { label: 'Hausdorff (mm)', stroke: '#ffb347', scale: 'mm' } },
], [{ scale: 'dice', label: 'Dice' }, { scale: 'mm', label: 'Hausdorff (mm)' }]);
window.lfusionReport = { plots: plots.length, frames: data.seq.length, alertIntervals: data.intervals.length };
</script>
</body>
</html>
`;
}
