/**
 * Who may read the results (docs/integration.md, "Security"): a shared token, the browser origins allowed, and
 * the interfaces that may be bound without a token. The server asks `refusal` about every HTTP request and
 * WebSocket upgrade before serving any data.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { LfusionError } from '../runtime/errors.js';

/** Shorter tokens are refused: they can be guessed. */
export const MIN_TOKEN_LENGTH = 16;

export interface AccessPolicy {
  /** Required of every client (`?token=` or `Authorization: Bearer`); `undefined` allows anyone who can connect. */
  token?: string;
  /** Browser origins allowed besides the server's own (e.g. `https://console.example.com`; `null` for sandboxed pages). */
  allowedOrigins: readonly string[];
}

/** Whether binding `host` exposes the server to this machine only. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1' || /^::ffff:127\./.test(bare);
}

/**
 * Checks the options of a server about to listen on `host`.
 * @throws LfusionError `INVALID_OPTION` for a short token, or a non-loopback host without a token.
 */
export function checkAccessOptions(host: string, policy: AccessPolicy): void {
  if (policy.token !== undefined && policy.token.length < MIN_TOKEN_LENGTH) {
    throw new LfusionError('INVALID_OPTION', `the access token must be at least ${MIN_TOKEN_LENGTH} characters, got ${policy.token.length}`);
  }
  if (policy.token === undefined && !isLoopbackHost(host)) {
    throw new LfusionError('INVALID_OPTION', `refusing to serve ultrasound images on ${host} without an access token: set one (--token or LFUSION_TOKEN), or bind to 127.0.0.1`, { host });
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Compares in constant time (over the digests, so the token's length does not leak either). */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  return given !== undefined && timingSafeEqual(digest(given), digest(expected));
}

/** The token a request carries: `Authorization: Bearer <token>` (non-browser clients) or `?token=` (browsers). */
function presentedToken(request: IncomingMessage): string | undefined {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (bearer) return bearer[1];
  return new URL(request.url ?? '/', 'http://localhost').searchParams.get('token') ?? undefined;
}

/** The hostname of a `Host` header (`[::1]:8080` -> `::1`). */
function hostName(header: string): string {
  const bracketed = /^\[([^\]]+)\]/.exec(header);
  return bracketed ? bracketed[1]! : header.replace(/:\d+$/, '');
}

/** Why a request must be refused (HTTP status and reason), or `undefined` when it may be served. */
export function refusal(request: IncomingMessage, policy: AccessPolicy, secure: boolean): { status: 401 | 403; reason: string } | undefined {
  const host = request.headers.host ?? '';
  // Without a token the server is on loopback only; a page on another site whose name resolves to 127.0.0.1
  // (DNS rebinding) still sends its own name as Host, so only loopback names are served.
  if (policy.token === undefined && !isLoopbackHost(hostName(host))) return { status: 403, reason: `host ${JSON.stringify(host)} is not this machine's loopback` };
  const origin = request.headers.origin;
  const sameOrigin = `${secure ? 'https' : 'http'}://${host}`;
  if (origin !== undefined && origin.toLowerCase() !== sameOrigin.toLowerCase() && !policy.allowedOrigins.includes(origin)) {
    return { status: 403, reason: `origin ${origin} is not allowed` };
  }
  if (policy.token !== undefined && !tokenMatches(presentedToken(request), policy.token)) return { status: 401, reason: 'a valid access token is required' };
  return undefined;
}
