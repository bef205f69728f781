import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { runBench } from '../../../src/bench/harness.js';
import type { BenchEvent, BenchOptions } from '../../../src/bench/harness.js';
import { startComponent } from '../../../src/bench/tunnel-launcher.js';
import { startEchoInWorker } from '../../../src/bench/echo-server.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import type { ServerSessionStats } from '../../../src/tunnel/server/tunnel-server.js';

const SHORT: BenchOptions = { toolVersion: '9.9.9', runs: 1, durationMs: 300, warmupMs: 100, drainMs: 300, idleSessions: 5 };

/** True while a process with this id exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startComponent failures', () => {
  it('process isolation: a component that exits before listening is reported as a coded IO error with its exit code', async () => {
    await assert.rejects(
      startComponent({ role: 'serve', isolation: 'process', mode: 'connect-udp', host: '127.0.0.1', target: '127.0.0.1:7', nodeOptions: ['--no-such-node-option'] }),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_IO') && /bench could not start serve: it exited with code 9/.test(e.message),
    );
  });

  it('worker isolation: a component that fails to start is reported as a coded IO error with its reason', async () => {
    const tls = { certPath: '', keyPath: '', cert: 'not a certificate', key: 'not a key' };
    await assert.rejects(
      startComponent({ role: 'serve', isolation: 'worker', mode: 'connect-udp', host: '127.0.0.1', target: '127.0.0.1:7', tls }),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_IO') && /^bench could not start serve: /.test(e.message),
    );
  });
});

describe('runBench', () => {
  it('runs direct and tunnel paths with worker isolation and reports consistent numbers', async () => {
    const events: BenchEvent['type'][] = [];
    const doc = await runBench({ ...SHORT, isolation: 'worker', onEvent: (e) => events.push(e.type) });
    assert.equal(doc.runs.length, 1);
    const r = doc.runs[0]!;
    assert.ok(r.direct !== null && r.direct.received > 0, 'direct path delivered');
    assert.ok(r.tunnel.received > 0, 'tunnel delivered');
    assert.equal(r.tunnel.received + r.tunnel.lost, r.tunnel.sent);
    assert.equal(r.ratio!.throughputDps, r.tunnel.throughputDps / r.direct.throughputDps);
    assert.deepEqual(
      doc.components.map((c) => [c.role, c.isolation, c.pid]),
      [
        ['serve', 'worker', null],
        ['connect', 'worker', null],
      ],
    );
    const client = doc.components[1]!.counters!;
    // Every datagram the generator sent through the tunnel (warmup included) reached connect; the idle sessions
    // went to a second, fresh pair.
    assert.ok((client['downstream_sess_rx_datagrams'] as number) >= r.tunnel.sent);
    assert.equal(client['sess_tunnel_success'], 1);
    assert.equal(doc.idleSessionMemory!.sessions, 5);
    assert.equal(doc.idleSessionMemory!.answered, 5);
    assert.equal(doc.echo!.datagrams >= r.direct.sent + r.tunnel.sent, true);
    assert.deepEqual(events.filter((t) => t !== 'progress'), [
      'starting', 'starting', 'starting', 'ready', 'run-start', 'run-end', 'run-start', 'run-end', 'idle-sessions', 'stopping',
    ]);
  });

  it('runs serve and connect as processes over TLS, and stops them', async () => {
    const doc = await runBench({ ...SHORT, tls: true, direct: false, idleSessions: 0 });
    assert.equal(doc.parameters.tls, true);
    assert.equal(doc.runs[0]!.direct, null);
    assert.equal(doc.runs[0]!.ratio, null);
    assert.ok(doc.runs[0]!.tunnel.received > 0);
    assert.equal(doc.idleSessionMemory, null);
    for (const c of doc.components) {
      assert.equal(c.isolation, 'process');
      assert.equal(c.exitCode, 0);
      assert.equal(typeof c.pid, 'number');
      assert.equal(alive(c.pid!), false, `${c.role} still running`);
    }
    assert.equal(doc.components[0]!.counters!['sessionsTotal'], 1);
  });

  it('drives an external proxy in POST mode over the path it routes to the target', async () => {
    const echo = await startEchoInWorker({ host: '127.0.0.1' });
    const target = { host: echo.address.address, port: echo.address.port };
    // Only the POST route reaches the echo; the request names no target (not RFC 9298).
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), postRoutes: new Map([['/ext', target]]) });
    const closed: ServerSessionStats[] = [];
    server.on('session-close', (s: ServerSessionStats) => closed.push(s));
    try {
      const a = await server.listen();
      const doc = await runBench({
        ...SHORT,
        idleSessions: 0,
        direct: false,
        isolation: 'worker',
        mode: 'post',
        postPath: '/ext',
        proxy: `http://127.0.0.1:${a.port}`,
        target: `127.0.0.1:${target.port}`,
      });
      assert.equal(doc.parameters.mode, 'post');
      assert.equal(doc.parameters.postPath, '/ext');
      assert.ok(doc.runs[0]!.tunnel.received > 0, 'tunnel delivered datagrams');
      assert.deepEqual(doc.components.map((c) => c.role), ['connect']);
      assert.equal(doc.components[0]!.counters!['sess_tunnel_success'], 1);
    } finally {
      await server.close();
      await echo.close();
    }
    assert.deepEqual(closed.map((s) => [s.transport, s.target]), [['post', `127.0.0.1:${target.port}`]]);
    assert.equal(server.counters.sessionsTotal, 1);
  });

  it('runs bare-relay with worker isolation over TLS, idle sessions included, with the relays in serve and connect places', async () => {
    const doc = await runBench({ ...SHORT, mode: 'bare-relay', isolation: 'worker', tls: true });
    const r = doc.runs[0]!;
    assert.ok(r.tunnel.received > 0, 'the relays delivered');
    assert.equal(r.tunnel.received + r.tunnel.lost, r.tunnel.sent);
    const [back, front] = doc.components;
    assert.deepEqual([back!.role, front!.role], ['serve', 'connect']);
    assert.equal(front!.counters!['peersTotal'], 1);
    assert.equal(back!.counters!['connectionsTotal'], 1);
    assert.ok((front!.counters!['rxDatagrams'] as number) >= r.tunnel.sent);
    assert.equal(doc.idleSessionMemory!.answered, 5);
    assert.deepEqual(Object.keys(front!.drops).sort(), ['backpressure', 'bufferOverflow', 'oversize', 'udpSend', 'unsent']);
  });

  it('stops early when aborted and reports what it measured', async () => {
    const ac = new AbortController();
    const doc = await runBench({
      ...SHORT,
      durationMs: 30_000,
      direct: false,
      isolation: 'worker',
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'progress' && e.path === 'tunnel') ac.abort();
      },
    });
    assert.equal(doc.runs.length, 1);
    assert.equal(doc.runs[0]!.tunnel.aborted, true);
    assert.equal(doc.runs[0]!.tunnel.elapsedMs < 30_000, true);
    assert.equal(doc.idleSessionMemory, null);
    assert.ok(doc.warnings.some((w) => w.code === 'ABORTED'));
  });

  it('refuses to report when aborted before the first run', async () => {
    await assert.rejects(
      runBench({ ...SHORT, isolation: 'worker', signal: AbortSignal.abort() }),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_CLOSED'),
    );
  });
});
