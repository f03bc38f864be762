/**
 * The fleet page over completed report folders: histograms, alerts counted by reason, only folders with a completion
 * marker read (staging, failed attempts and unmarked folders left out), links relative to the page, and the page in
 * a real headless Chromium (every plot drawn, no console errors, nothing fetched).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { COMPLETED_MARKER, emptyPool, histogram, poolAlerts, readFleet, writeFleetReport } from '../../src/report/fleet.js';
import { summarise } from '../../src/report/html.js';
import { CSV_COLUMNS, type FrameRecord } from '../../src/report/records.js';
import type { Alert } from '../../src/runtime/types/results.js';
import { CHROMIUM, inChromium } from '../helpers/chromium.js';

function record(seq: number, fields: Partial<FrameRecord>): FrameRecord {
  const empty = Object.fromEntries(CSV_COLUMNS.map((column) => [column, null])) as unknown as FrameRecord;
  return { ...empty, seq, source: 'scan.mp4', index: seq, width: 96, height: 64, headFraction: 0.2, labelMap: `labels/scan/${seq}.png`, processingMs: 10, ...fields };
}

const raised = (id: number, reasons: string[]): Alert => ({
  kind: 'raised', path: 'frame', id, startFrame: 0, endFrame: 1, peakScore: 1, peakFrame: 0, map: 'fused', threshold: 0.5, time: 0,
  ...(reasons.length ? { reasons: reasons.map((reason) => ({ reason: reason as never, evidence: 'e', score: 1, threshold: 0.5 })) } : {}),
});

async function writeReportFolder(folder: string, records: FrameRecord[], alerts: Alert[], marked = true): Promise<void> {
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'frames.jsonl'), records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  await writeFile(join(folder, 'alerts.jsonl'), alerts.map((a) => JSON.stringify(a)).join('\n'));
  await writeFile(join(folder, 'run.json'), JSON.stringify({ status: 'complete', summary: summarise(records, alerts) }));
  await writeFile(join(folder, 'report.html'), '<!doctype html><title>one recording</title>');
  if (marked) await writeFile(join(folder, COMPLETED_MARKER), JSON.stringify({ recording: `/scans/${folder.split('/').at(-1)}.mp4`, worker: 'host-a:12', seconds: 3.5, finished: '2026-11-30T21:00:00.000Z' }));
}

test('histogram: equal bins from min to max, the maximum in the last bin; one bin for equal values; none for none', () => {
  assert.equal(histogram([0, 1, 2, 3, 4], 4), { x: [0.5, 1.5, 2.5, 3.5], counts: [1, 1, 1, 2], width: 1 });
  assert.equal(histogram([7, 7, 7]), { x: [7.5], counts: [3], width: 1 });
  assert.equal(histogram([]), { x: [], counts: [], width: 0 });
});

test('alerts by reason: each raised episode once per reason, a recording counted once per reason, "score" without a fused decision', () => {
  const pool = emptyPool();
  poolAlerts(pool, [raised(1, ['no-head', 'wrong-anatomy']), { ...raised(1, []), kind: 'cleared' }, raised(2, ['no-head', 'no-head'])]);
  poolAlerts(pool, [raised(1, [])]);
  assert.equal(pool.alertsByReason, { 'no-head': { episodes: 2, recordings: 1 }, 'wrong-anatomy': { episodes: 1, recordings: 1 }, score: { episodes: 1, recordings: 1 } });
});

test('the fleet page: completed folders only, pooled biometry and errors, links to each report, drawn in Chromium', async () => {
  const root = await mkdtemp(join(tmpdir(), 'lfusion-fleet-'));
  try {
    const truth = (seq: number, hc: number, ref: number) => record(seq, { biometryStatus: 'ok', biometryUnit: 'mm', hcFit: hc, hcLow: hc - 5, hcHigh: hc + 5, gaWeeks: 20 + seq, hcMm: hc, hcTrueMm: ref, hcAbsErrorMm: Math.abs(hc - ref), hcSignedErrorMm: hc - ref, hcCovered: Math.abs(hc - ref) <= 5, dice: 0.9 - seq / 100, oodScore: 0.1, oodThreshold: 0.5, oodAbove: false });
    await writeReportFolder(join(root, 'a-111'), [truth(0, 180, 178), truth(1, 182, 190)], [raised(1, ['no-head'])]);
    await writeReportFolder(join(root, 'day2', 'b #1-222'), [truth(0, 200, 201)], []);
    await writeReportFolder(join(root, 'unmarked-333'), [truth(0, 999, 0)], [], false);
    await writeReportFolder(join(root, '.staging', 'c-444.host-1'), [truth(0, 999, 0)], []);
    await writeReportFolder(join(root, '.failed', 'd-555'), [truth(0, 999, 0)], []);

    const { rows, pool } = await readFleet(root);
    assert.equal(rows.map((row) => row.dir), ['a-111', 'day2/b #1-222']);
    assert.equal(pool.hcMm, [180, 182, 200]);
    assert.equal(pool.hcAbsErrorMm, [2, 8, 1]);
    assert.is(pool.covered, 2);
    assert.is(pool.coverable, 3);
    assert.is(rows[0]!.gaMedianWeeks, 20.5);

    const out = join(root, 'pages', 'fleet.html');
    const written = await writeFleetReport({ root, out, failed: [{ jobId: 'f', recording: '/scans/bad.mp4', reason: '[DECODE_FAILED] <moov atom not found>', attempts: 1 }] });
    assert.equal(written, { path: out, recordings: 2, frames: 3 });
    const html = await readFile(out, 'utf8');
    assert.ok(html.includes('href="../a-111/report.html"'), 'links relative to the page');
    assert.ok(html.includes('href="../day2/b%20%231-222/report.html"'), 'a # in a folder name is not a fragment');
    assert.ok(html.includes('[DECODE_FAILED] &#60;moov atom not found&#62;'), 'failure reasons escaped');
    if (!existsSync(CHROMIUM)) {
      console.warn(`skipped: the fleet page in Chromium (no ${CHROMIUM})`);
      return;
    }
    const state = await inChromium(out, 'lfusionFleet', (page) =>
      page.evaluate(() => ({
        fleet: (window as unknown as { lfusionFleet: { plots: number; recordings: number } }).lfusionFleet,
        canvases: [...document.querySelectorAll('.plot')].map((element) => `${element.id}:${element.querySelector('canvas') ? 'drawn' : 'empty'}`),
        rows: document.querySelectorAll('#recordings tr').length,
      })),
    );
    assert.equal(state.errors, []);
    assert.equal(state.requests, [], 'nothing fetched: the page is offline');
    assert.equal(state.canvases, ['plot-reasons', 'plot-hc', 'plot-ga', 'plot-hc-error', 'plot-hc-signed', 'plot-dice'].map((id) => `${id}:drawn`));
    assert.equal(state.fleet, { plots: 6, recordings: 2 });
    assert.is(state.rows, 3, 'a header and one row per recording');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test.run();
