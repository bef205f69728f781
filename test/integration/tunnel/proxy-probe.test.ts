import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ProxyConfig } from '../../../src/tunnel/client-config.js';
import { ErrorCodes } from '../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { probeProxy } from '../../../src/tunnel/proxy-probe.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { generateCertificate, type GeneratedCertificate } from '../../../src/tunnel/tls-cert.js';
import { waitUntil } from '../../helpers/net.js';

const TARGET = { host: '127.0.0.1', port: 9 };

/** A raw TCP server on 127.0.0.1:0 that runs `onSocket` for each connection and remembers which are still open. */
async function rawServer(onSocket: (s: net.Socket) => void): Promise<{ port: number; open: Set<net.Socket>; accepted: () => number; close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    open.add(s);
    s.on('error', () => {});
    s.once('close', () => open.delete(s));
    onSocket(s);
    // Reading is what lets the server see the client's FIN.
    s.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    open,
    accepted: () => accepted,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on: a server bound to port 0 and closed again. */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('probeProxy against serve', () => {
  let cert: GeneratedCertificate;
  let ca: GeneratedCertificate;
  let leaf: GeneratedCertificate;
  let cleartext: TunnelServer;
  let cleartext6: TunnelServer;
  let secure: TunnelServer;
  let signed: TunnelServer;
  let clearPort: number;
  let clear6Port: number;
  let securePort: number;
  let signedPort: number;
  let mtls: TunnelServer;
  let mtlsPort: number;
  let client: GeneratedCertificate;

  before(async () => {
    cert = await generateCertificate({});
    ca = await generateCertificate({ isCa: true, commonName: 'probe test CA' });
    leaf = await generateCertificate({ issuer: { cert: ca.cert, key: ca.key } });
    // Long header timeouts: a wrong-scheme answer must come from the mismatch, not from the server giving up.
    cleartext = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 60_000 });
    cleartext6 = new TunnelServer({ host: '::1', port: 0, policy: new TargetPolicy() });
    secure = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 60_000, tls: { cert: cert.cert, key: cert.key } });
    signed = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: leaf.cert, key: leaf.key } });
    clearPort = (await cleartext.listen()).port;
    clear6Port = (await cleartext6.listen()).port;
    securePort = (await secure.listen()).port;
    signedPort = (await signed.listen()).port;
    client = await generateCertificate({ issuer: { cert: ca.cert, key: ca.key }, commonName: 'probe client' });
    mtls = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: leaf.cert, key: leaf.key, ca: ca.cert } });
    mtlsPort = (await mtls.listen()).port;
  });

  after(async () => {
    await Promise.all([cleartext.close(), cleartext6.close(), secure.close(), signed.close(), mtls.close()]);
  });

  it('h2c: ok, extended CONNECT enabled, no TLS', async () => {
    const r = await probeProxy({ proxy: `http://127.0.0.1:${clearPort}`, target: TARGET });
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.transport, 'h2c');
    assert.equal(r.tls, false);
    assert.equal(r.extendedConnect, true);
    assert.equal(r.tlsVersion, undefined);
    assert.equal(r.error, undefined);
    assert.equal(typeof r.elapsedMs, 'number');
  });

  it('h2c over ::1: ok', async () => {
    const r = await probeProxy({ proxy: `http://[::1]:${clear6Port}`, target: TARGET });
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.extendedConnect, true);
  });

  it('h2 over TLS with a pin: ok, TLS 1.3, ALPN h2, extended CONNECT enabled', async () => {
    const r = await probeProxy({ proxy: `https://127.0.0.1:${securePort}`, target: TARGET, tls: { pins: [cert.pin] } });
    assert.equal(r.ok, true, r.error?.message);
    assert.deepEqual([r.transport, r.tls, r.tlsVersion, r.alpn, r.extendedConnect], ['h2', true, 'TLSv1.3', 'h2', true]);
  });

  it('h2 over TLS trusted through a CA: ok', async () => {
    const r = await probeProxy({ proxy: `https://127.0.0.1:${signedPort}`, target: TARGET, tls: { ca: ca.cert } });
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.alpn, 'h2');
  });

  it('HTTP/1.1 cleartext and over TLS: ok, no SETTINGS needed', async () => {
    const clear = await probeProxy({ proxy: `http://127.0.0.1:${clearPort}`, target: TARGET, http: '1.1' });
    assert.equal(clear.ok, true, clear.error?.message);
    assert.deepEqual([clear.transport, clear.tls], ['http/1.1', false]);
    const tls = await probeProxy({ proxy: `https://127.0.0.1:${securePort}`, target: TARGET, http: '1.1', tls: { pins: [cert.pin] } });
    assert.equal(tls.ok, true, tls.error?.message);
    assert.deepEqual([tls.transport, tls.tlsVersion, tls.alpn, tls.extendedConnect], ['http/1.1', 'TLSv1.3', 'http/1.1', undefined]);
  });

  it('an untrusted certificate: tls, with the certificate hint', async () => {
    const r = await probeProxy({ proxy: `https://127.0.0.1:${securePort}`, target: TARGET });
    assert.equal(r.ok, false);
    assert.equal(r.problem, 'tls');
    assert.equal(r.error?.code, ErrorCodes.TLS);
    assert.match(r.hint!, /set tls\.ca, tls\.pins or tls\.insecure/);
    assert.deepEqual(r.hintOptions, ['tls.ca', 'tls.pins', 'tls.insecure']);
  });

  it('a pin that does not match: tls, naming the pin the proxy presented', async () => {
    const r = await probeProxy({ proxy: `https://127.0.0.1:${securePort}`, target: TARGET, tls: { pins: [leaf.pin] } });
    assert.equal(r.problem, 'tls');
    assert.ok(r.hint!.includes(cert.pin), r.hint);
    assert.deepEqual(r.hintOptions, ['tls.pins']);
  });

  for (const httpVersion of ['2', '1.1'] as const) {
    it(`HTTP/${httpVersion}: a proxy that wants a client certificate (TLS 1.3 alert after the handshake): tls, cert hint`, async () => {
      const r = await probeProxy({ proxy: `https://127.0.0.1:${mtlsPort}`, target: TARGET, http: httpVersion, tls: { ca: ca.cert }, connectTimeoutMs: 60_000 });
      assert.equal(r.ok, false);
      assert.equal(r.problem, 'tls');
      assert.deepEqual(r.hintOptions, ['tls.cert', 'tls.key']);
      const ok = await probeProxy({ proxy: `https://127.0.0.1:${mtlsPort}`, target: TARGET, http: httpVersion, tls: { ca: ca.cert, cert: client.cert, key: client.key } });
      assert.equal(ok.ok, true, ok.error?.message);
    });
  }

  for (const httpVersion of ['2', '1.1'] as const) {
    it(`HTTP/${httpVersion}: https:// to cleartext serve says "use http://" (not a timeout)`, async () => {
      const r = await probeProxy({ proxy: `https://127.0.0.1:${clearPort}`, target: TARGET, http: httpVersion, connectTimeoutMs: 60_000 });
      assert.equal(r.ok, false);
      assert.equal(r.problem, 'scheme-mismatch');
      assert.equal(r.error?.code, ErrorCodes.TLS);
      assert.equal(r.hint, `the proxy speaks cleartext HTTP: use http://127.0.0.1:${clearPort}`);
    });

    it(`HTTP/${httpVersion}: http:// to TLS serve says "the proxy speaks TLS: use https://" (not a timeout)`, async () => {
      const r = await probeProxy({ proxy: `http://127.0.0.1:${securePort}`, target: TARGET, http: httpVersion, connectTimeoutMs: 60_000 });
      assert.equal(r.ok, false);
      assert.equal(r.problem, 'scheme-mismatch');
      assert.equal(r.error?.code, ErrorCodes.PROXY_UNREACHABLE);
      assert.equal(r.hint, `the proxy speaks TLS: use https://127.0.0.1:${securePort}`);
    });
  }

  it('opens one connection and no stream on serve', async () => {
    const before = { connections: cleartext.counters.connections, requests: cleartext.counters.requests };
    const r = await probeProxy({ proxy: `http://127.0.0.1:${clearPort}`, target: TARGET });
    assert.equal(r.ok, true);
    assert.equal(cleartext.counters.connections, before.connections + 1);
    assert.equal(cleartext.counters.requests, before.requests);
  });
});

describe('probeProxy against other servers', () => {
  it('a refused port: connection-refused, "is udp-tunnel serve running on ...?"', async () => {
    const port = await refusedPort();
    const r = await probeProxy({ proxy: `http://127.0.0.1:${port}`, target: TARGET });
    assert.equal(r.ok, false);
    assert.equal(r.problem, 'connection-refused');
    assert.equal(r.error?.code, ErrorCodes.PROXY_UNREACHABLE);
    assert.equal(r.hint, `is udp-tunnel serve running on 127.0.0.1:${port}?`);
  });

  it('a plain node:http2 server (extended CONNECT not enabled): not ok for CONNECT-UDP, ok for POST mode', async () => {
    const server = http2.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const proxy = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      const r = await probeProxy({ proxy, target: TARGET });
      assert.equal(r.ok, false);
      assert.equal(r.extendedConnect, false);
      assert.equal(r.problem, 'no-extended-connect');
      assert.equal(r.error?.code, ErrorCodes.CONNECT_PROTOCOL_DISABLED);
      assert.deepEqual(r.hintOptions, ['http', 'mode']);
      const post = await probeProxy({ proxy, mode: 'post' });
      assert.equal(post.ok, true, post.error?.message);
      assert.equal(post.extendedConnect, false);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('an HTTP/1.1-only server: no-h2 for HTTP/2, ok for HTTP/1.1', async () => {
    const server = http.createServer((_req, res) => res.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const proxy = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      const r = await probeProxy({ proxy, target: TARGET });
      assert.equal(r.problem, 'no-h2');
      assert.equal(r.error?.code, ErrorCodes.CONNECT_PROTOCOL_DISABLED);
      const h1 = await probeProxy({ proxy, target: TARGET, http: '1.1' });
      assert.equal(h1.ok, true, h1.error?.message);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a SETTINGS frame over the 16,384-byte frame limit is refused from its header (RFC 9113 §4.2), socket closed', async () => {
    // Header only: a length of 16,386 (a multiple of 6) that the probe must refuse without waiting for the payload.
    const header = Buffer.from([0x00, 0x40, 0x02, 0x04, 0x00, 0, 0, 0, 0]);
    const srv = await rawServer((s) => s.write(header));
    try {
      const r = await probeProxy({ proxy: `http://127.0.0.1:${srv.port}`, target: TARGET, connectTimeoutMs: 60_000 });
      assert.equal(r.problem, 'protocol');
      assert.equal(r.error?.code, ErrorCodes.HTTP2_PROTOCOL);
      assert.match(r.error!.message, /SETTINGS payload of 16386 bytes/);
      await waitUntil(() => srv.open.size === 0, 5000, 'server side closed');
    } finally {
      await srv.close();
    }
  });

  it('a first frame that is not SETTINGS is a protocol error', async () => {
    // RFC 9113 §6.7: a PING frame, not allowed before SETTINGS.
    const ping = Buffer.concat([Buffer.from([0, 0, 8, 0x06, 0, 0, 0, 0, 0]), Buffer.alloc(8)]);
    const srv = await rawServer((s) => s.write(ping));
    try {
      const r = await probeProxy({ proxy: `http://127.0.0.1:${srv.port}`, target: TARGET, connectTimeoutMs: 60_000 });
      assert.equal(r.problem, 'protocol');
      assert.match(r.error!.message, /first frame has type 6/);
    } finally {
      await srv.close();
    }
  });

  it('a server that closes without answering: unreachable, with the TLS hint', async () => {
    const srv = await rawServer((s) => s.once('data', () => s.end()));
    try {
      const r = await probeProxy({ proxy: `http://127.0.0.1:${srv.port}`, target: TARGET, connectTimeoutMs: 60_000 });
      assert.equal(r.problem, 'unreachable');
      assert.match(r.hint!, /if it speaks TLS, use https:\/\/127\.0\.0\.1:\d+/);
    } finally {
      await srv.close();
    }
  });

  it('a silent server: timeout; an aborted probe: aborted; both close their socket', async () => {
    const srv = await rawServer(() => {});
    try {
      const timedOut = await probeProxy({ proxy: `http://127.0.0.1:${srv.port}`, target: TARGET }, { timeoutMs: 200 });
      assert.equal(timedOut.problem, 'timeout');
      assert.equal(timedOut.error?.code, ErrorCodes.TIMEOUT);
      const controller = new AbortController();
      const pending = probeProxy({ proxy: `http://127.0.0.1:${srv.port}`, target: TARGET, connectTimeoutMs: 60_000 }, { signal: controller.signal });
      await waitUntil(() => srv.accepted() === 2, 5000, 'second connection');
      controller.abort();
      const aborted = await pending;
      assert.equal(aborted.problem, 'aborted');
      assert.equal(aborted.error?.code, ErrorCodes.CLOSED);
      await waitUntil(() => srv.open.size === 0, 5000, 'server sides closed');
    } finally {
      await srv.close();
    }
  });

  it('an invalid configuration rejects', async () => {
    const bad: ProxyConfig = { proxy: 'ftp://127.0.0.1:1', target: TARGET };
    await assert.rejects(probeProxy(bad), (err: { code?: string }) => err.code === ErrorCodes.INVALID_OPTION);
  });
});
