import { Buffer } from 'node:buffer';
import type net from 'node:net';
import type tls from 'node:tls';

/** RFC 9113 §3.4: the client connection preface; anything else on a cleartext listener is HTTP/1.1 (inspect reads it too). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** ALPN protocols offered by a TLS listener that serves HTTP/2 and HTTP/1.1 side by side, HTTP/2 preferred. */
export const ALPN_H2_AND_HTTP1: readonly string[] = ['h2', 'http/1.1'];

/** The HTTP version a client connection speaks. */
export type WireHttpVersion = 'h2' | 'http/1.1';

/**
 * Cleartext listener: reads the first bytes of `socket`. The HTTP/2 preface means h2c with prior knowledge
 * (RFC 9113 §3.3), anything else HTTP/1.1. Calls `decided` once, with the socket paused and no data listener left:
 * for 'h2' the bytes read are put back (an HTTP/2 session reads the preface itself), for 'http/1.1' they are handed
 * over as `initial`. Holds at most one read past the preface length while undecided.
 */
export function detectCleartextHttpVersion(socket: net.Socket, decided: (version: WireHttpVersion, initial: Buffer) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const n = Math.min(buf.length, H2_PREFACE.length);
    const isPrefix = buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isPrefix && buf.length < H2_PREFACE.length) return;
    socket.removeListener('data', onData);
    socket.pause();
    if (isPrefix) {
      socket.unshift(buf);
      decided('h2', Buffer.alloc(0));
    } else {
      decided('http/1.1', buf);
    }
  };
  socket.on('data', onData);
}

/** TLS listener: RFC 7301 §3.2, ALPN picked the protocol; no ALPN at all means HTTP/1.1 (RFC 9113 §3.2 needs "h2"). */
export function tlsHttpVersion(socket: tls.TLSSocket): WireHttpVersion {
  return socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1';
}
