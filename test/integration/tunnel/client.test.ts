import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { openUdpPeer, waitUntil } from '../../helpers/net.js';
import { startStack, type Stack } from '../../helpers/stack.js';
import type { ClientSessionStats } from '../../../src/tunnel/client.js';

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed + i * 31) & 0xff;
  return b;
}

for (const host of ['127.0.0.1', '::1']) {
  for (const tls of [false, true]) {
    describe(`connect -> serve -> echo over ${host} (${tls ? 'TLS h2' : 'h2c'})`, () => {
      let stack: Stack;
      const closed: ClientSessionStats[] = [];
      after(async () => {
        await stack?.close();
      });

      it('relays 0-, 1-, 1200-byte datagrams intact and in order', async () => {
        stack = await startStack({ host, tls });
        stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
        const peer = await openUdpPeer(host);
        const sizes = [0, 1, 1200, 7, 0, 1200];
        const sent = sizes.map((n, i) => payload(n, i));
        for (const p of sent) await peer.send(p, stack.localPort, host);
        const got = await peer.waitFor(sent.length);
        assert.deepEqual(got.map((b) => b.toString('hex')), sent.map((b) => b.toString('hex')));
        await peer.close();
      });

      it(host === '::1' ? 'relays a 65527-byte datagram (the RFC 9298 maximum) intact' : 'relays the largest IPv4 UDP payload (65507 bytes) intact', async () => {
        const peer = await openUdpPeer(host);
        peer.socket.setSendBufferSize(1 << 20);
        peer.socket.setRecvBufferSize(1 << 20);
        const size = host === '::1' ? 65527 : 65507;
        const p = payload(size, 9);
        await peer.send(Buffer.from('warm'), stack.localPort, host);
        await peer.waitFor(1);
        await peer.send(p, stack.localPort, host);
        const got = await peer.waitFor(2);
        assert.equal(got[1]!.length, size);
        assert.ok(got[1]!.equals(p));
        await peer.close();
      });
    });
  }
}

describe('tunnel/client: oversize datagrams', () => {
  it('drops datagrams over --max-datagram, counts them, and never truncates', async () => {
    const stack = await startStack({ client: { maxDatagram: 1200 } });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send(payload(1200, 1), stack.localPort, '127.0.0.1');
    await peer.send(payload(1201, 2), stack.localPort, '127.0.0.1');
    await peer.send(payload(5000, 3), stack.localPort, '127.0.0.1');
    await peer.send(payload(10, 4), stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(2);
    // All four taken in: the two over the limit were dropped on arrival, so no later reply can come.
    await waitUntil(() => stack.client.counters.downstream_sess_rx_datagrams === 4, 5000, 'all four taken in');
    assert.deepEqual(got.map((b) => b.length), [1200, 10]);
    await stack.close();
    await peer.close();
    assert.equal(closed.length, 1);
    assert.equal(closed[0]!.drops.oversize, 2);
    assert.equal(closed[0]!.rxDatagrams, 4);
    assert.equal(closed[0]!.txDatagrams, 2);
    assert.equal(stack.client.counters.datagrams_dropped, 2);
  });
});

describe('tunnel/client: many local peers', () => {
  it('500 peers at once each get only their own replies', async () => {
    const stack = await startStack({ server: { maxStreamsPerConnection: 1000 } });
    const peers = await Promise.all(Array.from({ length: 500 }, () => openUdpPeer()));
    try {
      await Promise.all(peers.map((p, i) => p.send(`peer-${i}-a`, stack.localPort, '127.0.0.1')));
      await Promise.all(peers.map((p, i) => p.send(`peer-${i}-b`, stack.localPort, '127.0.0.1')));
      await Promise.all(peers.map((p) => p.waitFor(2, 15000)));
      peers.forEach((p, i) => {
        assert.deepEqual(p.messages.map(String).sort(), [`peer-${i}-a`, `peer-${i}-b`]);
      });
      assert.equal(stack.client.counters.downstream_sess_total, 500);
      assert.equal(stack.server.activeSessions, 500);
    } finally {
      await Promise.all(peers.map((p) => p.close()));
      await stack.close();
    }
  });

  it('opens another HTTP/2 connection when the proxy allows only 100 streams per connection', async () => {
    const stack = await startStack({ server: { maxStreamsPerConnection: 100 } });
    const peers = await Promise.all(Array.from({ length: 150 }, () => openUdpPeer()));
    try {
      await Promise.all(peers.map((p, i) => p.send(`x${i}`, stack.localPort, '127.0.0.1')));
      await Promise.all(peers.map((p) => p.waitFor(1, 15000)));
      peers.forEach((p, i) => assert.equal(String(p.messages[0]), `x${i}`));
      assert.equal(stack.server.activeSessions, 150);
      const pool = (stack.transport as unknown as { pool: { connectionsOpened: number } }).pool;
      assert.equal(pool.connectionsOpened, 2);
      assert.ok(stack.server.counters.connections >= 2);
    } finally {
      await Promise.all(peers.map((p) => p.close()));
      await stack.close();
    }
  });
});

describe('tunnel/client: buffering while the tunnel is not ready', () => {
  it('with buffering on, datagrams sent before the tunnel is up arrive in order', async () => {
    const stack = await startStack({ client: { buffer: { enabled: true, maxDatagrams: 1024, maxBytes: 16384 } } });
    const peer = await openUdpPeer();
    for (let i = 0; i < 5; i++) peer.socket.send(`m${i}`, stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(5);
    assert.deepEqual(got.map(String), ['m0', 'm1', 'm2', 'm3', 'm4']);
    await peer.close();
    await stack.close();
  });

  it('with buffering off, the datagram that opens a session is dropped and counted', async () => {
    const stack = await startStack({ client: { buffer: { enabled: false, maxDatagrams: 0, maxBytes: 0 } } });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('first', stack.localPort, '127.0.0.1');
    await waitUntil(() => stack.client.counters.sess_tunnel_success === 1, 5000, 'tunnel');
    await peer.send('second', stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(1);
    assert.deepEqual(got.map(String), ['second']);
    await stack.close();
    await peer.close();
    assert.equal(closed[0]!.drops.notReady, 1);
  });

  it('the buffer limit drops and counts what does not fit', async () => {
    const stack = await startStack({ client: { buffer: { enabled: true, maxDatagrams: 3, maxBytes: 16384 } } });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    // All five are sent in one synchronous burst, before the tunnel can possibly be ready.
    for (let i = 0; i < 5; i++) peer.socket.send(`b${i}`, stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(3);
    // All five taken in: what did not fit was dropped on arrival, so no later reply can come.
    await waitUntil(() => stack.client.counters.downstream_sess_rx_datagrams === 5, 5000, 'all five taken in');
    assert.deepEqual(got.map(String), ['b0', 'b1', 'b2']);
    await stack.close();
    await peer.close();
    assert.equal(closed[0]!.drops.bufferOverflow, 2);
    assert.equal(stack.client.counters.sess_tunnel_buffer_overflow, 2);
  });

  it('the byte limit of the buffer is enforced too', async () => {
    const stack = await startStack({ client: { buffer: { enabled: true, maxDatagrams: 100, maxBytes: 250 } } });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    for (let i = 0; i < 4; i++) peer.socket.send(payload(100, i), stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(2);
    await waitUntil(() => stack.client.counters.downstream_sess_rx_datagrams === 4, 5000, 'all four taken in');
    assert.equal(got.length, 2);
    await stack.close();
    await peer.close();
    assert.equal(closed[0]!.drops.bufferOverflow, 2);
  });
});

describe('tunnel/client: idle timeout', () => {
  it('closes an idle session and the next datagram opens a new one', async () => {
    const stack = await startStack({ client: { idleTimeoutMs: 500 } });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('one', stack.localPort, '127.0.0.1');
    await peer.waitFor(1);
    await waitUntil(() => closed.length === 1, 3000, 'idle close');
    assert.equal(closed[0]!.closeReason, 'idle-timeout');
    assert.equal(stack.client.counters.idle_timeout, 1);
    await waitUntil(() => stack.server.activeSessions === 0, 3000, 'server side closed');
    await peer.send('two', stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(2);
    assert.equal(String(got[1]), 'two');
    assert.equal(stack.client.counters.downstream_sess_total, 2);
    await stack.close();
    await peer.close();
  });

  it('runs while the tunnel is still connecting', async () => {
    // A proxy that accepts TCP but never speaks HTTP/2: the session must still end on idle.
    const net = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { TunnelClient } = await import('../../../src/tunnel/client.js');
    const { buildTransport } = await import('../../../src/tunnel/client-config.js');
    const port = (silent.address() as import('node:net').AddressInfo).port;
    const transport = buildTransport({ proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: 9 }, connectTimeoutMs: 60_000 });
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport, idleTimeoutMs: 200 });
    const local = await client.start();
    const closed: ClientSessionStats[] = [];
    client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('hello', local.port, '127.0.0.1');
    await waitUntil(() => closed.length === 1, 3000, 'idle close while connecting');
    assert.equal(closed[0]!.closeReason, 'idle-timeout');
    assert.equal(closed[0]!.readyAfterMs, null);
    await client.close();
    await peer.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });

  it('the server closes an idle session in both directions', async () => {
    const stack = await startStack({ server: { idleTimeoutMs: 500 } });
    const peer = await openUdpPeer();
    await peer.send('x', stack.localPort, '127.0.0.1');
    await peer.waitFor(1);
    await waitUntil(() => stack.server.counters.idleTimeouts === 1, 3000, 'server idle');
    await waitUntil(() => stack.client.activeSessions === 0, 3000, 'client saw the close');
    await stack.close();
    await peer.close();
  });
});
