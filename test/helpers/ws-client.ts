/** A recording WebSocket client for server tests. */
import { WebSocket } from 'ws';
import { decodeFrameMessage, type DecodedFrame } from '../../src/sdk/protocol.js';
import type { TextMessage } from '../../src/sdk/wire.js';

export type Received = { kind: 'frame'; frame: DecodedFrame; seq: number } | { kind: 'text'; message: TextMessage; seq: number };

export class RecordingClient {
  readonly received: Received[] = [];
  private waiters: { check: () => boolean; resolve: () => void }[] = [];

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data, isBinary) => {
      if (isBinary) {
        const frame = decodeFrameMessage(data as Buffer);
        this.received.push({ kind: 'frame', frame, seq: frame.header.seq });
      } else {
        const message = JSON.parse(data.toString()) as TextMessage;
        this.received.push({ kind: 'text', message, seq: message.seq });
      }
      this.waiters = this.waiters.filter((waiter) => (waiter.check() ? (waiter.resolve(), false) : true));
    });
  }

  static connect(url: string, options?: ConstructorParameters<typeof WebSocket>[2]): Promise<RecordingClient> {
    const socket = new WebSocket(url, options);
    const client = new RecordingClient(socket);
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(client));
      socket.once('error', reject);
    });
  }

  frames(): DecodedFrame[] {
    return this.received.flatMap((r) => (r.kind === 'frame' ? [r.frame] : []));
  }

  texts(type?: TextMessage['type']): TextMessage[] {
    return this.received.flatMap((r) => (r.kind === 'text' && (!type || r.message.type === type) ? [r.message] : []));
  }

  /** Resolves when `check` holds; rejects after `ms` so a broken server fails the test instead of hanging it. */
  until(check: () => boolean, ms = 10_000): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`condition not met within ${ms} ms; received ${this.received.length} messages`)), ms);
      this.waiters.push({ check, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  close(): void {
    this.socket.close();
  }
}
