/** Thumbnails of the report: which frames get one, and how they are drawn. */
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { heatColour, keepMostUncertain, labelMapAt, paintThumbnail, thumbnailLayers } from '../../src/report/overlay.js';

type Item = { record: { source: string; index: number; meanUncertainty: number | null } };

test('the most uncertain frames, at most one per window of a video, most uncertain first', () => {
  const kept: Item[] = [];
  // Uncertainty rises along the video: streaming order must not matter for the result.
  for (let index = 0; index < 60; index++) keepMostUncertain(kept, { record: { source: 'a.mp4', index, meanUncertainty: index / 100 } }, 4, 10);
  assert.equal(kept.map((item) => item.record.index), [59, 49, 39, 29]);
  const bumpy: Item[] = [];
  const scores = [5, 1, 9, 2, 8, 3, 7, 4, 6, 0]; // one per window of 3 frames
  scores.forEach((score, index) => keepMostUncertain(bumpy, { record: { source: 'b.mp4', index, meanUncertainty: score } }, 3, 3));
  // Windows 0-2 (best 9 at 2), 3-5 (8 at 4), 6-8 (7 at 6), 9 (0 at 9): the three best windows.
  assert.equal(bumpy.map((item) => item.record.index), [2, 4, 6]);
  keepMostUncertain(bumpy, { record: { source: 'c.png', index: 0, meanUncertainty: null } }, 3, 3);
  keepMostUncertain(bumpy, { record: { source: 'c.png', index: 0, meanUncertainty: 100 } }, 3, 3);
  assert.equal(bumpy.map((item) => item.record.source), ['c.png', 'b.mp4', 'b.mp4'], 'another source is another window');
});

test('thumbnail: grey frame, green contour of the mask, cyan ground truth, heat only where uncertain', () => {
  const frame = { width: 40, height: 20, data: new Uint8Array(800).fill(100) };
  const mask = { width: 40, height: 20, data: new Uint8Array(800) };
  for (let y = 5; y < 15; y++) for (let x = 5; x < 15; x++) mask.data[y * 40 + x] = 1;
  const truth = { width: 40, height: 20, data: new Uint8Array(800) };
  for (let y = 2; y < 18; y++) for (let x = 22; x < 38; x++) truth.data[y * 40 + x] = 1;
  const uncertainty = { width: 4, height: 2, data: Float32Array.from([0, 0, 0, 1, 0, 0, 0, 1]) };
  const { width, height, rgb } = paintThumbnail(thumbnailLayers(frame, mask, uncertainty, 40, truth), 1.25);
  assert.equal([width, height], [40, 20]);
  const at = (x: number, y: number) => [...rgb.subarray((y * 40 + x) * 3, (y * 40 + x) * 3 + 3)];
  assert.equal(at(5, 10), [0, 255, 0], 'contour');
  assert.equal(at(10, 10), [100, 100, 100], 'inside the mask: the frame');
  assert.equal(at(22, 10), [0, 200, 255], 'ground truth');
  const [r, g, b, alpha] = heatColour(1 / 1.25);
  assert.equal(at(39, 0), [r, g, b].map((c) => Math.round(c * alpha + 100 * (1 - alpha))), 'uncertain corner: heat over the frame');
  assert.equal(at(20, 0), [100, 100, 100], 'certain: the frame alone');
  assert.equal(heatColour(0)[3], 0, 'no heat at zero uncertainty');
});

test('a thumbnail keeps only thumbnail-sized layers, whatever the source resolution', () => {
  // 4000x3000: the report keeps these layers for its most uncertain frames, never the frames themselves.
  const frame = { width: 4000, height: 3000, data: new Uint8Array(4000 * 3000).fill(80) };
  const mask = labelMapAt({ width: 2, height: 2, data: Float32Array.from([1, 0, 0, 0]) }, 4000, 3000);
  const layers = thumbnailLayers(frame, mask, { width: 4, height: 4, data: new Float32Array(16) }, 320, mask);
  assert.equal([layers.width, layers.height], [320, 240]);
  const bytes = [layers.grey, layers.heat, layers.predicted, layers.reference!].reduce((sum, array) => sum + array.byteLength, 0);
  assert.ok(bytes <= 320 * 240 * 7, `${bytes} bytes kept for a 4000x3000 frame`);
  assert.equal(layers.grey[0], 80);
  assert.equal([layers.predicted[0], layers.predicted[320 * 240 - 1]], [1, 0]);
});

test('label maps at a high source resolution take one byte per pixel (no float map, no array of numbers)', () => {
  // Uint8Array.from(floats, mapFn) built a JS array of every value first: about 45 bytes per source pixel, which made
  // `replay --report` on an 8000x8000 frame peak at 3 GB. Measured in a child process, whose peak RSS is its own, from
  // its peak so far. The bound, 12 bytes per pixel, is a quarter of that regression's: the same code has grown the
  // peak by 15-25 MB on its own and by 98-109 MB in full-suite runs (a clean clone's CI; a busy machine).
  const script = `import('./src/report/overlay.ts').then(({ labelMapAt }) => {
    const before = Math.max(process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
    const labels = labelMapAt({ width: 224, height: 224, data: new Float32Array(224 * 224).fill(0.9) }, 4000, 4000);
    console.log(JSON.stringify({ grew: process.resourceUsage().maxRSS * 1024 - before, ones: labels.data.reduce((a, b) => a + b, 0) }));
  });`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(child.status, 0, child.stderr);
  const { grew, ones } = JSON.parse(child.stdout) as { grew: number; ones: number };
  assert.equal(ones, 16e6);
  assert.ok(grew < 16e6 * 12, `a 16 Mpx label map grew peak RSS by ${(grew / 1e6).toFixed(0)} MB`);
});

test.run();
