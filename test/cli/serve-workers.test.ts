import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeCertificate } from '../../src/tunnel/tls-cert.js';
import { runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { attemptEcho, openTunnel } from '../helpers/attempt.js';
import { startUdpEcho, waitUntil, type UdpEcho } from '../helpers/net.js';

/** Whether a process with this pid still exists. */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Resolves once `proc` has printed `n` events named `name`. */
async function events(proc: CliProcess, name: string, n: number, ms = 20_000): Promise<Record<string, unknown>[]> {
  const of = (): Record<string, unknown>[] => proc.lines.filter((l) => l['event'] === name);
  await waitUntil(() => of().length >= n, ms, `${n} '${name}' events; stderr: ${proc.stderr()}`);
  return of();
}

describe('serve --workers (CLI)', () => {
  let echo: UdpEcho;
  before(async () => {
    echo = await startUdpEcho();
  });
  after(async () => {
    await echo.close();
  });

  it('2 workers: one listening event; sessions work; a killed worker is restarted and new sessions still succeed; SIGTERM ends all', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--workers', '2', '--json'], { env: { UDP_TUNNEL_TOKEN: undefined } });
    const pids: number[] = [];
    try {
      const l = await serve.waitForEvent('listening', 20_000);
      assert.equal(l['workers'], 2);
      const workerPids = l['workerPids'] as number[];
      assert.equal(workerPids.length, 2);
      assert.equal(new Set([...workerPids, serve.child.pid]).size, 3, 'two workers besides the primary');
      pids.push(...workerPids);
      for (const pid of workerPids) assert.ok(running(pid));
      const url = `http://127.0.0.1:${String(l['port'])}`;

      const a = await openTunnel({ proxy: url }, echo.port);
      const b = await openTunnel({ proxy: url, http: '1.1' }, echo.port);
      assert.equal(await a.echo('a'), 'a');
      assert.equal(await b.echo('b'), 'b');
      await a.close();
      await b.close();
      const opened = await events(serve, 'session-open', 2);
      for (const e of opened) assert.ok([1, 2].includes(Number(e['worker'])), 'session events name their worker');

      process.kill(workerPids[0]!, 'SIGKILL');
      const [exit] = await events(serve, 'worker-exit', 1);
      assert.deepEqual([exit!['worker'], exit!['pid'], exit!['signal'], exit!['restart']], [1, workerPids[0], 'SIGKILL', true]);
      // The other worker still takes every connection.
      assert.deepEqual(await attemptEcho({ proxy: url }, echo.port), { reply: 'hi' });
      const [restarted] = await events(serve, 'worker-restarted', 1);
      assert.equal(restarted!['worker'], 1);
      const newPid = Number(restarted!['pid']);
      assert.ok(!workerPids.includes(newPid));
      pids.push(newPid);
      for (let i = 0; i < 4; i++) assert.deepEqual(await attemptEcho({ proxy: url, http: i % 2 ? '1.1' : '2' }, echo.port), { reply: 'hi' }, `session ${i} after the restart`);
    } finally {
      assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    }
    assert.equal(serve.lines.filter((l) => l['event'] === 'listening').length, 1);
    const shutdown = serve.lines.find((l) => l['event'] === 'shutdown');
    assert.ok(shutdown, 'a shutdown event');
    const counters = shutdown['counters'] as { sessionsTotal: number };
    assert.ok(counters.sessionsTotal >= 5, `the surviving workers' sessions are summed (${counters.sessionsTotal})`);
    assert.equal((shutdown['workers'] as unknown[]).length, 2);
    for (const pid of pids) assert.equal(running(pid), false, `worker ${pid} is gone`);
  });

  it('--self-signed: one certificate for every worker; a client pinned to it reaches both', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--workers', '2', '--self-signed', '--json'], { env: { UDP_TUNNEL_TOKEN: undefined } });
    try {
      const l = await serve.waitForEvent('listening', 20_000);
      const pin = (l['tls'] as { pin: string }).pin;
      const port = Number(l['port']);
      const pins = new Set<string>();
      for (let i = 0; i < 4; i++) {
        pins.add(
          await new Promise<string>((resolve, reject) => {
            const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
              const raw = s.getPeerCertificate().raw;
              s.destroy();
              resolve(describeCertificate(`-----BEGIN CERTIFICATE-----\n${raw.toString('base64')}\n-----END CERTIFICATE-----\n`).pin);
            });
            s.on('error', reject);
          }),
        );
      }
      assert.deepEqual([...pins], [pin]);
      // node:cluster hands connections to the workers in turn: a few tunnels reach both.
      let n = 0;
      const served = (): Set<unknown> => new Set(serve.lines.filter((e) => e['event'] === 'session-open').map((e) => e['worker']));
      while (served().size < 2 && n < 10) {
        assert.deepEqual(await attemptEcho({ proxy: `https://127.0.0.1:${port}`, tls: { pins: [pin] } }, echo.port), { reply: 'hi' });
        await events(serve, 'session-open', ++n);
      }
      assert.equal(served().size, 2, `the tunnels went to both workers (${n} tried)`);
    } finally {
      assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    }
  });

  it('--metrics: the primary serves the sum of every worker\'s series; the access log has a line from each worker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-workers-'));
    const log = join(dir, 'access.log');
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--workers', '2', '--metrics', '127.0.0.1:0', '--access-log', log, '--json'], {
      env: { UDP_TUNNEL_TOKEN: undefined },
    });
    try {
      const l = await serve.waitForEvent('listening', 20_000);
      const m = await serve.waitForEvent('metrics', 20_000);
      const port = Number(l['port']);
      // node:cluster hands connections to the workers in turn: tunnels until both have served one.
      let n = 0;
      const served = (): Set<unknown> => new Set(serve.lines.filter((e) => e['event'] === 'session-close').map((e) => e['worker']));
      while (served().size < 2 && n < 10) {
        assert.deepEqual(await attemptEcho({ proxy: `http://127.0.0.1:${port}` }, echo.port), { reply: 'hi' });
        await events(serve, 'session-close', ++n);
      }
      assert.equal(served().size, 2, `the tunnels went to both workers (${n} tried)`);
      const res = await fetch(String(m['url']));
      assert.equal(res.status, 200);
      const body = await res.text();
      const total = /^udp_tunnel_downstream_sess_total (\d+)$/m.exec(body);
      assert.ok(total, body.slice(0, 2000));
      assert.equal(Number(total[1]), n, 'the aggregate counts the sessions of both workers');
      const ready = await fetch(String(m['url']).replace(/\/metrics$/, '/readyz'));
      assert.equal(ready.status, 200);
    } finally {
      assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    }
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
    assert.ok(lines.length >= 2, `one line per session: ${lines.length}`);
    rmSync(dir, { recursive: true, force: true });
  });

  it('a worker that cannot listen fails the start: exit 1 with the reason, no worker left behind', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen({ host: '127.0.0.1', port: 0 }, () => r()));
    try {
      const port = (busy.address() as AddressInfo).port;
      const r = await runCli(['serve', '--listen', `127.0.0.1:${port}`, '--workers', '2', '--json'], { env: { UDP_TUNNEL_TOKEN: undefined }, timeoutMs: 30_000 });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /address already in use/);
      const lines = r.stdout.trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
      assert.deepEqual(lines.map((e) => e['event']), ['error']);
    } finally {
      busy.close();
    }
  });

  for (const [args, message] of [
    [['--workers', '0'], /--workers: '0' is not a whole number 1\.\.256 or auto/],
    [['--workers', '1.5'], /--workers: '1\.5' is not a whole number/],
    [['--workers', '257'], /--workers: '257'/],
    [['--workers', '2', '--inspect'], /--workers 2 and --inspect exclude each other/],
    [['--workers', '2', '--record', 'x.ndjson'], /--workers 2 and --record exclude each other/],
  ] as const) {
    it(`${args.join(' ')} is a usage error`, async () => {
      const r = await runCli(['serve', '--listen', '127.0.0.1:0', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }
});
