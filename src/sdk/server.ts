/**
 * Delivery: an HTTP server with a WebSocket endpoint that fans results out to subscribers
 * (docs/protocol.md), and the overlay viewer page. Publishing never waits for a client: a client whose
 * socket backs up loses frames and stats, alone; alerts and source events are always queued for it; a
 * reply to it waits (the latest one only) until it catches up; a client that reads nothing for
 * `idleReaderTimeoutMs` is dropped. Who may connect: src/sdk/access.ts.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { filter, Subject, type Subscription } from 'rxjs';
import { WebSocket, WebSocketServer } from 'ws';
import { LfusionError } from '../runtime/errors.js';
import { checkAccessOptions, refusal, type AccessPolicy } from './access.js';
import type { Pipeline } from './pipeline-options.js';
import { encodeFrameMessage, encodeTextMessage, parseClientMessage, PROTOCOL_VERSION } from './protocol.js';
import type { SourceEvent } from '../runtime/types/frames.js';
import { suggestBestPlane, type BestPlane, type BestPlaneOptions } from '../operators/suggestBestPlane.js';
import type { ModelManifest } from '../runtime/types/model.js';
import type { Alert, FrameResult, PipelineStats } from '../runtime/types/results.js';
import type { ModelInfo, TextMessage } from './wire.js';

/** Options of {@link ResultServer.listen}. */
export interface ResultServerOptions {
  /** Interface to bind. Default `127.0.0.1` (this machine only); `0.0.0.0` exposes it to the network. */
  host?: string;
  /** TCP port; `0` picks a free one (read it from `url`). Default 8080. */
  port?: number;
  /** Model facts sent in `hello`. */
  model: ModelInfo;
  /** Plane names the pipeline produces (`mask`, `fused`, `laplace.<measure>`, ...). */
  streams: readonly string[];
  /** Streams a client gets when it names none. Default `mask` and `fused`, where produced. */
  defaultStreams?: readonly string[];
  /** A client's unsent bytes above which its frames and stats are dropped. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Alerts kept for clients that reconnect with `?since=<seq>`. Default 100. */
  alertHistory?: number;
  /** Serve the overlay viewer at `/viewer/` (and send browsers asking for `/` there). Default true. */
  viewer?: boolean;
  /** Extra HTTP routes: return true when the request was handled. */
  onRequest?: (request: IncomingMessage, response: ServerResponse) => boolean;
  /**
   * Access token (at least 16 characters) every client must present: `?token=` in the WebSocket URL, or an
   * `Authorization: Bearer` header. Compared in constant time. Required for a `host` other than loopback.
   */
  token?: string;
  /** Browser origins allowed besides the server's own. Default none: same-origin pages and non-browser clients. */
  allowedOrigins?: readonly string[];
  /** Serve `https`/`wss` with this PEM certificate chain and private key. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest client message, in bytes; a larger one closes the connection with code 1009. Default 64 KiB. */
  maxMessageBytes?: number;
  /** A client that has data waiting and reads none of it for this long is disconnected. Default 30000 ms. */
  idleReaderTimeoutMs?: number;
}

/** The options a running server keeps. */
type ServerSettings = Required<Pick<ResultServerOptions, 'model' | 'defaultStreams' | 'maxBufferedBytes' | 'alertHistory' | 'idleReaderTimeoutMs'>> &
  AccessPolicy & { streams: string[] };

/** The parts of a {@link Pipeline} that {@link ResultServer.deliver} publishes. */
export type Deliverable = Pick<Pipeline, 'results$' | 'alerts$' | 'sourceEvents$' | 'stats'>;

/** A running delivery: `done` resolves when the results complete or `stop` is called, and rejects with their error. */
export interface Delivery {
  done: Promise<void>;
  stop(): void;
}

/** Per-client delivery counters. */
export interface ClientStats {
  id: number;
  streams: string[];
  framesSent: number;
  framesDropped: number;
  bufferedAmount: number;
}

/** A text message before the server numbers it (replies are numbered when they are actually sent). */
type Unnumbered<M> = M extends unknown ? Omit<M, 'seq'> : never;
type Reply = Unnumbered<TextMessage>;

type Client = Omit<ClientStats, 'bufferedAmount'> & {
  socket: WebSocket;
  /** The latest reply not yet sent because the client was backed up; older ones are superseded. */
  pendingReply?: Reply;
  /** Bytes handed to the socket; minus `bufferedAmount`, what the client has taken. */
  sentBytes: number;
  /** The most the client has taken, and when that last grew. */
  takenBytes: number;
  lastRead: number;
};

/** Unknown stream names quoted back in an error reply, and characters kept of each: replies stay small. */
const QUOTED_NAMES = 8;
const QUOTED_NAME_LENGTH = 64;
/** Characters kept of an error reply's message (a parse error may quote the client's text). */
const MAX_REPLY_MESSAGE = 512;

export const WEBSOCKET_PATH = '/ws';
export const VIEWER_PATH = '/viewer/';

/** The viewer's files (plain HTML, JS, CSS in `src/viewer`, served as they are) by request path. */
const VIEWER_DIR = fileURLToPath(new URL('../../src/viewer/', import.meta.url));
const VIEWER_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  [VIEWER_PATH]: { file: 'index.html', type: 'text/html; charset=utf-8' },
  [`${VIEWER_PATH}viewer.js`]: { file: 'viewer.js', type: 'text/javascript; charset=utf-8' },
  [`${VIEWER_PATH}viewer.css`]: { file: 'viewer.css', type: 'text/css; charset=utf-8' },
};

function serveViewerFile(path: string, response: ServerResponse): void {
  const entry = VIEWER_FILES[path]!;
  readFile(`${VIEWER_DIR}${entry.file}`).then(
    (body) => {
      response.writeHead(200, { 'content-type': entry.type, 'cache-control': 'no-cache' });
      response.end(body);
    },
    (error: Error) => {
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end(`viewer file missing: ${error.message}\n`);
    },
  );
}

/** What `hello` tells clients about a model package. */
export function modelInfo(manifest: ModelManifest): ModelInfo {
  return { name: manifest.name, classes: manifest.classes, input: { width: manifest.input.width, height: manifest.input.height } };
}

/**
 * Serves pipeline results over WebSocket at `ws://host:port/ws`.
 *
 * @example
 * const server = await ResultServer.listen({ port: 0, model, streams: ['mask', 'fused'] });
 * console.log(`connect to ${server.url}?streams=mask`);
 * results$.subscribe((result) => server.publishFrame(result));
 */
export class ResultServer {
  /** `ws://host:port/ws`. */
  readonly url: string;
  /** `http://host:port/viewer/`: the overlay viewer (when enabled). */
  readonly viewerUrl: string;
  private readonly clients = new Set<Client>();
  private readonly alerts: { seq: number; text: string }[] = [];
  /** The latest source event: the source's current state, sent in `hello`. */
  private lastSourceEvent?: SourceEvent;
  private seq = 0;
  private nextClientId = 0;
  private closing?: Promise<void>;
  private readonly clientCheck: NodeJS.Timeout;

  private constructor(
    readonly httpServer: Server,
    private readonly wss: WebSocketServer,
    private readonly options: ServerSettings,
    address: AddressInfo,
    secure: boolean,
  ) {
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    this.url = `${secure ? 'wss' : 'ws'}://${host}:${address.port}${WEBSOCKET_PATH}`;
    const token = options.token === undefined ? '' : `?token=${encodeURIComponent(options.token)}`;
    this.viewerUrl = `${secure ? 'https' : 'http'}://${host}:${address.port}${VIEWER_PATH}${token}`;
    wss.on('connection', (socket, request) => this.accept(socket, request));
    // Errors of the HTTP server after start (e.g. out of file descriptors) must not crash the pipeline.
    wss.on('error', () => {});
    this.clientCheck = setInterval(() => this.checkClients(), Math.min(1000, Math.max(50, options.idleReaderTimeoutMs / 4)));
    this.clientCheck.unref();
  }

  /**
   * Starts listening; resolves once the port is bound.
   * @throws LfusionError `INVALID_OPTION` for a port in use, a short token, or a host other than loopback without a token.
   */
  static listen(options: ResultServerOptions): Promise<ResultServer> {
    const streams = [...options.streams];
    const host = options.host ?? '127.0.0.1';
    const settings: ServerSettings = {
      model: options.model,
      streams,
      defaultStreams: [...(options.defaultStreams ?? ['mask', 'fused'].filter((name) => streams.includes(name)))],
      maxBufferedBytes: options.maxBufferedBytes ?? 1024 * 1024,
      alertHistory: options.alertHistory ?? 100,
      idleReaderTimeoutMs: options.idleReaderTimeoutMs ?? 30_000,
      ...(options.token === undefined ? {} : { token: options.token }),
      allowedOrigins: [...(options.allowedOrigins ?? [])],
    };
    try {
      checkAccessOptions(host, settings);
    } catch (error) {
      return Promise.reject(error);
    }
    const viewer = options.viewer ?? true;
    const secure = options.tls !== undefined;
    const handle = (request: IncomingMessage, response: ServerResponse) => {
      if (options.onRequest?.(request, response)) return;
      const path = new URL(request.url ?? '/', 'http://localhost').pathname;
      // The viewer's files hold no data: they load without a token, and the page passes its own to the socket.
      if (request.method === 'GET' && viewer && path in VIEWER_FILES) {
        serveViewerFile(path, response);
        return;
      }
      if (request.method === 'GET' && viewer && (path === '/' || path === '/viewer') && request.headers.accept?.includes('text/html')) {
        response.writeHead(302, { location: `${VIEWER_PATH}${new URL(request.url ?? '/', 'http://localhost').search}` });
        response.end();
        return;
      }
      const refused = refusal(request, settings, secure);
      if (refused) {
        response.writeHead(refused.status, { 'content-type': 'text/plain' });
        response.end(`${refused.reason}\n`);
        return;
      }
      if (request.method === 'GET' && (path === '/' || path === '/info')) {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ protocol: PROTOCOL_VERSION, model: settings.model, streams, websocket: WEBSOCKET_PATH }));
        return;
      }
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end('not found\n');
    };
    let httpServer: Server;
    try {
      httpServer = options.tls ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, handle) : createServer(handle);
    } catch (error) {
      return Promise.reject(new LfusionError('INVALID_OPTION', `cannot use the TLS certificate and key: ${(error as Error).message}`, {}, { cause: error }));
    }
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(new LfusionError('INVALID_OPTION', `cannot listen on ${host}:${options.port ?? 8080}: ${error.message}`, {}, { cause: error }));
      httpServer.once('error', onError);
      httpServer.listen(options.port ?? 8080, host, () => {
        httpServer.off('error', onError);
        // Attached once listening: ws re-emits the HTTP server's errors, and a failed listen is reported above.
        const wss = new WebSocketServer({
          server: httpServer,
          path: WEBSOCKET_PATH,
          maxPayload: options.maxMessageBytes ?? 64 * 1024,
          verifyClient: ({ req }, done) => {
            const refused = refusal(req, settings, secure);
            if (refused) done(false, refused.status, refused.reason);
            else done(true);
          },
        });
        resolve(new ResultServer(httpServer, wss, settings, httpServer.address() as AddressInfo, secure));
      });
    });
  }

  /** Sends a frame result to every client subscribed to one of its planes; skips clients that are backed up. */
  publishFrame(result: FrameResult): void {
    const seq = ++this.seq;
    const encoded = new Map<string, Buffer>();
    for (const client of this.clients) {
      this.sendPendingReply(client);
      const streams = result.planes.map((plane) => plane.name).filter((name) => client.streams.includes(name));
      if (streams.length === 0 || client.socket.readyState !== WebSocket.OPEN) continue;
      if (client.socket.bufferedAmount > this.options.maxBufferedBytes) {
        client.framesDropped += 1;
        continue;
      }
      const key = streams.join(',');
      let message = encoded.get(key);
      if (!message) {
        message = encodeFrameMessage(result, seq, new Set(streams));
        encoded.set(key, message);
      }
      this.transmit(client, message);
      client.framesSent += 1;
    }
  }

  /** Sends stats to every client that is not backed up (stats are periodic: a newer one follows). */
  publishStats(stats: PipelineStats): void {
    const text = encodeTextMessage({ type: 'stats', seq: ++this.seq, stats });
    for (const client of this.clients) {
      if (client.socket.readyState === WebSocket.OPEN && client.socket.bufferedAmount <= this.options.maxBufferedBytes) this.transmit(client, text);
    }
  }

  /** Queues an alert for every client, however backed up, and keeps it for clients that reconnect. */
  publishAlert(alert: Alert): void {
    const seq = ++this.seq;
    const text = encodeTextMessage({ type: 'alert', seq, alert });
    this.alerts.push({ seq, text });
    if (this.alerts.length > this.options.alertHistory) this.alerts.shift();
    for (const client of this.clients) if (client.socket.readyState === WebSocket.OPEN) this.transmit(client, text);
  }

  /**
   * Sends a source event (`source-lost`, `source-restored`) to every client, however backed up: like alerts,
   * never dropped. The latest one is the source state that `hello` carries.
   */
  publishSource(event: SourceEvent): void {
    this.lastSourceEvent = event;
    const text = encodeTextMessage({ type: 'source', seq: ++this.seq, event });
    for (const client of this.clients) if (client.socket.readyState === WebSocket.OPEN) this.transmit(client, text);
  }

  /**
   * Tells every client, however backed up (like source events, never dropped), that the frame just sent is the
   * best head plane of the last few seconds: the prompt to freeze.
   */
  publishBestPlane(best: BestPlane): void {
    const text = encodeTextMessage({ type: 'best-plane', seq: ++this.seq, best });
    for (const client of this.clients) if (client.socket.readyState === WebSocket.OPEN) this.transmit(client, text);
  }

  /**
   * Publishes everything a pipeline produces: results, alerts, source events, stats every `statsIntervalMs`
   * (default 1000), and, when results carry head biometry, a `best-plane` message after each frame that is the best
   * plane of the last `bestPlane.windowSeconds` (`suggestBestPlane`; `bestPlane: false` for none), until its results
   * end or `stop` is called.
   *
   * @example
   * const pipeline = await createPipeline({ source: '/dev/video0', image: true });
   * const server = await ResultServer.listen({ port: 8080, model: modelInfo(pipeline.model.manifest), streams: pipeline.streams });
   * console.log(`open ${server.viewerUrl}`);
   * await server.deliver(pipeline).done;
   */
  deliver(pipeline: Deliverable, options: { statsIntervalMs?: number; bestPlane?: BestPlaneOptions | false } = {}): Delivery {
    const subscriptions: Subscription[] = [];
    // The 2D results, as they are published, through the best-plane suggestion (results$ itself is subscribed once).
    const published = new Subject<FrameResult>();
    if (options.bestPlane !== false) {
      const suggest = suggestBestPlane(options.bestPlane ?? {});
      subscriptions.push(published.pipe(filter((result) => (result.path ?? 'frame') === 'frame' && result.biometry !== undefined), suggest).subscribe((best) => this.publishBestPlane(best)));
    }
    let settle: { resolve: () => void; reject: (error: unknown) => void } | undefined;
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const end = (outcome: () => void): void => {
      subscriptions.forEach((subscription) => subscription.unsubscribe());
      outcome();
    };
    // Alerts and source events are hot: subscribe to them before the results start the source.
    subscriptions.push(pipeline.alerts$.subscribe((alert) => this.publishAlert(alert)));
    subscriptions.push(pipeline.sourceEvents$.subscribe((event) => this.publishSource(event)));
    subscriptions.push(pipeline.stats.stats$(options.statsIntervalMs ?? 1000).subscribe((stats) => this.publishStats(stats)));
    subscriptions.push(
      pipeline.results$.subscribe({
        next: (result) => {
          this.publishFrame(result);
          published.next(result);
        },
        error: (error: unknown) => end(() => settle!.reject(error)),
        complete: () => end(() => settle!.resolve()),
      }),
    );
    return { done, stop: () => end(() => settle!.resolve()) };
  }

  /** Delivery counters of the connected clients. */
  clientStats(): ClientStats[] {
    return [...this.clients].map(({ id, streams, framesSent, framesDropped, socket }) => ({ id, streams: [...streams], framesSent, framesDropped, bufferedAmount: socket.bufferedAmount }));
  }

  /** Closes every client (code 1001, going away) and stops listening. */
  close(): Promise<void> {
    clearInterval(this.clientCheck);
    this.closing ??= new Promise((resolve) => {
      for (const client of this.clients) client.socket.close(1001, 'server closing');
      const forceAfter = setTimeout(() => {
        for (const client of this.clients) client.socket.terminate();
      }, 1000);
      this.wss.close(() => {
        this.httpServer.close(() => {
          clearTimeout(forceAfter);
          resolve();
        });
        this.httpServer.closeAllConnections();
      });
    });
    return this.closing;
  }

  private transmit(client: Client, data: string | Buffer): void {
    client.sentBytes += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    client.socket.send(data);
  }

  /** Sends a reply now, or, while the client is over its buffer limit, keeps it (the latest only) for later. */
  private reply(client: Client, message: Reply): void {
    client.pendingReply = message;
    this.sendPendingReply(client);
  }

  private sendPendingReply(client: Client): void {
    if (!client.pendingReply || client.socket.readyState !== WebSocket.OPEN || client.socket.bufferedAmount > this.options.maxBufferedBytes) return;
    const message = { ...client.pendingReply, seq: ++this.seq } as TextMessage;
    client.pendingReply = undefined;
    this.transmit(client, encodeTextMessage(message));
  }

  /** Sends waiting replies; disconnects clients that have taken none of their waiting data for `idleReaderTimeoutMs`. */
  private checkClients(): void {
    const now = Date.now();
    for (const client of this.clients) {
      this.sendPendingReply(client);
      const { bufferedAmount } = client.socket;
      const taken = client.sentBytes - bufferedAmount;
      if (bufferedAmount === 0 || taken > client.takenBytes) {
        client.takenBytes = Math.max(client.takenBytes, taken);
        client.lastRead = now;
      } else if (now - client.lastRead > this.options.idleReaderTimeoutMs) {
        // It reads nothing, so a close handshake could not reach it either.
        client.socket.terminate();
        this.clients.delete(client);
      }
    }
  }

  /** Splits requested streams into known ones and unknown ones. */
  private validStreams(requested: readonly string[]): { known: string[]; unknown: string[] } {
    const unique = [...new Set(requested.map((name) => name.trim()).filter(Boolean))];
    return { known: unique.filter((name) => this.options.streams.includes(name)), unknown: unique.filter((name) => !this.options.streams.includes(name)) };
  }

  private reportUnknown(client: Client, unknown: string[]): void {
    const quoted = unknown.slice(0, QUOTED_NAMES).map((name) => (name.length > QUOTED_NAME_LENGTH ? `${name.slice(0, QUOTED_NAME_LENGTH)}...` : name));
    const more = unknown.length > QUOTED_NAMES ? ` and ${unknown.length - QUOTED_NAMES} more` : '';
    this.reply(client, { type: 'error', code: 'PROTOCOL_ERROR', message: `unknown stream(s) ${quoted.join(', ')}${more}; available: ${this.options.streams.join(', ')}` });
  }

  private accept(socket: WebSocket, request: IncomingMessage): void {
    const query = new URL(request.url ?? '/', 'http://localhost').searchParams;
    const requested = query.get('streams');
    const { known, unknown } = requested === null ? { known: [...this.options.defaultStreams], unknown: [] } : this.validStreams(requested.split(','));
    const client: Client = { id: this.nextClientId++, socket, streams: known, framesSent: 0, framesDropped: 0, sentBytes: 0, takenBytes: 0, lastRead: Date.now() };
    this.clients.add(client);
    socket.on('close', () => this.clients.delete(client));
    socket.on('error', () => this.clients.delete(client));
    socket.on('message', (data, isBinary) => this.onClientMessage(client, isBinary ? null : data.toString()));

    const since = query.get('since');
    const validSince = since === null || /^\d+$/.test(since);
    if (since !== null && validSince) {
      for (const alert of this.alerts) if (alert.seq > Number(since)) this.transmit(client, alert.text);
    }
    this.transmit(client, encodeTextMessage({
      type: 'hello',
      seq: ++this.seq,
      protocol: PROTOCOL_VERSION,
      model: this.options.model,
      streams: [...this.options.streams],
      subscribed: [...client.streams],
      time: Date.now(),
      ...(this.lastSourceEvent ? { source: this.lastSourceEvent } : {}),
    }));
    if (!validSince) this.reply(client, { type: 'error', code: 'PROTOCOL_ERROR', message: `since must be a whole number >= 0 (the last seq seen), got ${JSON.stringify(since.slice(0, QUOTED_NAME_LENGTH))}` });
    if (unknown.length > 0) this.reportUnknown(client, unknown);
  }

  private onClientMessage(client: Client, text: string | null): void {
    try {
      if (text === null) throw new LfusionError('PROTOCOL_ERROR', 'binary messages from clients are not supported; send JSON text');
      const message = parseClientMessage(text);
      const { known, unknown } = this.validStreams(message.streams);
      if (unknown.length > 0) {
        this.reportUnknown(client, unknown);
        return;
      }
      client.streams = known;
      this.reply(client, { type: 'subscribed', streams: [...known] });
    } catch (error) {
      const code = error instanceof LfusionError ? error.code : 'PROTOCOL_ERROR';
      this.reply(client, { type: 'error', code, message: (error as Error).message.slice(0, MAX_REPLY_MESSAGE) });
    }
  }
}
