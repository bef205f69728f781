import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { PathAccounting, SoakDocument } from '../../src/bench/soak.js';
import { runScript } from '../helpers/cli.js';

const SOAK = fileURLToPath(new URL('../../src/cli/soak-main.js', import.meta.url));
// RSS and the kernel's per-socket drop counters come from /proc.
const linux = existsSync('/proc/net/udp');

const keys = (o: unknown): string[] => Object.keys(o as object).sort();

function checkAccounting(a: PathAccounting, at: string): void {
  assert.deepEqual(keys(a), [
    'countedDrops', 'delivered', 'drops', 'duplicates', 'lostWithKilledServe', 'notSent', 'roundTripUs', 'sent', 'sentPerSecond', 'unaccounted',
    'unexplained',
  ]);
  assert.ok(a.sent > 0, `${at}: something was sent`);
  assert.equal(a.countedDrops, Object.values(a.drops).reduce((s, v) => s + v, 0), `${at}: countedDrops is the sum of drops`);
  assert.equal(a.unaccounted, a.sent - a.delivered - a.countedDrops, `${at}: unaccounted`);
  for (const [k, v] of Object.entries(a.drops)) assert.ok(Number.isInteger(v) && v > 0, `${at}: drops.${k} = ${v}`);
  // Nothing lost without a counter, except what the killed serve took with it.
  assert.ok(a.unaccounted >= 0, `${at}: unaccounted ${a.unaccounted}`);
  const k = a.lostWithKilledServe;
  assert.ok(k !== null);
  assert.ok(k.estimate <= k.upperBound);
  assert.equal(a.unexplained, a.unaccounted - k.estimate);
  assert.equal(a.unexplained, 0, `${at}: ${a.unaccounted} unaccounted, at most ${k.upperBound} inside the tunnels the kill cut`);
}

describe('npm run soak', { skip: linux ? false : 'needs Linux /proc' }, () => {
  it('--json: one document; serve killed and restarted on its port, connect kept, echoes resumed, every datagram accounted for', async () => {
    // Low rates keep it cheap; the kill comes after a second of load. The soak itself keeps the load on past
    // --duration until the first echo after the restart (bounded), so a slow restart does not make this fail.
    const r = await runScript(SOAK, ['--duration', '4s', '--rate', '400', '--stalled-rate', '400', '--kill-at', '1s', '--interval', '2s', '--json'], { timeoutMs: 90_000 });
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout) as SoakDocument;
    assert.deepEqual(keys(d), [
      'aborted', 'accounting', 'components', 'connectStayedUp', 'echoServer', 'environment', 'finishedAt', 'parameters', 'restart', 'rss',
      'schema', 'sendingMs', 'stalledTarget', 'startedAt', 'targets', 'wallMs',
    ]);
    assert.equal(d.schema, 'udp-tunnel-soak/1');
    assert.equal(d.aborted, false);
    assert.equal(d.parameters.rateSource, 'option');
    assert.equal(d.parameters.capacityDps, null);
    assert.equal(d.parameters.rate, 400);

    const rs = d.restart;
    assert.ok(rs !== null, 'serve was killed');
    assert.equal(rs.samePort, true);
    assert.notEqual(rs.pidAfter, rs.pidBefore);
    assert.equal(typeof rs.reconnectMs, 'number', 'a tunnel was set up again after the restart');
    assert.equal(typeof rs.recoveryMs, 'number', 'an echo came back through the same connect after the restart');
    assert.ok(rs.downMs >= 0);
    assert.equal(d.connectStayedUp, true);
    const roles = d.components.map((c) => `${c.role}#${c.incarnation}${c.killed ? ' killed' : ''}`).sort();
    assert.deepEqual(roles, ['connect#1', 'connect-stalled#1', 'serve#1 killed', 'serve#2']);
    for (const c of d.components.filter((x) => !x.killed)) assert.equal(c.exitCode, 0, `${c.role} exit code`);

    checkAccounting(d.accounting.echo, 'echo');
    checkAccounting(d.accounting.stalled, 'stalled');
    assert.ok(d.accounting.echo.delivered > 0);
    assert.ok(d.accounting.echo.roundTripUs !== null && d.accounting.echo.roundTripUs.count === d.accounting.echo.delivered);
    // The target that never reads: its buffer filled and the kernel counted the rest; what fitted was read at the end.
    assert.ok((d.accounting.stalled.drops['kernel:target-socket'] ?? 0) > 0, JSON.stringify(d.accounting.stalled.drops));
    assert.equal(d.accounting.stalled.delivered, d.stalledTarget.read);
    assert.ok(d.stalledTarget.read > 0);

    assert.ok(d.rss.samples.length >= 3);
    for (const s of d.rss.samples) assert.ok(s.connect !== null && s.connect > 0);
    assert.equal(d.rss.trend.serve.length, 2, 'one trend per serve process');
    assert.deepEqual(keys(d.targets), ['nothingLostUncounted', 'recovery', 'rssFlat']);
    assert.equal(d.targets.nothingLostUncounted.met, true);
    assert.equal(typeof d.targets.recovery.met, 'boolean');
    // Progress went to stderr.
    assert.match(r.stderr, /kill -9 serve/);
    assert.match(r.stderr, /rss serve#/);
  });

  it('rejects a bad option with exit code 2 before starting anything', async () => {
    const r = await runScript(SOAK, ['--kill-at', '90s', '--duration', '10s'], { timeoutMs: 30_000 });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--kill-at must lie within the duration/);
    const u = await runScript(SOAK, ['--nope'], { timeoutMs: 30_000 });
    assert.equal(u.code, 2);
    assert.match(u.stderr, /usage: npm run soak/);
  });
});
