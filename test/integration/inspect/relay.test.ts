import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { encodeCapsule } from '../../../src/tunnel/codec/capsule.js';
import { encodeDatagramCapsule } from '../../../src/tunnel/codec/datagram.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { tapChannel, type TapMessage } from '../../../src/tunnel/diagnostics.js';
import type { CapsuleEvent, CloseEvent, ErrorEvent, InspectEvent, RequestEvent, ResponseEvent } from '../../../src/inspect/events.js';
import { InspectRelay, type InspectRelayOptions } from '../../../src/inspect/relay.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openRawTunnel, startScriptedUpstream } from '../../helpers/h2-peer.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';
import { testCert } from '../../helpers/stack.js';

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed * 7 + i * 13) & 0xff;
  return b;
}

/** A relay in front of `upstream` that collects its events. */
async function startRelay(upstream: string, options: Partial<InspectRelayOptions> = {}): Promise<{ relay: InspectRelay; events: InspectEvent[]; origin: string }> {
  const events: InspectEvent[] = [];
  const relay = new InspectRelay({ host: '127.0.0.1', port: 0, upstream, onEvent: (ev) => events.push(ev), ...options });
  const addr = await relay.listen();
  return { relay, events, origin: `${options.tls ? 'https' : 'http'}://127.0.0.1:${addr.port}` };
}

function ofKind<K extends InspectEvent['event']>(events: InspectEvent[], kind: K, session?: string): Array<Extract<InspectEvent, { event: K }>> {
  return events.filter((e) => e.event === kind && (session === undefined || e.session === session)) as Array<Extract<InspectEvent, { event: K }>>;
}

const TEMPLATE = (port: number): string => `/.well-known/masque/udp/127.0.0.1/${port}/`;

describe('connect -> inspect relay -> serve -> UDP echo', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  let relay: InspectRelay;
  let relayEvents: InspectEvent[];
  let client: TunnelClient;
  let localPort: number;
  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const r = await startRelay(`http://127.0.0.1:${s.port}`);
    relay = r.relay;
    relayEvents = r.events;
    client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: r.origin, target: { host: '127.0.0.1', port: echo.port }, connectTimeoutMs: 5000 }),
    });
    localPort = (await client.start()).port;
  });
  after(async () => {
    await client.close();
    await relay.close();
    await server.close();
    await echo.close();
  });

  it('delivers every datagram unchanged while reporting each capsule both ways', async () => {
    const peer = await openUdpPeer();
    const sent = [0, 1, 5, 16, 17, 100, 1200, 40].map((n, i) => payload(n, i));
    for (const p of sent) {
      await peer.send(p, localPort, '127.0.0.1');
      // One at a time keeps the order of the echo replies equal to the order sent.
      await peer.waitFor(sent.indexOf(p) + 1);
    }
    assert.deepEqual(peer.messages.map((b) => b.toString('hex')), sent.map((b) => b.toString('hex')));
    await peer.close();

    const [req] = ofKind(relayEvents, 'request');
    assert.ok(req);
    assert.equal(req.session, 'c1s1');
    assert.deepEqual([req.method, req.protocol, req.path, req.target, req.capsuleProtocol], ['CONNECT', 'connect-udp', TEMPLATE(echo.port), { host: '127.0.0.1', port: echo.port }, true]);
    const [res] = ofKind(relayEvents, 'response');
    assert.deepEqual([res?.status, res?.capsuleProtocol, res?.proxyStatus], [200, true, null]);
    for (const dir of ['->', '<-'] as const) {
      await waitUntil(() => ofKind(relayEvents, 'capsule').filter((e) => e.dir === dir).length === sent.length, 2000, `${dir} capsules`);
      const caps = ofKind(relayEvents, 'capsule').filter((e) => e.dir === dir);
      let offset = 0;
      caps.forEach((c, i) => {
        const p = sent[i]!;
        assert.equal(c.typeName, 'DATAGRAM');
        assert.equal(c.offset, offset);
        assert.equal(c.payloadLength, p.length);
        assert.equal(c.payloadHex, p.subarray(0, 16).toString('hex'));
        assert.equal(c.previewTruncated, p.length > 16);
        offset += encodeDatagramCapsule(p).length;
      });
    }
    assert.equal(ofKind(relayEvents, 'error').length, 0);
    assert.equal(relay.counters.bytesToProxy, sent.reduce((n, p) => n + encodeDatagramCapsule(p).length, 0));
    assert.equal(relay.counters.bytesToClient, relay.counters.bytesToProxy);
  });

  it('reports the close of the session when the client ends it', async () => {
    await client.close();
    await waitUntil(() => ofKind(relayEvents, 'close').length === 1, 3000, 'relay close event');
    const [close] = ofKind(relayEvents, 'close');
    assert.equal(close?.session, 'c1s1');
    assert.equal(close?.reason === 'rst-stream' || close?.reason === 'end-stream', true, JSON.stringify(close));
  });
});

describe('relay forwarding of what a client sends', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    await server.listen();
  });
  after(async () => {
    await server.close();
    await echo.close();
  });

  it('passes unknown, GREASE and legacy capsules to serve byte-for-byte and reports each', async () => {
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${server.address().port}`);
    const serverRx: Buffer[] = [];
    const onTap = (m: unknown): void => {
      const msg = m as TapMessage;
      if (msg.kind === 'bytes' && msg.dir === '->' && msg.session.startsWith('s')) serverRx.push(Buffer.from(msg.chunk));
    };
    tapChannel.subscribe(onTap);
    const tunnel = await openRawTunnel(origin, TEMPLATE(echo.port));
    try {
      const res = await tunnel.response;
      assert.equal(res.headers[':status'], 200);
      const sent = Buffer.concat([
        encodeDatagramCapsule(Buffer.from('one')),
        encodeCapsule(0x1234, Buffer.from('hello')),
        encodeCapsule(0x17, Buffer.alloc(0)),
        encodeCapsule(0xff37a0, Buffer.from([1, 2, 3])),
        Buffer.from('4000 04 00 74776f'.replace(/ /g, ''), 'hex'), // DATAGRAM "two" with a non-minimal type varint
      ]);
      // Split at odd places: frame boundaries carry no meaning (RFC 9297 §3.2).
      tunnel.stream.write(sent.subarray(0, 3));
      tunnel.stream.write(sent.subarray(3, 13));
      tunnel.stream.write(sent.subarray(13));
      const back = await tunnel.waitBytes(encodeDatagramCapsule(Buffer.from('one')).length * 2);
      assert.equal(back.toString('hex'), Buffer.concat([encodeDatagramCapsule(Buffer.from('one')), encodeDatagramCapsule(Buffer.from('two'))]).toString('hex'));
      await waitUntil(() => Buffer.concat(serverRx).length >= sent.length, 2000, 'server bytes');
      assert.equal(Buffer.concat(serverRx).toString('hex'), sent.toString('hex'));
      const caps = ofKind(events, 'capsule').filter((e) => e.dir === '->');
      assert.deepEqual(
        caps.map((c) => [c.offset, c.typeName, c.length, c.nonMinimal, c.valueHex ?? c.payloadHex]),
        [
          [0, 'DATAGRAM', 4, false, '6f6e65'],
          [6, 'UNKNOWN 0x1234', 5, false, '68656c6c6f'],
          [14, 'GREASE 0x17', 0, false, ''],
          [16, 'LEGACY_DATAGRAM (legacy draft) 0xff37a0', 3, false, '010203'],
          [24, 'DATAGRAM', 4, true, '74776f'],
        ],
      );
    } finally {
      tapChannel.unsubscribe(onTap);
      await tunnel.close();
      await relay.close();
    }
  });

  it('passes a refusal back with its status, Proxy-Status and headers', async () => {
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${server.address().port}`);
    // The default policy refuses non-loopback targets (RFC 9298 §7) with 403 and a Proxy-Status.
    const tunnel = await openRawTunnel(origin, '/.well-known/masque/udp/192.0.2.1/53/');
    try {
      const res = await tunnel.response;
      assert.equal(res.headers[':status'], 403);
      const ps = String(res.headers['proxy-status']);
      assert.match(ps, /^udp-tunnel; error=destination_ip_prohibited/);
      assert.equal(res.endStream, true);
      await tunnel.stream.close();
      await waitUntil(() => ofKind(events, 'close').length === 1, 3000, 'close');
      const [r] = ofKind(events, 'response');
      assert.deepEqual([r?.status, r?.proxyStatus], [403, ps]);
      assert.deepEqual(ofKind(events, 'close').map((c) => [c.reason, c.detail]), [['refused', 'status 403']]);
    } finally {
      await tunnel.close();
      await relay.close();
    }
  });
});

describe('relay with a scripted upstream', () => {
  it('forwards request fields, response fields and both bodies unchanged, END_STREAM included', async () => {
    const up = await startScriptedUpstream({
      respond: (stream) => {
        stream.respond({ ':status': 200, 'capsule-protocol': '?1', 'x-multi': ['a', 'b'], date: 'Mon, 01 Jan 2024 00:00:00 GMT' });
        stream.on('end', () => stream.end(encodeDatagramCapsule(Buffer.from('bye'))));
      },
    });
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${up.port}`);
    const tunnel = await openRawTunnel(origin, '/custom/path?x=1', {
      headers: {
        ':method': 'CONNECT',
        ':protocol': 'connect-udp',
        ':scheme': 'http',
        ':authority': 'relay.test',
        ':path': '/custom/path?x=1',
        'capsule-protocol': '?1',
        'x-one': ['1', '2'],
        authorization: 'Bearer abc',
      },
    });
    try {
      const res = await tunnel.response;
      assert.deepEqual(res.raw, [':status', '200', 'capsule-protocol', '?1', 'x-multi', 'a', 'x-multi', 'b', 'date', 'Mon, 01 Jan 2024 00:00:00 GMT']);
      const body = encodeDatagramCapsule(payload(3000, 1));
      tunnel.stream.end(body);
      const [seen] = await up.waitRequests(1);
      await seen!.done;
      assert.deepEqual(seen!.raw, [
        ':method', 'CONNECT', ':protocol', 'connect-udp', ':scheme', 'http', ':authority', 'relay.test', ':path', '/custom/path?x=1',
        'capsule-protocol', '?1', 'x-one', '1', 'x-one', '2', 'authorization', 'Bearer abc',
      ]);
      assert.equal(seen!.ended, true);
      assert.equal(Buffer.concat(seen!.body).toString('hex'), body.toString('hex'));
      assert.equal((await tunnel.waitBytes(6)).toString('hex'), encodeDatagramCapsule(Buffer.from('bye')).toString('hex'));
      assert.equal(await tunnel.closed, 0);
      await waitUntil(() => ofKind(events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(
        events.map((e) => `${e.event}${'dir' in e ? e.dir : ''}`),
        ['request->', 'response<-', 'capsule->', 'end->', 'capsule<-', 'end<-', 'close'],
      );
      const ends = ofKind(events, 'end');
      assert.deepEqual(ends.map((e) => [e.dir, e.clean, e.totalBytes]), [['->', true, body.length], ['<-', true, 6]]);
      assert.deepEqual(ofKind(events, 'close').map((c) => [c.reason, c.detail]), [['end-stream', null]]);
      const req = ofKind(events, 'request')[0] as RequestEvent;
      assert.equal(req.target, null);
      assert.equal(req.authority, 'relay.test');
    } finally {
      await tunnel.close();
      await relay.close();
      await up.close();
    }
  });

  it('reports a stream that ends inside a capsule (offset, RFC 9297 §3.3) and still forwards every byte', async () => {
    const up = await startScriptedUpstream();
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${up.port}`);
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      await tunnel.response;
      const sent = Buffer.concat([encodeDatagramCapsule(Buffer.from('ok')), Buffer.from('00 0a 00 6162'.replace(/ /g, ''), 'hex')]);
      tunnel.stream.end(sent);
      const [seen] = await up.waitRequests(1);
      await seen!.done;
      assert.equal(seen!.ended, true);
      assert.equal(Buffer.concat(seen!.body).toString('hex'), sent.toString('hex'));
      await waitUntil(() => ofKind(events, 'end').length >= 1, 2000, 'end');
      const err = ofKind(events, 'error')[0] as ErrorEvent;
      assert.deepEqual(
        [err.dir, err.offset, err.code, err.rfc, err.reason],
        ['->', 5, 'UT_ERR_CAPSULE_TRUNCATED', 'RFC 9297 §3.3', 'stream ended inside the capsule at byte 5: 5 bytes of 12'],
      );
    } finally {
      await tunnel.close();
      await relay.close();
      await up.close();
    }
  });

  it('keeps relaying after a decoding error: an over-limit capsule and what follows reach the upstream', async () => {
    const up = await startScriptedUpstream();
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${up.port}`, { maxCapsuleLength: 1000 });
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      await tunnel.response;
      const sent = Buffer.concat([Buffer.from('00 80011170'.replace(/ /g, ''), 'hex'), payload(70000, 3)]);
      for (let off = 0; off < sent.length; off += 7000) tunnel.stream.write(sent.subarray(off, off + 7000));
      tunnel.stream.end();
      const [seen] = await up.waitRequests(1);
      await seen!.done;
      assert.equal(Buffer.concat(seen!.body).toString('hex'), sent.toString('hex'));
      await waitUntil(() => ofKind(events, 'end').length >= 1, 2000, 'end');
      const err = ofKind(events, 'error')[0] as ErrorEvent;
      assert.deepEqual([err.offset, err.code, err.rfc], [0, 'UT_ERR_CAPSULE_TOO_LARGE', null]);
      assert.match(err.reason, /declares length 70000, over the limit of 1000 \(--max-capsule\)/);
      const end = ofKind(events, 'end')[0]!;
      assert.deepEqual([end.totalBytes, end.ignoredBytes, end.capsules, end.clean], [sent.length, sent.length, 0, false]);
      assert.equal(relay.counters.bytesToProxy, sent.length);
    } finally {
      await tunnel.close();
      await relay.close();
      await up.close();
    }
  });

  it('propagates a reset from the upstream with its error code', async () => {
    const up = await startScriptedUpstream({
      respond: (stream) => {
        stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
        stream.once('data', () => stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR));
      },
    });
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${up.port}`);
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      await tunnel.response;
      tunnel.stream.write(encodeDatagramCapsule(Buffer.from('x')));
      assert.equal(await tunnel.closed, http2.constants.NGHTTP2_PROTOCOL_ERROR);
      await waitUntil(() => ofKind(events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(ofKind(events, 'close').map((c: CloseEvent) => [c.reason, c.detail]), [['rst-stream', 'PROTOCOL_ERROR (0x1) from proxy']]);
    } finally {
      await tunnel.close();
      await relay.close();
      await up.close();
    }
  });

  it('answers 502 with its own Proxy-Status when the upstream does not enable extended CONNECT', async () => {
    const up = await startScriptedUpstream({ extendedConnect: false });
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${up.port}`);
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      const res = await tunnel.response;
      assert.equal(res.headers[':status'], 502);
      assert.match(String(res.headers['proxy-status']), /^udp-tunnel-inspect; error=http_protocol_error; details=".*did not enable extended CONNECT/);
      assert.equal(up.requests.length, 0);
      const r = ofKind(events, 'response')[0] as ResponseEvent;
      assert.equal(r.status, 502);
      assert.equal(relay.counters.localAnswers, 1);
    } finally {
      await tunnel.close();
      await relay.close();
      await up.close();
    }
  });

  it('answers 502 connection_refused when nothing listens upstream', async () => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${port}`);
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      const res = await tunnel.response;
      assert.equal(res.headers[':status'], 502);
      assert.match(String(res.headers['proxy-status']), /^udp-tunnel-inspect; error=connection_refused; details="upstream 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
      await tunnel.stream.close();
      await waitUntil(() => ofKind(events, 'close').length === 1, 3000, 'close');
      const [c] = ofKind(events, 'close');
      assert.equal(c?.reason, 'refused');
      assert.match(c?.detail ?? '', /^relay answered 502: connection_refused/);
    } finally {
      await tunnel.close();
      await relay.close();
    }
  });
});

describe('relay over TLS and its limits', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    await server.listen();
  });
  after(async () => {
    await server.close();
    await echo.close();
  });

  it('serves TLS (ALPN h2) with --cert/--key and relays a tunnel through it', async () => {
    const cert = testCert();
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${server.address().port}`, { tls: { cert: cert.cert, key: cert.key } });
    const client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: origin, target: { host: '127.0.0.1', port: echo.port }, tls: { ca: cert.cert }, connectTimeoutMs: 5000 }),
    });
    const local = await client.start();
    const peer = await openUdpPeer();
    try {
      await peer.send('over tls', local.port, '127.0.0.1');
      const [got] = await peer.waitFor(1);
      assert.equal(got?.toString(), 'over tls');
      const caps = ofKind(events, 'capsule');
      assert.deepEqual(caps.map((c: CapsuleEvent) => [c.dir, c.payloadHex]), [['->', Buffer.from('over tls').toString('hex')], ['<-', Buffer.from('over tls').toString('hex')]]);
      assert.equal(ofKind(events, 'request')[0]?.scheme, 'https');
    } finally {
      await peer.close();
      await client.close();
      await relay.close();
    }
  });

  it('relays sessions over the decoder limit without decoding them, and counts them', async () => {
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${server.address().port}`, { maxSessions: 1 });
    const a = await openRawTunnel(origin, TEMPLATE(echo.port));
    const b = await openRawTunnel(origin, TEMPLATE(echo.port));
    try {
      await a.response;
      await b.response;
      b.stream.write(encodeDatagramCapsule(Buffer.from('bee')));
      assert.equal((await b.waitBytes(6)).toString('hex'), encodeDatagramCapsule(Buffer.from('bee')).toString('hex'));
      assert.equal(relay.decoderStats.droppedSessions, 1);
      assert.deepEqual(ofKind(events, 'request').map((r) => r.session), ['c1s1', 'c2s1']);
      assert.equal(ofKind(events, 'capsule').length, 0);
    } finally {
      await a.close();
      await b.close();
      await relay.close();
    }
  });

  it('closes client connections over --max-connections and counts them', async () => {
    const { relay, origin } = await startRelay(`http://127.0.0.1:${server.address().port}`, { maxConnections: 1 });
    const a = await openRawTunnel(origin, TEMPLATE(echo.port));
    const b = http2.connect(origin);
    b.on('error', () => {});
    try {
      await a.response;
      await waitUntil(() => relay.counters.droppedConnections === 1, 3000, 'dropped connection');
      assert.equal(relay.counters.connections, 1);
    } finally {
      b.destroy();
      await a.close();
      await relay.close();
    }
  });

  it('headTimeoutMs over TLS: stops timing a client once its first request came (HTTP/2 and HTTP/1.1)', async () => {
    const cert = testCert();
    const { relay, origin } = await startRelay(`http://127.0.0.1:${server.address().port}`, { tls: { cert: cert.cert, key: cert.key }, headTimeoutMs: 1000 });
    const port = relay.address().port;
    const h2Busy = http2.connect(origin, { ca: cert.cert });
    h2Busy.on('error', () => {});
    const h1Busy = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    h1Busy.on('error', () => {});
    try {
      const req = h2Busy.request({ ':method': 'GET', ':path': '/not/a/template' });
      req.on('error', () => {});
      const status = await new Promise<number>((res) => req.once('response', (h) => res(Number(h[':status']))));
      // serve refuses a GET over HTTP/2 (RFC 9298 §3.4 needs CONNECT); the relay forwards its answer.
      assert.equal(status, 405);
      h1Busy.write(`GET ${TEMPLATE(echo.port)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n`);
      let head = '';
      await new Promise<void>((res, rej) => {
        h1Busy.on('data', (chunk: Buffer) => {
          head += chunk.toString('latin1');
          if (head.includes('\r\n\r\n')) res();
        });
        h1Busy.once('close', () => rej(new Error(`closed before a response head: ${JSON.stringify(head)}`)));
      });
      assert.match(head, /^HTTP\/1\.1 101 /);
      // A silent witness whose handshake completes after both requests: its head timeout proves that the busy
      // connections' deadlines have passed and been handled too (timers fire in deadline order), rather than sleeping.
      const witness = tls.connect({ host: '127.0.0.1', port, ca: cert.cert, servername: 'localhost', ALPNProtocols: ['h2'] });
      witness.on('error', () => {});
      witness.resume();
      await once(witness, 'close');
      assert.equal(h2Busy.closed || h2Busy.destroyed, false);
      assert.equal(h1Busy.destroyed, false);
      assert.equal(relay.counters.headTimeouts, 1, 'the witness only');
    } finally {
      h2Busy.destroy();
      h1Busy.destroy();
      await relay.close();
    }
  });

  it('rejects an upstream URL that is not http(s) origin-only', () => {
    for (const bad of ['ftp://127.0.0.1:1', 'http://127.0.0.1:1/path', 'not a url']) {
      assert.throws(() => new InspectRelay({ host: '127.0.0.1', port: 0, upstream: bad, onEvent: () => {} }), { code: 'UT_ERR_INVALID_OPTION' });
    }
  });
});

describe('relay on ::1', () => {
  it('listens and forwards over IPv6 loopback, target decoded from the template', async () => {
    const echo = await startUdpEcho('::1');
    const server = new TunnelServer({ host: '::1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const events: InspectEvent[] = [];
    const relay = new InspectRelay({ host: '::1', port: 0, upstream: `http://[::1]:${s.port}`, onEvent: (ev) => events.push(ev) });
    const r = await relay.listen();
    assert.equal(r.family, 'IPv6');
    const tunnel = await openRawTunnel(`http://[::1]:${r.port}`, `/.well-known/masque/udp/${encodeURIComponent('::1')}/${echo.port}/`);
    try {
      assert.equal((await tunnel.response).headers[':status'], 200);
      tunnel.stream.write(encodeDatagramCapsule(Buffer.from('six')));
      assert.equal((await tunnel.waitBytes(6)).toString('hex'), encodeDatagramCapsule(Buffer.from('six')).toString('hex'));
      const req = ofKind(events, 'request')[0];
      assert.deepEqual(req?.target, { host: '::1', port: echo.port });
      assert.equal(req?.authority, `[::1]:${r.port}`);
    } finally {
      await tunnel.close();
      await relay.close();
      await server.close();
      await echo.close();
    }
  });
});

describe('HTTP/2 relay: upstream setup failures, TLS upstream and client TLS errors', () => {
  /** A loopback TCP server; `onSocket` decides what each accepted connection does. */
  async function rawUpstream(onSocket: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => sockets.delete(s));
      onSocket(s);
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    return {
      port: (srv.address() as net.AddressInfo).port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          srv.close(() => resolve());
        }),
    };
  }

  it('answers 504 connection_timeout when the upstream accepts but sends no SETTINGS in time', async () => {
    // Reads what the relay sends and never answers.
    const silent = await rawUpstream((s) => s.resume());
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${silent.port}`, { connectTimeoutMs: 200 });
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      const res = await tunnel.response;
      assert.equal(res.headers[':status'], 504);
      const details = `upstream 127.0.0.1:${silent.port} sent no HTTP/2 SETTINGS within 200 ms`;
      assert.equal(res.headers['proxy-status'], `udp-tunnel-inspect; error=connection_timeout; details="${details}"`);
      assert.equal(res.endStream, true);
      await waitUntil(() => ofKind(events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(ofKind(events, 'close').map((c) => [c.reason, c.detail]), [['refused', `relay answered 504: connection_timeout: ${details}`]]);
      assert.deepEqual([relay.counters.localAnswers, relay.counters.streams, relay.counters.bytesToProxy, relay.counters.bytesToClient], [1, 1, 0, 0]);
    } finally {
      await tunnel.close();
      await relay.close();
      await silent.close();
    }
  });

  it('answers 502 connection_terminated when the upstream closes the connection during setup', async () => {
    // Takes the relay's preface, then sends a FIN without a byte of HTTP/2.
    const closing = await rawUpstream((s) => s.once('data', () => s.end()));
    const { relay, events, origin } = await startRelay(`http://127.0.0.1:${closing.port}`);
    const tunnel = await openRawTunnel(origin, TEMPLATE(9));
    try {
      const res = await tunnel.response;
      assert.equal(res.headers[':status'], 502);
      const host = `127.0.0.1:${closing.port}`;
      const details = `upstream ${host}: upstream ${host} closed the connection during setup (UT_ERR_PROXY_UNREACHABLE)`;
      assert.equal(res.headers['proxy-status'], `udp-tunnel-inspect; error=connection_terminated; details="${details}"`);
      await waitUntil(() => ofKind(events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(ofKind(events, 'close').map((c) => [c.reason, c.detail]), [['refused', `relay answered 502: connection_terminated: ${details}`]]);
      assert.equal(relay.counters.localAnswers, 1);
    } finally {
      await tunnel.close();
      await relay.close();
      await closing.close();
    }
  });

  it('speaks TLS (ALPN h2) to an https upstream, and refuses one whose certificate it cannot verify', async () => {
    const cert = testCert();
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: cert.cert, key: cert.key } });
    const s = await server.listen();
    const trusted = await startRelay(`https://127.0.0.1:${s.port}`, { upstreamTls: { ca: cert.cert } });
    const untrusted = await startRelay(`https://127.0.0.1:${s.port}`);
    const tunnel = await openRawTunnel(trusted.origin, TEMPLATE(echo.port));
    const refused = await openRawTunnel(untrusted.origin, TEMPLATE(echo.port));
    try {
      assert.equal((await tunnel.response).headers[':status'], 200);
      const capsule = encodeDatagramCapsule(Buffer.from('over tls'));
      tunnel.stream.write(capsule);
      assert.equal((await tunnel.waitBytes(capsule.length)).toString('hex'), capsule.toString('hex'));
      await waitUntil(() => trusted.relay.counters.bytesToClient === capsule.length, 3000, 'echo counted');
      assert.deepEqual([trusted.relay.counters.bytesToProxy, trusted.relay.counters.bytesToClient, trusted.relay.counters.localAnswers], [capsule.length, capsule.length, 0]);

      const res = await refused.response;
      assert.equal(res.headers[':status'], 502);
      assert.match(String(res.headers['proxy-status']), /^udp-tunnel-inspect; error=tls_certificate_error; details="upstream 127\.0\.0\.1:\d+: .*\(DEPTH_ZERO_SELF_SIGNED_CERT\)"$/);
      assert.equal(untrusted.relay.counters.localAnswers, 1);
    } finally {
      await tunnel.close();
      await refused.close();
      await trusted.relay.close();
      await untrusted.relay.close();
      await server.close();
      await echo.close();
    }
  });

  it('counts a client whose TLS handshake fails in tlsErrors and closes its connection', async () => {
    const cert = testCert();
    const { relay } = await startRelay('http://127.0.0.1:9', { tls: { cert: cert.cert, key: cert.key } });
    const client = net.connect({ host: '127.0.0.1', port: relay.address().port });
    client.on('error', () => {});
    try {
      await once(client, 'connect');
      // Cleartext HTTP/1.1 where a TLS ClientHello belongs.
      client.write('GET / HTTP/1.1\r\nHost: relay.test\r\n\r\n');
      // The relay answers with a TLS alert before closing; the end of the stream shows only once that is read.
      const received: Buffer[] = [];
      client.on('data', (d: Buffer) => received.push(d));
      await once(client, 'close');
      await waitUntil(() => relay.counters.tlsErrors === 1, 3000, 'tlsErrors');
      assert.equal(Buffer.concat(received)[0], 0x15, 'a TLS alert record');
      assert.equal(relay.counters.schemeMismatches, 1);
      assert.deepEqual(
        [relay.counters.connections, relay.counters.tlsErrors, relay.counters.connectionsH1, relay.counters.connectionsH2, relay.counters.streams],
        [1, 1, 0, 0, 0],
      );
    } finally {
      client.destroy();
      await relay.close();
    }
  });
});
