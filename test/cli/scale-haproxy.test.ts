import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startCli, type CliProcess } from '../helpers/cli.js';
import { checkHaproxyConfig, haproxyMissing, startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho, type UdpPeer } from '../helpers/net.js';

// docs/scaling.md: serve is a plain TCP service, so it scales out behind an L4 load balancer. These tests put a real
// HAProxy (TCP mode, health checks) in front of two serve processes and kill one of them under live sessions.

const missing = haproxyMissing();
if (missing !== null) console.log(`scale-haproxy tests skipped: ${missing}`);

/** Generous bound for a session to come back through the other serve (the requirement is about a second). */
const RECOVERY_DEADLINE_MS = 10_000;

/** Everything a test started, stopped in `after` even when an assertion failed half-way. */
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

async function startServe(): Promise<{ cli: CliProcess; port: number }> {
  const cli = startCli(['serve', '--listen', '127.0.0.1:0', '--json'], { env: { UDP_TUNNEL_TOKEN: undefined } });
  cleanups.push(() => cli.stop('SIGKILL'));
  const l = await cli.waitForEvent('listening');
  return { cli, port: Number(l['port']) };
}

async function startConnect(haproxy: Haproxy, echo: UdpEcho, extra: string[] = []): Promise<{ cli: CliProcess; port: number }> {
  const cli = startCli(
    // --no-proxy-check: the start-up probe is a TCP connection of its own, which would take a turn of the round robin
    // at a moment of its choosing; without it, which serve gets which session is known.
    ['connect', '--proxy', `http://127.0.0.1:${haproxy.port}`, '--target', `127.0.0.1:${echo.port}`, '--local', '127.0.0.1:0', '--json', '--no-proxy-check', ...extra],
    { env: { UDP_TUNNEL_PROXY: undefined, UDP_TUNNEL_TOKEN: undefined } },
  );
  cleanups.push(() => cli.stop('SIGKILL'));
  const l = await cli.waitForEvent('listening');
  return { cli, port: Number(l['port']) };
}

async function echoServer(): Promise<UdpEcho> {
  const e = await startUdpEcho();
  cleanups.push(() => e.close());
  return e;
}

async function peer(): Promise<UdpPeer> {
  const p = await openUdpPeer();
  cleanups.push(() => p.close());
  return p;
}

/** One datagram from `p` through connect, echoed back. */
async function roundTrip(p: UdpPeer, connectPort: number, text: string): Promise<void> {
  const before = p.messages.length;
  await p.send(text, connectPort, '127.0.0.1');
  await p.waitFor(before + 1, 10_000);
  assert.equal(p.messages[before]!.toString(), text);
}

/** Session targets a serve reported (`session-open` events). */
function targetsOf(serve: CliProcess): string[] {
  return serve.lines.filter((l) => l['event'] === 'session-open').map((l) => String(l['target']));
}

/**
 * After a kill at `killedAt`, `p` sends a numbered datagram every 50 ms until one comes back; resolves with the time
 * from the kill to that first echo. Datagrams sent while the tunnel is being replaced may be lost: that is UDP.
 */
async function timeToEcho(p: UdpPeer, connectPort: number, killedAt: number, tag: string): Promise<number> {
  let echoedAt: number | null = null;
  const onMessage = (m: Buffer): void => {
    if (echoedAt === null && m.toString().startsWith(`${tag}:`)) echoedAt = Date.now();
  };
  p.socket.on('message', onMessage);
  try {
    const end = killedAt + RECOVERY_DEADLINE_MS;
    let n = 0;
    while (echoedAt === null) {
      if (Date.now() > end) throw new Error(`${tag}: no echo within ${RECOVERY_DEADLINE_MS} ms of the kill (sent ${n})`);
      await p.send(`${tag}:${n++}`, connectPort, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 50));
    }
    return echoedAt - killedAt;
  } finally {
    p.socket.off('message', onMessage);
  }
}

/** Two serves behind a fresh HAProxy whose health checks see both UP. */
async function twoServesBehindHaproxy(): Promise<{ serves: { cli: CliProcess; port: number }[]; haproxy: Haproxy }> {
  const serves = [await startServe(), await startServe()];
  const haproxy = await startHaproxy(serves.map((s, i) => ({ name: `s${i + 1}`, port: s.port })));
  cleanups.push(() => haproxy.stop());
  await waitUntilStatus(haproxy, { s1: 'UP', s2: 'UP' });
  return { serves, haproxy };
}

async function waitUntilStatus(haproxy: Haproxy, want: Record<string, string>): Promise<Map<string, string>> {
  const end = Date.now() + 10_000;
  for (;;) {
    const status = await haproxy.serverStatus();
    if (Object.entries(want).every(([name, s]) => status.get(name) === s)) return status;
    if (Date.now() > end) throw new Error(`HAProxy server status ${JSON.stringify([...status])}, want ${JSON.stringify(want)}; stderr: ${haproxy.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('scale-out: HAProxy in TCP mode in front of two serves (docs/scaling.md)', { skip: missing ?? false }, () => {
  it('HTTP/1.1: one connect spreads its sessions over both serves; after one is killed, every peer echoes again through the other', async (t: TestContext) => {
    const echo = await echoServer();
    const { serves, haproxy } = await twoServesBehindHaproxy();
    // Over HTTP/1.1 each session is a TCP connection of its own, so HAProxy balances every session.
    const connect = await startConnect(haproxy, echo, ['--http', '1.1']);
    const peers = [await peer(), await peer(), await peer(), await peer()];
    for (const [i, p] of peers.entries()) await roundTrip(p, connect.port, `before-${i}`);
    const perServe = serves.map((s) => targetsOf(s.cli).length);
    assert.deepEqual(perServe, [2, 2], 'round robin: two sessions on each serve');

    const [victim] = serves;
    const closedBefore = connect.cli.lines.filter((l) => l['event'] === 'session-close').length;
    const killedAt = Date.now();
    victim!.cli.child.kill('SIGKILL');
    const gaps = await Promise.all(peers.map((p, i) => timeToEcho(p, connect.port, killedAt, `after-${i}`)));
    t.diagnostic(`HTTP/1.1: kill to first echo per peer (ms): ${gaps.join(', ')}`);

    // The two sessions on the killed serve ended with their tunnels, and the peers' next datagrams opened new ones.
    const closed = connect.cli.lines.filter((l) => l['event'] === 'session-close').slice(closedBefore);
    assert.equal(closed.length, 2, JSON.stringify(closed));
    for (const c of closed) assert.match(String(c['closeReason']), /^tunnel-/);
    assert.equal(targetsOf(serves[1]!.cli).length, 4, 'the survivor now carries all four sessions');
    await waitUntilStatus(haproxy, { s1: 'DOWN', s2: 'UP' });
  });

  it('HTTP/2: two connects land on different serves; the one whose serve is killed recovers through the other', async (t: TestContext) => {
    // A target per connect tells from the serves' session-open events which serve carries which connect.
    const echoes = [await echoServer(), await echoServer()];
    const { serves, haproxy } = await twoServesBehindHaproxy();
    const connects = [await startConnect(haproxy, echoes[0]!), await startConnect(haproxy, echoes[1]!)];
    // One HTTP/2 connection carries all of a connect's sessions: two peers each, on one serve per connect.
    const peers = [[await peer(), await peer()], [await peer(), await peer()]];
    for (const [c, ps] of peers.entries()) for (const [i, p] of ps.entries()) await roundTrip(p, connects[c]!.port, `before-${c}-${i}`);
    const target = (c: number): string => `127.0.0.1:${echoes[c]!.port}`;
    const carrier = serves.findIndex((s) => targetsOf(s.cli).includes(target(0)));
    assert.ok(carrier >= 0, 'a serve carries the first connect');
    assert.deepEqual(targetsOf(serves[carrier]!.cli), [target(0), target(0)], 'both sessions of the first connect share one serve');
    assert.deepEqual(targetsOf(serves[1 - carrier]!.cli), [target(1), target(1)], 'the second connect went to the other serve');

    const killedAt = Date.now();
    serves[carrier]!.cli.child.kill('SIGKILL');
    const gaps = await Promise.all(peers[0]!.map((p, i) => timeToEcho(p, connects[0]!.port, killedAt, `after-0-${i}`)));
    t.diagnostic(`HTTP/2: kill to first echo per peer (ms): ${gaps.join(', ')}`);
    const survivor = serves[1 - carrier]!.cli;
    await waitUntil(() => targetsOf(survivor).filter((x) => x === target(0)).length === 2, 5000, 'the first connect on the survivor');
    // The second connect never noticed.
    for (const [i, p] of peers[1]!.entries()) await roundTrip(p, connects[1]!.port, `still-1-${i}`);
    assert.equal(connects[1]!.cli.lines.some((l) => l['event'] === 'session-close'), false);
  });

  it('draining: a drained serve keeps its tunnels and gets no new connection; after SIGTERM its peers move to the other', async (t: TestContext) => {
    const echoes = [await echoServer(), await echoServer()];
    const { serves, haproxy } = await twoServesBehindHaproxy();
    const target = (c: number): string => `127.0.0.1:${echoes[c]!.port}`;
    const first = await startConnect(haproxy, echoes[0]!);
    const p0 = await peer();
    await roundTrip(p0, first.port, 'before');
    const drained = serves.findIndex((s) => targetsOf(s.cli).includes(target(0)));
    assert.ok(drained >= 0, 'a serve carries the first connect');
    const name = `s${drained + 1}`;
    // As in docs/scaling.md: set server BACKEND/SERVER state drain on the admin socket.
    assert.equal((await haproxy.admin(`set server serves/${name} state drain`)).trim(), '');
    assert.equal((await haproxy.serverStatus()).get(name), 'DRAIN');

    // New connections avoid the drained serve, whatever the round robin's turn; its tunnel carries on.
    const second = await startConnect(haproxy, echoes[1]!);
    const p1 = await peer();
    await roundTrip(p1, second.port, 'second');
    assert.deepEqual(targetsOf(serves[1 - drained]!.cli), [target(1)]);
    await roundTrip(p0, first.port, 'while draining');
    assert.deepEqual(targetsOf(serves[drained]!.cli), [target(0)]);

    const stoppedAt = Date.now();
    assert.equal(await serves[drained]!.cli.stop('SIGTERM'), 0);
    const gap = await timeToEcho(p0, first.port, stoppedAt, 'after');
    t.diagnostic(`drain: serve stopped (SIGTERM, exit awaited) to first echo through the other: ${gap} ms`);
    assert.deepEqual(targetsOf(serves[1 - drained]!.cli).sort(), [target(0), target(1)].sort());
  });
});

// Compiled to dist/test/cli/: the repository root is three levels up.
const DOCS = fileURLToPath(new URL('../../../docs/', import.meta.url));

/** The fenced blocks of a Markdown file with the given info string, in order, without the fence's indentation. */
function fencedBlocks(markdown: string, info: string): string[] {
  const re = new RegExp('^( {0,3})```' + info + '\\n([\\s\\S]*?)^\\1```$', 'gm');
  return [...markdown.matchAll(re)].map((m) => m[2]!.replace(new RegExp(`^${m[1]!}`, 'gm'), ''));
}

describe('docs/scaling.md examples', () => {
  const page = readFileSync(path.join(DOCS, 'scaling.md'), 'utf8');
  const haproxyCfg = readFileSync(path.join(DOCS, 'examples', 'haproxy.cfg'), 'utf8');

  it('the HAProxy configuration and the systemd unit on the page are the files in docs/examples', () => {
    const [cfgBlock] = fencedBlocks(page, 'haproxy');
    // The page drops the file's leading comment lines; the rest is the file.
    assert.equal(cfgBlock, haproxyCfg.slice(haproxyCfg.indexOf('global\n')));
    const unit = readFileSync(path.join(DOCS, 'examples', 'udp-tunnel-serve.service'), 'utf8');
    assert.deepEqual(fencedBlocks(page, 'ini'), [unit]);
  });

  it('docs/examples/haproxy.cfg, and with it the per-source limit snippet, pass haproxy -c', { skip: missing ?? false }, () => {
    const plain = checkHaproxyConfig(path.join(DOCS, 'examples', 'haproxy.cfg'));
    assert.equal(plain.code, 0, plain.output);
    const snippet = fencedBlocks(page, 'haproxy')[1];
    assert.ok(snippet !== undefined && snippet.startsWith('frontend udp_tunnel\n'), 'the second HAProxy block replaces the frontend');
    const frontend = /^frontend udp_tunnel\n(?: {4}.*\n)+/m;
    assert.match(haproxyCfg, frontend);
    const dir = mkdtempSync(path.join(tmpdir(), 'udp-tunnel-haproxy-check-'));
    try {
      const file = path.join(dir, 'haproxy.cfg');
      writeFileSync(file, haproxyCfg.replace(frontend, snippet));
      const r = checkHaproxyConfig(file);
      assert.equal(r.code, 0, r.output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
