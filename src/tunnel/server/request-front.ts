import type http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenerConnection } from './listener.js';

/** What the server keeps per client connection for its limits. */
export interface ConnectionQuota {
  /** The client's address without the port: the key of the per-client limits. */
  readonly address: string;
  /** Tunnels set up or relaying on this connection. */
  sessions: number;
  /** HTTP/2 streams of this connection not yet seen to close, for maxStreamsPerConnection. */
  readonly live: Set<http2.ServerHttp2Stream>;
  /** Failed authentications on this connection. */
  authFailures: number;
}

/** A TunnelServer client connection: the listener's bookkeeping plus the server's quota. */
export type ServerConnection = ListenerConnection<ConnectionQuota>;

/** The empty quota of a new client connection. */
export function newConnectionQuota(socket: net.Socket): ConnectionQuota {
  return { address: clientAddress(socket.remoteAddress), sessions: 0, live: new Set(), authFailures: 0 };
}

/** A client's address as the per-client limits key it: IPv4-mapped IPv6 (dual-stack listeners) as plain IPv4. */
function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return 'unknown';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

/**
 * What the shared request handling needs from the front a request arrived through (an HTTP/2 stream or an
 * HTTP/1.1 connection awaiting its upgrade). The front owns the wire format of answers.
 */
export interface RequestFront {
  readonly httpVersion: 1 | 2;
  readonly client: string;
  readonly conn: ServerConnection;
  /** Raw `[name, value, ...]` list, so duplicate credential fields stay visible to the authenticator. */
  readonly rawHeaders: readonly string[];
  /** HTTP/1.1 request line, for the tap. */
  readonly requestLine?: { method: string; target: string };
  /** True once no answer can reach the client. */
  gone(): boolean;
  /** Answers with a refusal and ends the request. */
  refuse(status: number, headers: Record<string, string>): void;
  /** Refuses in a way that tells the client to retry elsewhere (HTTP/2 REFUSED_STREAM, RFC 9113 §8.7). */
  refuseRetry(): void;
  /** Sends the success response (with `extra` fields, lowercase names) and returns the capsule stream. */
  accept(extra?: Record<string, string>): Duplex;
  /** Ends an accepted tunnel: 'malformed' aborts it (RFC 9297 §3.3), 'close' ends it. */
  end(reason: 'malformed' | 'close'): void;
}
