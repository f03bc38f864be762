/**
 * Ground truth for the report: HC18 CSVs, outline annotations to filled masks (also when the ellipse is clipped
 * by the image border), label maps resampled to the source resolution.
 */
import { existsSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadHc18Annotations, outlineToMask, parsePixelSizeCsv, readGreyImage, thresholdMask } from '../../src/report/ground-truth.js';
import { dice, headCircumferenceMm, type Mask } from '../../src/report/metrics.js';
import { labelMapAt, resample } from '../../src/report/overlay.js';

const HC18_TRAINING = new URL('../../../shared/data/hc18/training_set', import.meta.url).pathname;

/** Inside test of a rotated ellipse (centre, semi-axes, angle) at pixel (x, y). */
const level = (x: number, y: number, e: { cx: number; cy: number; a: number; b: number; angle: number }) => {
  const u = (x - e.cx) * Math.cos(e.angle) + (y - e.cy) * Math.sin(e.angle);
  const v = -(x - e.cx) * Math.sin(e.angle) + (y - e.cy) * Math.cos(e.angle);
  return Math.sqrt((u / e.a) ** 2 + (v / e.b) ** 2);
};

function drawn(width: number, height: number, inside: (x: number, y: number) => boolean, value = 1): Mask {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (inside(x, y)) data[y * width + x] = value;
  return { width, height, data };
}

test('HC18 CSV: training rows carry pixel size and HC, test rows pixel size only; other CSVs are rejected', () => {
  const training = parsePixelSizeCsv('filename,pixel size(mm),head circumference (mm)\n000_HC.png,0.0691358041432,44.3\n', 't.csv');
  assert.equal(training.get('000_HC.png'), { pixelSizeMm: 0.0691358041432, hcMm: 44.3 });
  const testSet = parsePixelSizeCsv('filename,pixel size(mm)\r\n000_HC.png,0.23585714045\r\n', 's.csv');
  assert.equal(testSet.get('000_HC.png'), { pixelSizeMm: 0.23585714045 });
  assert.throws(() => parsePixelSizeCsv('a,b\n1,2\n', 'x.csv'), /not an HC18 pixel-size CSV/);
  assert.throws(() => parsePixelSizeCsv('filename,pixel size(mm)\n000_HC.png,abc\n', 'y.csv'), /malformed row/);
});

test('an outline (2 px band) fills to its ellipse, also when the border clips it', () => {
  for (const e of [
    { cx: 200, cy: 130, a: 150, b: 90, angle: 0.4 }, // whole
    { cx: 60, cy: 150, a: 140, b: 100, angle: -0.3 }, // clipped at the left border
    { cx: 200, cy: 250, a: 160, b: 110, angle: 1.2 }, // clipped at the bottom
  ]) {
    const outline = drawn(400, 270, (x, y) => Math.abs(level(x, y, e) - 1) * Math.min(e.a, e.b) < 1, 255);
    const filled = outlineToMask(outline);
    const truth = drawn(400, 270, (x, y) => level(x, y, e) <= 1);
    const score = dice(filled, truth);
    assert.ok(score > 0.995, `Dice ${score} for ${JSON.stringify(e)}`);
  }
  assert.throws(() => outlineToMask({ width: 4, height: 4, data: new Uint8Array(16) }), /at least 6 pixels/);
});

test('mask frames threshold at mid-grey; label maps resample to the source resolution keeping the shape', () => {
  assert.equal([...thresholdMask({ width: 3, height: 1, data: Uint8Array.from([0, 127, 200]) }).data], [0, 0, 1]);
  assert.equal([...resample({ width: 2, height: 2, data: new Float32Array(4).fill(0.7) }, 5, 3)], new Array(15).fill(Float32Array.from([0.7])[0]));
  const disc = { width: 224, height: 224, data: Float32Array.from(drawn(224, 224, (x, y) => (x - 111.5) ** 2 + (y - 111.5) ** 2 <= 80 ** 2).data) };
  const atSource = labelMapAt(disc, 800, 540);
  // A disc on the 224 grid is an ellipse with semi-axes 80 * 800/224 and 80 * 540/224 source pixels.
  const expected = drawn(800, 540, (x, y) => ((x + 0.5 - 400) / ((80 * 800) / 224)) ** 2 + ((y + 0.5 - 270) / ((80 * 540) / 224)) ** 2 <= 1);
  assert.ok(dice(atSource, expected) > 0.995, `Dice ${dice(atSource, expected)}`);
});

test('HC18 scans: the filled outline gives the CSV head circumference within 1%', async () => {
  if (!existsSync(HC18_TRAINING)) {
    console.warn(`skipped: HC18 ground truth (no ${HC18_TRAINING}; see /work/shared/data/README)`);
    return;
  }
  const annotations = await loadHc18Annotations(HC18_TRAINING);
  const names = ['000_HC.png', '010_HC.png', '186_HC.png', '346_HC.png'].filter((name) => annotations.facts.has(name) && annotations.outlineOf(name));
  assert.ok(names.length >= 2, `scans found: ${names}`);
  for (const name of names) {
    const facts = annotations.facts.get(name)!;
    const mask = outlineToMask(await readGreyImage(annotations.outlineOf(name)!));
    const hc = headCircumferenceMm(mask, { x: facts.pixelSizeMm, y: facts.pixelSizeMm });
    assert.ok(Math.abs(hc - facts.hcMm!) < 0.01 * facts.hcMm!, `${name}: ${hc} mm vs CSV ${facts.hcMm} mm`);
  }
});

test.run();
