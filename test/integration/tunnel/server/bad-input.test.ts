import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import http2 from 'node:http2';
import { Authenticator } from '../../../../src/tunnel/auth.js';
import { TunnelClient } from '../../../../src/tunnel/client.js';
import { encodeCapsule } from '../../../../src/tunnel/codec/capsule.js';
import { encodeVarint } from '../../../../src/tunnel/codec/varint.js';
import { buildTransport } from '../../../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { TunnelServer, H2_PREFACE } from '../../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../../helpers/net.js';
import {
  connectUdpHeaders,
  h1Request,
  h2Request,
  h2Session,
  openHandles,
  rawH1,
  waitClose,
} from '../../../helpers/tunnel.js';
import { startTestDns, type TestDnsServer } from '../../../helpers/dns-server.js';

const TOKEN = 'good-token';
const BEARER = `Bearer ${TOKEN}`;
const MAX_CAPSULE = 70_000;
const MAX_HEADER = 4096;
const HEADER_TIMEOUT_MS = 400;

/** What a bad request must produce: an exact status (optionally with a header matching a pattern), a reset, or a close. */
type Expect = { status: number; header?: [string, RegExp] } | { reset: number } | { closed: true };

interface H1Case {
  name: string;
  kind: 'h1';
  bytes: (path: (host: string, port: number | string) => string) => string | Buffer;
  expect: Expect;
}
interface H2Case {
  name: string;
  kind: 'h2';
  headers: (path: (host: string, port: number | string) => string, authority: string) => http2.OutgoingHttpHeaders;
  endStream?: boolean;
  expect: Expect;
}
interface CapsuleCase {
  name: string;
  kind: 'capsule-h2' | 'capsule-h1' | 'capsule-post';
  bytes: Buffer;
  /** End our side after writing (a stream that stops inside a capsule). */
  end?: boolean;
  expect: Expect;
}
interface RawCase {
  name: string;
  kind: 'raw';
  bytes: Buffer;
  expect: Expect;
}
type Case = H1Case | H2Case | CapsuleCase | RawCase;

const auth: Array<[string, string]> = [['Proxy-Authorization', BEARER]];
const baseH1 = (extra: Array<[string, string]> = []): Array<[string, string]> => [
  ['Host', '127.0.0.1'],
  ['Connection', 'Upgrade'],
  ['Upgrade', 'connect-udp'],
  ['Capsule-Protocol', '?1'],
  ...auth,
  ...extra,
];
const without = (name: string): Array<[string, string]> => baseH1().filter(([k]) => k.toLowerCase() !== name.toLowerCase());
const status = (s: number, header?: [string, RegExp]): Expect => (header ? { status: s, header } : { status: s });
const PROTOCOL_ERROR = http2.constants.NGHTTP2_PROTOCOL_ERROR;

// A DATAGRAM capsule whose context-0 payload is one byte over RFC 9298 §5's 65527.
const hugeDatagram = encodeCapsule(0, Buffer.concat([encodeVarint(0), Buffer.alloc(65_528)]));

const CASES: Case[] = [
  // ---- HTTP/1.1 request heads ----
  { name: 'h1: no Upgrade field', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), without('Upgrade')), expect: status(400) },
  { name: 'h1: no Connection: Upgrade', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), without('Connection')), expect: status(400) },
  { name: 'h1: Upgrade: websocket', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), [...without('Upgrade'), ['Upgrade', 'websocket']]), expect: status(400) },
  { name: 'h1: POST to the template path', kind: 'h1', bytes: (p) => h1Request('', baseH1(), `POST ${p('127.0.0.1', 9)} HTTP/1.1`), expect: status(405, ['allow', /^GET$/]) },
  { name: 'h1: PUT', kind: 'h1', bytes: (p) => h1Request('', baseH1(), `PUT ${p('127.0.0.1', 9)} HTTP/1.1`), expect: status(405) },
  { name: 'h1: CONNECT authority-form', kind: 'h1', bytes: () => h1Request('', baseH1(), 'CONNECT 127.0.0.1:9 HTTP/1.1'), expect: status(405) },
  { name: 'h1: HTTP/1.0', kind: 'h1', bytes: (p) => h1Request('', baseH1(), `GET ${p('127.0.0.1', 9)} HTTP/1.0`), expect: status(505) },
  { name: 'h1: HTTP/2.0 in a request line', kind: 'h1', bytes: (p) => h1Request('', baseH1(), `GET ${p('127.0.0.1', 9)} HTTP/2.0`), expect: status(505) },
  { name: 'h1: no Host', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), without('Host')), expect: status(400) },
  { name: 'h1: two Host fields', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), [...baseH1(), ['Host', 'other']]), expect: status(400) },
  { name: 'h1: path outside the template', kind: 'h1', bytes: () => h1Request('/not/the/template', baseH1()), expect: status(404) },
  { name: 'h1: port 0', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 0), baseH1()), expect: status(400) },
  { name: 'h1: port 65536', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 65536), baseH1()), expect: status(400) },
  { name: 'h1: port with a sign', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', '+53'), baseH1()), expect: status(400) },
  { name: 'h1: port not digits', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 'dns'), baseH1()), expect: status(400) },
  { name: 'h1: IPv6 zone identifier', kind: 'h1', bytes: (p) => h1Request(p('fe80%3A%3A1%25eth0', 53), baseH1()), expect: status(400) },
  { name: 'h1: double-encoded IPv6', kind: 'h1', bytes: (p) => h1Request(p('%253A%253A1', 53), baseH1()), expect: status(400, ['proxy-status', /percent-encoded twice/]) },
  { name: 'h1: bad percent-encoding', kind: 'h1', bytes: (p) => h1Request(p('%ZZ', 53), baseH1()), expect: status(400) },
  { name: 'h1: empty DNS label', kind: 'h1', bytes: (p) => h1Request(p('a..b', 53), baseH1()), expect: status(400) },
  { name: 'h1: Content-Length on a capsule request', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['Content-Length', '5']])), expect: status(400) },
  { name: 'h1: Transfer-Encoding', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['Transfer-Encoding', 'chunked']])), expect: status(400) },
  { name: 'h1: obs-fold line', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['X-A', 'b\r\n c']])), expect: status(400) },
  { name: 'h1: space before the colon', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['X-A ', 'b']])), expect: status(400) },
  { name: 'h1: bare LF inside the head', kind: 'h1', bytes: (p) => `GET ${p('127.0.0.1', 9)} HTTP/1.1\nHost: x\r\n\r\n`, expect: status(400) },
  { name: 'h1: bare LF line endings only', kind: 'h1', bytes: (p) => `GET ${p('127.0.0.1', 9)} HTTP/1.1\nHost: x\n\n`, expect: status(400, ['proxy-status', /bare CR or LF/]) },
  { name: 'h1: bare CR in an unfinished head', kind: 'h1', bytes: (p) => `GET ${p('127.0.0.1', 9)} HTTP/1.1\rHost: x`, expect: status(400, ['proxy-status', /bare CR or LF/]) },
  { name: 'h1: garbage request line', kind: 'h1', bytes: () => 'HELLO\r\n\r\n', expect: status(400) },
  { name: 'h1: control character in a value', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['X-A', 'b\x01c']])), expect: status(400) },
  { name: 'h1: head over the size limit', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['X-Big', 'a'.repeat(MAX_HEADER)]])), expect: status(431) },
  { name: 'h1: POST to a POST route', kind: 'h1', bytes: () => h1Request('', baseH1(), 'POST /post HTTP/1.1'), expect: status(400) },
  { name: 'h1: link-local target', kind: 'h1', bytes: (p) => h1Request(p('169.254.169.254', 53), baseH1()), expect: status(403, ['proxy-status', /error=destination_ip_prohibited/]) },
  { name: 'h1: multicast target', kind: 'h1', bytes: (p) => h1Request(p('224.0.0.251', 5353), baseH1()), expect: status(403) },
  { name: 'h1: broadcast target', kind: 'h1', bytes: (p) => h1Request(p('255.255.255.255', 53), baseH1()), expect: status(403) },
  { name: 'h1: unspecified target', kind: 'h1', bytes: (p) => h1Request(p('0.0.0.0', 53), baseH1()), expect: status(403) },
  { name: 'h1: non-loopback target without --allow', kind: 'h1', bytes: (p) => h1Request(p('192.0.2.1', 53), baseH1()), expect: status(403) },
  { name: 'h1: IPv4-mapped link-local', kind: 'h1', bytes: (p) => h1Request(p('%3A%3Affff%3A169.254.169.254', 53), baseH1()), expect: status(403) },
  { name: 'h1: unknown DNS name', kind: 'h1', bytes: (p) => h1Request(p('nope.test', 53), baseH1()), expect: status(502, ['proxy-status', /error=dns_error; rcode="NXDOMAIN"/]) },
  { name: 'h1: DNS timeout', kind: 'h1', bytes: (p) => h1Request(p('slow.test', 53), baseH1()), expect: status(504, ['proxy-status', /error=dns_timeout/]) },
  { name: 'h1: no credentials', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), without('Proxy-Authorization')), expect: status(407, ['proxy-authenticate', /Bearer realm="udp-tunnel"/]) },
  { name: 'h1: wrong token', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), [...without('Proxy-Authorization'), ['Proxy-Authorization', 'Bearer nope']]), expect: status(407) },
  { name: 'h1: two credential fields', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), baseH1([['Authorization', BEARER]])), expect: status(407) },
  {
    name: 'h1: Basic with a wrong password',
    kind: 'h1',
    bytes: (p) => h1Request(p('127.0.0.1', 9), [...without('Proxy-Authorization'), ['Proxy-Authorization', `Basic ${Buffer.from('alice:nope').toString('base64')}`]]),
    expect: status(407),
  },
  { name: 'h1: scheme without credentials', kind: 'h1', bytes: (p) => h1Request(p('127.0.0.1', 9), [...without('Proxy-Authorization'), ['Proxy-Authorization', 'Bearer']]), expect: status(407) },
  { name: 'h1: slow request head', kind: 'h1', bytes: (p) => `GET ${p('127.0.0.1', 9)} HTTP/1.1\r\nHost: 127.0.0.1\r\n`, expect: { closed: true } },

  // ---- HTTP/2 requests ----
  { name: 'h2: GET', kind: 'h2', headers: (p, a) => ({ ':method': 'GET', ':path': p('127.0.0.1', 9), ':authority': a, authorization: BEARER }), expect: status(405, ['allow', /CONNECT/]) },
  { name: 'h2: DELETE', kind: 'h2', headers: (p, a) => ({ ':method': 'DELETE', ':path': p('127.0.0.1', 9), ':authority': a, authorization: BEARER }), expect: status(405) },
  { name: 'h2: plain CONNECT without :protocol', kind: 'h2', headers: (_p, a) => ({ ':method': 'CONNECT', ':authority': a, authorization: BEARER }), expect: status(501) },
  { name: 'h2: :protocol websocket', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 9), { ':protocol': 'websocket', authorization: BEARER }), expect: status(501) },
  { name: 'h2: path outside the template', kind: 'h2', headers: (_p, a) => connectUdpHeaders(a, '/nope', { authorization: BEARER }), expect: status(404) },
  { name: 'h2: port 0', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 0), { authorization: BEARER }), expect: status(400) },
  { name: 'h2: port 99999', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 99999), { authorization: BEARER }), expect: status(400) },
  { name: 'h2: zone identifier', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('fe80%3A%3A1%25lo', 53), { authorization: BEARER }), expect: status(400, ['proxy-status', /zone identifiers/]) },
  {
    name: 'h2: double-encoded IPv6',
    kind: 'h2',
    headers: (p, a) => connectUdpHeaders(a, p('%253A%253A1', 53), { authorization: BEARER }),
    expect: status(400, ['proxy-status', /percent-encoded twice/]),
  },
  { name: 'h2: no credentials', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 9)), expect: status(401, ['www-authenticate', /Bearer realm="udp-tunnel"/]) },
  { name: 'h2: wrong token', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 9), { authorization: 'Bearer wrong' }), expect: status(401) },
  {
    name: 'h2: Basic with an unknown user',
    kind: 'h2',
    headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 9), { 'proxy-authorization': `Basic ${Buffer.from('mallory:wonder').toString('base64')}` }),
    expect: status(401),
  },
  { name: 'h2: POST to an unknown route', kind: 'h2', headers: (_p, a) => ({ ':method': 'POST', ':path': '/elsewhere', ':authority': a, authorization: BEARER }), expect: status(404) },
  {
    name: 'h2: POST with Content-Length',
    kind: 'h2',
    headers: (_p, a) => ({ ':method': 'POST', ':path': '/post', ':authority': a, 'content-length': '10', authorization: BEARER }),
    expect: status(400),
  },
  { name: 'h2: CONNECT-UDP that ends its stream', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('127.0.0.1', 9), { authorization: BEARER }), endStream: true, expect: status(400) },
  { name: 'h2: link-local target', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('169.254.169.254', 80), { authorization: BEARER }), expect: status(403, ['proxy-status', /destination_ip_prohibited/]) },
  { name: 'h2: IPv6 unspecified target', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('%3A%3A', 53), { authorization: BEARER }), expect: status(403) },
  { name: 'h2: IPv6 multicast target', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('ff02%3A%3A1', 53), { authorization: BEARER }), expect: status(403) },
  { name: 'h2: unknown DNS name', kind: 'h2', headers: (p, a) => connectUdpHeaders(a, p('nope.test', 53), { authorization: BEARER }), expect: status(502) },

  // ---- capsule streams on accepted tunnels ----
  { name: 'h2 tunnel: capsule longer than the limit', kind: 'capsule-h2', bytes: Buffer.concat([encodeVarint(0), encodeVarint(MAX_CAPSULE + 1)]), expect: { reset: PROTOCOL_ERROR } },
  { name: 'h2 tunnel: stream ends inside a capsule', kind: 'capsule-h2', bytes: Buffer.from([0x00, 0x05, 0x00, 0x61]), end: true, expect: { reset: PROTOCOL_ERROR } },
  { name: 'h2 tunnel: context-0 payload over 65527 bytes', kind: 'capsule-h2', bytes: hugeDatagram, expect: { reset: PROTOCOL_ERROR } },
  { name: 'h2 tunnel: DATAGRAM capsule without a context ID', kind: 'capsule-h2', bytes: Buffer.from([0x00, 0x00]), expect: { reset: PROTOCOL_ERROR } },
  { name: 'h2 tunnel: 8-byte capsule length', kind: 'capsule-h2', bytes: Buffer.from([0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), expect: { reset: PROTOCOL_ERROR } },
  { name: 'POST tunnel: capsule longer than the limit', kind: 'capsule-post', bytes: Buffer.concat([encodeVarint(0), encodeVarint(MAX_CAPSULE + 1)]), expect: { reset: PROTOCOL_ERROR } },
  { name: 'h1 tunnel: capsule longer than the limit', kind: 'capsule-h1', bytes: Buffer.concat([encodeVarint(0x17), encodeVarint(1 << 20)]), expect: { closed: true } },
  { name: 'h1 tunnel: connection ends inside a capsule', kind: 'capsule-h1', bytes: Buffer.from([0x00, 0x09, 0x00]), end: true, expect: { closed: true } },

  // ---- raw bytes on the listener ----
  { name: 'h2c preface then an invalid frame', kind: 'raw', bytes: Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 4, 0xff, 0, 0, 0, 0, 9, 1, 2, 3, 4, 0, 0, 0x10, 1, 0, 0, 0, 0])]), expect: { closed: true } },
  { name: 'binary noise instead of a request', kind: 'raw', bytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]), expect: status(400) },
];

describe('tunnel/server: bad input against a live server', () => {
  let echo: UdpEcho;
  let dns: TestDnsServer;
  let server: TunnelServer;
  let port: number;
  let authority: string;
  let session: http2.ClientHttp2Session | null = null;
  // Opened at the first HTTP/2 case: an idle connection would be cut off by the header timeout.
  const h2 = async (): Promise<http2.ClientHttp2Session> => (session ??= await h2Session(`http://${authority}`));
  const handlesBefore = openHandles();
  const targetPath = (host: string, p: number | string): string => `/.well-known/masque/udp/${host}/${p}/`;

  before(async () => {
    echo = await startUdpEcho('127.0.0.1');
    dns = await startTestDns({ 'echo.test': { a: ['127.0.0.1'] }, 'slow.test': 'silent' });
    server = new TunnelServer({
      host: '127.0.0.1',
      port: 0,
      policy: new TargetPolicy(),
      authenticator: new Authenticator({ tokens: [TOKEN], basic: ['alice:wonder'] }),
      postRoutes: new Map([['/post', { host: '127.0.0.1', port: echo.port }]]),
      maxCapsuleLength: MAX_CAPSULE,
      maxHeaderSize: MAX_HEADER,
      headerTimeoutMs: HEADER_TIMEOUT_MS,
      dnsServers: [dns.server],
      dnsTimeoutMs: 300,
    });
    port = (await server.listen()).port;
    authority = `127.0.0.1:${port}`;
  });

  after(async () => {
    session?.destroy();
    await server.close();
    await echo.close();
    await dns.close();
  });

  it(`has at least 50 cases (${CASES.length})`, () => {
    assert.ok(CASES.length >= 50, `only ${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'case names are unique');
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const expect = c.expect;
      if (c.kind === 'h1' || c.kind === 'raw') {
        const bytes = c.kind === 'h1' ? c.bytes(targetPath) : c.bytes;
        const r = await rawH1(port, bytes, { waitMs: 3000 });
        if ('status' in expect) {
          assert.ok(r.head, 'a response head arrived');
          assert.equal(r.head.status, expect.status);
          if (expect.header) {
            const v = r.head.headers.find(([k]) => k === expect.header![0])?.[1] ?? '';
            assert.match(v, expect.header[1]);
          }
          // The refusal also ends the connection (Connection: close).
          assert.equal(r.closed, true, 'connection closed after the refusal');
        } else if ('closed' in expect) {
          assert.equal(r.head, null, 'no response head');
          assert.equal(r.closed, true, 'server closed the connection');
        } else {
          assert.fail('raw cases expect a status or a close');
        }
        return;
      }
      if (c.kind === 'h2') {
        const r = await h2Request(await h2(), c.headers(targetPath, authority), { endStream: c.endStream ?? false });
        r.stream.close();
        assert.ok('status' in expect);
        assert.equal(r.status, expect.status);
        if (expect.header) assert.match(String(r.headers[expect.header[0]] ?? ''), expect.header[1]);
        return;
      }
      if (c.kind === 'capsule-h2' || c.kind === 'capsule-post') {
        const headers =
          c.kind === 'capsule-h2'
            ? connectUdpHeaders(authority, targetPath('127.0.0.1', echo.port), { authorization: BEARER })
            : { ':method': 'POST', ':path': '/post', ':authority': authority, authorization: BEARER };
        const r = await h2Request(await h2(), headers);
        assert.equal(r.status, 200);
        const closed = waitClose(r.stream, 3000);
        if (c.end) r.stream.end(c.bytes);
        else r.stream.write(c.bytes);
        assert.equal(await closed, true, 'stream closed');
        assert.ok('reset' in expect);
        assert.equal(r.stream.rstCode, expect.reset);
        return;
      }
      // capsule-h1
      const r = await rawH1(port, h1Request(targetPath('127.0.0.1', echo.port), baseH1()), { keepOpen: true });
      assert.equal(r.head?.status, 101);
      const closed = waitClose(r.socket, 3000);
      if (c.end) r.socket.end(c.bytes);
      else r.socket.write(c.bytes);
      r.socket.resume();
      assert.equal(await closed, true, 'server closed the upgraded connection');
      r.socket.destroy();
    });
  }

  it('counted what the limits and checks refused', () => {
    const n = (pred: (c: Case) => boolean): number => CASES.filter(pred).length;
    assert.equal(server.counters.limits.headerSize, 1);
    assert.equal(server.counters.limits.headerTime, 1);
    assert.equal(server.counters.limits.capsuleLength, n((c) => c.name.includes('longer than the limit')) + 1);
    assert.equal(server.counters.authFailures, n((c) => /credential|token|Basic|scheme without/.test(c.name)));
    assert.equal(server.counters.malformedStreams, n((c) => c.kind.startsWith('capsule')));
    assert.equal(server.counters.refused[403], n((c) => 'status' in c.expect && c.expect.status === 403));
    assert.equal(server.counters.refused[400], n((c) => 'status' in c.expect && c.expect.status === 400));
    // The noise case starts like a TLS ClientHello: answered 400 at once and also counted as a scheme mismatch.
    assert.equal(server.counters.schemeMismatches, 1);
  });

  it('still serves good clients over HTTP/2 and HTTP/1.1 afterwards, then holds no connection', async () => {
    for (const http of ['2', '1.1'] as const) {
      const transport = buildTransport({ proxy: `http://${authority}`, target: { host: 'echo.test', port: echo.port }, http, token: TOKEN });
      const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport });
      const local = await client.start();
      const peer = await openUdpPeer();
      try {
        await peer.send(`still alive ${http}`, local.port, '127.0.0.1');
        const [reply] = await peer.waitFor(1);
        assert.equal(reply!.toString(), `still alive ${http}`);
      } finally {
        await peer.close();
        await client.close();
      }
    }
    session?.close();
    await waitUntil(() => server.openConnections === 0 && server.activeSessions === 0, 3000, 'server connections closed');
    await waitUntil(() => openHandles().tcp <= handlesBefore.tcp + 1, 3000, 'client sockets released');
  });
});
