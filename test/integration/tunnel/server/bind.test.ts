import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import {
  CAPSULE_TYPE_COMPRESSION_ACK,
  CAPSULE_TYPE_COMPRESSION_ASSIGN,
  CAPSULE_TYPE_COMPRESSION_CLOSE,
  decodeUncompressedDatagram,
  encodeCompressionAck,
  encodeCompressionAssign,
  encodeCompressionClose,
  encodeUncompressedDatagram,
  parseProxyPublicAddress,
  type BindTarget,
} from '../../../../src/tunnel/codec/bind.js';
import { encodeCapsule } from '../../../../src/tunnel/codec/capsule.js';
import { CapsuleDecoder, type DecodedCapsule } from '../../../../src/tunnel/codec/capsule-decoder.js';
import { encodeDatagramHeader, parseConnectUdpDatagram } from '../../../../src/tunnel/codec/datagram.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { TunnelServer, type ServerSessionStats, type TunnelServerOptions } from '../../../../src/tunnel/server/tunnel-server.js';
import { openRawTunnel, type RawTunnel } from '../../../helpers/h2-peer.js';
import { startUdpEcho, waitUntil, type UdpEcho } from '../../../helpers/net.js';
import { h1Request, rawH1 } from '../../../helpers/tunnel.js';

const WILDCARD = '/.well-known/masque/udp/%2A/%2A/';

/** A hand-driven bound tunnel: raw capsules out, decoded capsules in. */
interface Bound {
  raw: RawTunnel;
  status: number;
  headers: http2.IncomingHttpHeaders;
  capsules: DecodedCapsule[];
  /** Resolves with the first capsule (from index `from`) that `pred` accepts. */
  wait(pred: (c: DecodedCapsule) => boolean, what: string, from?: number): Promise<DecodedCapsule>;
  send(bytes: Buffer): void;
}

function authority(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

async function openBound(server: TunnelServer, host: string, path = WILDCARD, bind = true): Promise<Bound> {
  const port = server.address().port;
  const raw = await openRawTunnel(`http://${authority(host, port)}`, path, {
    headers: {
      ':method': 'CONNECT',
      ':protocol': 'connect-udp',
      ':scheme': 'http',
      ':authority': authority(host, port),
      ':path': path,
      'capsule-protocol': '?1',
      ...(bind ? { 'connect-udp-bind': '?1' } : {}),
    },
  });
  const capsules: DecodedCapsule[] = [];
  const decoder = new CapsuleDecoder((c) => capsules.push({ type: c.type, value: c.value === null ? null : Buffer.from(c.value) } as DecodedCapsule), {
    deliver: () => true,
  });
  raw.stream.on('data', (chunk: Buffer) => decoder.push(chunk));
  const { headers } = await raw.response;
  return {
    raw,
    status: Number(headers[':status']),
    headers,
    capsules,
    async wait(pred, what, from = 0) {
      let found: DecodedCapsule | undefined;
      await waitUntil(() => (found = capsules.slice(from).find(pred)) !== undefined, 10_000, what);
      return found!;
    },
    send(bytes) {
      raw.stream.write(bytes);
    },
  };
}

const assign = (contextId: number, target?: BindTarget): Buffer =>
  encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, encodeCompressionAssign(target ? { contextId, ...target } : { contextId, ipVersion: 0 }));
const close = (contextId: number): Buffer => encodeCapsule(CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(contextId));
const ack = (contextId: number): Buffer => encodeCapsule(CAPSULE_TYPE_COMPRESSION_ACK, encodeCompressionAck(contextId));
function datagram(contextId: number, body: Buffer): Buffer {
  return Buffer.concat([encodeDatagramHeader(body.length, contextId), body]);
}
const isType = (type: number, id?: number) => (c: DecodedCapsule) => c.type === type && (id === undefined || c.value![0] === id);
const ctxOf = (c: DecodedCapsule): number => parseConnectUdpDatagram(c.value!).contextId;
const isDatagramOn = (id: number) => (c: DecodedCapsule) => c.type === 0 && ctxOf(c) === id;

/** Refuses one port on loopback and allows the rest of loopback: a real TargetChecker. */
function policyRefusing(port: number) {
  const base = new TargetPolicy();
  return {
    check: (address: string, p: number) => (p === port ? { allowed: false as const, reason: 'port refused by the test policy' } : base.check(address, p)),
  };
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function server(host: string, opts: Partial<TunnelServerOptions> = {}): Promise<TunnelServer> {
  const s = new TunnelServer({ host, port: 0, policy: new TargetPolicy(), allowBind: true, ...opts });
  await s.listen();
  cleanups.push(() => s.close());
  return s;
}

async function echo(host: string): Promise<UdpEcho> {
  const e = await startUdpEcho(host);
  cleanups.push(() => e.close());
  return e;
}

/** A UDP socket on `host` that records what it receives with the sender. */
async function peer(host: string): Promise<{ socket: dgram.Socket; port: number; got: { msg: Buffer; port: number }[] }> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const got: { msg: Buffer; port: number }[] = [];
  socket.on('message', (msg, rinfo) => got.push({ msg, port: rinfo.port }));
  await new Promise<void>((r) => socket.bind(0, host, () => r()));
  cleanups.push(() => new Promise<void>((r) => socket.close(() => r())));
  return { socket, port: (socket.address() as AddressInfo).port, got };
}

function target(host: string, port: number): BindTarget {
  return { ipVersion: host.includes(':') ? 6 : 4, address: host, port };
}

for (const host of ['127.0.0.1', '::1']) {
  describe(`serve --allow-bind over ${host}`, () => {
    it('grants a bound tunnel on `*`: Connect-UDP-Bind and Proxy-Public-Address, a port of its own', async () => {
      const s = await server(host);
      const opens: { bound?: string }[] = [];
      s.on('session-open', (e: { bound?: string }) => opens.push(e));
      const b = await openBound(s, host);
      assert.equal(b.status, 200);
      assert.equal(b.headers['connect-udp-bind'], '?1');
      const pub = parseProxyPublicAddress(b.headers['proxy-public-address'] as string);
      assert.equal(pub.reason, null);
      assert.equal(pub.addresses![0]!.address, host);
      assert.notEqual(pub.addresses![0]!.port, s.address().port);
      await waitUntil(() => opens.length === 1, 5000, 'session-open');
      assert.match(opens[0]!.bound!, new RegExp(`:${pub.addresses![0]!.port}$`));
      assert.equal(s.counters.bind.portsInUse, 1);
      await b.raw.close();
      await waitUntil(() => s.counters.bind.portsInUse === 0, 5000, 'the port to be given back');
    });

    it('uncompressed context: reaches two targets, replies carry each sender; an outside sender arrives too', async () => {
      const s = await server(host);
      const [e1, e2] = [await echo(host), await echo(host)];
      const b = await openBound(s, host);
      const pub = parseProxyPublicAddress(b.headers['proxy-public-address'] as string).addresses![0]!;
      b.send(assign(2));
      await b.wait(isType(CAPSULE_TYPE_COMPRESSION_ACK, 2), 'ACK 2');
      b.send(datagram(2, encodeUncompressedDatagram(target(host, e1.port), Buffer.from('to-one'))));
      b.send(datagram(2, encodeUncompressedDatagram(target(host, e2.port), Buffer.from('to-two'))));
      await waitUntil(() => b.capsules.filter(isDatagramOn(2)).length === 2, 10_000, 'two replies');
      const replies = b.capsules.filter(isDatagramOn(2)).map((c) => decodeUncompressedDatagram(parseConnectUdpDatagram(c.value!).payload));
      const byPort = new Map(replies.map((r) => [r.port, r.payload.toString()]));
      assert.equal(byPort.get(e1.port), 'to-one');
      assert.equal(byPort.get(e2.port), 'to-two');
      assert.equal(replies[0]!.address, host);
      // A peer the client never addressed sends to the public port: delivered on the uncompressed context (draft §4).
      const p = await peer(host);
      p.socket.send('hello from outside', pub.port, host);
      const out = await b.wait((c) => isDatagramOn(2)(c) && decodeUncompressedDatagram(parseConnectUdpDatagram(c.value!).payload).port === p.port, 'outside sender');
      assert.equal(decodeUncompressedDatagram(parseConnectUdpDatagram(out.value!).payload).payload.toString(), 'hello from outside');
      // And the client answers it through the same port: the peer sees the public port as the source.
      b.send(datagram(2, encodeUncompressedDatagram(target(host, p.port), Buffer.from('reply'))));
      await waitUntil(() => p.got.length === 1, 10_000, 'the reply at the outside peer');
      assert.equal(p.got[0]!.port, pub.port);
      await b.raw.close();
    });

    it('compressed context: datagrams without address both ways; closing the uncompressed context restricts senders', async () => {
      const s = await server(host);
      const e1 = await echo(host);
      const b = await openBound(s, host);
      const pub = parseProxyPublicAddress(b.headers['proxy-public-address'] as string).addresses![0]!;
      b.send(Buffer.concat([assign(2), assign(4, target(host, e1.port))]));
      await b.wait(isType(CAPSULE_TYPE_COMPRESSION_ACK, 4), 'ACK 4');
      b.send(datagram(4, Buffer.from('compressed')));
      const reply = await b.wait(isDatagramOn(4), 'reply on context 4');
      assert.equal(parseConnectUdpDatagram(reply.value!).payload.toString(), 'compressed');
      // Draft §3.3: a datagram for the closed context is discarded silently; the tunnel goes on. Its discard also
      // shows that the proxy has taken the CLOSE (the stream keeps its order).
      b.send(close(2));
      b.send(datagram(2, encodeUncompressedDatagram(target(host, e1.port), Buffer.from('late'))));
      await waitUntil(() => s.counters.bind.contextDrops === 1, 10_000, 'the late datagram to be discarded');
      const onTwo = b.capsules.filter(isDatagramOn(2)).length;
      // Draft §8.1: with the uncompressed context closed, only registered senders get through.
      const p = await peer(host);
      await waitUntil(
        () => {
          p.socket.send('unknown', pub.port, host);
          return s.counters.bind.unknownSenderDrops > 0;
        },
        10_000,
        'the unknown sender to be dropped',
      );
      b.send(datagram(4, Buffer.from('still')));
      await waitUntil(() => b.capsules.filter(isDatagramOn(4)).length === 2, 10_000, 'second compressed reply');
      assert.equal(b.capsules.filter(isDatagramOn(2)).length, onTwo);
      assert.equal(e1.received, 2);
      await b.raw.close();
    });

    it('the policy applies to every uncompressed target and every registration (COMPRESSION_CLOSE)', async () => {
      const allowed = await echo(host);
      const refused = await echo(host);
      const s = await server(host, { policy: policyRefusing(refused.port) });
      const b = await openBound(s, host);
      b.send(Buffer.concat([assign(2), assign(4, target(host, refused.port)), assign(6, target(host, allowed.port))]));
      await b.wait(isType(CAPSULE_TYPE_COMPRESSION_CLOSE, 4), 'CLOSE 4');
      await b.wait(isType(CAPSULE_TYPE_COMPRESSION_ACK, 6), 'ACK 6');
      assert.equal(s.counters.bind.assignsRefused, 1);
      b.send(datagram(2, encodeUncompressedDatagram(target(host, refused.port), Buffer.from('no'))));
      b.send(datagram(2, encodeUncompressedDatagram(target(host, allowed.port), Buffer.from('yes'))));
      // The allowed target has context 6: its reply comes compressed (draft §5).
      const r = await b.wait(isDatagramOn(6), 'the allowed reply');
      assert.equal(parseConnectUdpDatagram(r.value!).payload.toString(), 'yes');
      await waitUntil(() => s.counters.bind.policyDrops === 1, 5000, 'the refused datagram to be counted');
      assert.equal(refused.received, 0);
      assert.equal(allowed.received, 1);
      await b.raw.close();
    });

    it('a policy change (reload) applies to the next uncompressed datagram, also to a target already used', async () => {
      const e = await echo(host);
      const s = await server(host);
      const b = await openBound(s, host);
      b.send(Buffer.concat([assign(2), datagram(2, encodeUncompressedDatagram(target(host, e.port), Buffer.from('one')))]));
      await b.wait(isDatagramOn(2), 'the first reply');
      s.update({ policy: policyRefusing(e.port) });
      b.send(datagram(2, encodeUncompressedDatagram(target(host, e.port), Buffer.from('two'))));
      await waitUntil(() => s.counters.bind.policyDrops === 1, 5000, 'the datagram refused under the new policy');
      assert.equal(e.received, 1);
      // Port 0 is no destination: dropped as malformed.
      b.send(datagram(2, encodeUncompressedDatagram(target(host, 0), Buffer.from('zero'))));
      await waitUntil(() => s.counters.bind.malformedDatagrams === 1, 5000, 'port 0 dropped');
      await b.raw.close();
    });

    it('a real target with bind: context 0 goes to it, other contexts work beside it', async () => {
      const e0 = await echo(host);
      const e1 = await echo(host);
      const s = await server(host);
      const b = await openBound(s, host, `/.well-known/masque/udp/${encodeURIComponent(host)}/${e0.port}/`);
      assert.equal(b.status, 200);
      assert.equal(b.headers['connect-udp-bind'], '?1');
      b.send(Buffer.concat([datagram(0, Buffer.from('zero')), assign(2)]));
      const z = await b.wait(isDatagramOn(0), 'context 0 reply');
      assert.equal(parseConnectUdpDatagram(z.value!).payload.toString(), 'zero');
      await b.wait(isType(CAPSULE_TYPE_COMPRESSION_ACK, 2), 'ACK 2');
      b.send(datagram(2, encodeUncompressedDatagram(target(host, e1.port), Buffer.from('one'))));
      await b.wait(isDatagramOn(2), 'context 2 reply');
      await b.raw.close();
    });

    it('without --allow-bind: a target falls back to plain CONNECT-UDP, `*` is refused with 501', async () => {
      const e0 = await echo(host);
      const s = await server(host, { allowBind: false });
      const plain = await openBound(s, host, `/.well-known/masque/udp/${encodeURIComponent(host)}/${e0.port}/`);
      assert.equal(plain.status, 200);
      assert.equal(plain.headers['connect-udp-bind'], undefined);
      await plain.raw.close();
      const star = await openBound(s, host);
      assert.equal(star.status, 501);
      await star.raw.close();
    });

    it('request forms: one `*` only is 400 (draft §3), `*` without Connect-UDP-Bind is 400, ?0 is no bind', async () => {
      const s = await server(host);
      for (const path of ['/.well-known/masque/udp/%2A/53/', `/.well-known/masque/udp/${encodeURIComponent(host)}/%2A/`]) {
        const b = await openBound(s, host, path);
        assert.equal(b.status, 400, path);
        await b.raw.close();
      }
      const nobind = await openBound(s, host, WILDCARD, false);
      assert.equal(nobind.status, 400);
      await nobind.raw.close();
    });

    it('over HTTP/1.1: 101 with the bind fields, and the tunnel relays', async () => {
      const e1 = await echo(host);
      const s = await server(host);
      const req = h1Request(WILDCARD, [
        ['Host', authority(host, s.address().port)],
        ['Connection', 'Upgrade'],
        ['Upgrade', 'connect-udp'],
        ['Capsule-Protocol', '?1'],
        ['Connect-UDP-Bind', '?1'],
      ]);
      const body = Buffer.concat([assign(2), datagram(2, encodeUncompressedDatagram(target(host, e1.port), Buffer.from('h1')))]);
      const res = await rawH1(s.address().port, Buffer.concat([Buffer.from(req), body]), { family: host.includes(':') ? 6 : 4, keepOpen: true });
      try {
        assert.equal(res.head?.status, 101);
        const fields = new Map((res.head?.headers ?? []).map(([k, v]) => [k.toLowerCase(), v]));
        assert.equal(fields.get('connect-udp-bind'), '?1');
        assert.match(String(fields.get('proxy-public-address')), /^"/);
        await waitUntil(() => e1.received === 1, 10_000, 'the datagram at the target');
      } finally {
        res.socket.destroy();
      }
    });
  });
}

describe('serve --allow-bind: malformed bind traffic aborts the stream (draft §3-§4, RFC 9297 §3.3)', () => {
  const host = '127.0.0.1';
  const cases: [string, (t: BindTarget) => Buffer][] = [
    ['a context 0 datagram on a `*` tunnel (§3)', () => datagram(0, Buffer.from('x'))],
    ['COMPRESSION_ASSIGN with Context ID 0 (§3.1)', () => encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, Buffer.from([0, 0]))],
    ['an odd Context ID from the client (§3, RFC 9298 §4)', () => encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, Buffer.from([3, 0]))],
    ['a repeated Context ID (§3.1)', (t) => Buffer.concat([assign(2, t), assign(2, { ...t, port: t.port + 1 })])],
    ['a second uncompressed context (§4)', () => Buffer.concat([assign(2), assign(4)])],
    ['a second context for the same tuple (§3.1)', (t) => Buffer.concat([assign(2, t), assign(4, t)])],
    ['COMPRESSION_ACK for a context the proxy never registered (§3.2)', () => ack(2)],
    ['COMPRESSION_CLOSE with Context ID 0 (§3.3)', () => encodeCapsule(CAPSULE_TYPE_COMPRESSION_CLOSE, Buffer.from([0]))],
    ['COMPRESSION_ASSIGN with IP version 5 (§3.1)', () => encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, Buffer.from([2, 5, 1, 2, 3, 4, 0, 53]))],
    ['COMPRESSION_ASSIGN cut short (§3.1)', () => encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, Buffer.from([2, 4, 127, 0]))],
    ['COMPRESSION_CLOSE with bytes after the ID (§3.3)', () => encodeCapsule(CAPSULE_TYPE_COMPRESSION_CLOSE, Buffer.from([2, 0]))],
  ];
  for (const [what, bytes] of cases) {
    it(what, async () => {
      const e = await echo(host);
      const s = await server(host);
      const closes: ServerSessionStats[] = [];
      s.on('session-close', (st: ServerSessionStats) => closes.push(st));
      const b = await openBound(s, host);
      b.send(bytes(target(host, e.port)));
      const rst = await b.raw.closed;
      assert.equal(rst, http2.constants.NGHTTP2_PROTOCOL_ERROR);
      await waitUntil(() => closes.length === 1, 5000, 'session-close');
      assert.match(closes[0]!.closeReason, /^malformed/);
      assert.equal(s.counters.malformedStreams, 1);
      await waitUntil(() => s.counters.bind.portsInUse === 0, 5000, 'the port to be given back');
      await b.raw.close();
    });
  }

  it('a malformed uncompressed datagram is dropped and counted; the tunnel goes on', async () => {
    const e = await echo(host);
    const s = await server(host);
    const b = await openBound(s, host);
    b.send(Buffer.concat([assign(2), datagram(2, Buffer.from([9, 1, 2])), datagram(2, encodeUncompressedDatagram(target(host, e.port), Buffer.from('ok')))]));
    await b.wait(isDatagramOn(2), 'the good datagram echoed');
    assert.equal(s.counters.bind.malformedDatagrams, 1);
    await b.raw.close();
  });
});

describe('serve --allow-bind: limits', () => {
  const host = '127.0.0.1';
  it('maxBindContexts: registrations past it get COMPRESSION_CLOSE and are counted', async () => {
    const e = await echo(host);
    const s = await server(host, { maxBindContexts: 2 });
    const b = await openBound(s, host);
    b.send(Buffer.concat([assign(2), assign(4, target(host, e.port)), assign(6, target(host, e.port + 1))]));
    await b.wait(isType(CAPSULE_TYPE_COMPRESSION_CLOSE, 6), 'CLOSE 6');
    assert.ok(b.capsules.some(isType(CAPSULE_TYPE_COMPRESSION_ACK, 2)));
    assert.ok(b.capsules.some(isType(CAPSULE_TYPE_COMPRESSION_ACK, 4)));
    assert.equal(s.counters.limits.bindContexts, 1);
    // A freed slot takes a new registration.
    b.send(Buffer.concat([close(4), assign(8, target(host, e.port + 1))]));
    await b.wait(isType(CAPSULE_TYPE_COMPRESSION_ACK, 8), 'ACK 8');
    await b.raw.close();
  });

  it('maxBoundPortsPerClient and maxBoundPorts: 503 past them, counted', async () => {
    const s = await server(host, { maxBoundPortsPerClient: 1 });
    const a = await openBound(s, host);
    assert.equal(a.status, 200);
    const refused = await openBound(s, host);
    assert.equal(refused.status, 503);
    assert.equal(s.counters.limits.boundPortsPerClient, 1);
    await refused.raw.close();
    await a.raw.close();
    const t = await server(host, { maxBoundPorts: 1 });
    const c = await openBound(t, host);
    const d = await openBound(t, host);
    assert.equal(d.status, 503);
    assert.equal(t.counters.limits.boundPorts, 1);
    await d.raw.close();
    await c.raw.close();
    // Once given back, the port budget takes a new tunnel.
    await waitUntil(() => t.counters.bind.portsInUse === 0, 5000, 'the port to be given back');
    const again = await openBound(t, host);
    assert.equal(again.status, 200);
    await again.raw.close();
  });

  it('bindPorts: the bound port is taken from the range', async () => {
    const s = await server(host, { bindPorts: { from: 47000, to: 47199 } });
    const b = await openBound(s, host);
    assert.equal(b.status, 200);
    const port = parseProxyPublicAddress(b.headers['proxy-public-address'] as string).addresses![0]!.port;
    assert.ok(port >= 47000 && port <= 47199, `port ${port} in the range`);
    await b.raw.close();
  });

  it('bindPorts: a range with no free port gets 503, counted with the port limit', async () => {
    // The test holds the range's only port itself (bound with port 0, so no other test can hold it).
    const holder = await peer(host);
    const s = await server(host, { bindPorts: { from: holder.port, to: holder.port } });
    const b = await openBound(s, host);
    assert.equal(b.status, 503);
    assert.equal(s.counters.limits.boundPorts, 1);
    assert.equal(s.counters.bind.portsInUse, 0);
    await b.raw.close();
  });

  it('maxBindResponses: a burst of registrations on a stream that keeps up is answered in full', async () => {
    const s = await server(host, { maxBindResponses: 4 });
    const b = await openBound(s, host);
    const burst: Buffer[] = [];
    for (let i = 0; i < 100; i++) burst.push(assign(2 + 2 * i, target(host, 20000 + i)));
    b.send(Buffer.concat(burst));
    await waitUntil(() => b.capsules.filter(isType(CAPSULE_TYPE_COMPRESSION_ACK)).length === 100, 10_000, '100 ACKs');
    assert.equal(s.counters.limits.bindResponses, 0);
    await b.raw.close();
  });

  it('maxBindResponses: answers stuck behind flow control past the limit abort the stream (draft §9)', async () => {
    const s = await server(host, { maxBindResponses: 4 });
    const b = await openBound(s, host);
    const pub = parseProxyPublicAddress(b.headers['proxy-public-address'] as string).addresses![0]!;
    b.send(assign(2));
    await b.wait(isType(CAPSULE_TYPE_COMPRESSION_ACK, 2), 'ACK 2');
    // The client stops reading: once its stream window is spent, what the proxy writes waits in its buffer.
    b.raw.stream.pause();
    const p = await peer(host);
    const chunk = Buffer.alloc(1200, 7);
    await waitUntil(
      () => {
        for (let i = 0; i < 20; i++) p.socket.send(chunk, pub.port, host);
        return s.counters.limits.streamBuffer > 0;
      },
      20_000,
      'the stream buffer to fill',
    );
    let id = 4;
    await waitUntil(
      () => {
        b.send(assign(id, target(host, 20000 + id)));
        id += 2;
        return s.counters.limits.bindResponses === 1;
      },
      20_000,
      'the answers limit to be hit',
    );
    assert.equal(await b.raw.closed, http2.constants.NGHTTP2_PROTOCOL_ERROR);
    await b.raw.close();
  });
});
