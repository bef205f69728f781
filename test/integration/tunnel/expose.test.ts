import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import type { BoundContextEvent } from '../../../src/tunnel/bound-tunnel.js';
import { buildSharedTransport } from '../../../src/tunnel/client-config.js';
import { CAPSULE_TYPE_COMPRESSION_ACK, CAPSULE_TYPE_COMPRESSION_ASSIGN, encodeCapsule } from '../../../src/tunnel/codec/capsule.js';
import { decodeCompressionAssign, encodeCompressionAck, encodeUncompressedDatagram } from '../../../src/tunnel/codec/bind.js';
import { CapsuleDecoder } from '../../../src/tunnel/codec/capsule-decoder.js';
import { encodeDatagramHeader } from '../../../src/tunnel/codec/datagram.js';
import { Exposer, MAX_PENDING_PER_PEER, type ExposedEvent, type ExposerOptions, type PeerCloseEvent, type PeerOpenEvent } from '../../../src/tunnel/expose.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer, type TunnelServerOptions } from '../../../src/tunnel/server/tunnel-server.js';
import type { Transport } from '../../../src/tunnel/transport/types.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpPeer } from '../../helpers/net.js';
import { streamPair } from '../../helpers/stream-pair.js';

async function startProxy(host: string, port = 0, extra: Partial<TunnelServerOptions> = {}): Promise<{ server: TunnelServer; port: number }> {
  const server = new TunnelServer({ host, port, policy: new TargetPolicy(), allowBind: true, ...extra });
  return { server, port: (await server.listen()).port };
}

interface Run {
  exposer: Exposer;
  exposed: ExposedEvent[];
  opened: PeerOpenEvent[];
  closed: PeerCloseEvent[];
  contexts: BoundContextEvent[];
  lost: unknown[];
}

function watch(exposer: Exposer): Run {
  const r: Run = { exposer, exposed: [], opened: [], closed: [], contexts: [], lost: [] };
  exposer.on('exposed', (e: ExposedEvent) => r.exposed.push(e));
  exposer.on('peer-open', (e: PeerOpenEvent) => r.opened.push(e));
  exposer.on('peer-close', (e: PeerCloseEvent) => r.closed.push(e));
  exposer.on('context', (e: BoundContextEvent) => r.contexts.push(e));
  exposer.on('tunnel-lost', (e: unknown) => r.lost.push(e));
  return r;
}

function exposerFor(host: string, proxyPort: number, servicePort: number, extra: Partial<ExposerOptions> = {}): Run {
  const proxyHost = host.includes(':') ? `[${host}]` : host;
  const transport = buildSharedTransport({ proxy: `http://${proxyHost}:${proxyPort}`, connectTimeoutMs: 5000 });
  return watch(new Exposer({ transport, local: { host, port: servicePort }, backoff: { baseMs: 20, maxMs: 200 }, ...extra }));
}

/** Sends `text` from `peer` to the public address and resolves with the reply. */
async function roundTrip(peer: UdpPeer, text: string, pub: { address: string; port: number }): Promise<string> {
  const n = peer.messages.length;
  await peer.send(text, pub.port, pub.address);
  const got = await peer.waitFor(n + 1, 10_000);
  return got[n]!.toString();
}

for (const host of ['127.0.0.1', '::1']) {
  describe(`Exposer over ${host}`, () => {
    it('two remote peers reach a local echo service through the public address, each from its own local source port', async () => {
      const service = await startUdpEcho(host);
      const proxy = await startProxy(host);
      const run = exposerFor(host, proxy.port, service.port);
      const a = await openUdpPeer(host);
      const b = await openUdpPeer(host);
      try {
        const ev = await run.exposer.start();
        assert.deepEqual(run.exposed, [ev]);
        const pub = ev.publicAddresses[0]!;
        assert.equal(pub.address, host);
        assert.deepEqual(ev.public, [host.includes(':') ? `[${host}]:${pub.port}` : `${host}:${pub.port}`]);
        assert.equal(ev.local, host.includes(':') ? `[${host}]:${service.port}` : `${host}:${service.port}`);
        assert.equal(ev.reopened, false);
        assert.equal(await roundTrip(a, 'a1', pub), 'a1');
        assert.equal(await roundTrip(b, 'b1', pub), 'b1');
        assert.equal(await roundTrip(a, 'a2', pub), 'a2');
        assert.equal(await roundTrip(b, 'b2', pub), 'b2');
        assert.deepEqual(a.messages.map(String), ['a1', 'a2']);
        assert.deepEqual(b.messages.map(String), ['b1', 'b2']);
        // The service sees one source per remote peer, and never the peers' own ports.
        const ports = new Set(service.sources);
        assert.equal(ports.size, 2, `sources ${service.sources.join(',')}`);
        assert.ok(!ports.has(a.port) && !ports.has(b.port));
        assert.deepEqual(new Set(run.opened.map((o) => o.localPort)), ports);
        assert.deepEqual(run.opened.map((o) => o.peer).sort(), [a.port, b.port].map((p) => (host.includes(':') ? `[${host}]:${p}` : `${host}:${p}`)).sort());
        // Each peer got a compressed context once it sent; the second round went compressed both ways.
        const t = run.exposer.tunnelCounters();
        assert.equal(run.contexts.filter((e) => e.event === 'acked' && e.target !== null).length, 2);
        assert.equal(t.rxCompressed, 2, 'a2 and b2 arrived on their compressed contexts');
        assert.equal(t.txCompressed, 2, 'their replies went on them too');
        assert.equal(run.exposer.counters.rxDatagrams, 4);
        assert.equal(run.exposer.counters.txDatagrams, 4);
        assert.equal(run.exposer.counters.peersActive, 2);
      } finally {
        await run.exposer.close();
        await proxy.server.close();
        await service.close();
        await a.close();
        await b.close();
      }
    });

    it('forgets an idle peer: its socket and its compressed context are closed, and it comes back as a new peer', async () => {
      const service = await startUdpEcho(host);
      const proxy = await startProxy(host);
      const run = exposerFor(host, proxy.port, service.port, { idleTimeoutMs: 200 });
      const a = await openUdpPeer(host);
      try {
        const pub = (await run.exposer.start()).publicAddresses[0]!;
        assert.equal(await roundTrip(a, 'first', pub), 'first');
        await waitUntil(() => run.closed.length === 1, 10_000, 'the idle peer-close');
        const gone = run.closed[0]!;
        assert.equal(gone.reason, 'idle-timeout');
        assert.equal(gone.rxDatagrams, 1);
        assert.equal(gone.txDatagrams, 1);
        assert.ok(gone.context !== null);
        const closedCtx = run.contexts.find((e) => e.event === 'closed' && e.id === gone.context);
        assert.ok(closedCtx, 'COMPRESSION_CLOSE sent for the forgotten peer');
        assert.equal(closedCtx.by, 'client');
        assert.equal(run.exposer.counters.idleTimeouts, 1);
        assert.equal(run.exposer.activePeers, 0);
        assert.equal(await roundTrip(a, 'again', pub), 'again');
        assert.equal(run.opened.length, 2);
        assert.notEqual(run.opened[1]!.localPort, run.opened[0]!.localPort, 'a new local socket');
        assert.equal(new Set(service.sources).size, 2);
      } finally {
        await run.exposer.close();
        await proxy.server.close();
        await service.close();
        await a.close();
      }
    });

    it('drops the datagrams of peers past maxPeers and counts them', async () => {
      const service = await startUdpEcho(host);
      const proxy = await startProxy(host);
      const run = exposerFor(host, proxy.port, service.port, { maxPeers: 1 });
      const a = await openUdpPeer(host);
      const b = await openUdpPeer(host);
      try {
        const pub = (await run.exposer.start()).publicAddresses[0]!;
        assert.equal(await roundTrip(a, 'a', pub), 'a');
        await b.send('b', pub.port, pub.address);
        await waitUntil(() => run.exposer.counters.drops.peerLimit === 1, 10_000, 'the peer-limit drop');
        assert.equal(await roundTrip(a, 'a-again', pub), 'a-again');
        assert.equal(b.messages.length, 0);
        assert.equal(run.exposer.counters.peersTotal, 1);
      } finally {
        await run.exposer.close();
        await proxy.server.close();
        await service.close();
        await a.close();
        await b.close();
      }
    });

    it('after the proxy restarts, asks for a new binding and announces it again', async () => {
      const service = await startUdpEcho(host);
      let proxy = await startProxy(host);
      const run = exposerFor(host, proxy.port, service.port);
      const a = await openUdpPeer(host);
      try {
        const first = (await run.exposer.start()).publicAddresses[0]!;
        assert.equal(await roundTrip(a, 'before', first), 'before');
        await proxy.server.close();
        await waitUntil(() => run.lost.length === 1, 10_000, 'tunnel-lost');
        assert.equal(run.closed.length, 1);
        assert.equal(run.closed[0]!.reason, 'tunnel-lost');
        // The same proxy address again, as a restarted serve would have.
        proxy = await startProxy(host, proxy.port);
        await waitUntil(() => run.exposed.length === 2, 20_000, 'the second exposed');
        const again = run.exposed[1]!;
        assert.equal(again.reopened, true);
        assert.notEqual(again.id, run.exposed[0]!.id);
        const second = again.publicAddresses[0]!;
        assert.equal(await roundTrip(a, 'after', second), 'after');
        assert.equal(run.exposer.counters.tunnelsOpened, 2);
        assert.equal(run.exposer.counters.tunnelsLost, 1);
      } finally {
        await run.exposer.close();
        await proxy.server.close();
        await service.close();
        await a.close();
      }
    });
  });
}

describe('Exposer: the per-peer queue while its socket is set up', () => {
  it(`holds at most ${MAX_PENDING_PER_PEER} datagrams of a new peer, then drops and counts the rest`, async () => {
    const service = await startUdpEcho('127.0.0.1');
    // The proxy end is a hand-written capsule stream (it ACKs the uncompressed context); the service and the
    // exposer's peer sockets are real.
    const pair = streamPair();
    const decoder = new CapsuleDecoder(
      (c) => {
        if (c.type === CAPSULE_TYPE_COMPRESSION_ASSIGN && c.value !== null && decodeCompressionAssign(c.value).ipVersion === 0) {
          pair.b.write(encodeCapsule(CAPSULE_TYPE_COMPRESSION_ACK, encodeCompressionAck(2)));
        }
      },
      { deliver: () => true },
    );
    pair.b.on('data', (chunk: Buffer) => decoder.push(chunk));
    const transport: Transport = {
      name: 'pair',
      open: async () => ({ stream: pair.a, responseHeaders: { ':status': '200', 'connect-udp-bind': '?1', 'proxy-public-address': '"192.0.2.45:40001"' }, abort: () => pair.a.destroy() }),
      close: async () => {},
    };
    const run = watch(new Exposer({ transport, local: { host: '127.0.0.1', port: service.port }, compress: false }));
    try {
      await run.exposer.start();
      // 100 datagrams from one peer in one write: all arrive in one turn, before its socket can be bound.
      const peer = { ipVersion: 4 as const, address: '192.0.2.42', port: 50000 };
      const burst = Buffer.concat(
        Array.from({ length: 100 }, (_, i) => {
          const body = encodeUncompressedDatagram(peer, Buffer.from(`d${i}`));
          return Buffer.concat([encodeDatagramHeader(body.length, 2), body]);
        }),
      );
      pair.b.write(burst);
      await waitUntil(() => service.sources.length === MAX_PENDING_PER_PEER, 10_000, 'the held datagrams at the service');
      assert.equal(run.exposer.counters.drops.pending, 100 - MAX_PENDING_PER_PEER);
      assert.equal(run.exposer.counters.rxDatagrams, 100);
      assert.equal(new Set(service.sources).size, 1);
    } finally {
      await run.exposer.close();
      pair.close();
      await service.close();
    }
  });
});
