import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { encodeCapsule } from '../../../../src/tunnel/codec/capsule.js';
import { encodeDatagramCapsule } from '../../../../src/tunnel/codec/datagram.js';
import { encodeVarint } from '../../../../src/tunnel/codec/varint.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../../src/tunnel/server/tunnel-server.js';
import { closed, connectUdpHeaders, h2Connect, rawRequest } from '../../../helpers/h2.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../../helpers/net.js';
import { h1Request, rawH1 } from '../../../helpers/tunnel.js';

describe('tunnel/server: request validation and malformed capsule streams', () => {
  let server: TunnelServer;
  let echo: UdpEcho;
  let session: http2.ClientHttp2Session;
  let authority: string;
  let lastClose = '';
  const path = (host: string, port: string | number) => `/.well-known/masque/udp/${host}/${port}/`;

  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const addr = await server.listen();
    authority = `127.0.0.1:${addr.port}`;
    session = await h2Connect(`http://${authority}`);
    server.on('session-close', (s: { closeReason: string }) => (lastClose = s.closeReason));
  });
  after(async () => {
    session.close();
    await server.close();
    await echo.close();
  });

  it('advertises SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3)', () => {
    assert.equal(session.remoteSettings.enableConnectProtocol, true);
  });

  const cases: { name: string; headers: () => http2.OutgoingHttpHeaders; status: number; error: string }[] = [
    { name: 'path outside the template', headers: () => connectUdpHeaders(authority, '/not/a/tunnel'), status: 404, error: 'http_request_error' },
    { name: 'port 0', headers: () => connectUdpHeaders(authority, path('127.0.0.1', 0)), status: 400, error: 'http_request_error' },
    { name: 'port 65536', headers: () => connectUdpHeaders(authority, path('127.0.0.1', 65536)), status: 400, error: 'http_request_error' },
    { name: 'port abc', headers: () => connectUdpHeaders(authority, path('127.0.0.1', 'abc')), status: 400, error: 'http_request_error' },
    { name: 'port with sign', headers: () => connectUdpHeaders(authority, path('127.0.0.1', '+53')), status: 400, error: 'http_request_error' },
    { name: 'IPv6 zone id', headers: () => connectUdpHeaders(authority, path('fe80%3A%3A1%25eth0', 53)), status: 400, error: 'http_request_error' },
    { name: 'empty host', headers: () => connectUdpHeaders(authority, path('', 53)), status: 400, error: 'http_request_error' },
    { name: 'host with bad characters', headers: () => connectUdpHeaders(authority, path('a%20b', 53)), status: 400, error: 'http_request_error' },
    { name: 'wrong :protocol', headers: () => connectUdpHeaders(authority, path('127.0.0.1', 53), { ':protocol': 'websocket' }), status: 501, error: 'http_request_error' },
    { name: 'GET instead of CONNECT', headers: () => ({ ':method': 'GET', ':path': path('127.0.0.1', 53), ':authority': authority, ':scheme': 'http' }), status: 405, error: 'http_request_error' },
    { name: 'link-local target refused by default', headers: () => connectUdpHeaders(authority, path('169.254.169.254', 53)), status: 403, error: 'destination_ip_prohibited' },
    { name: 'non-loopback target refused by default', headers: () => connectUdpHeaders(authority, path('192.0.2.1', 53)), status: 403, error: 'destination_ip_prohibited' },
    { name: 'multicast target refused', headers: () => connectUdpHeaders(authority, path('224.0.0.251', 5353)), status: 403, error: 'destination_ip_prohibited' },
  ];
  for (const c of cases) {
    it(`${c.name} -> ${c.status} with Proxy-Status error=${c.error}`, async () => {
      const r = await rawRequest(session, c.headers());
      assert.equal(r.status, c.status);
      assert.match(String(r.headers['proxy-status']), new RegExp(`^udp-tunnel; error=${c.error}`));
      assert.equal(r.endAfterHeaders, true);
    });
  }

  it('a target_host percent-encoded twice -> 400 that says so, over HTTP/2 and HTTP/1.1', async () => {
    // masque-go #128: '::1' sent as %253A%253A1 decodes once to %3A%3A1, which is no zone identifier.
    const r = await rawRequest(session, connectUdpHeaders(authority, path('%253A%253A1', echo.port)));
    assert.equal(r.status, 400);
    assert.match(String(r.headers['proxy-status']), /^udp-tunnel; error=http_request_error; details="target_host is percent-encoded twice/);
    const h1 = await rawH1(server.address().port, h1Request(path('%253A%253A1', echo.port)));
    assert.equal(h1.head?.status, 400);
    const status = h1.head?.headers.find(([k]) => k === 'proxy-status')?.[1] ?? '';
    assert.match(status, /error=http_request_error; details="target_host is percent-encoded twice/);
    assert.doesNotMatch(status, /zone/);
  });

  it('an HTTP/1.1 head with bare LF line endings gets 400 at once, not at the header timeout (RFC 9112 §2.2)', async () => {
    const timedOut = server.counters.limits.headerTime;
    // The server keeps its default 10 s header timeout; the answer is awaited, whenever it comes.
    const r = await rawH1(server.address().port, 'GET /.well-known/masque/udp/127.0.0.1/53/ HTTP/1.1\nHost: x\n\n', { waitMs: 60_000 });
    assert.equal(r.head?.status, 400);
    assert.match(r.head?.headers.find(([k]) => k === 'proxy-status')?.[1] ?? '', /error=http_request_error; details="bare CR or LF in the request head"/);
    assert.equal(r.closed, true);
    assert.equal(server.counters.limits.headerTime, timedOut, 'not cut off by the header timeout');
  });

  it('a plain CONNECT without :protocol -> 501', async () => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:53' });
    stream.on('error', () => {});
    const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    assert.equal(status, 501);
  });

  it('END_STREAM on the request headers -> 400 (a tunnel needs an open stream)', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('127.0.0.1', echo.port)), true);
    assert.equal(r.status, 400);
  });

  it('IPv6 literal percent-encoded once is decoded; ::1 is loopback and allowed', async () => {
    const echo6 = await startUdpEcho('::1');
    const r = await rawRequest(session, connectUdpHeaders(authority, path('%3A%3A1', echo6.port)));
    assert.equal(r.status, 200);
    assert.equal(r.headers['capsule-protocol'], '?1');
    r.stream.write(encodeDatagramCapsule(Buffer.from('v6')));
    const got = await new Promise<Buffer>((resolve) => r.stream.once('data', resolve));
    assert.equal(got.toString('hex'), encodeDatagramCapsule(Buffer.from('v6')).toString('hex'));
    r.stream.close();
    await echo6.close();
  });

  it('a good request gets 200, capsule-protocol ?1 and no content-length (RFC 9297 §3.2)', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('127.0.0.1', echo.port)));
    assert.equal(r.status, 200);
    assert.equal(r.headers['capsule-protocol'], '?1');
    assert.equal(r.headers['content-length'], undefined);
    // Unknown and GREASE capsules are skipped; the datagram after them is relayed.
    r.stream.write(Buffer.concat([encodeCapsule(0x17, Buffer.from('grease')), encodeCapsule(0x1234, Buffer.alloc(3)), encodeDatagramCapsule(Buffer.from('ok'))]));
    const got = await new Promise<Buffer>((resolve) => r.stream.once('data', resolve));
    assert.equal(got.toString('hex'), encodeDatagramCapsule(Buffer.from('ok')).toString('hex'));
    r.stream.close();
  });

  const malformed: { name: string; bytes: () => Buffer; end: boolean }[] = [
    { name: 'capsule longer than the limit', bytes: () => Buffer.concat([Buffer.from([0x00]), encodeVarint(1 << 20)]), end: false },
    { name: 'declared length 2^62-1', bytes: () => Buffer.from([0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), end: false },
    { name: 'stream ends inside a capsule (RFC 9297 §3.3)', bytes: () => Buffer.from([0x00, 0x05, 0x00, 0x61]), end: true },
    { name: 'DATAGRAM without a context id', bytes: () => Buffer.from([0x00, 0x00]), end: false },
    { name: 'context-0 payload over 65527 bytes', bytes: () => encodeCapsule(0, Buffer.alloc(65529)), end: false },
  ];
  for (const m of malformed) {
    it(`${m.name}: resets only that stream (PROTOCOL_ERROR); other sessions keep working`, async () => {
      const good = await rawRequest(session, connectUdpHeaders(authority, path('127.0.0.1', echo.port)));
      const bad = await rawRequest(session, connectUdpHeaders(authority, path('127.0.0.1', echo.port)));
      assert.equal(good.status, 200);
      assert.equal(bad.status, 200);
      const before = server.counters.malformedStreams;
      if (m.end) bad.stream.end(m.bytes());
      else bad.stream.write(m.bytes());
      const code = await closed(bad.stream);
      // RST_STREAM(PROTOCOL_ERROR) is sent either way; Node's client reports code 0 for a stream it had already ended.
      if (!m.end) assert.equal(code, http2.constants.NGHTTP2_PROTOCOL_ERROR);
      await waitUntil(() => server.counters.malformedStreams === before + 1, 2000, 'malformed counted');
      if (m.end) assert.match(lastClose, /^malformed: .*RFC 9297 §3\.3/);
      good.stream.write(encodeDatagramCapsule(Buffer.from('still here')));
      const got = await new Promise<Buffer>((resolve) => good.stream.once('data', resolve));
      assert.equal(got.toString('hex'), encodeDatagramCapsule(Buffer.from('still here')).toString('hex'));
      good.stream.close();
    });
  }

  it('a datagram with a non-zero context id is dropped and counted, not an error (RFC 9298 §4)', async () => {
    await waitUntil(() => server.activeSessions === 0, 2000, 'earlier sessions closed');
    const closes: { dropContextId: number }[] = [];
    server.on('session-close', (s: { dropContextId: number }) => closes.push(s));
    const r = await rawRequest(session, connectUdpHeaders(authority, path('127.0.0.1', echo.port)));
    r.stream.write(Buffer.concat([encodeCapsule(0, Buffer.from([0x02, 0x61])), encodeDatagramCapsule(Buffer.from('z'))]));
    const got = await new Promise<Buffer>((resolve) => r.stream.once('data', resolve));
    assert.equal(got.toString('hex'), encodeDatagramCapsule(Buffer.from('z')).toString('hex'));
    r.stream.close();
    await waitUntil(() => closes.length === 1, 2000, 'session close');
    assert.equal(closes[0]!.dropContextId, 1);
  });

  it('ICMP port unreachable from the target is counted and keeps the stream open (the socket stays usable, RFC 9298 §3.1)', async () => {
    // Bind a UDP port, learn it, close it: nothing listens there any more.
    const tmp = await openUdpPeer();
    const deadPort = tmp.port;
    await tmp.close();
    await waitUntil(() => server.activeSessions === 0, 2000, 'earlier sessions closed');
    const closes: { closeReason: string; targetUnreachable: number }[] = [];
    const onClose = (s: { closeReason: string; targetUnreachable: number }) => closes.push(s);
    server.on('session-close', onClose);
    const before = server.counters.targetUnreachable;
    const r = await rawRequest(session, connectUdpHeaders(authority, path('127.0.0.1', deadPort)));
    assert.equal(r.status, 200);
    // One datagram per tick of the wait, so the OS has an ICMP error to report whatever it rate-limits.
    let sent = 0;
    await waitUntil(
      () => {
        if (server.counters.targetUnreachable > before) return true;
        r.stream.write(encodeDatagramCapsule(Buffer.from(sent++ === 0 ? 'anyone?' : 'again')));
        return false;
      },
      10_000,
      'the ICMP error to be counted',
    );
    assert.equal(r.stream.closed, false);
    assert.equal(server.activeSessions, 1);
    r.stream.close();
    await closed(r.stream);
    await waitUntil(() => closes.length === 1, 2000, 'session close');
    server.off('session-close', onClose);
    assert.equal(closes[0]!.closeReason, 'stream-closed');
    assert.ok(closes[0]!.targetUnreachable > 0);
  });

  it('resolves a DNS name (localhost, from /etc/hosts) before answering', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('localhost', echo.port)));
    assert.equal(r.status, 200);
    r.stream.close();
  });
});
