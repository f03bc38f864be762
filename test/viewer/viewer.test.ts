/**
 * The overlay viewer end to end in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * the SDK's server serves the page and the sample's results; the screenshot must show the contour on the mask's
 * boundary; the viewer must reconnect by itself and resume from the last seq it saw.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, take, takeWhile, toArray } from 'rxjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createPipeline } from '../../src/sdk/pipeline.js';
import { modelInfo, ResultServer } from '../../src/sdk/server.js';
import type { Alert, FrameResult, Plane } from '../../src/runtime/types/results.js';
import { HEAD } from '../helpers/head-biometry.js';
import { SHIPPED_PACKAGE } from '../helpers/shipped-package.js';
import { TINY_PACKAGE } from '../helpers/tiny-package.js';
import { RecordingClient } from '../helpers/ws-client.js';
import { decodePng, type RgbaImage } from './png.js';

const CHROMIUM = '/usr/bin/chromium';
const SAMPLE = fileURLToPath(new URL('../../assets/sample.mp4', import.meta.url));
/** Results taken from the sample: the last one is the frame the screenshot checks. */
const FRAMES = 8;

/** The contour colour (#00ff00) after antialiasing over grey: clearly green, neither red nor blue. */
const isContour = (r: number, g: number, b: number): boolean => g > 170 && r < 110 && b < 110 && g - Math.max(r, b) > 100;

interface Browser {
  page: import('playwright-core').Page;
  close(): Promise<void>;
  consoleErrors: string[];
}

async function launchViewer(url: string): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  const profile = await mkdtemp(join(tmpdir(), 'lfusion-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors: string[] = [];
  page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
  page.on('pageerror', (error) => consoleErrors.push(error.message));
  await page.goto(url);
  return {
    page,
    consoleErrors,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The viewer's state object (`window.lfusionViewer`), as JSON. */
type ViewerState = { connection: string; connects: number; lastSeq: number; framesDrawn: number; drawn: { seq: number; index: number } | null; activeAlerts: number };
const viewerState = (page: Browser['page']): Promise<ViewerState> =>
  page.evaluate(() => {
    const s = (window as unknown as { lfusionViewer: ViewerState & { activeAlerts: Map<number, unknown> } }).lfusionViewer;
    return { connection: s.connection, connects: s.connects, lastSeq: s.lastSeq, framesDrawn: s.framesDrawn, drawn: s.drawn, activeAlerts: s.activeAlerts.size };
  });

async function until<T>(what: string, probe: () => Promise<T>, check: (value: T) => boolean, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (check(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether mask pixel (x, y) is head with a background (or out-of-plane) 4-neighbour. */
function isBoundary(mask: Plane, x: number, y: number): boolean {
  const at = (u: number, v: number): number => (u < 0 || v < 0 || u >= mask.width || v >= mask.height ? 0 : mask.data[v * mask.width + u]!);
  return at(x, y) > 0 && (at(x - 1, y) === 0 || at(x + 1, y) === 0 || at(x, y - 1) === 0 || at(x, y + 1) === 0);
}

/** Checks the screenshot's contour pixels against the mask's boundary, both ways. */
function checkContour(shot: RgbaImage, mask: Plane): { contourPixels: number; onBoundary: number; boundaryCovered: number } {
  const sx = shot.width / mask.width;
  const sy = shot.height / mask.height;
  const contour = new Uint8Array(shot.width * shot.height);
  let contourPixels = 0;
  let onBoundary = 0;
  for (let y = 0; y < shot.height; y++) {
    for (let x = 0; x < shot.width; x++) {
      const p = (y * shot.width + x) * 4;
      if (!isContour(shot.data[p]!, shot.data[p + 1]!, shot.data[p + 2]!)) continue;
      contour[y * shot.width + x] = 1;
      contourPixels += 1;
      // A contour pixel lies on an edge between head and background: within 2 mask pixels of a boundary pixel.
      const mx = Math.floor(x / sx);
      const my = Math.floor(y / sy);
      let near = false;
      for (let v = my - 2; v <= my + 2 && !near; v++) for (let u = mx - 2; u <= mx + 2 && !near; u++) near = isBoundary(mask, u, v);
      if (near) onBoundary += 1;
    }
  }
  let boundary = 0;
  let covered = 0;
  for (let my = 0; my < mask.height; my++) {
    for (let mx = 0; mx < mask.width; mx++) {
      if (!isBoundary(mask, mx, my)) continue;
      boundary += 1;
      const cx = Math.floor((mx + 0.5) * sx);
      const cy = Math.floor((my + 0.5) * sy);
      const reach = Math.ceil(Math.max(sx, sy)) + 2;
      let found = false;
      for (let y = cy - reach; y <= cy + reach && !found; y++) {
        for (let x = cx - reach; x <= cx + reach && !found; x++) found = x >= 0 && y >= 0 && x < shot.width && y < shot.height && contour[y * shot.width + x] === 1;
      }
      if (found) covered += 1;
    }
  }
  return { contourPixels, onBoundary: onBoundary / Math.max(1, contourPixels), boundaryCovered: covered / Math.max(1, boundary) };
}

const present = existsSync(CHROMIUM);
if (!present) console.warn(`skipped: viewer end-to-end tests (no ${CHROMIUM}; install it with \`apt-get install -y chromium\`)`);

test('the viewer draws the contour on the head, the heat map, stats and states; reconnects and resumes from its last seq', async () => {
  if (!present) return;
  // The trained package shows a real head and the uncertainty chain; the tiny one (random weights) still checks the drawing.
  const trained = existsSync(join(SHIPPED_PACKAGE, 'manifest.json'));
  const pipeline = await createPipeline({
    source: SAMPLE,
    modelPath: trained ? SHIPPED_PACKAGE : TINY_PACKAGE,
    live: false,
    image: true,
    analysis: trained ? 'uncertainty' : 'segment',
    pool: { threadsPerWorker: 1 },
  });
  const results: FrameResult[] = await lastValueFrom(pipeline.results$.pipe(take(FRAMES), toArray()));
  const stats = pipeline.stats.snapshot();
  await pipeline.close();

  const server = await ResultServer.listen({ port: 0, model: modelInfo(pipeline.model.manifest), streams: pipeline.streams });
  // The viewer's connections (the probe's ask for streams), to read their URLs and to cut them.
  const upgrades: { url: string; socket: Duplex }[] = [];
  server.httpServer.on('upgrade', (request: IncomingMessage, socket: Duplex) => request.url?.includes('since=') && upgrades.push({ url: request.url, socket }));
  const probe = await RecordingClient.connect(`${server.url}?streams=mask`);
  const browser = await launchViewer(server.viewerUrl);
  const { page } = browser;
  try {
    // The viewer subscribes to what it draws once it has read hello.
    const wanted = pipeline.streams.filter((name) => ['image', 'mask', 'fused'].includes(name)).sort();
    await until('the viewer to subscribe', async () => server.clientStats().map((c) => [...c.streams].sort().join()), (subs) => subs.includes(wanted.join()));
    assert.is(upgrades[0]?.url, '/ws?since=0', 'the first connection asks for the alerts held');

    server.publishSource({ type: 'source-lost', source: 'udp://scanner', code: 'SOURCE_LOST', message: 'live source ended', stderrTail: '', attempt: 1, retryInMs: 500, lastIndex: 3, time: Date.now() });
    server.publishStats(stats);
    for (const result of results) {
      server.publishFrame(result);
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    await probe.until(() => probe.frames().length === FRAMES);
    const last = probe.frames().at(-1)!;
    await until('the last frame on screen', () => viewerState(page), (s) => s.drawn?.seq === last.header.seq);

    const png = await page.locator('#overlay').screenshot();
    // LFUSION_SCREENSHOT=<file.png>: keep the overlay and the whole page, to look at.
    if (process.env.LFUSION_SCREENSHOT) {
      await writeFile(process.env.LFUSION_SCREENSHOT, png);
      await writeFile(process.env.LFUSION_SCREENSHOT.replace(/\.png$/, '.page.png'), await page.screenshot());
    }
    const shot = decodePng(png);
    const aspect = last.header.frame.width / last.header.frame.height;
    assert.ok(Math.abs(shot.width / shot.height - aspect) < 0.01, `overlay ${shot.width}x${shot.height} keeps the frame's aspect ${aspect}`);
    const mask = last.planes.find((plane) => plane.name === 'mask')!;
    const headPixels = mask.data.reduce((sum, q) => sum + q, 0);
    if (trained) assert.ok(headPixels > 0.02 * mask.data.length, `the trained model finds a head in frame ${last.header.frame.index} (${headPixels} pixels)`);
    const contour = checkContour(shot, mask);
    assert.ok(contour.contourPixels > 100, `${contour.contourPixels} contour pixels drawn`);
    assert.ok(contour.onBoundary > 0.98, `${(contour.onBoundary * 100).toFixed(1)}% of contour pixels on the mask boundary`);
    assert.ok(contour.boundaryCovered > 0.98, `${(contour.boundaryCovered * 100).toFixed(1)}% of the mask boundary drawn`);

    const text = async (id: string): Promise<string> => (await page.locator(`#${id}`).textContent()) ?? '';
    assert.match(await text('stat-fps'), /^\d+\.\d \/ \d+\.\d$/);
    assert.match(await text('stat-frame'), new RegExp(`^#${last.header.frame.index} `));
    assert.match(await text('source'), /source lost \(SOURCE_LOST\): retry 1/);
    if (pipeline.streams.includes('fused')) {
      assert.not.match(await text('legend-max'), /^-$/);
      // The image is grey and the contour green: a warm tint (red well above blue) is the heat map.
      const warm = Array.from({ length: shot.width * shot.height }, (_, p) => shot.data[p * 4]! - shot.data[p * 4 + 2]!).filter((d) => d > 40).length;
      assert.ok(warm > 0.01 * shot.width * shot.height, `${warm} heat-map pixels`);
      assert.match(await text('ood'), /OOD score \d/);
    }

    // The server drops the connection; an alert raised meanwhile must reach the viewer when it resumes.
    const before = await viewerState(page);
    for (const { socket } of upgrades) socket.destroy();
    await until('the viewer to notice', () => viewerState(page), (s) => s.connection === 'reconnecting');
    const reasons: Alert['reasons'] = [{ reason: 'wrong-anatomy', evidence: 'density', score: 412, threshold: 96.5 }];
    const alert: Alert = { kind: 'raised', path: 'frame', id: 7, startFrame: 5, endFrame: 7, peakScore: 0.9, peakFrame: 6, map: 'fused', threshold: 0.5, reasons, time: Date.now() };
    server.publishAlert(alert);
    const again = await until('the viewer to reconnect', () => viewerState(page), (s) => s.connects === 2 && s.connection === 'live');
    assert.is(upgrades.at(-1)?.url, `/ws?since=${before.lastSeq}`, 'resumes from the last seq it saw');
    assert.is(again.activeAlerts, 1, 'the alert raised while disconnected was re-sent');
    assert.is(await page.locator('#alert-banner').isVisible(), true);
    assert.match(await text('ood'), /OOD ALERT/);
    assert.match(await text('alert-detail'), /^wrong-anatomy \(density 4\.1e\+2 > 97\), since frame 5/, 'the alert says why');
    await until('the viewer to subscribe again', async () => server.clientStats().filter((c) => [...c.streams].sort().join() === wanted.join()).length, (n) => n >= 1);
    server.publishFrame(results[0]!);
    const resumed = await until('a frame after the reconnect', () => viewerState(page), (s) => (s.drawn?.seq ?? 0) > last.header.seq);
    assert.ok(resumed.lastSeq > before.lastSeq, 'seq keeps increasing after the reconnect');
    assert.equal(browser.consoleErrors, [], 'no console errors');
  } finally {
    await browser.close();
    probe.close();
    await server.close();
  }
});

/** Whether the biometry colour (#00e5ff over grey: blue and green high, red low) is within 4 pixels of frame point (x, y) of a screenshot at `scale` screen pixels per frame pixel. */
function cyanAt(image: RgbaImage, scale: number, x: number, y: number): boolean {
  for (let dy = -4; dy <= 4; dy++) {
    for (let dx = -4; dx <= 4; dx++) {
      const p = (Math.round(y * scale) + dy) * image.width + Math.round(x * scale) + dx;
      if (image.data[p * 4 + 2]! > 180 && image.data[p * 4]! < 90) return true;
    }
  }
  return false;
}

test('?path=clip: the viewer draws the clip path (clip.mask contour, clip score), skips 2D results and shows only clip alerts', async () => {
  if (!present) return;
  const pipeline = await createPipeline({
    source: SAMPLE,
    modelPath: SHIPPED_PACKAGE,
    live: false,
    image: true,
    paths: ['frame', 'clip'],
    clip: { uncertainty: { m: 1, n: 1, k: 1 } },
    pool: { threadsPerWorker: 1 },
  });
  let clipResults = 0;
  const both: FrameResult[] = await lastValueFrom(pipeline.results$.pipe(takeWhile((result) => (clipResults += result.path === 'clip' ? 1 : 0) < FRAMES, true), toArray()));
  await pipeline.close();
  const results = both.filter((result) => result.path === 'clip');
  const twoD = both.filter((result) => result.path !== 'clip');
  assert.ok(results.every((result) => result.planes.some((plane) => plane.name === 'image')), 'a clip result carries its frame\'s image');
  const server = await ResultServer.listen({ port: 0, model: modelInfo(pipeline.model.manifest), streams: pipeline.streams });
  const probe = await RecordingClient.connect(`${server.url}?streams=clip.mask`);
  const browser = await launchViewer(`${server.viewerUrl}?path=clip`);
  const { page } = browser;
  try {
    const wanted = ['clip.fused', 'clip.mask', 'image'].join();
    await until('the viewer to subscribe to the clip planes', async () => server.clientStats().map((c) => [...c.streams].sort().join()), (subs) => subs.includes(wanted));
    for (const result of results) server.publishFrame(result);
    await probe.until(() => probe.frames().length === FRAMES);
    const last = probe.frames().at(-1)!;
    await until('the last frame on screen', () => viewerState(page), (s) => s.drawn?.seq === last.header.seq);
    // 2D results (with an image, no clip planes) reach this subscriber too; the clip view does not draw them.
    for (const result of twoD) server.publishFrame(result);
    await until('the 2D results received', () => viewerState(page), (s) => s.lastSeq > last.header.seq + twoD.length - 1);
    assert.is((await viewerState(page)).drawn?.seq, last.header.seq, 'still the last clip result on screen');
    const contour = checkContour(decodePng(await page.locator('#overlay').screenshot()), last.planes.find((plane) => plane.name === 'clip.mask')!);
    assert.ok(contour.contourPixels > 100, `${contour.contourPixels} contour pixels drawn`);
    assert.ok(contour.onBoundary > 0.95, `${(contour.onBoundary * 100).toFixed(1)}% of contour pixels on the clip mask's boundary`);
    assert.match((await page.locator('#ood').textContent()) ?? '', /OOD score \d/, 'the window score is shown');
    const alert = (path: Alert['path'], id: number): Alert => ({ kind: 'raised', path, id, startFrame: 0, endFrame: 15, peakScore: 0.9, peakFrame: 8, map: 'laplace.expected_entropy', threshold: 0.2, time: Date.now() });
    server.publishAlert(alert('clip', 1));
    server.publishAlert(alert('frame', 2));
    server.publishFrame(results[0]!); // after both alerts on the same connection
    await until('the frame after the alerts', () => viewerState(page), (s) => (s.drawn?.seq ?? 0) > last.header.seq);
    assert.is((await viewerState(page)).activeAlerts, 1, 'the frame path\'s alert is not this view\'s');
    assert.match((await page.locator('#ood').textContent()) ?? '', /OOD ALERT/);
    // A clip result's own head biometry (the clip heads' measurement) is shown on this view.
    const seq = (await viewerState(page)).drawn!.seq;
    server.publishFrame({ ...results[1]!, biometry: HEAD });
    await until('the clip result with biometry', () => viewerState(page), (s) => (s.drawn?.seq ?? 0) > seq);
    assert.is(await page.locator('#bio-status').textContent(), 'ok');
    assert.is(await page.locator('#bio-hc').textContent(), '175.2 mm (95%: 171.4-179.9)');
    const withHead = decodePng(await page.locator('#overlay').screenshot());
    const scale = withHead.width / results[1]!.frame.width;
    assert.ok(cyanAt(withHead, scale, HEAD.ellipse!.cx + HEAD.ellipse!.a, HEAD.ellipse!.cy), 'the clip head\'s ellipse is drawn');
    assert.equal(browser.consoleErrors, [], 'no console errors');
  } finally {
    await browser.close();
    probe.close();
    await server.close();
  }
});

test('the viewer draws the biometry ellipse and calipers and shows HC with its interval, BPD/OFD, GA and status, and the best-plane prompt', async () => {
  if (!present) return;
  const frame = { index: 3, pts: 0.1, captureTime: Date.now(), width: 640, height: 480 };
  const plane = (name: string, value: number): Plane => ({ name, width: 64, height: 48, data: new Uint8Array(64 * 48).fill(value), min: 0, scale: 1 });
  const hc = HEAD.pooled!.hc;
  const result: FrameResult = { frame, planes: [plane('image', 60), plane('mask', 0)], timings: {}, biometry: HEAD };
  const server = await ResultServer.listen({ port: 0, model: { name: 'test', classes: ['background', 'fetal-head'], input: { width: 224, height: 224 } }, streams: ['image', 'mask'] });
  const browser = await launchViewer(server.viewerUrl);
  const { page } = browser;
  try {
    await until('the viewer to subscribe', async () => server.clientStats().map((c) => [...c.streams].sort().join()), (subs) => subs.includes('image,mask'));
    server.publishFrame(result);
    await until('the frame on screen', () => viewerState(page), (s) => s.drawn?.index === frame.index);
    const text = async (id: string): Promise<string> => (await page.locator(`#${id}`).textContent()) ?? '';
    assert.is(await text('bio-status'), 'ok');
    assert.is(await text('bio-hc'), '175.2 mm (95%: 171.4-179.9)');
    assert.is(await text('bio-diameters'), '48.0 / 64.0 mm');
    assert.is(await text('bio-ga'), '20.0 w (19.7-20.5)');
    const shot = decodePng(await page.locator('#overlay').screenshot());
    const scale = shot.width / frame.width;
    const cyanIn = (image: typeof shot) => (x: number, y: number) => cyanAt(image, scale, x, y);
    const cyanNear = cyanIn(shot);
    for (const [x, y] of [[520, 240], [120, 240], [320, 90], [320, 390]] as const) assert.ok(cyanNear(x, y), `ellipse drawn at ${x},${y}`);
    assert.ok(cyanNear(320, 240), 'the calipers cross at the centre');
    assert.not.ok(cyanNear(320 + 100, 240 + 100), 'nothing drawn off the ellipse and calipers');
    // A best-plane message: the frame and its HC, and the "freeze now" prompt, which goes after a moment.
    assert.is(await page.locator('#bio-freeze').isVisible(), false);
    server.publishBestPlane({ frameIndex: 3, pts: 0.1, hc, width: hc.high - hc.low, unit: 'mm', ellipse: result.biometry!.ellipse! });
    await until('the prompt', async () => page.locator('#bio-freeze').isVisible(), (visible) => visible);
    assert.is(await text('bio-best'), 'frame 3: HC 175.2 mm (95%: 171.4-179.9)');
    await until('the prompt to go', async () => page.locator('#bio-freeze').isVisible(), (visible) => !visible, 5_000);
    assert.is(await text('bio-best'), 'frame 3: HC 175.2 mm (95%: 171.4-179.9)', 'the suggestion stays listed');
    server.publishFrame({ ...result, frame: { ...frame, index: 4 }, biometry: { ...result.biometry!, status: 'no-head', ellipse: null, pooled: null, ga: null } });
    await until('the next frame', () => viewerState(page), (s) => s.drawn?.index === 4);
    assert.is(await text('bio-status'), 'no-head');
    assert.is(await text('bio-hc'), '-');
    // Under an OOD alert (status ood) the head's numbers and contour are withheld, though the package measured them.
    server.publishFrame({ ...result, frame: { ...frame, index: 5 }, biometry: { ...result.biometry!, status: 'ood' } });
    await until('the OOD frame', () => viewerState(page), (s) => s.drawn?.index === 5);
    assert.is(await text('bio-status'), 'ood');
    assert.is(await text('bio-hc'), '-');
    assert.is(await text('bio-diameters'), '-');
    assert.is(await text('bio-ga'), '-');
    const cyanUnderOod = cyanIn(decodePng(await page.locator('#overlay').screenshot()));
    for (const [x, y] of [[520, 240], [120, 240], [320, 240]] as const) assert.not.ok(cyanUnderOod(x, y), `no ellipse at ${x},${y} under an OOD alert`);
    assert.equal(browser.consoleErrors, [], 'no console errors');
  } finally {
    await browser.close();
    await server.close();
  }
});

test('with an access token, the viewer opened at the printed URL passes the token; without it, it is refused', async () => {
  if (!present) return;
  const token = 'viewer-test-token-0123456789';
  const server = await ResultServer.listen({ port: 0, model: { name: 'm', classes: ['background', 'fetal-head'], input: { width: 224, height: 224 } }, streams: ['image', 'mask', 'fused'], token });
  const upgrades: string[] = [];
  server.httpServer.on('upgrade', (request: IncomingMessage) => upgrades.push(request.url ?? ''));
  const withToken = await launchViewer(server.viewerUrl);
  const withoutToken = await launchViewer(server.viewerUrl.replace(/\?token=.*$/, ''));
  try {
    await until('the viewer with the token to connect', () => viewerState(withToken.page), (s) => s.connects >= 1);
    assert.ok(upgrades.includes(`/ws?token=${token}&since=0`), `upgrade URLs: ${upgrades.join(' ')}`);
    await until('the viewer without the token to be refused', async () => upgrades.filter((url) => !url.includes('token=')).length, (refused) => refused >= 1);
    assert.is((await viewerState(withoutToken.page)).connects, 0, 'no hello without the token');
    assert.is(server.clientStats().length, 1);
  } finally {
    await withToken.close();
    await withoutToken.close();
    await server.close();
  }
});

test.run();
