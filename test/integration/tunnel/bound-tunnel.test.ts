import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { BoundTunnel, type BoundContextEvent, type BoundSender } from '../../../src/tunnel/bound-tunnel.js';
import { buildSharedTransport, type HttpVersionChoice } from '../../../src/tunnel/client-config.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer, type TunnelServerOptions } from '../../../src/tunnel/server/tunnel-server.js';
import type { Transport } from '../../../src/tunnel/transport/types.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';

interface Received {
  payload: string;
  from: BoundSender;
}

/** A bound-capable proxy, a transport to it and a tunnel that records what it receives and its context events. */
async function boundStack(host: string, http: HttpVersionChoice = '2', server: Partial<TunnelServerOptions> = {}) {
  const proxy = new TunnelServer({ host, port: 0, policy: new TargetPolicy(), allowBind: true, ...server });
  const addr = await proxy.listen();
  const proxyHost = host.includes(':') ? `[${host}]` : host;
  const transport = buildSharedTransport({ proxy: `http://${proxyHost}:${addr.port}`, http, connectTimeoutMs: 5000 });
  const tunnel = await BoundTunnel.open({ transport });
  const received: Received[] = [];
  const contexts: BoundContextEvent[] = [];
  tunnel.on('message', (payload: Buffer, from: BoundSender) => received.push({ payload: payload.toString(), from }));
  tunnel.on('context', (e: BoundContextEvent) => contexts.push(e));
  return {
    proxy,
    transport,
    tunnel,
    received,
    contexts,
    async close() {
      tunnel.close();
      await transport.close();
      await proxy.close();
    },
  };
}

const fromEcho = (r: Received, echo: UdpEcho): boolean => r.from.port === echo.port && r.from.address === echo.host;

for (const host of ['127.0.0.1', '::1']) {
  const family = host.includes(':') ? 'IPv6' : 'IPv4';
  for (const http of ['2', '1.1'] as const) {
    describe(`BoundTunnel over ${host}, HTTP/${http}`, () => {
      it('reaches two UDP echo peers through one binding, on the uncompressed context and then a compressed one', async () => {
        const s = await boundStack(host, http);
        const a = await startUdpEcho(host);
        const b = await startUdpEcho(host);
        try {
          assert.equal(s.tunnel.publicAddresses.length, 1);
          assert.equal(s.tunnel.publicAddresses[0]!.address, host);
          assert.ok(s.tunnel.publicAddresses[0]!.port > 0);
          assert.notEqual(s.tunnel.uncompressedContext, null, 'the uncompressed context is registered on open');
          assert.ok(s.tunnel.send(Buffer.from('to-a'), { address: host, port: a.port }));
          assert.ok(s.tunnel.send(Buffer.from('to-b'), { address: host, port: b.port }));
          await waitUntil(() => s.received.some((r) => fromEcho(r, a)) && s.received.some((r) => fromEcho(r, b)), 10_000, 'both echoes');
          assert.equal(s.received.find((r) => fromEcho(r, a))!.payload, 'to-a');
          assert.equal(s.received.find((r) => fromEcho(r, b))!.payload, 'to-b');
          assert.equal(s.received[0]!.from.family, family);
          assert.equal(s.tunnel.counters.txCompressed, 0);
          assert.equal(s.tunnel.counters.rxCompressed, 0);

          const id = s.tunnel.compress({ address: host, port: a.port });
          assert.ok(id !== null && id % 2 === 0 && id !== s.tunnel.uncompressedContext, `client IDs are even (${String(id)})`);
          await waitUntil(() => s.contexts.some((e) => e.event === 'acked' && e.id === id && e.by === 'proxy'), 10_000, 'the ACK');
          const before = s.received.length;
          assert.ok(s.tunnel.send(Buffer.from('compressed'), { address: host, port: a.port }));
          await waitUntil(() => s.received.length > before, 10_000, 'the compressed echo');
          assert.deepEqual(s.received.slice(before).map((r) => [r.payload, r.from.port]), [['compressed', a.port]]);
          assert.equal(s.tunnel.counters.txCompressed, 1);
          assert.equal(s.tunnel.counters.rxCompressed, 1, "the proxy answers on the sender's compressed context");
          assert.equal(s.tunnel.counters.rxDatagrams, 3);
          assert.equal(s.tunnel.counters.txDatagrams, 3);
          assert.equal(a.received, 2);
          assert.equal(b.received, 1);
        } finally {
          await s.close();
          await a.close();
          await b.close();
        }
      });
    });
  }

  describe(`BoundTunnel over ${host}: the draft's rules with a real proxy`, () => {
    it("falls back to the uncompressed context when the proxy refuses a registration with COMPRESSION_CLOSE", async () => {
      // Two contexts at most: the uncompressed one and one compressed; the second compressed registration is refused.
      const s = await boundStack(host, '2', { maxBindContexts: 2 });
      const a = await startUdpEcho(host);
      const b = await startUdpEcho(host);
      try {
        const idA = s.tunnel.compress({ address: host, port: a.port });
        const idB = s.tunnel.compress({ address: host, port: b.port });
        await waitUntil(() => s.contexts.some((e) => e.event === 'closed' && e.id === idB), 10_000, 'the refusal');
        const closed = s.contexts.find((e) => e.event === 'closed' && e.id === idB)!;
        assert.equal(closed.by, 'proxy');
        assert.equal(closed.refused, true);
        assert.equal(s.tunnel.counters.registrationsRefused, 1);
        assert.equal(s.tunnel.contextFor({ address: host, port: b.port }), null);
        assert.equal(s.tunnel.contextFor({ address: host, port: a.port }), idA);
        assert.equal(s.proxy.counters.limits.bindContexts, 1);
        assert.ok(s.tunnel.send(Buffer.from('after-refusal'), { address: host, port: b.port }));
        await waitUntil(() => s.received.some((r) => fromEcho(r, b)), 10_000, "b's echo");
        assert.equal(s.received.find((r) => fromEcho(r, b))!.payload, 'after-refusal');
        assert.equal(s.tunnel.counters.txCompressed, 0, 'sent on the uncompressed context');
      } finally {
        await s.close();
        await a.close();
        await b.close();
      }
    });

    it('restricting IPs: with the uncompressed context closed, only registered senders are delivered', async () => {
      const s = await boundStack(host);
      const a = await startUdpEcho(host);
      const stranger = await openUdpPeer(host);
      try {
        const id = s.tunnel.compress({ address: host, port: a.port });
        await waitUntil(() => s.contexts.some((e) => e.event === 'acked' && e.id === id), 10_000, 'the ACK');
        assert.ok(s.tunnel.closeUncompressed());
        assert.equal(s.tunnel.uncompressedContext, null);
        // Capsules and datagrams share one ordered stream: once this echo is back, the proxy has the CLOSE.
        s.tunnel.send(Buffer.from('still-here'), { address: host, port: a.port });
        await waitUntil(() => s.received.some((r) => r.payload === 'still-here'), 10_000, 'the compressed echo');
        const pub = s.tunnel.publicAddresses[0]!;
        await stranger.send('let-me-in', pub.port, pub.address);
        await waitUntil(() => s.proxy.counters.bind.unknownSenderDrops >= 1, 10_000, "the proxy's drop");
        // And a registered sender still gets through after the stranger was turned away.
        s.tunnel.send(Buffer.from('again'), { address: host, port: a.port });
        await waitUntil(() => s.received.some((r) => r.payload === 'again'), 10_000, 'the second echo');
        assert.equal(s.received.some((r) => r.payload === 'let-me-in'), false);
        assert.equal(s.received.some((r) => r.from.port === stranger.port), false);
        // Nothing to send on for an unregistered target now.
        assert.equal(s.tunnel.send(Buffer.from('x'), { address: host, port: stranger.port }), false);
        assert.equal(s.tunnel.counters.drops.noContext, 1);
      } finally {
        await s.close();
        await a.close();
        await stranger.close();
      }
    });

    it('receives from a sender it never sent to, right after open() resolved (the uncompressed context is acknowledged)', async () => {
      const s = await boundStack(host);
      const stranger = await openUdpPeer(host);
      try {
        assert.equal(s.tunnel.contexts.get(s.tunnel.uncompressedContext!)?.pending, false);
        const pub = s.tunnel.publicAddresses[0]!;
        await stranger.send('hello', pub.port, pub.address);
        await waitUntil(() => s.received.length === 1, 10_000, 'the inbound datagram');
        assert.deepEqual(s.received[0], { payload: 'hello', from: { address: host, port: stranger.port, family } });
        // The reply reaches the stranger from the public address.
        s.tunnel.send(Buffer.from('hi back'), s.received[0]!.from);
        const [reply] = await stranger.waitFor(1, 10_000);
        assert.equal(reply!.toString(), 'hi back');
      } finally {
        await s.close();
        await stranger.close();
      }
    });

    it('drops sends to an address family the proxy did not list, and counts them', async () => {
      const s = await boundStack(host);
      try {
        const other = host.includes(':') ? '127.0.0.1' : '::1';
        assert.equal(s.tunnel.send(Buffer.from('x'), { address: other, port: 9 }), false);
        assert.equal(s.tunnel.compress({ address: other, port: 9 }), null);
        assert.equal(s.tunnel.counters.drops.wrongFamily, 2);
        assert.throws(() => s.tunnel.send(Buffer.from('x'), { address: 'localhost', port: 9 }), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.INVALID_ADDRESS);
      } finally {
        await s.close();
      }
    });

    it("closes with 'tunnel-closed' when the proxy goes away", async () => {
      const s = await boundStack(host);
      const closed = once(s.tunnel, 'close');
      await s.proxy.close();
      const [reason] = await closed;
      assert.match(String(reason), /^tunnel-(closed|ended)$/);
      assert.equal(s.tunnel.isOpen, false);
      assert.equal(s.tunnel.send(Buffer.from('x'), { address: host, port: 9 }), false);
      assert.equal(s.tunnel.counters.drops.notOpen, 1);
      await s.transport.close();
    });
  });
}

/** An HTTP/2 proxy that accepts every extended CONNECT with 200 and the given extra response headers. */
async function plainProxy(extra: Record<string, string>): Promise<{ transport: Transport; close(): Promise<void> }> {
  const server = http2.createServer({ settings: { enableConnectProtocol: true } });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (x) => {
    sessions.add(x);
    x.on('close', () => sessions.delete(x));
  });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'capsule-protocol': '?1', ...extra });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const transport = buildSharedTransport({ proxy: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connectTimeoutMs: 5000 });
  return {
    transport,
    async close() {
      await transport.close();
      for (const x of sessions) x.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('BoundTunnel.open refuses a proxy that did not grant the binding', () => {
  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    ['no Connect-UDP-Bind (the proxy ignored it)', {}, 'connect-udp-bind', /Connect-UDP-Bind absent/],
    ['Connect-UDP-Bind: ?0', { 'connect-udp-bind': '?0' }, 'connect-udp-bind', /false/],
    ['no Proxy-Public-Address', { 'connect-udp-bind': '?1' }, 'proxy-public-address', /Proxy-Public-Address absent/],
    ['a Proxy-Public-Address that is not IP:port', { 'connect-udp-bind': '?1', 'proxy-public-address': '"proxy.example:443"' }, 'proxy-public-address', /not IP:port/],
  ];
  for (const [name, headers, header, message] of cases) {
    it(name, async () => {
      const p = await plainProxy(headers);
      try {
        await assert.rejects(BoundTunnel.open({ transport: p.transport }), (e: unknown) => {
          assert.ok(e instanceof UdpTunnelError, String(e));
          assert.equal(e.code, ErrorCodes.BIND_NOT_GRANTED);
          assert.equal(e.details['header'], header);
          assert.equal(e.details['status'], 200);
          assert.equal(e.retryable, false);
          assert.match(e.message, message);
          return true;
        });
      } finally {
        await p.close();
      }
    });
  }

  it('a proxy without bind enabled refuses the * target: the transport error comes through', async () => {
    const proxy = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const addr = await proxy.listen();
    const transport = buildSharedTransport({ proxy: `http://127.0.0.1:${addr.port}`, connectTimeoutMs: 5000 });
    try {
      await assert.rejects(BoundTunnel.open({ transport }), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.TUNNEL_REFUSED && e.details['status'] === 501);
    } finally {
      await transport.close();
      await proxy.close();
    }
  });
});
