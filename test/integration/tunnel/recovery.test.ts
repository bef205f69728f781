import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientSessionStats } from '../../../src/tunnel/client.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, waitUntil } from '../../helpers/net.js';
import { startStack } from '../../helpers/stack.js';

describe('tunnel: recovery', () => {
  it('serve stopped and restarted: open sessions end, the next datagram opens a new session on a new connection', async () => {
    const stack = await startStack({ client: { maxConnectAttempts: 1 } });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('before', stack.localPort, '127.0.0.1');
    await peer.waitFor(1);

    await stack.server.close();
    await waitUntil(() => closed.length === 1, 3000, 'session ended with the connection');
    assert.notEqual(closed[0]!.closeReason, 'idle-timeout');

    // While the proxy is down the attempt fails and is counted.
    await peer.send('while down', stack.localPort, '127.0.0.1');
    await waitUntil(() => stack.client.counters.sess_tunnel_failure === 1, 3000, 'failed attempt');
    assert.match(closed[1]!.closeReason, /^connect-failed: cannot reach proxy/);
    assert.equal(closed[1]!.drops.unsent, 1);

    const restarted = new TunnelServer({ host: '127.0.0.1', port: stack.proxyPort, policy: new TargetPolicy() });
    await restarted.listen();
    await peer.send('after', stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(2);
    assert.equal(String(got[1]), 'after');
    assert.equal(stack.client.counters.downstream_sess_total, 3);
    const pool = (stack.transport as unknown as { pool: { connectionsOpened: number } }).pool;
    assert.equal(pool.connectionsOpened, 3);
    await peer.close();
    await stack.client.close();
    await restarted.close();
    await stack.echo.close();
  });

  it('with retries and backoff, a datagram sent while serve is down is delivered once it is back', async () => {
    const stack = await startStack({ client: { maxConnectAttempts: 20, backoff: { baseMs: 50, maxMs: 100 } } });
    const errors: { attempt: number; willRetry: boolean }[] = [];
    stack.client.on('connect-error', (e: { attempt: number; willRetry: boolean }) => errors.push(e));
    await stack.server.close();
    const peer = await openUdpPeer();
    await peer.send('queued', stack.localPort, '127.0.0.1');
    await waitUntil(() => errors.length >= 2, 3000, 'some failed attempts');
    const restarted = new TunnelServer({ host: '127.0.0.1', port: stack.proxyPort, policy: new TargetPolicy() });
    await restarted.listen();
    const got = await peer.waitFor(1, 5000);
    assert.equal(String(got[0]), 'queued');
    assert.ok(errors.every((e) => e.willRetry));
    assert.equal(stack.client.counters.upstream_rq_retry, errors.length);
    await peer.close();
    await stack.client.close();
    await restarted.close();
    await stack.echo.close();
  });

  it('a proxy without extended CONNECT fails the session with a clear message, no retry', async () => {
    const http2 = await import('node:http2');
    const plain = http2.createServer();
    plain.on('stream', (s) => s.respond({ ':status': 404 }, { endStream: true }));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const port = (plain.address() as import('node:net').AddressInfo).port;
    const { TunnelClient } = await import('../../../src/tunnel/client.js');
    const { buildTransport } = await import('../../../src/tunnel/client-config.js');
    const client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: 9 } }),
      maxConnectAttempts: 3,
    });
    const local = await client.start();
    const closed: ClientSessionStats[] = [];
    client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('x', local.port, '127.0.0.1');
    await waitUntil(() => closed.length === 1, 3000, 'session failed');
    assert.match(closed[0]!.closeReason, /did not enable extended CONNECT.*try http 1\.1 or mode post/);
    assert.equal(closed[0]!.connectAttempts, 1);
    await peer.close();
    await client.close();
    await new Promise<void>((r) => plain.close(() => r()));
  });
});

describe('tunnel: resource hygiene', () => {
  it('a full open/relay/close cycle leaves no sockets or timers behind', async () => {
    const baseline = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    const stack = await startStack({ client: { idleTimeoutMs: 30_000 }, server: { idleTimeoutMs: 30_000 } });
    const peers = await Promise.all(Array.from({ length: 5 }, () => openUdpPeer()));
    await Promise.all(peers.map((p) => p.send('hi', stack.localPort, '127.0.0.1')));
    await Promise.all(peers.map((p) => p.waitFor(1)));
    await Promise.all(peers.map((p) => p.close()));
    await stack.close();
    const count = (list: string[]) => list.reduce<Record<string, number>>((m, r) => ((m[r] = (m[r] ?? 0) + 1), m), {});
    const before = count(baseline);
    const leftOver = (): string[] =>
      Object.entries(count(process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap')))
        .filter(([kind, n]) => n > (before[kind] ?? 0))
        .map(([kind, n]) => `${n} ${kind} left open (was ${before[kind] ?? 0})`);
    // Handles finish closing in later event-loop turns: wait for that (bounded) rather than a fixed time.
    await waitUntil(() => leftOver().length === 0, 5000, 'handles closed').catch(() => {});
    // Nothing of any kind may be left over beyond what was alive before (earlier tests may still be finishing).
    assert.deepEqual(leftOver(), []);
  });
});
