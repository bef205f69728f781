import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { ForwardGroup } from '../../../src/tunnel/forward-group.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../../helpers/net.js';

/** A plain HTTP/2 server that accepts every CONNECT-UDP request with 200 and records its headers. */
async function recordingProxy(host: string): Promise<{ port: number; requests: http2.IncomingHttpHeaders[]; close(): Promise<void> }> {
  const requests: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer({ settings: { enableConnectProtocol: true } });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    requests.push(headers);
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open sessions would hold close() until they end.
        for (const s of sessions) s.destroy();
      }),
  };
}

for (const host of ['127.0.0.1', '::1']) {
  describe(`tunnel/forward-group over ${host}`, () => {
    it('two forwards to two UDP echo targets both relay, over ONE HTTP/2 connection to the proxy', async () => {
      const echoA = await startUdpEcho(host);
      const echoB = await startUdpEcho(host);
      const server = new TunnelServer({ host, port: 0, policy: new TargetPolicy() });
      const addr = await server.listen();
      const proxyHost = host.includes(':') ? `[${host}]` : host;
      const group = new ForwardGroup({
        proxy: { proxy: `http://${proxyHost}:${addr.port}`, connectTimeoutMs: 5000 },
        forwards: [
          { host, port: 0, target: { host, port: echoA.port } },
          { host, port: 0, target: { host, port: echoB.port } },
        ],
      });
      const peers = [await openUdpPeer(host), await openUdpPeer(host)];
      try {
        const [a, b] = await group.start();
        assert.notEqual(a!.port, b!.port);
        assert.equal(group.transportOf(0), group.transportOf(1), 'one shared transport');
        // Several peers per forward, so the pool carries several streams.
        for (let i = 0; i < 3; i++) {
          await peers[0]!.send(`a${i}`, a!.port, host);
          await peers[1]!.send(`b${i}`, b!.port, host);
        }
        const gotA = await peers[0]!.waitFor(3, 10_000);
        const gotB = await peers[1]!.waitFor(3, 10_000);
        assert.deepEqual(gotA.map(String).sort(), ['a0', 'a1', 'a2']);
        assert.deepEqual(gotB.map(String).sort(), ['b0', 'b1', 'b2']);
        assert.equal(echoA.received, 3, 'forward 0 reached target A only');
        assert.equal(echoB.received, 3, 'forward 1 reached target B only');
        assert.equal(server.counters.sessionsTotal, 2);
        assert.equal(server.counters.connectionsH2, 1, 'both forwards rode one HTTP/2 connection');
        assert.equal(server.counters.connections, 1);
        assert.equal(group.counters.downstream_sess_total, 2);
        assert.deepEqual(group.clients.map((c) => c.counters.downstream_sess_tx_datagrams), [3, 3]);
      } finally {
        for (const p of peers) await p.close();
        await group.close();
        await server.close();
        await echoA.close();
        await echoB.close();
      }
    });
  });
}

describe('tunnel/forward-group: header templates and per-forward headers reach the proxy', () => {
  it('each forward sends its own headers, with %NAME% expanded per session', async () => {
    const proxy = await recordingProxy('127.0.0.1');
    const group = new ForwardGroup({
      proxy: {
        proxy: `http://127.0.0.1:${proxy.port}`,
        headers: [
          ['original-dst-port', '%DOWNSTREAM_LOCAL_PORT%'],
          ['x-peer', '%DOWNSTREAM_REMOTE_ADDRESS%'],
          ['x-tenant', 'blue'],
        ],
        connectTimeoutMs: 5000,
      },
      forwards: [
        { host: '127.0.0.1', port: 0, target: { host: '127.0.0.1', port: 53 } },
        { host: '127.0.0.1', port: 0, target: { host: '127.0.0.1', port: 54 }, headers: [['x-tenant', 'green'], ['x-session', '%SESSION_ID% 100%%']] },
      ],
    });
    const peer = await openUdpPeer('127.0.0.1');
    try {
      const [a, b] = await group.start();
      await peer.send('x', a!.port, '127.0.0.1');
      await waitUntil(() => proxy.requests.length === 1, 10_000, 'first request');
      await peer.send('y', b!.port, '127.0.0.1');
      await waitUntil(() => proxy.requests.length === 2, 10_000, 'second request');
      const [ra, rb] = proxy.requests;
      assert.equal(ra![':path'], '/.well-known/masque/udp/127.0.0.1/53/');
      assert.equal(rb![':path'], '/.well-known/masque/udp/127.0.0.1/54/');
      assert.equal(ra!['original-dst-port'], String(a!.port));
      assert.equal(rb!['original-dst-port'], String(b!.port));
      assert.equal(ra!['x-peer'], `127.0.0.1:${peer.port}`);
      assert.equal(ra!['x-tenant'], 'blue');
      assert.equal(rb!['x-tenant'], 'green', 'a forward header replaces the proxy header of the same name');
      assert.equal(ra!['x-session'], undefined);
      assert.equal(rb!['x-session'], 'f1c1 100%');
    } finally {
      await peer.close();
      await group.close();
      await proxy.close();
    }
  });

  it('a connect-udp forward without a target and an unknown %NAME% are refused when the group is made', () => {
    const isOption = (option: string) => (err: unknown) => (err as { code?: string; details?: Record<string, unknown> }).code === 'UT_ERR_INVALID_OPTION' && (err as { details: Record<string, unknown> }).details['option'] === option;
    assert.throws(() => new ForwardGroup({ proxy: { proxy: 'http://127.0.0.1:1' }, forwards: [{ host: '127.0.0.1', port: 0 }] }), isOption('target'));
    assert.throws(
      () => new ForwardGroup({ proxy: { proxy: 'http://127.0.0.1:1' }, forwards: [{ host: '127.0.0.1', port: 0, target: { host: '127.0.0.1', port: 53 }, headers: [['x', '%NOPE%']] }] }),
      isOption('headers'),
    );
    assert.throws(() => new ForwardGroup({ proxy: { proxy: 'http://127.0.0.1:1' }, forwards: [] }), isOption('forwards'));
  });
});
