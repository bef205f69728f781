import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeFrames } from '../../../src/bench/bare-relay-frames.js';
import { RelayBack, RelayFront } from '../../../src/bench/bare-relay.js';
import type { RelayBackOptions, RelayFrontOptions, RelaySessionStats } from '../../../src/bench/bare-relay.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { generateCertificate } from '../../../src/tunnel/tls-cert.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../../helpers/net.js';
import type { UdpEcho, UdpPeer } from '../../helpers/net.js';
import { runScript, type CliResult } from '../../helpers/cli.js';

const ENTRY = fileURLToPath(new URL('../../../src/cli/bare-relay-process.js', import.meta.url));

/** Everything a test opened, closed in after(). */
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function echoOn(host: string): Promise<UdpEcho> {
  const e = await startUdpEcho(host);
  cleanups.push(() => e.close());
  return e;
}

async function peerOn(host: string): Promise<UdpPeer> {
  const p = await openUdpPeer(host);
  cleanups.push(() => p.close());
  return p;
}

async function backOn(host: string, target: { host: string; port: number }, extra: Partial<RelayBackOptions> = {}) {
  const back = new RelayBack({ host, port: 0, target, ...extra });
  const closed: RelaySessionStats[] = [];
  back.on('session-close', (s: RelaySessionStats) => closed.push(s));
  const addr = await back.listen();
  cleanups.push(() => back.close());
  return { back, addr, closed };
}

async function frontOn(host: string, backPort: number, extra: Partial<RelayFrontOptions> = {}) {
  const front = new RelayFront({ host, port: 0, back: { host, port: backPort }, ...extra });
  const closed: RelaySessionStats[] = [];
  front.on('session-close', (s: RelaySessionStats) => closed.push(s));
  const addr = await front.start();
  cleanups.push(() => front.close());
  return { front, addr, closed };
}

/** A TCP listener that accepts and then neither reads nor answers. */
async function silentTcp(host: string): Promise<{ port: number; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    s.pause();
    s.on('error', () => {});
    sockets.push(s);
  });
  server.listen(0, host);
  await once(server, 'listening');
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as AddressInfo).port, sockets };
}

for (const host of ['127.0.0.1', '::1']) {
  describe(`bare relay on ${host}`, () => {
    it('carries datagrams of two peers through front and back to a UDP echo and back to the right peer', async () => {
      const echo = await echoOn(host);
      const { back, addr: b } = await backOn(host, { host, port: echo.port });
      const { front, addr: f } = await frontOn(host, b.port);
      const p1 = await peerOn(host);
      const p2 = await peerOn(host);
      const sizes = [0, 1, 100, 1400, 9000];
      for (const n of sizes) {
        await p1.send(Buffer.alloc(n, 0x11), f.port, host);
        await p2.send(Buffer.alloc(n, 0x22), f.port, host);
      }
      await p1.waitFor(sizes.length);
      await p2.waitFor(sizes.length);
      // UDP on loopback may reorder only across sockets; each peer's own replies come in its order.
      assert.deepEqual(p1.messages.map((m) => [m.length, m.every((x) => x === 0x11)]), sizes.map((n) => [n, true]));
      assert.deepEqual(p2.messages.map((m) => [m.length, m.every((x) => x === 0x22)]), sizes.map((n) => [n, true]));
      const bytes = 2 * sizes.reduce((a, n) => a + n, 0);
      assert.equal(echo.received, 2 * sizes.length);
      assert.deepEqual(
        [front.counters.peersTotal, front.counters.rxDatagrams, front.counters.rxBytes, front.counters.txDatagrams, front.counters.txBytes],
        [2, 10, bytes, 10, bytes],
      );
      assert.deepEqual(
        [back.counters.connectionsTotal, back.counters.rxDatagrams, back.counters.rxBytes, back.counters.txDatagrams, back.counters.txBytes],
        [2, 10, bytes, 10, bytes],
      );
      assert.equal(front.counters.datagramsDropped + back.counters.datagramsDropped, 0);
      await front.close();
      await waitUntil(() => back.activeConnections === 0, 5000, 'back connections closed');
      assert.equal(front.activePeers, 0);
    });
  });
}

describe('bare relay TLS link', () => {
  it('carries datagrams over TLS when the back has a certificate and the front trusts it', async () => {
    const { cert, key } = await generateCertificate({ days: 1 });
    const echo = await echoOn('127.0.0.1');
    const { back, addr: b } = await backOn('127.0.0.1', { host: '127.0.0.1', port: echo.port }, { tls: { cert, key } });
    const { addr: f } = await frontOn('127.0.0.1', b.port, { tls: { ca: cert } });
    const p = await peerOn('127.0.0.1');
    await p.send('over tls', f.port, '127.0.0.1');
    const [m] = await p.waitFor(1);
    assert.equal(m!.toString(), 'over tls');
    assert.equal(back.counters.rxDatagrams, 1);
  });
});

describe('bare relay limits', () => {
  it('front: queues at most pending.datagrams / pending.bytes while connecting, counts the overflow, and the rest as unsent at close', async () => {
    // A TLS front to a listener that never answers the handshake stays connecting.
    const silent = await silentTcp('127.0.0.1');
    const { cert } = await generateCertificate({ days: 1 });
    const { front, addr, closed } = await frontOn('127.0.0.1', silent.port, { tls: { ca: cert }, pending: { datagrams: 3, bytes: 250 } });
    const port = addr.port;
    const a = await peerOn('127.0.0.1');
    const b = await peerOn('127.0.0.1');
    // a: by count (3 of 5 fit); b: by bytes (two 100-byte datagrams fit in 250, the third does not).
    for (let i = 0; i < 5; i++) await a.send(Buffer.alloc(10), port, '127.0.0.1');
    for (let i = 0; i < 3; i++) await b.send(Buffer.alloc(100), port, '127.0.0.1');
    await waitUntil(() => front.counters.rxDatagrams === 8, 5000, 'front received all');
    assert.equal(front.counters.datagramsDropped, 3);
    await front.close();
    const byPeer = new Map(closed.map((s) => [Number(s.peer.slice(s.peer.lastIndexOf(':') + 1)), s]));
    assert.deepEqual(byPeer.get(a.port)!.drops, { oversize: 0, backpressure: 0, bufferOverflow: 2, unsent: 3, udpSend: 0 });
    assert.deepEqual(byPeer.get(b.port)!.drops, { oversize: 0, backpressure: 0, bufferOverflow: 1, unsent: 2, udpSend: 0 });
    assert.deepEqual([front.counters.dropBufferOverflow, front.counters.dropUnsent, front.counters.datagramsDropped], [3, 5, 8]);
  });

  it('front: drops and counts datagrams once its TCP connection holds maxWriteBuffer unsent bytes', async () => {
    const silent = await silentTcp('127.0.0.1');
    const { front, addr: f, closed } = await frontOn('127.0.0.1', silent.port, { maxWriteBuffer: 8192 });
    const p = await peerOn('127.0.0.1');
    await p.send(Buffer.alloc(1200), f.port, '127.0.0.1');
    // The first frame in the listener's (paused) stream proves the front's connection is open: a burst sent while it
    // was still connecting would overflow the pre-connect queue (bufferOverflow), not the write buffer.
    await waitUntil(() => silent.sockets.length === 1 && silent.sockets[0]!.readableLength >= 1202, 5000, 'first frame at the listener');
    // The kernel takes a few MB before the socket's own buffer grows; keep sending until the limit bites.
    const payload = Buffer.alloc(1200);
    for (let sent = 0; front.counters.datagramsDropped === 0 && sent < 40_000; sent += 200) {
      await Promise.all(Array.from({ length: 200 }, () => p.send(payload, f.port, '127.0.0.1')));
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(front.counters.datagramsDropped > 0, 'the write buffer limit dropped datagrams');
    await front.close();
    assert.equal(closed.length, 1);
    assert.equal(closed[0]!.drops.backpressure, front.counters.dropBackpressure);
    assert.equal(front.counters.dropBackpressure, front.counters.datagramsDropped);
  });

  it('back: drops and counts replies once its TCP connection holds maxWriteBuffer unsent bytes', async () => {
    // The target does not echo: the test sends the replies itself, so it knows how many are in flight. A free-running
    // echo kept answering while the connection closed, and a reply taken into the writer's batch in that last turn
    // is (rightly) counted as unsent, not as backpressure.
    const target = await peerOn('127.0.0.1');
    const backUdp = once(target.socket, 'message') as Promise<[Buffer, { port: number }]>;
    const { back, addr: b, closed } = await backOn('127.0.0.1', { host: '127.0.0.1', port: target.port }, { maxWriteBuffer: 8192 });
    // A front that writes frames and never reads the replies.
    const client = net.connect(b.port, '127.0.0.1');
    client.on('error', () => {});
    await once(client, 'connect');
    client.pause();
    client.write(encodeFrames([Buffer.from('where are you')]));
    const [, from] = await backUdp;
    const c = back.counters;
    // Bursts small enough for the back's default UDP receive buffer, each taken in whole before the next, so no
    // reply is lost in the kernel and every one is either written or dropped.
    const payload = Buffer.alloc(1200);
    let replies = 0;
    while (c.datagramsDropped === 0 && replies < 40_000) {
      await Promise.all(Array.from({ length: 32 }, () => target.send(payload, from.port, '127.0.0.1')));
      replies += 32;
      await waitUntil(() => c.txDatagrams + c.datagramsDropped === replies, 10_000, 'back took every reply');
    }
    assert.ok(c.datagramsDropped > 0, 'the write buffer limit dropped replies');
    client.destroy();
    await waitUntil(() => closed.length === 1, 5000, 'connection closed');
    assert.equal(closed[0]!.drops.backpressure, back.counters.dropBackpressure);
    assert.equal(back.counters.dropBackpressure, back.counters.datagramsDropped);
  });

  it('front and back: datagrams over maxDatagram are dropped and counted, never truncated; the stream goes on', async () => {
    const echo = await echoOn('127.0.0.1');
    const { back, addr: b, closed: backClosed } = await backOn('127.0.0.1', { host: '127.0.0.1', port: echo.port }, { maxDatagram: 100 });
    const { front, addr: f, closed: frontClosed } = await frontOn('127.0.0.1', b.port, { maxDatagram: 200 });
    const p = await peerOn('127.0.0.1');
    await p.send(Buffer.alloc(201), f.port, '127.0.0.1'); // over the front's limit
    await p.send(Buffer.alloc(150), f.port, '127.0.0.1'); // passes the front, skipped by the back's deframer
    await p.send(Buffer.alloc(100), f.port, '127.0.0.1'); // fits both
    const [m] = await p.waitFor(1);
    assert.equal(m!.length, 100);
    assert.equal(echo.received, 1);
    await front.close();
    await waitUntil(() => backClosed.length === 1, 5000, 'back connection closed');
    assert.equal(frontClosed[0]!.drops.oversize, 1);
    assert.equal(backClosed[0]!.drops.oversize, 1);
    assert.deepEqual([front.counters.dropOversize, back.counters.dropOversize], [1, 1]);
    assert.equal(back.counters.rxDatagrams, 1);
  });

  it('front: datagrams of peers beyond maxPeers are dropped and counted', async () => {
    const echo = await echoOn('127.0.0.1');
    const { addr: b } = await backOn('127.0.0.1', { host: '127.0.0.1', port: echo.port });
    const { front, addr: f } = await frontOn('127.0.0.1', b.port, { maxPeers: 1 });
    const p1 = await peerOn('127.0.0.1');
    const p2 = await peerOn('127.0.0.1');
    await p1.send('first', f.port, '127.0.0.1');
    await p1.waitFor(1);
    await p2.send('second', f.port, '127.0.0.1');
    await p2.send('second', f.port, '127.0.0.1');
    await waitUntil(() => front.counters.peerOverflow === 2, 5000, 'overflow counted');
    assert.deepEqual([front.counters.peersTotal, front.counters.datagramsDropped, p2.messages.length], [1, 2, 0]);
  });

  it('back: connections beyond maxConnections are closed at once and counted', async () => {
    const echo = await echoOn('127.0.0.1');
    const { back, addr: b } = await backOn('127.0.0.1', { host: '127.0.0.1', port: echo.port }, { maxConnections: 1 });
    const { front, addr: f, closed } = await frontOn('127.0.0.1', b.port);
    const p1 = await peerOn('127.0.0.1');
    const p2 = await peerOn('127.0.0.1');
    await p1.send('first', f.port, '127.0.0.1');
    await p1.waitFor(1);
    await p2.send('second', f.port, '127.0.0.1');
    await waitUntil(() => closed.length === 1, 5000, 'refused peer closed');
    assert.equal(closed[0]!.peer, `127.0.0.1:${p2.port}`);
    assert.deepEqual([back.counters.connectionsTotal, back.counters.connectionsRefused, back.activeConnections, front.activePeers], [1, 1, 1, 1]);
  });

  it('idle peers are closed after idleTimeoutMs on the front, which closes the back connection too', async () => {
    const echo = await echoOn('127.0.0.1');
    const { back, addr: b } = await backOn('127.0.0.1', { host: '127.0.0.1', port: echo.port });
    const { front, addr: f, closed } = await frontOn('127.0.0.1', b.port, { idleTimeoutMs: 500 });
    const p = await peerOn('127.0.0.1');
    await p.send('x', f.port, '127.0.0.1');
    await p.waitFor(1);
    await waitUntil(() => closed.length === 1, 5000, 'idle close');
    assert.equal(closed[0]!.closeReason, 'idle-timeout');
    assert.equal(front.counters.idleTimeouts, 1);
    await waitUntil(() => back.activeConnections === 0, 5000, 'back closed');
  });

  it('refuses host names and bad maxDatagram values with coded errors', () => {
    assert.throws(
      () => new RelayFront({ host: 'localhost', port: 0, back: { host: '127.0.0.1', port: 1 } }),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_ADDRESS'),
    );
    assert.throws(
      () => new RelayBack({ host: '127.0.0.1', port: 0, target: { host: '127.0.0.1', port: 7 }, maxDatagram: 65536 }),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION'),
    );
  });
});

describe('bare-relay-process', () => {
  const run = (args: string[]): Promise<CliResult> => runScript(ENTRY, args);

  const bad: [string, string[], RegExp][] = [
    ['no role', [], /first argument must be front or back/],
    ['a missing --target', ['back', '--listen', '127.0.0.1:0'], /back needs --target/],
    ['a flag of the other role', ['front', '--listen', '127.0.0.1:0', '--back', '127.0.0.1:9', '--target', '127.0.0.1:7'], /--target does not apply to front/],
    ['a bad address', ['front', '--listen', '127.0.0.1', '--back', '127.0.0.1:9'], /UT_ERR_INVALID_ADDRESS/],
  ];
  for (const [what, args, message] of bad) {
    it(`exits 2 on ${what}`, async () => {
      const r = await run(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, message);
    });
  }
});
