/**
 * Who may connect (token, origin, host, TLS) and what a hostile or stalled client can cost the server
 * (message size, replies under the buffer limit, idle readers): docs/integration.md "Security", docs/protocol.md.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { isLoopbackHost, tokenMatches } from '../../src/sdk/access.js';
import type { LfusionError } from '../../src/runtime/errors.js';
import { ResultServer } from '../../src/sdk/server.js';
import type { FrameResult } from '../../src/runtime/types/results.js';
import { RecordingClient } from '../helpers/ws-client.js';

const model = { name: 'test-model', classes: ['background', 'fetal-head'], input: { width: 224, height: 224 } };
const TOKEN = 'correct-horse-battery-staple';
const TLS_DIR = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));

function frame(index: number): FrameResult {
  const planes = ['mask', 'fused'].map((name) => ({ name, width: 224, height: 224, data: new Uint8Array(224 * 224).fill(index % 256), min: 0, scale: 1 }));
  return { frame: { index, pts: index / 25, captureTime: Date.now(), width: 640, height: 480 }, planes, timings: {} };
}

/** How an upgrade attempt ends: `open`, or the HTTP status it was refused with. */
function upgrade(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<'open' | number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, options);
    socket.once('open', () => {
      socket.close();
      resolve('open');
    });
    socket.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('error', reject);
  });
}

/** Status of a plain GET with the given headers. */
function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    req.once('error', reject);
    req.end();
  });
}

/** The close code of a socket; rejects after 10 s so that a server that keeps it open fails the test instead of hanging it. */
function closed(socket: WebSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the socket is still open after 10 s')), 10_000);
    socket.once('close', (code) => (clearTimeout(timer), resolve(code)));
  });
}

test('loopback hosts and constant-time token comparison', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.ok(isLoopbackHost(host), host);
  for (const host of ['0.0.0.0', '::', '192.168.1.20', 'scanner.local', '128.0.0.1']) assert.not.ok(isLoopbackHost(host), host);
  assert.ok(tokenMatches(TOKEN, TOKEN));
  assert.not.ok(tokenMatches(`${TOKEN}x`, TOKEN));
  assert.not.ok(tokenMatches(undefined, TOKEN));
});

test('a host other than loopback needs a token; a short token is refused', async () => {
  for (const options of [{ host: '0.0.0.0' }, { host: '0.0.0.0', token: 'short' }]) {
    try {
      await ResultServer.listen({ port: 0, model, streams: ['mask'], ...options });
      assert.unreachable(`listened with ${JSON.stringify(options)}`);
    } catch (error) {
      assert.is((error as LfusionError).code, 'INVALID_OPTION');
      assert.match((error as Error).message, options.token ? /at least 16 characters/ : /refusing to serve ultrasound images on 0\.0\.0\.0 without an access token/);
    }
  }
  const exposed = await ResultServer.listen({ port: 0, host: '0.0.0.0', model, streams: ['mask'], token: TOKEN });
  const port = new URL(exposed.url).port;
  assert.is(await upgrade(`ws://127.0.0.1:${port}/ws?token=${TOKEN}`), 'open');
  assert.is(await upgrade(`ws://127.0.0.1:${port}/ws`), 401);
  await exposed.close();
});

test('with a token: the socket and /info need it (query or bearer); the viewer page does not', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'], token: TOKEN });
  const base = server.url.replace('ws://', 'http://').replace('/ws', '');
  assert.is(server.viewerUrl, `${base}/viewer/?token=${TOKEN}`, 'the printed viewer URL carries the token');
  assert.is(await upgrade(server.url), 401);
  assert.is(await upgrade(`${server.url}?token=wrong-token-of-the-same-size!`), 401);
  assert.is(await upgrade(`${server.url}?token=${TOKEN}`), 'open');
  assert.is(await upgrade(server.url, { headers: { authorization: `Bearer ${TOKEN}` } }), 'open');
  assert.is(await get(`${base}/info`), 401);
  assert.is(await get(`${base}/info`, { authorization: `Bearer ${TOKEN}` }), 200);
  assert.is(await get(`${base}/viewer/`), 200);
  await server.close();
});

test('origins: same origin and no origin are allowed, others and "null" only when listed', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'], allowedOrigins: ['https://console.example.com'] });
  const { host } = new URL(server.url);
  assert.is(await upgrade(server.url), 'open', 'no Origin: a non-browser client');
  assert.is(await upgrade(server.url, { origin: `http://${host}` }), 'open', 'the page the server itself serves');
  assert.is(await upgrade(server.url, { origin: 'https://console.example.com' }), 'open');
  assert.is(await upgrade(server.url, { origin: 'https://evil.example' }), 403);
  assert.is(await upgrade(server.url, { origin: 'null' }), 403);
  await server.close();
});

test('without a token, only loopback Host names are served (DNS rebinding)', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'] });
  const { port } = new URL(server.url);
  const rebound = `rebinding.example:${port}`;
  assert.is(await upgrade(server.url, { headers: { host: rebound }, origin: `http://${rebound}` }), 403);
  assert.is(await get(`http://127.0.0.1:${port}/info`, { host: rebound }), 403);
  assert.is(await get(`http://127.0.0.1:${port}/info`, { host: `localhost:${port}` }), 200);
  await server.close();
});

test('TLS with the user\'s certificate and key: wss:// and https://', async () => {
  const tls = { cert: readFileSync(`${TLS_DIR}cert.pem`), key: readFileSync(`${TLS_DIR}key.pem`) };
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'], token: TOKEN, tls });
  assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
  assert.match(server.viewerUrl, /^https:\/\//);
  const client = await RecordingClient.connect(`${server.url}?token=${TOKEN}`, { ca: tls.cert });
  await client.until(() => client.texts('hello').length === 1);
  server.publishFrame(frame(1));
  await client.until(() => client.frames().length === 1);
  client.close();
  const untrusted = await RecordingClient.connect(`${server.url}?token=${TOKEN}`).then(() => 'connected', (error: Error) => error.message);
  assert.match(untrusted, /self-signed/, 'a client that does not trust the certificate cannot connect');
  await server.close();
});

test('a message over the size limit closes the connection with 1009; invalid UTF-8 with 1007', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'], maxMessageBytes: 1024 });
  const big = await RecordingClient.connect(server.url);
  const bigClosed = closed(big.socket);
  big.socket.send(JSON.stringify({ type: 'subscribe', streams: ['x'.repeat(2000)] }));
  assert.is(await bigClosed, 1009);
  const garbled = await RecordingClient.connect(server.url);
  const garbledClosed = closed(garbled.socket);
  garbled.socket.send(Buffer.from([0xff, 0xfe, 0x7b]), { binary: false });
  assert.is(await garbledClosed, 1007);
  await server.close();
});

test('replies to a client that does not read stay under its buffer limit, and are small', async () => {
  const limit = 64 * 1024;
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'], maxBufferedBytes: limit });
  const client = await RecordingClient.connect(server.url);
  await client.until(() => client.texts('hello').length === 1);
  client.socket.pause();
  // Fill its buffer with frames, then send requests whose replies would echo 60 KB each.
  for (let i = 0; i < 400; i++) server.publishFrame(frame(i));
  const names = Array.from({ length: 1000 }, (_, i) => `unknown-stream-${i}-${'y'.repeat(40)}`);
  const request = JSON.stringify({ type: 'subscribe', streams: names });
  assert.ok(request.length > 50_000 && request.length < 64 * 1024);
  for (let i = 0; i < 200; i++) client.socket.send(request);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const [stats] = server.clientStats();
  assert.ok(stats!.bufferedAmount <= limit + 2 * 224 * 224 + 4096, `buffered ${stats!.bufferedAmount} bytes`);
  client.socket.resume();
  await client.until(() => client.texts('error').length === 1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const errors = client.texts('error');
  assert.is(errors.length, 1, 'only the latest reply waited');
  const message = (errors[0] as { message: string }).message;
  assert.ok(message.length < 1024, `reply of ${message.length} characters`);
  assert.match(message, /unknown stream\(s\) unknown-stream-0-y+, .* and 992 more; available: mask, fused/);
  const seqs = client.received.map((r) => r.seq);
  assert.ok(seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!), 'a delayed reply still has an increasing seq');
  client.close();
  await server.close();
});

test('a client that reads nothing for idleReaderTimeoutMs is disconnected; one that reads stays', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'], maxBufferedBytes: 64 * 1024, idleReaderTimeoutMs: 400 });
  const reader = await RecordingClient.connect(server.url);
  const stalled = await RecordingClient.connect(server.url);
  await stalled.until(() => stalled.texts('hello').length === 1);
  stalled.socket.pause();
  const stalledClosed = closed(stalled.socket);
  let index = 0;
  const started = Date.now();
  // Publish until the stalled client is gone (its kernel buffers fill first), at most 20 s.
  while (server.clientStats().length === 2 && Date.now() - started < 20_000) {
    server.publishFrame(frame(index++));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.is(server.clientStats().length, 1, 'the stalled client was dropped');
  stalled.socket.resume();
  assert.is(await stalledClosed, 1006, 'terminated: a close handshake could not reach it');
  await reader.until(() => reader.frames().length === index);
  reader.close();
  await server.close();
});

test('an invalid ?since= is answered with an error; the connection lives on', async () => {
  const server = await ResultServer.listen({ port: 0, model, streams: ['mask'] });
  const client = await RecordingClient.connect(`${server.url}?since=yesterday`);
  await client.until(() => client.texts('error').length === 1);
  assert.match((client.texts('error')[0] as { message: string }).message, /since must be a whole number >= 0 .*got "yesterday"/);
  server.publishFrame(frame(3));
  await client.until(() => client.frames().length === 1);
  client.close();
  await server.close();
});

test.run();
