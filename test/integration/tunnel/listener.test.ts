import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import { Listener, type ListenerConnection, type ListenerCount, type ListenerOptions } from '../../../src/tunnel/server/listener.js';
import { generateCertificate } from '../../../src/tunnel/tls-cert.js';
import { waitUntil } from '../../helpers/net.js';
import { connectTcp } from '../../helpers/tcp-peer.js';

/** The owner's per-connection state in these tests: a number, so a test can tell connections apart. */
interface Owner {
  listener: Listener<number>;
  port: number;
  counts: Record<ListenerCount, number>;
  h1: Array<{ conn: ListenerConnection<number>; initial: Buffer }>;
  streams: Array<{ conn: ListenerConnection<number>; path: string }>;
}

/** A Listener on 127.0.0.1:0 whose HTTP/1.1 connections answer 204 after their first bytes and whose streams answer 200. */
async function startOwner(options: Partial<ListenerOptions<number>> = {}): Promise<Owner> {
  let next = 1;
  const counts: Record<ListenerCount, number> = { connection: 0, dropped: 0, h1: 0, h2: 0, 'header-timeout': 0, 'tls-error': 0, 'scheme-mismatch': 0, 'idle-close': 0, 'settings-timeout': 0 };
  const owner: Partial<Owner> & Pick<Owner, 'counts' | 'h1' | 'streams'> = { counts, h1: [], streams: [] };
  const listener = new Listener<number>({
    host: '127.0.0.1',
    port: 0,
    maxConnections: 100,
    headerTimeoutMs: 0,
    connectionIdleTimeoutMs: 0,
    settingsTimeoutMs: 0,
    h2: http2.createServer(),
    hooks: {
      state: () => next++,
      h1: (conn, initial) => {
        owner.h1.push({ conn, initial });
        conn.requestStarted();
        conn.socket.end('HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n');
      },
      h2Stream: (conn, stream, headers) => {
        owner.streams.push({ conn, path: String(headers[':path']) });
        stream.respond({ ':status': 200 }, { endStream: true });
      },
      count: (what) => counts[what]++,
      error: () => {},
    },
    ...options,
  });
  const addr = await listener.listen();
  return Object.assign(owner, { listener, port: addr.port });
}

describe('Listener (serve and the inspect relay share it)', () => {
  it('hands HTTP/1.1 connections over with their first bytes, and h2c streams with their connection', async () => {
    const o = await startOwner();
    try {
      const peer = await connectTcp('127.0.0.1', o.port);
      peer.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await peer.closed;
      assert.match(peer.received().toString('latin1'), /^HTTP\/1\.1 204 /);
      assert.equal(o.h1.length, 1);
      assert.match(o.h1[0]?.initial.toString('latin1') ?? '', /^GET \/ HTTP\/1\.1\r\n/);

      const session = http2.connect(`http://127.0.0.1:${o.port}`);
      for (const path of ['/a', '/b']) {
        const req = session.request({ ':path': path });
        req.resume();
        const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
        assert.equal(headers[':status'], 200);
      }
      session.close();
      assert.deepEqual(o.streams.map((s) => s.path), ['/a', '/b']);
      // One connection, so one state for both streams, and not the HTTP/1.1 connection's.
      assert.equal(o.streams[0]?.conn, o.streams[1]?.conn);
      assert.notEqual(o.streams[0]?.conn.state, o.h1[0]?.conn.state);
      assert.deepEqual([o.counts.connection, o.counts.h1, o.counts.h2], [2, 1, 1]);
    } finally {
      await o.listener.close();
    }
  });

  it('cuts off a connection that sends no first request within headerTimeoutMs, and only that one', async () => {
    const o = await startOwner({ headerTimeoutMs: 1000 });
    try {
      const busy = http2.connect(`http://127.0.0.1:${o.port}`);
      busy.on('error', () => {});
      const req = busy.request({ ':path': '/busy' });
      req.resume();
      await once(req, 'response');
      // A silent witness connected after busy's first stream: its timeout proves busy's deadline has passed too.
      const witness = await connectTcp('127.0.0.1', o.port);
      await witness.closed;
      assert.equal(busy.closed || busy.destroyed, false);
      assert.equal(o.counts['header-timeout'], 1);
      busy.destroy();
    } finally {
      await o.listener.close();
    }
  });

  it('closes connections over maxConnections on accept and counts them; close() ends every connection', async () => {
    const o = await startOwner({ maxConnections: 1 });
    try {
      const first = await connectTcp('127.0.0.1', o.port);
      await waitUntil(() => o.counts.connection === 1, 5000, 'first connection accepted');
      const second = await connectTcp('127.0.0.1', o.port);
      await second.closed;
      await waitUntil(() => o.counts.dropped === 1, 5000, 'dropped connection');
      assert.equal(o.listener.openConnections, 1);
      await o.listener.close();
      await first.closed;
      await waitUntil(() => o.listener.openConnections === 0, 5000, 'no connection left');
    } finally {
      await o.listener.close();
    }
  });

  it('answers a TLS ClientHello on the cleartext listener with a 400 that names http:// and counts it', async () => {
    const o = await startOwner({ headerTimeoutMs: 60_000 });
    try {
      const peer = await connectTcp('127.0.0.1', o.port);
      // The start of a ClientHello record (RFC 8446 §5.1): handshake (22), legacy version 3.1, length, then more.
      peer.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00, 0x00, 0xec, 0x03, 0x03]));
      await peer.closed;
      assert.match(peer.received().toString('latin1'), /^HTTP\/1\.1 400 [^]*use http:\/\//);
      assert.deepEqual([o.counts['scheme-mismatch'], o.counts.h1, o.h1.length], [1, 0, 0]);
    } finally {
      await o.listener.close();
    }
  });

  it('answers cleartext HTTP on the TLS listener with a TLS protocol_version alert and counts it', async () => {
    const cert = await generateCertificate({});
    const o = await startOwner({ tls: { cert: cert.cert, key: cert.key }, headerTimeoutMs: 60_000 });
    try {
      for (const request of ['GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n']) {
        const peer = await connectTcp('127.0.0.1', o.port);
        peer.socket.write(request);
        await peer.closed;
        // RFC 8446 §6: alert record, fatal (2), protocol_version (70).
        assert.deepEqual([...peer.received()], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
      }
      assert.deepEqual([o.counts['scheme-mismatch'], o.counts['tls-error'], o.counts.h1, o.counts.h2], [2, 2, 0, 0]);
    } finally {
      await o.listener.close();
    }
  });
});
