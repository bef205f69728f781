import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { BoundTunnel, type BoundContextEvent, type BoundSender, type BoundTunnelOptions } from '../../../src/tunnel/bound-tunnel.js';
import {
  CAPSULE_TYPE_COMPRESSION_ACK,
  CAPSULE_TYPE_COMPRESSION_ASSIGN,
  CAPSULE_TYPE_COMPRESSION_CLOSE,
  decodeCompressionAssign,
  encodeCompressionAck,
  encodeCompressionAssign,
  encodeCompressionClose,
  encodeUncompressedDatagram,
  type CompressionAssign,
} from '../../../src/tunnel/codec/bind.js';
import { CAPSULE_TYPE_DATAGRAM, encodeCapsule } from '../../../src/tunnel/codec/capsule.js';
import { CapsuleDecoder, type DecodedCapsule } from '../../../src/tunnel/codec/capsule-decoder.js';
import { encodeDatagramHeader, parseConnectUdpDatagram } from '../../../src/tunnel/codec/datagram.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import type { Transport, TunnelHandle } from '../../../src/tunnel/transport/types.js';
import { streamPair } from '../../helpers/stream-pair.js';

// The client's handling of the draft's rules, driven by a hand-made capsule stream on an in-memory Duplex pair: the
// codec path with no sockets. Addresses are documentation ones (RFC 5737, RFC 3849); nothing is sent anywhere.

const GRANTED = { ':status': '200', 'connect-udp-bind': '?1', 'proxy-public-address': '"192.0.2.45:54321", "[2001:db8::1234]:54321"' };
const PEER = { ipVersion: 4 as const, address: '192.0.2.42', port: 50000 };

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** The proxy end of a tunnel: writes capsules, decodes what the client wrote, records the client's aborts. */
interface FakeProxy {
  transport: Transport;
  /** Capsules the client wrote, in order. */
  fromClient: DecodedCapsule[];
  aborts: string[];
  write(bytes: Buffer): void;
  assign(a: CompressionAssign): void;
  ack(id: number): void;
  close(id: number): void;
  datagram(contextId: number, body: Buffer): void;
}

/** How the fake proxy answers the client's uncompressed registration: ACK (as a proxy does), CLOSE, or not at all. */
type UncompressedAnswer = 'ack' | 'close' | 'none';

function fakeProxy(headers: Record<string, string> = GRANTED, clientStream?: Duplex, answer: UncompressedAnswer = 'ack'): FakeProxy {
  const pair = streamPair();
  const stream = clientStream ?? pair.a;
  const fromClient: DecodedCapsule[] = [];
  const decoder = new CapsuleDecoder(
    (c) => {
      const value = c.value === null ? null : Buffer.from(c.value);
      fromClient.push({ ...c, value });
      if (c.type === CAPSULE_TYPE_COMPRESSION_ASSIGN && value !== null && answer !== 'none') {
        const a = decodeCompressionAssign(value);
        if (a.ipVersion === 0) pair.b.write(encodeCapsule(answer === 'ack' ? CAPSULE_TYPE_COMPRESSION_ACK : CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionAck(a.contextId)));
      }
    },
    { deliver: () => true },
  );
  pair.b.on('data', (chunk: Buffer) => decoder.push(chunk));
  const aborts: string[] = [];
  const handle: TunnelHandle = {
    stream,
    responseHeaders: headers,
    abort(reason) {
      aborts.push(reason);
      stream.destroy();
    },
  };
  const write = (bytes: Buffer): void => {
    pair.b.write(bytes);
  };
  return {
    transport: { name: 'fake', open: async () => handle, close: async () => {} },
    fromClient,
    aborts,
    write,
    assign: (a) => write(encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, encodeCompressionAssign(a))),
    ack: (id) => write(encodeCapsule(CAPSULE_TYPE_COMPRESSION_ACK, encodeCompressionAck(id))),
    close: (id) => write(encodeCapsule(CAPSULE_TYPE_COMPRESSION_CLOSE, encodeCompressionClose(id))),
    datagram: (contextId, body) => write(Buffer.concat([encodeDatagramHeader(body.length, contextId), body])),
  };
}

interface Opened {
  tunnel: BoundTunnel;
  messages: Array<{ payload: string; from: BoundSender }>;
  contexts: BoundContextEvent[];
  closed: Array<{ reason: string; error: UdpTunnelError | undefined }>;
}

async function open(proxy: FakeProxy, extra: Partial<BoundTunnelOptions> = {}): Promise<Opened> {
  const tunnel = await BoundTunnel.open({ transport: proxy.transport, ...extra });
  const o: Opened = { tunnel, messages: [], contexts: [], closed: [] };
  tunnel.on('message', (p: Buffer, from: BoundSender) => o.messages.push({ payload: p.toString(), from }));
  tunnel.on('context', (e: BoundContextEvent) => o.contexts.push(e));
  tunnel.on('close', (reason: string, error?: UdpTunnelError) => o.closed.push({ reason, error }));
  return o;
}

/** Asserts the tunnel closed as malformed under `rule` and aborted its stream as such. */
function assertMalformed(o: Opened, proxy: FakeProxy, rule: string): void {
  assert.equal(o.closed.length, 1, 'closed once');
  assert.equal(o.closed[0]!.reason, 'malformed');
  const e = o.closed[0]!.error;
  assert.ok(e instanceof UdpTunnelError);
  assert.equal(e.code, ErrorCodes.BIND_MALFORMED);
  assert.equal(e.details['rule'], rule, e.message);
  assert.deepEqual(proxy.aborts, ['malformed']);
  assert.equal(o.tunnel.isOpen, false);
}

describe('BoundTunnel: what it sends', () => {
  it('registers the uncompressed context on open (ID 2), then sends uncompressed and compressed datagrams', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy);
    assert.deepEqual(o.tunnel.publicAddresses, [
      { ipVersion: 4, address: '192.0.2.45', port: 54321 },
      { ipVersion: 6, address: '2001:db8::1234', port: 54321 },
    ]);
    o.tunnel.send(Buffer.from('one'), { address: PEER.address, port: PEER.port });
    const id = o.tunnel.compress({ address: '2001:DB8::7', port: 443 });
    assert.equal(id, 4);
    // Draft §3.1: used before the ACK.
    o.tunnel.send(Buffer.from('two'), { address: '[2001:db8::7]', port: 443 });
    await turn();
    const [assignUnc, dgram1, assign4, dgram2] = proxy.fromClient;
    assert.equal(proxy.fromClient.length, 4);
    assert.equal(assignUnc!.type, CAPSULE_TYPE_COMPRESSION_ASSIGN);
    assert.deepEqual(decodeCompressionAssign(assignUnc!.value!), { contextId: 2, ipVersion: 0 });
    assert.equal(dgram1!.type, CAPSULE_TYPE_DATAGRAM);
    const d1 = parseConnectUdpDatagram(dgram1!.value!);
    assert.equal(d1.contextId, 2);
    assert.deepEqual(d1.payload, encodeUncompressedDatagram(PEER, Buffer.from('one')));
    assert.deepEqual(decodeCompressionAssign(assign4!.value!), { contextId: 4, ipVersion: 6, address: '2001:db8::7', port: 443 });
    const d2 = parseConnectUdpDatagram(dgram2!.value!);
    assert.equal(d2.contextId, 4);
    assert.equal(d2.payload.toString(), 'two');
    assert.deepEqual(o.contexts.map((e) => [e.event, e.id, e.by]), [['assigned', 4, 'client']]);
    assert.equal(o.tunnel.counters.txCompressed, 1);
    assert.equal(o.tunnel.counters.txDatagrams, 2);
    o.tunnel.close();
  });

  it('a peer object reused for every send goes where it says, also after its address changed', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy);
    const peer = { address: PEER.address, port: PEER.port };
    o.tunnel.send(Buffer.from('a'), peer);
    o.tunnel.send(Buffer.from('b'), peer);
    peer.address = '192.0.2.43';
    o.tunnel.send(Buffer.from('c'), peer);
    peer.address = 'not an address';
    assert.throws(() => o.tunnel.send(Buffer.from('d'), peer), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.INVALID_ADDRESS);
    await turn();
    const sent = proxy.fromClient.filter((c) => c.type === CAPSULE_TYPE_DATAGRAM).map((c) => parseConnectUdpDatagram(c.value!).payload);
    assert.deepEqual(sent, [
      encodeUncompressedDatagram(PEER, Buffer.from('a')),
      encodeUncompressedDatagram(PEER, Buffer.from('b')),
      encodeUncompressedDatagram({ ...PEER, address: '192.0.2.43' }, Buffer.from('c')),
    ]);
    o.tunnel.close();
  });

  it('with awaitAck, stays on the uncompressed context until the proxy acknowledges', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy, { awaitAck: true });
    o.tunnel.compress(PEER);
    o.tunnel.send(Buffer.from('before'), PEER);
    proxy.ack(4);
    await turn();
    o.tunnel.send(Buffer.from('after'), PEER);
    await turn();
    const ids = proxy.fromClient.filter((c) => c.type === CAPSULE_TYPE_DATAGRAM).map((c) => parseConnectUdpDatagram(c.value!).contextId);
    assert.deepEqual(ids, [2, 4]);
    assert.deepEqual(o.contexts.map((e) => [e.event, e.id, e.by]), [['assigned', 4, 'client'], ['acked', 4, 'proxy']]);
    o.tunnel.close();
  });

  it('without the uncompressed context, sends only to registered targets', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy, { uncompressed: false });
    assert.equal(o.tunnel.uncompressedContext, null);
    assert.equal(o.tunnel.send(Buffer.from('x'), PEER), false);
    assert.equal(o.tunnel.counters.drops.noContext, 1);
    assert.equal(o.tunnel.compress(PEER), 2);
    assert.equal(o.tunnel.send(Buffer.from('x'), PEER), true);
    o.tunnel.close();
  });

  it('counts registrations past maxContexts instead of making them', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy, { maxContexts: 2 });
    assert.equal(o.tunnel.compress(PEER), 4);
    assert.equal(o.tunnel.compress({ ...PEER, port: 50001 }), null);
    assert.equal(o.tunnel.counters.registrationsOverLimit, 1);
    o.tunnel.close();
  });
});

describe('BoundTunnel: what it receives', () => {
  it('delivers uncompressed and compressed datagrams with their sender', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy);
    proxy.datagram(2, encodeUncompressedDatagram({ ipVersion: 6, address: '2001:db8::9', port: 7 }, Buffer.from('v6')));
    o.tunnel.compress(PEER);
    proxy.ack(4);
    proxy.datagram(4, Buffer.from('compressed'));
    await turn();
    assert.deepEqual(o.messages, [
      { payload: 'v6', from: { address: '2001:db8::9', port: 7, family: 'IPv6' } },
      { payload: 'compressed', from: { address: PEER.address, port: PEER.port, family: 'IPv4' } },
    ]);
    assert.equal(o.tunnel.counters.rxCompressed, 1);
    assert.equal(o.tunnel.counters.rxBytes, 12);
    o.tunnel.close();
  });

  it("acknowledges the proxy's registration (odd ID) and then reads its context", async () => {
    const proxy = fakeProxy();
    const o = await open(proxy);
    proxy.assign({ contextId: 1, ...PEER });
    proxy.datagram(1, Buffer.from('via-proxy-context'));
    await turn();
    const ack = proxy.fromClient.find((c) => c.type === CAPSULE_TYPE_COMPRESSION_ACK);
    assert.ok(ack, 'an ACK was sent');
    assert.deepEqual([...ack.value!], [...encodeCompressionAck(1)]);
    assert.deepEqual(o.messages, [{ payload: 'via-proxy-context', from: { address: PEER.address, port: PEER.port, family: 'IPv4' } }]);
    // Draft §3.1: one context per tuple, so sending to that peer now uses the proxy's context.
    assert.equal(o.tunnel.contextFor(PEER), 1);
    assert.deepEqual(o.contexts.map((e) => [e.event, e.id, e.by]), [['assigned', 1, 'proxy'], ['acked', 1, 'client']]);
    o.tunnel.close();
  });

  it('closes the proxy\'s registration for a tuple it registered itself (draft §3.1), and one after the uncompressed context closed', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy);
    o.tunnel.compress(PEER);
    proxy.assign({ contextId: 1, ...PEER });
    await turn();
    o.tunnel.closeUncompressed();
    proxy.assign({ contextId: 3, ipVersion: 4, address: '192.0.2.7', port: 1 });
    await turn();
    const closes = proxy.fromClient.filter((c) => c.type === CAPSULE_TYPE_COMPRESSION_CLOSE).map((c) => c.value![0]);
    assert.deepEqual(closes, [1, 2, 3]);
    assert.equal(o.tunnel.counters.registrationsRejected, 2);
    assert.deepEqual(
      o.contexts.filter((e) => e.refused).map((e) => [e.id, e.reason]),
      [[1, 'same-target'], [3, 'after-uncompressed-closed']],
    );
    assert.equal(o.tunnel.isOpen, true);
    o.tunnel.close();
  });

  it('discards a datagram for a closed context silently and counts it; likewise one for an unknown context', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy);
    o.tunnel.compress(PEER);
    proxy.close(4);
    proxy.datagram(4, Buffer.from('late'));
    proxy.datagram(8, Buffer.from('never-registered'));
    await turn();
    assert.deepEqual(o.messages, []);
    assert.equal(o.tunnel.counters.drops.closedContext, 1);
    assert.equal(o.tunnel.counters.drops.unknownContext, 1);
    assert.equal(o.tunnel.counters.registrationsRefused, 1, 'a CLOSE before the ACK is a refusal');
    assert.equal(o.tunnel.isOpen, true);
    assert.deepEqual(proxy.aborts, []);
    o.tunnel.close();
    assert.deepEqual(proxy.aborts, ['close']);
  });

  it('drops a received payload over maxDatagram and counts it', async () => {
    const proxy = fakeProxy();
    const o = await open(proxy, { maxDatagram: 4 });
    proxy.datagram(2, encodeUncompressedDatagram(PEER, Buffer.from('12345')));
    proxy.datagram(2, encodeUncompressedDatagram(PEER, Buffer.from('1234')));
    await turn();
    assert.deepEqual(o.messages.map((m) => m.payload), ['1234']);
    assert.equal(o.tunnel.counters.drops.oversize, 1);
    assert.equal(o.tunnel.send(Buffer.from('12345'), PEER), false);
    assert.equal(o.tunnel.counters.drops.oversize, 2);
    o.tunnel.close();
  });
});

describe('BoundTunnel: malformed input from the proxy aborts the stream', () => {
  const cases: Array<[string, (p: FakeProxy, o: Opened) => void, string]> = [
    ['COMPRESSION_ASSIGN with IP version 0 (draft §4: only the client registers it)', (p) => p.assign({ contextId: 1, ipVersion: 0 }), 'uncompressed-from-proxy'],
    ['an even context ID from the proxy (RFC 9298 §4: clients allocate even IDs)', (p) => p.assign({ contextId: 6, ...PEER }), 'parity'],
    ['COMPRESSION_ACK for an ID never registered (draft §3.2)', (p) => p.ack(10), 'ack-without-assign'],
    ['a context 0 datagram on a * tunnel (draft §3)', (p) => p.write(Buffer.from([CAPSULE_TYPE_DATAGRAM, 2, 0, 0x61])), 'zero-id-datagram'],
    ['a repeated context ID (draft §3.1)', (p) => (p.assign({ contextId: 1, ...PEER }), p.assign({ contextId: 1, ...PEER, port: 9 })), 'duplicate-id'],
    ['a second registration by the proxy for the same tuple (draft §3.1)', (p) => (p.assign({ contextId: 1, ...PEER }), p.assign({ contextId: 3, ...PEER })), 'duplicate-target'],
    ['COMPRESSION_CLOSE with context ID 0 (draft §3.3)', (p) => p.write(encodeCapsule(CAPSULE_TYPE_COMPRESSION_CLOSE, Buffer.from([0]))), 'zero-id'],
    ['COMPRESSION_ASSIGN with IP version 5', (p) => p.write(encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, Buffer.from([1, 5, 1, 2, 3, 4, 0, 80]))), 'ip-version'],
    ['an uncompressed datagram with IP version 0 (draft §4)', (p) => p.datagram(2, Buffer.from([0, 1, 2, 3, 4, 0, 80])), 'ip-version'],
    ['an uncompressed datagram too short for its address', (p) => p.datagram(2, Buffer.from([6, 1, 2, 3])), 'short'],
  ];
  for (const [name, inject, rule] of cases) {
    it(name, async () => {
      const proxy = fakeProxy();
      const o = await open(proxy);
      inject(proxy, o);
      await turn();
      assertMalformed(o, proxy, rule);
      // Nothing more is read or sent after the failure.
      assert.equal(o.tunnel.send(Buffer.from('x'), PEER), false);
      assert.equal(o.tunnel.compress(PEER), null);
    });
  }
});

describe('BoundTunnel: compression responses are bounded (draft §9)', () => {
  it('aborts the tunnel when the ACKs it owes would pass maxStreamBuffer unsent bytes', async () => {
    // A stream that never takes what is written: everything stays in its write buffer.
    const stuck = new Duplex({ read() {}, write() {} });
    const proxy = fakeProxy(GRANTED, stuck);
    const o = await open(proxy, { maxStreamBuffer: 64, awaitUncompressedAck: false });
    let id = 1;
    for (let i = 0; i < 40 && o.tunnel.isOpen; i++) {
      stuck.push(encodeCapsule(CAPSULE_TYPE_COMPRESSION_ASSIGN, encodeCompressionAssign({ contextId: id, ...PEER, port: 1000 + id })));
      id += 2;
      await turn();
    }
    assert.equal(o.closed.length, 1);
    assert.equal(o.closed[0]!.reason, 'limit');
    assert.equal(o.closed[0]!.error?.code, ErrorCodes.LIMIT_EXCEEDED);
    assert.ok(stuck.writableLength > 64 && stuck.writableLength < 64 + 32, `write buffer bounded (${stuck.writableLength})`);
  });
});

describe('BoundTunnel.open', () => {
  const refusals: Array<[string, Record<string, string>, string]> = [
    ['Connect-UDP-Bind missing', { ':status': '200', 'proxy-public-address': '"192.0.2.1:1"' }, 'connect-udp-bind'],
    ['Connect-UDP-Bind a List', { ':status': '200', 'connect-udp-bind': '?1, ?1', 'proxy-public-address': '"192.0.2.1:1"' }, 'connect-udp-bind'],
    ['Proxy-Public-Address empty', { ':status': '200', 'connect-udp-bind': '?1', 'proxy-public-address': '' }, 'proxy-public-address'],
    ['Proxy-Public-Address without a port', { ':status': '200', 'connect-udp-bind': '?1', 'proxy-public-address': '"192.0.2.1"' }, 'proxy-public-address'],
  ];
  for (const [name, headers, header] of refusals) {
    it(`refuses an answer with ${name} and closes the stream`, async () => {
      const proxy = fakeProxy(headers);
      await assert.rejects(BoundTunnel.open({ transport: proxy.transport }), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.BIND_NOT_GRANTED && e.details['header'] === header);
      assert.deepEqual(proxy.aborts, ['close']);
    });
  }

  it('resolves only once the proxy acknowledged the uncompressed context', async () => {
    const proxy = fakeProxy();
    const tunnel = await BoundTunnel.open({ transport: proxy.transport });
    assert.equal(tunnel.contexts.get(2)?.pending, false);
    tunnel.close();
    // Without waiting, the context is still pending when open() resolves.
    const quick = await BoundTunnel.open({ transport: fakeProxy(GRANTED, undefined, 'none').transport, awaitUncompressedAck: false });
    assert.equal(quick.contexts.get(2)?.pending, true);
    quick.close();
  });

  it('refuses a proxy that closes the uncompressed context, and times out on one that never answers', async () => {
    const refusing = fakeProxy(GRANTED, undefined, 'close');
    await assert.rejects(BoundTunnel.open({ transport: refusing.transport }), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.BIND_NOT_GRANTED);
    assert.deepEqual(refusing.aborts, ['close']);
    const silent = fakeProxy(GRANTED, undefined, 'none');
    await assert.rejects(BoundTunnel.open({ transport: silent.transport, ackTimeoutMs: 20 }), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.TIMEOUT);
    assert.deepEqual(silent.aborts, ['close']);
  });

  it('closes when its signal aborts, and never twice', async () => {
    const proxy = fakeProxy();
    const ac = new AbortController();
    const o = await open(proxy, { signal: ac.signal });
    ac.abort();
    o.tunnel.close();
    assert.deepEqual(o.closed.map((c) => c.reason), ['aborted']);
    assert.deepEqual(proxy.aborts, ['close']);
  });
});
