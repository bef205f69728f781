import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { encodeDatagramCapsule } from '../../../src/tunnel/codec/datagram.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { InspectRelay, type InspectRelayOptions } from '../../../src/inspect/relay.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openRawTunnel } from '../../helpers/h2-peer.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';
import { testCert } from '../../helpers/stack.js';
import { closedPort, connectTcp, startTcpServer, type TcpPeer } from '../../helpers/tcp-peer.js';

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed * 11 + i * 7) & 0xff;
  return b;
}

interface RelayUnderTest {
  relay: InspectRelay;
  events: InspectEvent[];
  warnings: string[];
  port: number;
}

/** A relay in front of `upstream` on `host` that collects its events and warnings. */
async function startRelay(upstream: string, options: Partial<InspectRelayOptions> = {}, host = '127.0.0.1'): Promise<RelayUnderTest> {
  const events: InspectEvent[] = [];
  const warnings: string[] = [];
  const relay = new InspectRelay({ host, port: 0, upstream, onEvent: (ev) => events.push(ev), ...options });
  relay.on('warning', (w: { message: string }) => warnings.push(w.message));
  const addr = await relay.listen();
  return { relay, events, warnings, port: addr.port };
}

function ofKind<K extends InspectEvent['event']>(events: InspectEvent[], kind: K, session?: string): Array<Extract<InspectEvent, { event: K }>> {
  return events.filter((e) => e.event === kind && (session === undefined || e.session === session)) as Array<Extract<InspectEvent, { event: K }>>;
}

/** An event without its time, for exact comparison. */
function untimed(ev: InspectEvent | undefined): Record<string, unknown> | undefined {
  if (ev === undefined) return undefined;
  const { tMs: _t, ...rest } = ev;
  return rest;
}

/** `kind` + `dir` of each event of a session, in order. */
function shape(events: InspectEvent[], session: string): string[] {
  return events.filter((e) => e.session === session).map((e) => `${e.event}${'dir' in e ? e.dir : ''}`);
}

const TEMPLATE = (host: string, port: number): string => `/.well-known/masque/udp/${encodeURIComponent(host)}/${port}/`;

/** The request head `connect --http 1.1` sends (RFC 9298 §3.2). */
function upgradeHead(path: string, host: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n`;
}

const bin = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('HTTP/1.1 connect -> inspect relay -> serve -> UDP echo (127.0.0.1)', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  let r: RelayUnderTest;
  let client: TunnelClient;
  let localPort: number;
  const sent = [0, 1, 16, 17, 1200, 40].map((n, i) => payload(n, i));
  const streamBytes = sent.reduce((n, p) => n + encodeDatagramCapsule(p).length, 0);
  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    r = await startRelay(`http://127.0.0.1:${s.port}`);
    client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: `http://127.0.0.1:${r.port}`, http: '1.1', target: { host: '127.0.0.1', port: echo.port }, connectTimeoutMs: 5000 }),
    });
    localPort = (await client.start()).port;
  });
  after(async () => {
    await client.close();
    await r.relay.close();
    await server.close();
    await echo.close();
  });

  it('delivers every datagram unchanged and reports the request, the 101 and each capsule both ways', async () => {
    const peer = await openUdpPeer();
    try {
      for (let i = 0; i < sent.length; i++) {
        await peer.send(sent[i]!, localPort, '127.0.0.1');
        // One at a time keeps the echo replies in the order sent.
        await peer.waitFor(i + 1);
      }
      assert.deepEqual(peer.messages.map((b) => b.toString('hex')), sent.map((b) => b.toString('hex')));
    } finally {
      await peer.close();
    }
    const { events, relay } = r;
    const authority = `127.0.0.1:${r.port}`;
    assert.deepEqual(untimed(ofKind(events, 'request')[0]), {
      event: 'request',
      session: 'c1',
      dir: '->',
      http: '1.1',
      method: 'GET',
      protocol: 'connect-udp',
      scheme: null,
      authority,
      path: TEMPLATE('127.0.0.1', echo.port),
      target: { host: '127.0.0.1', port: echo.port },
      capsuleProtocol: true,
      headers: [['Host', authority], ['Connection', 'Upgrade'], ['Upgrade', 'connect-udp'], ['Capsule-Protocol', '?1']],
    });
    assert.deepEqual(untimed(ofKind(events, 'response')[0]), {
      event: 'response',
      session: 'c1',
      dir: '<-',
      http: '1.1',
      status: 101,
      proxyStatus: null,
      capsuleProtocol: true,
      headers: [['connection', 'Upgrade'], ['upgrade', 'connect-udp'], ['capsule-protocol', '?1']],
    });
    for (const dir of ['->', '<-'] as const) {
      await waitUntil(() => ofKind(events, 'capsule', 'c1').filter((e) => e.dir === dir).length === sent.length, 2000, `${dir} capsules`);
      let offset = 0;
      const expected = sent.map((p) => {
        const row = [offset, 'DATAGRAM', p.length + 1, 0, p.length, p.subarray(0, 16).toString('hex'), p.length > 16];
        offset += encodeDatagramCapsule(p).length;
        return row;
      });
      const caps = ofKind(events, 'capsule', 'c1').filter((e) => e.dir === dir);
      assert.deepEqual(
        caps.map((c) => [c.offset, c.typeName, c.length, c.contextId, c.payloadLength, c.payloadHex, c.previewTruncated]),
        expected,
      );
    }
    assert.equal(ofKind(events, 'error').length, 0);
    assert.deepEqual(
      [relay.counters.connectionsH1, relay.counters.streams, relay.counters.bytesToProxy, relay.counters.bytesToClient, relay.counters.localAnswers],
      [1, 1, streamBytes, streamBytes, 0],
    );
  });

  it('serves an HTTP/2 client on the same listener (the preface tells them apart)', async () => {
    const tunnel = await openRawTunnel(`http://127.0.0.1:${r.port}`, TEMPLATE('127.0.0.1', echo.port));
    try {
      assert.equal((await tunnel.response).headers[':status'], 200);
      tunnel.stream.write(encodeDatagramCapsule(bin('two')));
      assert.equal((await tunnel.waitBytes(6)).toString('hex'), encodeDatagramCapsule(bin('two')).toString('hex'));
      const req = ofKind(r.events, 'request', 'c2s1')[0];
      assert.deepEqual([req?.http, req?.method, req?.protocol], ['2', 'CONNECT', 'connect-udp']);
      assert.deepEqual([r.relay.counters.connectionsH1, r.relay.counters.connectionsH2], [1, 1]);
    } finally {
      await tunnel.close();
    }
  });

  it('reports both capsule streams ending cleanly and the close when the client ends the tunnel', async () => {
    await client.close();
    await waitUntil(() => ofKind(r.events, 'close', 'c1').length === 1, 3000, 'close of c1');
    assert.deepEqual(
      ofKind(r.events, 'end', 'c1').map((e) => [e.dir, e.clean, e.totalBytes, e.capsules, e.ignoredBytes]),
      [['->', true, streamBytes, sent.length, 0], ['<-', true, streamBytes, sent.length, 0]],
    );
    assert.deepEqual(ofKind(r.events, 'close', 'c1').map((c) => [c.reason, c.detail]), [['tcp-fin', null]]);
    const order = shape(r.events, 'c1');
    assert.deepEqual([order[0], order[1], ...order.slice(-3)], ['request->', 'response<-', 'end->', 'end<-', 'close']);
  });
});

describe('HTTP/1.1 relay on ::1', () => {
  it('relays connect --http 1.1 over IPv6 loopback, target decoded from the template', async () => {
    const echo = await startUdpEcho('::1');
    const server = new TunnelServer({ host: '::1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const r = await startRelay(`http://[::1]:${s.port}`, {}, '::1');
    assert.equal(r.relay.address().family, 'IPv6');
    const client = new TunnelClient({
      host: '::1',
      port: 0,
      transport: buildTransport({ proxy: `http://[::1]:${r.port}`, http: '1.1', target: { host: '::1', port: echo.port }, connectTimeoutMs: 5000 }),
    });
    const local = await client.start();
    const peer = await openUdpPeer('::1');
    try {
      await peer.send('six', local.port, '::1');
      assert.equal((await peer.waitFor(1))[0]?.toString(), 'six');
      const req = ofKind(r.events, 'request')[0];
      assert.deepEqual([req?.http, req?.authority, req?.path, req?.target], ['1.1', `[::1]:${r.port}`, TEMPLATE('::1', echo.port), { host: '::1', port: echo.port }]);
      assert.deepEqual(ofKind(r.events, 'capsule').map((c) => [c.dir, c.payloadHex]), [['->', '736978'], ['<-', '736978']]);
    } finally {
      await peer.close();
      await client.close();
      await r.relay.close();
      await server.close();
      await echo.close();
    }
  });
});

describe('HTTP/1.1 relay with a scripted upstream', () => {
  it('passes heads and capsule bytes through exactly as sent, and reports a capsule cut short by FIN at its offset', async () => {
    const up = await startTcpServer();
    const r = await startRelay(`http://127.0.0.1:${up.port}`);
    const client = await connectTcp('127.0.0.1', r.port);
    try {
      // Odd but valid spelling: lowercase tokens, extra spaces, a repeated field; the proxy must see it unchanged.
      const head = 'GET /.well-known/masque/udp/127.0.0.1/9/ HTTP/1.1\r\nHost: relay.test\r\nconnection: upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\nX-Spaced:   a  b  \r\nx-one: 1\r\nx-one: 2\r\n\r\n';
      const early = encodeDatagramCapsule(bin('early'));
      client.socket.write(Buffer.concat([bin(head), early]));
      const upPeer = await up.waitPeer(1);
      assert.equal((await upPeer.waitBytes(head.length + early.length)).toString('hex'), Buffer.concat([bin(head), early]).toString('hex'));
      const interim = 'HTTP/1.1 100 Continue\r\n\r\n';
      const final = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: connect-udp\r\nConnection: Upgrade\r\nCapsule-Protocol: ?1\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n';
      const bye = encodeDatagramCapsule(bin('bye'));
      // Both heads and the first capsule in one write: the relay must split them itself.
      upPeer.socket.write(Buffer.concat([bin(interim + final), bye]));
      const back = await client.waitBytes(interim.length + final.length + bye.length);
      assert.equal(back.toString('hex'), Buffer.concat([bin(interim + final), bye]).toString('hex'));

      // RFC 9297 §3.3: over HTTP/1.1 the capsule stream ends with the connection; a FIN inside a capsule is truncation.
      const tail = Buffer.concat([encodeDatagramCapsule(bin('ok')), Buffer.from('000a0061', 'hex')]);
      client.socket.end(tail);
      await waitUntil(() => upPeer.ended(), 3000, 'FIN passed on to the upstream');
      assert.equal(upPeer.received().toString('hex'), Buffer.concat([bin(head), early, tail]).toString('hex'));
      upPeer.socket.end();
      await client.closed;
      await waitUntil(() => ofKind(r.events, 'close').length === 1, 3000, 'close');

      assert.deepEqual(shape(r.events, 'c1'), ['request->', 'capsule->', 'response<-', 'response<-', 'capsule<-', 'capsule->', 'error->', 'end->', 'end<-', 'close']);
      const req = ofKind(r.events, 'request')[0];
      assert.deepEqual(req?.headers, [
        ['Host', 'relay.test'], ['connection', 'upgrade'], ['Upgrade', 'connect-udp'], ['Capsule-Protocol', '?1'], ['X-Spaced', 'a  b'], ['x-one', '1'], ['x-one', '2'],
      ]);
      assert.deepEqual(
        ofKind(r.events, 'response').map((e) => [e.status, e.headers]),
        [[100, []], [101, [['Upgrade', 'connect-udp'], ['Connection', 'Upgrade'], ['Capsule-Protocol', '?1'], ['X-Multi', 'a'], ['X-Multi', 'b']]]],
      );
      assert.deepEqual(ofKind(r.events, 'capsule').map((c) => [c.dir, c.offset, c.payloadHex]), [['->', 0, '6561726c79'], ['<-', 0, '627965'], ['->', 8, '6f6b']]);
      assert.deepEqual(untimed(ofKind(r.events, 'error')[0]), {
        event: 'error',
        session: 'c1',
        dir: '->',
        offset: 13,
        layer: 'capsule',
        code: 'UT_ERR_CAPSULE_TRUNCATED',
        reason: 'stream ended inside the capsule at byte 13: 4 bytes of 12',
        rfc: 'RFC 9297 §3.3',
      });
      assert.deepEqual(
        ofKind(r.events, 'end').map((e) => [e.dir, e.clean, e.totalBytes, e.capsules, e.ignoredBytes]),
        [['->', false, 17, 2, 4], ['<-', true, 6, 1, 0]],
      );
      assert.deepEqual(ofKind(r.events, 'close').map((c) => [c.reason, c.detail]), [['tcp-fin', null]]);
      assert.deepEqual([r.relay.counters.bytesToProxy, r.relay.counters.bytesToClient], [early.length + tail.length, bye.length]);
    } finally {
      client.socket.destroy();
      await r.relay.close();
      await up.close();
    }
  });

  it('forwards a request head split across reads, leading empty lines included, and counts it while the upstream connects', async () => {
    // Accepts TCP and never answers the TLS ClientHello: the request head waits in the relay.
    const silent = await startTcpServer();
    const slow = await startRelay(`https://127.0.0.1:${silent.port}`, { connectTimeoutMs: 30_000 });
    const up = await startTcpServer();
    const r = await startRelay(`http://127.0.0.1:${up.port}`);
    try {
      const head = bin(`\r\n\r\n${upgradeHead('/.well-known/masque/udp/127.0.0.1/9/', 'relay.test')}`);
      const early = encodeDatagramCapsule(bin('early'));
      const waiting = await connectTcp('127.0.0.1', slow.port);
      waiting.socket.write(head.subarray(0, 7));
      await waitUntil(() => slow.relay.bufferedBytes === 7, 3000, 'first part of the head held');
      waiting.socket.write(Buffer.concat([head.subarray(7), early]));
      await waitUntil(() => ofKind(slow.events, 'request').length === 1, 3000, 'request');
      // The whole head (held for the upstream) and the capsule behind it, each counted once.
      assert.equal(slow.relay.bufferedBytes, head.length + early.length);
      waiting.socket.destroy();

      const client = await connectTcp('127.0.0.1', r.port);
      client.socket.write(head.subarray(0, 3));
      await waitUntil(() => r.relay.bufferedBytes === 3, 3000, 'leading bytes held');
      client.socket.write(head.subarray(3, 40));
      await waitUntil(() => r.relay.bufferedBytes === 40, 3000, 'more of the head held');
      client.socket.write(Buffer.concat([head.subarray(40), early]));
      const upPeer = await up.waitPeer(1);
      assert.equal((await upPeer.waitBytes(head.length + early.length)).toString('hex'), Buffer.concat([head, early]).toString('hex'));
      client.socket.destroy();
    } finally {
      await slow.relay.close();
      await r.relay.close();
      await silent.close();
      await up.close();
    }
  });

  it('counts proxy bytes that arrive after the client is gone as discarded, not forwarded', async () => {
    // The upstream keeps writing after the relay's FIN (allowHalfOpen), as a proxy may.
    const upSockets: net.Socket[] = [];
    const upServer = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      upSockets.push(s);
    });
    await new Promise<void>((resolve) => upServer.listen(0, '127.0.0.1', () => resolve()));
    const upPort = (upServer.address() as net.AddressInfo).port;
    const r = await startRelay(`http://127.0.0.1:${upPort}`);
    const client = await connectTcp('127.0.0.1', r.port);
    try {
      const head = upgradeHead('/.well-known/masque/udp/127.0.0.1/9/', 'relay.test');
      client.socket.write(head);
      await waitUntil(() => upSockets.length === 1, 3000, 'upstream connection');
      const upSocket = upSockets[0]!;
      const upEnded = new Promise<void>((resolve) => upSocket.once('end', () => resolve()));
      upSocket.resume();
      const response = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n';
      const first = encodeDatagramCapsule(bin('first'));
      upSocket.write(Buffer.concat([bin(response), first]));
      await client.waitBytes(response.length + first.length);
      // The client half-closes (passed on as a FIN), then resets. Having read its FIN, the relay learns of the reset
      // only when its next write there fails: that chunk was handed on (forwarded), and the client socket is then gone.
      client.socket.end();
      await upEnded;
      client.socket.resetAndDestroy();
      await client.closed;
      const second = encodeDatagramCapsule(bin('second'));
      upSocket.write(second);
      // A second exchange through the relay's event loop: by its end the failed write has been handled.
      const barrier = await connectTcp('127.0.0.1', r.port);
      barrier.socket.write('BAD\r\n\r\n');
      await barrier.closed;
      const late = encodeDatagramCapsule(bin('too late'));
      upSocket.end(late);
      await waitUntil(() => ofKind(r.events, 'close', 'c1').length === 1, 3000, 'close');
      assert.deepEqual(
        [r.relay.counters.bytesToClient, r.relay.counters.bytesToProxy, r.relay.counters.discardedBytes],
        [first.length + second.length, 0, late.length],
      );
      // The decoder still reports what the proxy sent.
      assert.deepEqual(
        ofKind(r.events, 'capsule', 'c1').map((c) => [c.dir, c.payloadHex]),
        [['<-', bin('first').toString('hex')], ['<-', bin('second').toString('hex')], ['<-', bin('too late').toString('hex')]],
      );
    } finally {
      client.socket.destroy();
      await r.relay.close();
      for (const s of upSockets) s.destroy();
      await new Promise<void>((resolve) => upServer.close(() => resolve()));
    }
  });

  it('forwards a non-101 response with its Content-Length body, then closes both connections', async () => {
    const up = await startTcpServer();
    const r = await startRelay(`http://127.0.0.1:${up.port}`);
    const client = await connectTcp('127.0.0.1', r.port);
    try {
      const head = upgradeHead('/.well-known/masque/udp/127.0.0.1/9/', 'relay.test');
      client.socket.write(head);
      const upPeer = await up.waitPeer(1);
      await upPeer.waitBytes(head.length);
      const answer = 'HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nProxy-Status: other; error=destination_ip_prohibited\r\n\r\nnope!';
      // Bytes past the announced body are not part of this response: they are not forwarded.
      upPeer.socket.write(bin(`${answer}JUNK`));
      await client.closed;
      assert.equal(client.received().toString('latin1'), answer);
      assert.equal(client.ended(), true);
      await upPeer.closed;
      await waitUntil(() => ofKind(r.events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(shape(r.events, 'c1'), ['request->', 'response<-', 'end->', 'end<-', 'close']);
      const res = ofKind(r.events, 'response')[0];
      assert.deepEqual([res?.status, res?.proxyStatus], [403, 'other; error=destination_ip_prohibited']);
      assert.deepEqual(ofKind(r.events, 'end').map((e) => [e.dir, e.clean]), [['->', false], ['<-', false]]);
      assert.deepEqual(ofKind(r.events, 'close').map((c) => [c.reason, c.detail]), [['refused', 'status 403']]);
      assert.deepEqual([r.relay.counters.bytesToClient, r.relay.counters.discardedBytes], [5, 4]);
    } finally {
      client.socket.destroy();
      await r.relay.close();
      await up.close();
    }
  });

  it('passes a client reset on as a reset, and closes open tunnels as local at relay shutdown', async () => {
    const up = await startTcpServer();
    const r = await startRelay(`http://127.0.0.1:${up.port}`);
    const ok = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n';
    const open = async (n: number): Promise<{ client: TcpPeer; upPeer: TcpPeer }> => {
      const client = await connectTcp('127.0.0.1', r.port);
      client.socket.write(upgradeHead(TEMPLATE('127.0.0.1', 9), 'relay.test'));
      const upPeer = await up.waitPeer(n);
      upPeer.socket.write(ok);
      await client.waitBytes(ok.length);
      return { client, upPeer };
    };
    try {
      const a = await open(1);
      const upError = new Promise<string | undefined>((resolve) => a.upPeer.socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code)));
      a.client.socket.resetAndDestroy();
      assert.equal(await upError, 'ECONNRESET');
      await waitUntil(() => ofKind(r.events, 'close', 'c1').length === 1, 3000, 'close of c1');
      assert.deepEqual(ofKind(r.events, 'close', 'c1').map((c) => [c.reason, c.detail]), [['tcp-rst', 'ECONNRESET from client']]);

      const b = await open(2);
      await r.relay.close();
      await b.client.closed;
      assert.deepEqual(ofKind(r.events, 'close', 'c2').map((c) => [c.reason, c.detail]), [['local', 'relay shutdown']]);
      assert.deepEqual(ofKind(r.events, 'end', 'c2').map((e) => [e.dir, e.clean]), [['->', false], ['<-', false]]);
    } finally {
      await r.relay.close();
      await up.close();
    }
  });

  it('answers 502 when the response head is malformed or too large, and reports where in the stream', async () => {
    const cases = [
      {
        reply: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 1x1 Odd\r\n\r\n',
        forwarded: 'HTTP/1.1 100 Continue\r\n\r\n',
        error: ['<-', 25, 'http', 'UT_ERR_HTTP1_MALFORMED', 'RFC 9112'],
        proxyStatus: /^udp-tunnel-inspect; error=http_protocol_error; details="upstream 127\.0\.0\.1:\d+: invalid status line 'HTTP\/1\.1 1x1 Odd' \(RFC 9112\)"$/,
        headLimit: 0,
      },
      {
        reply: `HTTP/1.1 101 Switching Protocols\r\nX-Big: ${'b'.repeat(2000)}\r\n\r\n`,
        forwarded: '',
        error: ['<-', 1024, 'http', 'UT_ERR_HEADERS_TOO_LARGE', null],
        proxyStatus: /^udp-tunnel-inspect; error=http_response_header_section_size; details="upstream 127\.0\.0\.1:\d+: HTTP\/1\.1 head exceeds 1024 bytes"$/,
        headLimit: 1,
      },
    ];
    for (const c of cases) {
      const up = await startTcpServer();
      const r = await startRelay(`http://127.0.0.1:${up.port}`, { maxHeadBytes: 1024 });
      const client = await connectTcp('127.0.0.1', r.port);
      try {
        const head = upgradeHead('/.well-known/masque/udp/127.0.0.1/9/', 'relay.test');
        client.socket.write(head);
        const upPeer = await up.waitPeer(1);
        await upPeer.waitBytes(head.length);
        upPeer.socket.write(c.reply);
        await client.closed;
        await upPeer.closed;
        await waitUntil(() => ofKind(r.events, 'close').length === 1, 3000, 'close');
        const text = client.received().toString('latin1');
        assert.equal(text.slice(0, c.forwarded.length), c.forwarded);
        const m = /^HTTP\/1\.1 502 Bad Gateway\r\nproxy-status: (.*)\r\ncontent-length: 0\r\nconnection: close\r\n\r\n$/.exec(text.slice(c.forwarded.length));
        assert.ok(m, text);
        assert.match(m[1]!, c.proxyStatus);
        const err = ofKind(r.events, 'error')[0];
        assert.deepEqual([err?.dir, err?.offset, err?.layer, err?.code, err?.rfc], c.error);
        const statuses = ofKind(r.events, 'response').map((e) => [e.status, e.proxyStatus]);
        assert.deepEqual(statuses[statuses.length - 1], [502, m[1]]);
        assert.deepEqual(ofKind(r.events, 'close').map((e) => [e.reason, e.detail]), [['error', 'HTTP/1.1 response head could not be parsed; relay answered 502']]);
        assert.deepEqual([r.relay.counters.headErrors, r.relay.counters.headLimit], [1, c.headLimit]);
      } finally {
        client.socket.destroy();
        await r.relay.close();
        await up.close();
      }
    }
  });
});

describe('HTTP/1.1 relay: refusals, failures and limits', () => {
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

  /** Sends `request` to port and returns everything received until the connection closed. */
  async function exchange(port: number, request: string | Buffer): Promise<TcpPeer> {
    const peer = await connectTcp('127.0.0.1', port);
    peer.socket.write(request);
    await peer.closed;
    return peer;
  }

  it('closes client connections that deliver no complete first request within headTimeoutMs, and counts them', async () => {
    const sport = server.address().port;
    const r = await startRelay(`http://127.0.0.1:${sport}`, { headTimeoutMs: 500 });
    try {
      const silent = await connectTcp('127.0.0.1', r.port);
      const partial = await connectTcp('127.0.0.1', r.port);
      partial.socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
      // A whole head in time: the timer stops, and the tunnel outlives it.
      const whole = await connectTcp('127.0.0.1', r.port);
      whole.socket.write(upgradeHead(TEMPLATE('127.0.0.1', echo.port), `127.0.0.1:${sport}`));
      await Promise.all([silent.closed, partial.closed]);
      assert.equal(r.relay.counters.headTimeouts, 2);
      await waitUntil(() => /^HTTP\/1\.1 101 /.test(whole.received().toString('latin1')), 5000, 'the 101 for the whole head');
      // A silent witness connected after it: its head timeout proves that whole's deadline has passed and been
      // handled too (this process's timers fire in deadline order), rather than sleeping.
      const witness = await connectTcp('127.0.0.1', r.port);
      await witness.closed;
      assert.equal(whole.socket.destroyed, false);
      assert.match(whole.received().toString('latin1'), /^HTTP\/1\.1 101 /);
      assert.equal(r.relay.counters.headTimeouts, 3, 'the two and the witness, not the whole head');
      whole.socket.destroy();
    } finally {
      await r.relay.close();
    }
  });

  it('headTimeoutMs: an HTTP/2 client is timed until its first stream', async () => {
    const sport = server.address().port;
    const r = await startRelay(`http://127.0.0.1:${sport}`, { headTimeoutMs: 500 });
    try {
      const { connect } = await import('node:http2');
      const idle = connect(`http://127.0.0.1:${r.port}`);
      idle.on('error', () => {});
      const idleClosed = new Promise<void>((res) => idle.once('close', () => res()));
      const busy = connect(`http://127.0.0.1:${r.port}`);
      busy.on('error', () => {});
      await new Promise<void>((res) => busy.once('connect', () => res()));
      const req = busy.request({ ':method': 'GET', ':path': '/not/a/template' });
      req.on('error', () => {});
      const status = await new Promise<number>((res) => req.once('response', (h) => res(Number(h[':status']))));
      // serve refuses a GET (RFC 9298 §3.4 needs CONNECT); the relay forwards its answer.
      assert.equal(status, 405);
      await idleClosed;
      assert.equal(r.relay.counters.headTimeouts, 1);
      // A silent witness connected after busy's first stream: its head timeout proves that busy's deadline has passed
      // and been handled too (this process's timers fire in deadline order), rather than sleeping.
      const witness = await connectTcp('127.0.0.1', r.port);
      await witness.closed;
      assert.equal(busy.closed || busy.destroyed, false);
      assert.equal(r.relay.counters.headTimeouts, 2, 'idle and the witness, not busy');
      busy.destroy();
    } finally {
      await r.relay.close();
    }
  });

  it("forwards serve's refusals (403 denied target, 404 bad path) byte-for-byte and reports them", async () => {
    const sport = server.address().port;
    for (const [path, status, error] of [
      [TEMPLATE('192.0.2.1', 53), 403, 'destination_ip_prohibited'],
      ['/not/a/template', 404, 'http_request_error'],
    ] as const) {
      const r = await startRelay(`http://127.0.0.1:${sport}`);
      try {
        const head = upgradeHead(path, `127.0.0.1:${sport}`);
        const direct = await exchange(sport, head);
        const relayed = await exchange(r.port, head);
        assert.equal(relayed.received().toString('latin1'), direct.received().toString('latin1'));
        assert.match(relayed.received().toString('latin1'), new RegExp(`^HTTP/1\\.1 ${status} .*\\r\\nproxy-status: udp-tunnel; error=${error}`, 's'));
        await waitUntil(() => ofKind(r.events, 'close').length === 1, 3000, 'close');
        const res = ofKind(r.events, 'response')[0];
        assert.equal(res?.status, status);
        assert.match(res?.proxyStatus ?? '', new RegExp(`^udp-tunnel; error=${error}`));
        assert.deepEqual(ofKind(r.events, 'close').map((c) => [c.reason, c.detail]), [['refused', `status ${status}`]]);
      } finally {
        await r.relay.close();
      }
    }
  });

  it('reports a malformed capsule sent after the 101 at its offset; serve closes the connection and so does the relay', async () => {
    const r = await startRelay(`http://127.0.0.1:${server.address().port}`);
    const client = await connectTcp('127.0.0.1', r.port);
    try {
      client.socket.write(upgradeHead(TEMPLATE('127.0.0.1', echo.port), 'relay.test'));
      await waitUntil(() => /^HTTP\/1\.1 101 [^]*\r\n\r\n$/.test(client.received().toString('latin1')), 3000, '101');
      const head101 = client.received().length;
      client.socket.write(encodeDatagramCapsule(bin('fine')));
      await client.waitBytes(head101 + 7);
      // RFC 9298 §5: a DATAGRAM capsule needs at least the context ID; an empty value is malformed.
      client.socket.write(Buffer.from('0000', 'hex'));
      await waitUntil(() => client.ended(), 3000, 'connection ended by the proxy');
      client.socket.end();
      await waitUntil(() => ofKind(r.events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(untimed(ofKind(r.events, 'error')[0]), {
        event: 'error',
        session: 'c1',
        dir: '->',
        offset: 7,
        layer: 'capsule',
        code: 'UT_ERR_DATAGRAM_MALFORMED',
        reason: 'DATAGRAM capsule at byte 7 has a 0-byte value, too short for its context ID',
        rfc: 'RFC 9298 §5',
      });
      assert.deepEqual(ofKind(r.events, 'capsule').map((c) => [c.dir, c.offset, c.payloadHex]), [['->', 0, '66696e65'], ['<-', 0, '66696e65']]);
    } finally {
      client.socket.destroy();
      await r.relay.close();
    }
  });

  it('answers 502 connection_refused with its own Proxy-Status when nothing listens upstream', async () => {
    const port = await closedPort();
    const r = await startRelay(`http://127.0.0.1:${port}`);
    try {
      const peer = await exchange(r.port, upgradeHead(TEMPLATE('127.0.0.1', 9), 'relay.test'));
      const details = `upstream 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port} (ECONNREFUSED)`;
      const proxyStatus = `udp-tunnel-inspect; error=connection_refused; details="${details}"`;
      assert.equal(
        peer.received().toString('latin1'),
        `HTTP/1.1 502 Bad Gateway\r\nproxy-status: ${proxyStatus}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      );
      await waitUntil(() => ofKind(r.events, 'close').length === 1, 3000, 'close');
      assert.deepEqual(shape(r.events, 'c1'), ['request->', 'response<-', 'end->', 'end<-', 'close']);
      const res = ofKind(r.events, 'response')[0];
      assert.deepEqual([res?.status, res?.proxyStatus], [502, proxyStatus]);
      assert.deepEqual(ofKind(r.events, 'close').map((c) => [c.reason, c.detail]), [['refused', `relay answered 502: connection_refused: ${details}`]]);
      assert.deepEqual(r.warnings, [`c1: answered 502 connection_refused: ${details}`]);
      assert.equal(r.relay.counters.localAnswers, 1);
    } finally {
      await r.relay.close();
    }
  });

  it('refuses a request head over maxHeadBytes with 431 and a malformed one with 400, without contacting the upstream', async () => {
    const up = await startTcpServer();
    const r = await startRelay(`http://127.0.0.1:${up.port}`, { maxHeadBytes: 1024 });
    try {
      // Fed in pieces: the limit must hold before the end of the head ever arrives.
      const big = bin(`GET / HTTP/1.1\r\nHost: relay.test\r\nX-Big: ${'a'.repeat(3000)}\r\n\r\n`);
      const peer = await connectTcp('127.0.0.1', r.port);
      for (let off = 0; off < big.length && !peer.socket.destroyed; off += 100) peer.socket.write(big.subarray(off, off + 100));
      await peer.closed;
      const bad = await exchange(r.port, 'GET /x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n');
      await waitUntil(() => ofKind(r.events, 'close').length === 2, 3000, 'two closes');

      const answer = (status: string, details: string): string =>
        `HTTP/1.1 ${status}\r\nproxy-status: udp-tunnel-inspect; error=http_request_error; details="${details}"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`;
      assert.equal(peer.received().toString('latin1'), answer('431 Request Header Fields Too Large', 'HTTP/1.1 head exceeds 1024 bytes'));
      assert.equal(bad.received().toString('latin1'), answer('400 Bad Request', "field line without a name and colon: 'no colon here' (RFC 9112)"));
      assert.deepEqual(
        ofKind(r.events, 'error').map((e) => [e.session, e.dir, e.offset, e.layer, e.code, e.rfc]),
        [['c1', '->', 1024, 'http', 'UT_ERR_HEADERS_TOO_LARGE', null], ['c2', '->', 26, 'http', 'UT_ERR_HTTP1_MALFORMED', 'RFC 9112']],
      );
      assert.deepEqual(shape(r.events, 'c1'), ['error->', 'response<-', 'close']);
      assert.deepEqual(
        ofKind(r.events, 'close').map((c) => [c.session, c.reason, c.detail]),
        [['c1', 'error', 'HTTP/1.1 request head could not be parsed; relay answered 431'], ['c2', 'error', 'HTTP/1.1 request head could not be parsed; relay answered 400']],
      );
      assert.deepEqual([r.relay.counters.headErrors, r.relay.counters.headLimit, r.relay.counters.streams, up.peers.length], [2, 1, 0, 0]);
    } finally {
      await r.relay.close();
      await up.close();
    }
  });

  it('holds a bounded amount when the upstream stops reading, then delivers every byte', async () => {
    const up = await startTcpServer();
    const r = await startRelay(`http://127.0.0.1:${up.port}`);
    const client = await connectTcp('127.0.0.1', r.port);
    try {
      const head = upgradeHead(TEMPLATE('127.0.0.1', 9), 'relay.test');
      client.socket.write(head);
      const upPeer = await up.waitPeer(1);
      await upPeer.waitBytes(head.length);
      upPeer.socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n');
      await waitUntil(() => client.received().length > 0, 3000, '101');
      upPeer.socket.pause();
      // 32 MiB of DATAGRAM capsules: more than the kernel buffers of both hops can take.
      const capsule = encodeDatagramCapsule(payload(16_000, 5));
      const count = Math.ceil((32 << 20) / capsule.length);
      const body = Buffer.concat(Array.from({ length: count }, () => capsule));
      // Capsule by capsule, so that the client's queue shrinks as the kernel takes each one.
      for (let i = 0; i < count; i++) client.socket.write(capsule);
      // Stalled: the client has handed part of the body to the kernel and no more goes out for several polls in a row.
      let last = -1;
      let same = 0;
      await waitUntil(() => {
        const pending = client.socket.writableLength;
        const flushed = body.length - pending;
        same = flushed > 0 && flushed === last ? same + 1 : 0;
        last = flushed;
        return same >= 5 && pending > 0;
      }, 10_000, 'client writes to stall');
      assert.ok(r.relay.bufferedBytes <= 256 * 1024, `relay holds ${r.relay.bufferedBytes} bytes`);
      upPeer.socket.resume();
      await upPeer.waitBytes(head.length + body.length, 20_000);
      assert.ok(upPeer.received().subarray(head.length).equals(body));
      await waitUntil(() => ofKind(r.events, 'capsule').length === count, 5000, 'every capsule reported');
      assert.equal(r.relay.counters.bytesToProxy, body.length);
    } finally {
      client.socket.destroy();
      await r.relay.close();
      await up.close();
    }
  });
});

describe('HTTP/1.1 relay over TLS', () => {
  it('speaks TLS (ALPN http/1.1) to an https upstream, and answers 504 when its handshake never completes', async () => {
    const cert = testCert();
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: cert.cert, key: cert.key } });
    const s = await server.listen();
    const r = await startRelay(`https://127.0.0.1:${s.port}`, { upstreamTls: { ca: cert.cert } });
    // Accepts TCP and never answers the TLS ClientHello.
    const silent = await startTcpServer();
    const slow = await startRelay(`https://127.0.0.1:${silent.port}`, { connectTimeoutMs: 200 });
    try {
      const client = await connectTcp('127.0.0.1', r.port);
      client.socket.write(upgradeHead(TEMPLATE('127.0.0.1', echo.port), `127.0.0.1:${s.port}`));
      await waitUntil(() => /^HTTP\/1\.1 101 [^]*\r\n\r\n$/.test(client.received().toString('latin1')), 3000, '101');
      const at = client.received().length;
      client.socket.write(encodeDatagramCapsule(bin('tls up')));
      assert.equal((await client.waitBytes(at + 9)).subarray(at).toString('hex'), encodeDatagramCapsule(bin('tls up')).toString('hex'));
      client.socket.destroy();

      const peer = await connectTcp('127.0.0.1', slow.port);
      peer.socket.write(upgradeHead(TEMPLATE('127.0.0.1', 9), 'relay.test'));
      await peer.closed;
      const details = `proxy 127.0.0.1:${silent.port} did not complete the connection within 200 ms`;
      assert.equal(
        peer.received().toString('latin1'),
        `HTTP/1.1 504 Gateway Timeout\r\nproxy-status: udp-tunnel-inspect; error=connection_timeout; details="${details}"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      );
      assert.equal(slow.relay.counters.localAnswers, 1);
    } finally {
      await r.relay.close();
      await slow.relay.close();
      await silent.close();
      await server.close();
      await echo.close();
    }
  });

  it('accepts connect --http 1.1 over TLS (ALPN http/1.1) next to HTTP/2 on the same port', async () => {
    const cert = testCert();
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const r = await startRelay(`http://127.0.0.1:${s.port}`, { tls: { cert: cert.cert, key: cert.key } });
    const client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: `https://127.0.0.1:${r.port}`, http: '1.1', target: { host: '127.0.0.1', port: echo.port }, tls: { ca: cert.cert }, connectTimeoutMs: 5000 }),
    });
    const local = await client.start();
    const peer = await openUdpPeer();
    try {
      await peer.send('over tls', local.port, '127.0.0.1');
      assert.equal((await peer.waitFor(1))[0]?.toString(), 'over tls');
      const hex = Buffer.from('over tls').toString('hex');
      assert.deepEqual(ofKind(r.events, 'capsule').map((c) => [c.session, c.dir, c.payloadHex]), [['c1', '->', hex], ['c1', '<-', hex]]);
      assert.deepEqual([ofKind(r.events, 'request')[0]?.http, ofKind(r.events, 'response')[0]?.status], ['1.1', 101]);
      const tunnel = await openRawTunnel(`https://127.0.0.1:${r.port}`, TEMPLATE('127.0.0.1', echo.port), { ca: cert.cert });
      try {
        assert.equal((await tunnel.response).headers[':status'], 200);
      } finally {
        await tunnel.close();
      }
      assert.deepEqual([r.relay.counters.connectionsH1, r.relay.counters.connectionsH2], [1, 1]);
    } finally {
      await peer.close();
      await client.close();
      await r.relay.close();
      await server.close();
      await echo.close();
    }
  });
});
