import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { LfusionError } from '../../src/runtime/errors.js';
import { from, NEVER } from 'rxjs';
import { ResultServer, type Deliverable } from '../../src/sdk/server.js';
import type { SourceEvent } from '../../src/runtime/types/frames.js';
import type { Alert, FrameResult } from '../../src/runtime/types/results.js';
import { RecordingClient } from '../helpers/ws-client.js';

const SIDE = 224;
const model = { name: 'test-model', classes: ['background', 'fetal-head'], input: { width: SIDE, height: SIDE } };

function result(index: number): FrameResult {
  const planes = ['mask', 'fused'].map((name, p) => ({
    name,
    width: SIDE,
    height: SIDE,
    data: new Uint8Array(SIDE * SIDE).fill((index + p) % 256),
    min: 0,
    scale: name === 'mask' ? 1 : 0.01,
  }));
  return { frame: { index, pts: index / 25, captureTime: Date.now(), width: 640, height: 480 }, planes, timings: { encoder: 1 } };
}

function alert(id: number): Alert {
  return { kind: 'raised', path: 'frame', id, startFrame: id, endFrame: id, peakScore: 1, peakFrame: id, map: 'fused', threshold: 0.5, time: Date.now() };
}

const increasing = (values: number[]) => values.every((value, i) => i === 0 || value > values[i - 1]!);

test('binds to 127.0.0.1 by default and greets with model and streams', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused', 'laplace.total_entropy'] });
  assert.match(server.url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/);
  const client = await RecordingClient.connect(server.url);
  await client.until(() => client.texts('hello').length === 1);
  const hello = client.texts('hello')[0]!;
  assert.equal(hello.type === 'hello' && [hello.model.name, hello.streams, hello.subscribed], ['test-model', ['mask', 'fused', 'laplace.total_entropy'], ['mask', 'fused']]);
  client.close();
  await server.close();
});

test('a port in use is a clear error, not a crash', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'] });
  try {
    await ResultServer.listen({ port: Number(new URL(server.url).port), model, streams: ['mask'] });
    assert.unreachable('listened twice on one port');
  } catch (error) {
    assert.is((error as LfusionError).code, 'INVALID_OPTION');
    assert.match((error as Error).message, /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
  }
  await server.close();
});

test('a client receives every frame in order, with increasing seq and only its streams', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'] });
  const client = await RecordingClient.connect(`${server.url}?streams=mask`);
  await client.until(() => client.texts('hello').length === 1);
  for (let i = 0; i < 20; i++) server.publishFrame(result(i));
  await client.until(() => client.frames().length === 20);
  const frames = client.frames();
  assert.equal(frames.map((f) => f.header.frame.index), [...Array(20).keys()]);
  assert.ok(increasing(client.received.map((r) => r.seq)), 'seq increases over every message');
  assert.equal(frames[3]!.planes.map((p) => p.name), ['mask']);
  assert.ok(frames[3]!.planes[0]!.data.every((q) => q === 3));
  client.close();
  await server.close();
});

test('a client that stops reading loses frames alone; the fast one gets all; alerts reach both', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'], maxBufferedBytes: 256 * 1024 });
  const fast = await RecordingClient.connect(server.url);
  const slow = await RecordingClient.connect(server.url);
  await fast.until(() => fast.texts('hello').length === 1);
  await slow.until(() => slow.texts('hello').length === 1);
  slow.socket.pause();
  const total = 300;
  for (let i = 0; i < total; i++) {
    server.publishFrame(result(i));
    if (i % 100 === 50) server.publishAlert(alert(i));
    await sleep(1);
  }
  await fast.until(() => fast.frames().length === total);
  assert.equal(fast.frames().map((f) => f.header.frame.index), [...Array(total).keys()]);
  const slowStats = server.clientStats().find((c) => c.framesDropped > 0);
  assert.ok(slowStats, 'the paused client had frames dropped');
  assert.is(server.clientStats().filter((c) => c.framesDropped > 0).length, 1, 'only the paused client lost frames');
  slow.socket.resume();
  await slow.until(() => slow.texts('alert').length === 3);
  assert.ok(slow.frames().length < total, `paused client got ${slow.frames().length} frames`);
  assert.ok(increasing(slow.received.map((r) => r.seq)), 'seq still increases for the slow client');
  assert.equal(fast.texts('alert').length, 3);
  fast.close();
  slow.close();
  await server.close();
});

test('malformed client messages get an error message and the connection lives on', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'] });
  const client = await RecordingClient.connect(`${server.url}?streams=mask,bogus`);
  await client.until(() => client.texts('error').length === 1);
  assert.match((client.texts('error')[0] as { message: string }).message, /unknown stream\(s\) bogus; available: mask, fused/);
  client.socket.send('not json');
  client.socket.send(JSON.stringify({ type: 'subscribe', streams: ['nope'] }));
  client.socket.send(Buffer.from([1, 2, 3]));
  await client.until(() => client.texts('error').length === 4);
  const errors = client.texts('error').map((e) => (e as { message: string }).message);
  assert.match(errors[1]!, /not JSON/);
  assert.match(errors[2]!, /unknown stream\(s\) nope/);
  assert.match(errors[3]!, /binary messages from clients/);
  client.socket.send(JSON.stringify({ type: 'subscribe', streams: ['fused'] }));
  await client.until(() => client.texts('subscribed').length === 1);
  server.publishFrame(result(1));
  await client.until(() => client.frames().length === 1);
  assert.equal(client.frames()[0]!.planes.map((p) => p.name), ['fused']);
  client.close();
  await server.close();
});

test('a client reconnecting with ?since= gets the alerts it missed', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'] });
  const first = await RecordingClient.connect(server.url);
  server.publishAlert(alert(1));
  await first.until(() => first.texts('alert').length === 1);
  const lastSeen = first.received.at(-1)!.seq;
  first.close();
  server.publishAlert(alert(2));
  server.publishFrame(result(0));
  server.publishAlert(alert(3));
  const again = await RecordingClient.connect(`${server.url}?since=${lastSeen}`);
  await again.until(() => again.texts('hello').length === 1);
  assert.equal(again.texts('alert').map((a) => (a.type === 'alert' ? a.alert.id : -1)), [2, 3]);
  assert.ok(increasing(again.received.map((r) => r.seq)));
  again.close();
  await server.close();
});

const lost = (attempt: number): SourceEvent => ({ type: 'source-lost', source: 'udp://scanner', code: 'SOURCE_LOST', message: 'live source ended', stderrTail: '', attempt, retryInMs: 500, lastIndex: 9, time: Date.now() });

test('source events reach every client, a backed-up one too; hello carries the latest', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'], maxBufferedBytes: 64 * 1024 });
  const fresh = await RecordingClient.connect(server.url);
  await fresh.until(() => fresh.texts('hello').length === 1);
  assert.not.ok('source' in fresh.texts('hello')[0]!, 'no source event yet: no source field');
  const slow = await RecordingClient.connect(server.url);
  await slow.until(() => slow.texts('hello').length === 1);
  slow.socket.pause();
  for (let i = 0; i < 100; i++) {
    server.publishFrame(result(i));
    if (i % 25 === 10) server.publishSource(lost(i));
    await sleep(1);
  }
  assert.ok(server.clientStats().some((c) => c.framesDropped > 0), 'the paused client is backed up');
  slow.socket.resume();
  await slow.until(() => slow.texts('source').length === 4);
  await fresh.until(() => fresh.texts('source').length === 4);
  const late = await RecordingClient.connect(server.url);
  await late.until(() => late.texts('hello').length === 1);
  const hello = late.texts('hello')[0]!;
  const latest = (slow.texts('source').at(-1) as { event: SourceEvent }).event;
  assert.is(latest.type === 'source-lost' && latest.attempt, 85);
  assert.equal(hello.type === 'hello' && hello.source, latest);
  for (const client of [fresh, slow, late]) client.close();
  await server.close();
});

/** `result(index)` with an ok head measurement of HC 170 ± `half` mm (a stable ellipse). */
function measured(index: number, half: number): FrameResult {
  const hc = { median: 170, low: 170 - half, high: 170 + half };
  const biometry: FrameResult['biometry'] = {
    status: 'ok',
    unit: 'mm',
    spacing: { x: 0.2, y: 0.2 },
    ellipse: { cx: 320, cy: 240, a: 150, b: 120, angle: 0 },
    ellipseMm: null,
    residual: 1,
    visible: 1,
    pooled: { hc, bpd: hc, ofd: hc, fitted: 20, samples: 20 },
    laplace: null,
    dropout: null,
    ga: null,
    intervalScale: 1,
    outlineResidual: 0.02,
  };
  return { ...result(index), biometry };
}

test('deliver: a best-plane message follows the frame that is the best plane so far; none with bestPlane: false', async () => {
  const widths = [6, 5, 7, 3, 4];
  const pipeline = (): Deliverable => ({
    results$: from(widths.map((half, i) => measured(i, half))),
    alerts$: NEVER,
    sourceEvents$: NEVER,
    stats: { stats$: () => NEVER } as unknown as Deliverable['stats'],
  });
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'] });
  const client = await RecordingClient.connect(server.url);
  await client.until(() => client.texts('hello').length === 1);
  await server.deliver(pipeline()).done;
  await client.until(() => client.frames().length === widths.length);
  const best = client.texts('best-plane').map((m) => (m as { best: { frameIndex: number; width: number } }).best);
  // Frame 0 has no neighbour to be stable with; frame 1 narrower than 0; frame 3 narrower than all before it.
  assert.equal(best.map((b) => [b.frameIndex, b.width]), [[1, 10], [3, 6]]);
  const order = client.received.map((r) => (r.kind === 'frame' ? `frame ${r.frame.header.frame.index}` : r.message.type));
  assert.is(order.indexOf('best-plane'), order.indexOf('frame 1') + 1, 'right after its frame');
  await server.deliver(pipeline(), { bestPlane: false }).done;
  await client.until(() => client.frames().length === 2 * widths.length);
  assert.is(client.texts('best-plane').length, 2, 'none the second time');
  client.close();
  await server.close();
});

test('the viewer is served at /viewer/, browsers asking for / are sent there, other clients get JSON', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'] });
  const base = server.viewerUrl.replace(/\/viewer\/$/, '');
  const page = await fetch(server.viewerUrl);
  assert.is(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /text\/html/);
  const html = await page.text();
  assert.match(html, /<script type="module" src="viewer.js">/);
  for (const [file, type] of [['viewer.js', /javascript/], ['viewer.css', /text\/css/]] as const) {
    const response = await fetch(`${server.viewerUrl}${file}`);
    assert.is(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', type);
  }
  assert.is((await fetch(`${server.viewerUrl}..%2F..%2Fpackage.json`)).status, 404, 'nothing outside the viewer files');
  const browser = await fetch(`${base}/`, { headers: { accept: 'text/html,*/*' }, redirect: 'manual' });
  assert.equal([browser.status, browser.headers.get('location')], [302, '/viewer/']);
  const info = await (await fetch(`${base}/`)).json();
  assert.equal(info.streams, ['mask']);
  await server.close();
  const headless = await ResultServer.listen({ port: 0, model, streams: ['mask'], viewer: false });
  assert.is((await fetch(headless.viewerUrl)).status, 404);
  await headless.close();
});

test.run();
