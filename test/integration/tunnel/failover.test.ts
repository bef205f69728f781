import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TunnelClient, type ClientSessionStats } from '../../../src/tunnel/client.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { buildProxiesTransport } from '../../../src/tunnel/proxy-list.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import type { FailoverOptions, FailoverTransport, ProxyDownEvent } from '../../../src/tunnel/transport/failover.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';
import { closedPort } from '../../helpers/tcp-peer.js';

const DEADLINE = 10_000;
/** A backoff no test outlives: a proxy marked down with it stays down for the whole test. */
const LONG = { baseMs: 600_000, maxMs: 600_000 };

async function startProxy(port = 0): Promise<{ server: TunnelServer; url: string }> {
  const server = new TunnelServer({ host: '127.0.0.1', port, policy: new TargetPolicy() });
  const addr = await server.listen();
  return { server, url: `http://127.0.0.1:${addr.port}` };
}

describe('several proxies: failover, round-robin, moving sessions, per-proxy counters', () => {
  let echo: UdpEcho;
  let a: { server: TunnelServer; url: string };
  let b: { server: TunnelServer; url: string };
  const cleanup: Array<() => Promise<void>> = [];

  before(async () => {
    echo = await startUdpEcho();
    a = await startProxy();
    b = await startProxy();
  });

  after(async () => {
    for (const c of cleanup.reverse()) await c();
    await a.server.close();
    await b.server.close();
    await echo.close();
  });

  async function client(proxies: string[], options: FailoverOptions): Promise<{ client: TunnelClient; transport: FailoverTransport; port: number }> {
    const transport = buildProxiesTransport(proxies, { target: { host: '127.0.0.1', port: echo.port }, connectTimeoutMs: 5000 }, options);
    const c = new TunnelClient({ host: '127.0.0.1', port: 0, transport });
    const { port } = await c.start();
    cleanup.push(() => c.close());
    return { client: c, transport, port };
  }

  /** One new local peer: sends `text`, resolves with the echoed reply. */
  async function roundTrip(port: number, text: string): Promise<string> {
    const peer = await openUdpPeer();
    try {
      await peer.send(text, port, '127.0.0.1');
      return String((await peer.waitFor(1, DEADLINE))[0]);
    } finally {
      await peer.close();
    }
  }

  it('failover: a proxy with nothing listening is marked down and skipped; sessions go to the next one', async () => {
    const down = `http://127.0.0.1:${await closedPort()}`;
    const { client: c, transport } = await client([down, a.url], { downBackoff: LONG });
    const events: ProxyDownEvent[] = [];
    transport.on('proxy-down', (e: ProxyDownEvent) => events.push(e));
    const port = c.address().port;

    assert.equal(await roundTrip(port, 'one'), 'one');
    let [p0, p1] = transport.proxies;
    assert.deepEqual([p0!.connectFailures, p0!.down, p0!.sessionsOpened], [1, true, 0]);
    assert.deepEqual([p1!.connectFailures, p1!.down, p1!.sessionsOpened], [0, false, 1]);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.proxy, down);
    assert.equal(events[0]!.error.name, 'UdpTunnelError');

    // Marked down: the next session does not try it again.
    assert.equal(await roundTrip(port, 'two'), 'two');
    [p0, p1] = transport.proxies;
    assert.equal(p0!.connectFailures, 1);
    assert.equal(p1!.sessionsOpened, 2);
    assert.equal(c.counters.sess_tunnel_failure, 0);
    assert.ok(p0!.retryInMs > 0);
  });

  it('failover: a down proxy is tried again once its backoff has passed', async () => {
    const down = `http://127.0.0.1:${await closedPort()}`;
    const { client: c, transport } = await client([down, a.url], { downBackoff: { baseMs: 20, maxMs: 40 } });
    const port = c.address().port;
    let sent = 0;
    // Each new session goes to the first healthy proxy; once the backoff has run out that is the down one again.
    const end = Date.now() + DEADLINE;
    while (transport.proxies[0]!.connectFailures < 2) {
      assert.ok(Date.now() < end, 'the down proxy was never tried again');
      assert.equal(await roundTrip(port, `n${sent}`), `n${sent}`);
      sent++;
    }
    assert.equal(transport.proxies[1]!.sessionsOpened, sent);
    assert.equal(c.counters.sess_tunnel_failure, 0);
  });

  it('every proxy down: the one whose backoff ends first is tried rather than failing outright', async () => {
    const ports = [await closedPort(), await closedPort()];
    const { client: c, transport } = await client(
      ports.map((p) => `http://127.0.0.1:${p}`),
      { downBackoff: LONG },
    );
    const closed: ClientSessionStats[] = [];
    c.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const port = c.address().port;
    const first = await openUdpPeer();
    cleanup.push(() => first.close());
    await first.send('lost', port, '127.0.0.1');
    await waitUntil(() => closed.length === 1, DEADLINE, 'the first session failing on both proxies');
    assert.match(closed[0]!.closeReason, /^connect-failed: /);
    assert.deepEqual(transport.proxies.map((p) => [p.connectFailures, p.down]), [[1, true], [1, true]]);

    // Both come back; both are still marked down, so only the one due first is tried.
    const due = transport.proxies[0]!.retryInMs <= transport.proxies[1]!.retryInMs ? 0 : 1;
    const revived = [await startProxy(ports[0]), await startProxy(ports[1])];
    cleanup.push(async () => {
      for (const r of revived) await r.server.close();
    });
    const ups: string[] = [];
    transport.on('proxy-up', (e: { proxy: string }) => ups.push(e.proxy));
    assert.equal(await roundTrip(port, 'back'), 'back');
    const after = transport.proxies;
    assert.equal(after[due]!.sessionsOpened, 1);
    assert.equal(after[due]!.down, false);
    assert.equal(after[1 - due]!.sessionsOpened, 0);
    assert.equal(after[1 - due]!.down, true);
    assert.deepEqual(ups, [`http://127.0.0.1:${ports[due]}`]);
  });

  it('round-robin spreads 4 sessions 2/2 and counts them per proxy', async () => {
    const { client: c, transport } = await client([a.url, b.url], { strategy: 'round-robin' });
    const port = c.address().port;
    const beforeA = a.server.counters.sessionsTotal;
    const beforeB = b.server.counters.sessionsTotal;
    const peers = await Promise.all([0, 1, 2, 3].map(() => openUdpPeer()));
    try {
      await Promise.all(peers.map((p, i) => p.send(`rr${i}`, port, '127.0.0.1')));
      const replies = await Promise.all(peers.map((p) => p.waitFor(1, DEADLINE)));
      assert.deepEqual(replies.map((r) => String(r[0])), ['rr0', 'rr1', 'rr2', 'rr3']);
      const counters = transport.proxies;
      assert.deepEqual(counters.map((p) => p.sessionsOpened), [2, 2]);
      assert.deepEqual(counters.map((p) => p.sessionsActive), [2, 2]);
      assert.deepEqual([a.server.counters.sessionsTotal - beforeA, b.server.counters.sessionsTotal - beforeB], [2, 2]);
      // Plain data: what a metrics exporter or a JSON event can take as it is.
      assert.deepEqual(JSON.parse(JSON.stringify(counters)), counters);
      assert.deepEqual(Object.keys(counters[0]!).sort(), ['connectFailures', 'down', 'proxy', 'retryInMs', 'sessionsActive', 'sessionsMoved', 'sessionsOpened']);
    } finally {
      for (const p of peers) await p.close();
    }
    await c.close();
    await waitUntil(() => transport.proxies.every((p) => p.sessionsActive === 0), DEADLINE, 'tunnels closed');
  });

  it('a proxy that dies under a live session: the peer\'s next datagrams go through the other proxy', async () => {
    const doomed = await startProxy();
    const { client: c, transport } = await client([doomed.url, b.url], { downBackoff: LONG });
    const port = c.address().port;
    const lost: Array<{ id: string; proxy?: string }> = [];
    const ready: Array<{ id: string; proxy?: string; reopened: boolean }> = [];
    const moved: Array<{ session: string; from: string; to: string }> = [];
    const closed: ClientSessionStats[] = [];
    c.on('tunnel-lost', (e: { id: string; proxy?: string }) => lost.push(e));
    c.on('session-ready', (e: { id: string; proxy?: string; reopened: boolean }) => ready.push(e));
    c.on('session-close', (s: ClientSessionStats) => closed.push(s));
    transport.on('session-moved', (e: { session: string; from: string; to: string }) => moved.push(e));
    const peer = await openUdpPeer();
    cleanup.push(() => peer.close());

    await peer.send('before', port, '127.0.0.1');
    await peer.waitFor(1, DEADLINE);
    assert.equal(ready[0]!.proxy, doomed.url);

    await doomed.server.close();
    await waitUntil(() => lost.length === 1, DEADLINE, 'the client to notice the lost tunnel');
    assert.equal(lost[0]!.proxy, doomed.url);

    await peer.send('after', port, '127.0.0.1');
    const got = await peer.waitFor(2, DEADLINE);
    assert.deepEqual(got.map(String), ['before', 'after']);
    // The same session, reopened on the other proxy; the local peer saw nothing else.
    assert.equal(c.counters.downstream_sess_total, 1);
    assert.equal(closed.length, 0);
    assert.deepEqual(ready.map((r) => [r.id, r.proxy, r.reopened]), [
      [ready[0]!.id, doomed.url, false],
      [ready[0]!.id, b.url, true],
    ]);
    assert.deepEqual(moved, [{ session: ready[0]!.id, from: doomed.url, to: b.url }]);
    const [p0, p1] = transport.proxies;
    assert.deepEqual([p0!.sessionsMoved, p0!.sessionsOpened, p0!.sessionsActive], [1, 1, 0]);
    assert.deepEqual([p1!.sessionsMoved, p1!.sessionsOpened, p1!.sessionsActive], [0, 1, 1]);
    // The moved session did not knock on the dead proxy; a new peer does, finds it down and goes on.
    assert.equal(p0!.connectFailures, 0);
    assert.equal(await roundTrip(port, 'newcomer'), 'newcomer');
    assert.deepEqual([transport.proxies[0]!.connectFailures, transport.proxies[0]!.down], [1, true]);
    assert.equal(transport.proxies[1]!.sessionsOpened, 2);
  });

  it('one proxy: a lost tunnel ends the session as before (nothing to move to)', async () => {
    const lone = await startProxy();
    const { client: c, transport } = await client([lone.url], {});
    assert.equal(transport.reopensLostTunnels, false);
    const closed: ClientSessionStats[] = [];
    c.on('session-close', (s: ClientSessionStats) => closed.push(s));
    assert.equal(await roundTrip(c.address().port, 'x'), 'x');
    await lone.server.close();
    await waitUntil(() => closed.length === 1, DEADLINE, 'the session to end with its tunnel');
    assert.match(closed[0]!.closeReason, /^tunnel-/);
  });
});
