import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer } from '../../src/tunnel/server/tunnel-server.js';
import { runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../helpers/net.js';
import { closedPort } from '../helpers/tcp-peer.js';

describe('connect with several --proxy', () => {
  let echo: UdpEcho;
  let up: TunnelServer;
  let upUrl: string;
  let downUrl: string;
  const procs: CliProcess[] = [];

  before(async () => {
    echo = await startUdpEcho();
    up = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    upUrl = `http://127.0.0.1:${(await up.listen()).port}`;
    downUrl = `http://127.0.0.1:${await closedPort()}`;
  });

  after(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    await up.close();
    await echo.close();
  });

  async function roundTrip(port: number, text: string): Promise<string> {
    const peer = await openUdpPeer();
    try {
      await peer.send(text, port, '127.0.0.1');
      return String((await peer.waitFor(1, 10_000))[0]);
    } finally {
      await peer.close();
    }
  }

  it('two --proxy flags, the first down: datagrams flow through the second; events and counters name each proxy', async () => {
    const connect = startCli(['connect', '-p', downUrl, '--proxy', upUrl, '-t', `127.0.0.1:${echo.port}`, '--json']);
    procs.push(connect);
    const l = await connect.waitForEvent('listening');
    assert.deepEqual(l['proxies'], [downUrl, upUrl]);
    assert.equal(l['proxy'], downUrl);
    assert.equal(l['strategy'], 'failover');
    assert.equal(await roundTrip(Number(l['port']), 'through the second'), 'through the second');
    const down = await connect.waitForEvent('proxy-down');
    assert.equal(down['proxy'], downUrl);
    assert.equal(down['code'], 'UT_ERR_PROXY_UNREACHABLE');
    const ready = await connect.waitForEvent('session-ready');
    assert.equal(ready['proxy'], upUrl);
    // The start-up check probes each proxy: one event each.
    await waitUntil(() => connect.lines.filter((e) => e['event'] === 'proxy-check').length === 2, 10_000, 'two proxy-check events');
    const checks = connect.lines.filter((e) => e['event'] === 'proxy-check');
    assert.deepEqual(checks.map((e) => [e['proxy'], e['ok']]).sort(), [
      [downUrl, false],
      [upUrl, true],
    ].sort());
    assert.equal(await connect.stop('SIGINT'), 0);
    const shutdown = connect.lines.find((e) => e['event'] === 'shutdown')!;
    const proxies = shutdown['proxies'] as Array<Record<string, unknown>>;
    assert.deepEqual(proxies.map((p) => [p['proxy'], p['connectFailures'], p['sessionsOpened']]), [
      [downUrl, 1, 0],
      [upUrl, 0, 1],
    ]);
  });

  it('--metrics: per-proxy series name each proxy with its own counts', async () => {
    const connect = startCli(['connect', '-p', downUrl, '--proxy', upUrl, '-t', `127.0.0.1:${echo.port}`, '--metrics', '127.0.0.1:0', '--json']);
    procs.push(connect);
    const l = await connect.waitForEvent('listening');
    const m = await connect.waitForEvent('metrics');
    assert.equal(await roundTrip(Number(l['port']), 'counted'), 'counted');
    await connect.waitForEvent('session-ready');
    const body = await (await fetch(String(m['url']))).text();
    const value = (series: string, proxy: string): number => {
      const line = body.split('\n').find((x) => x.startsWith(`udp_tunnel_${series}{proxy="${proxy}"} `));
      assert.ok(line, `${series} for ${proxy} in:\n${body.slice(0, 3000)}`);
      return Number(line.split(' ').pop());
    };
    assert.equal(value('proxy_connect_failures', downUrl), 1);
    assert.equal(value('proxy_sessions_opened', downUrl), 0);
    assert.equal(value('proxy_sessions_opened', upUrl), 1);
    // Marked down only until its backoff (about a second) runs out, which a slow scrape may pass: 0 or 1.
    assert.ok([0, 1].includes(value('proxy_down', downUrl)));
    assert.equal(value('proxy_down', upUrl), 0);
    assert.equal(await connect.stop('SIGINT'), 0);
  });

  it('UDP_TUNNEL_PROXY with a comma-separated list; the human listening line and proxy checks name each proxy', async () => {
    const connect = startCli(['connect', '-t', `127.0.0.1:${echo.port}`, '--proxy-strategy', 'round-robin'], {
      env: { UDP_TUNNEL_PROXY: `${downUrl},${upUrl}`, NO_COLOR: '1' },
    });
    procs.push(connect);
    await waitUntil(() => /listening on udp/.test(connect.stderr()), 10_000, 'listening line');
    const m = /listening on udp 127\.0\.0\.1:(\d+) -> (.*)$/m.exec(connect.stderr())!;
    assert.equal(m[2], `2 proxies -> 127.0.0.1:${echo.port} [h2, round-robin]`);
    await waitUntil(() => /proxy 2: /.test(connect.stderr()), 10_000, 'the proxy lines');
    assert.match(connect.stderr(), new RegExp(`^\\s*[\\d.]+ {3}proxy 1: ${downUrl}\n\\s*[\\d.]+ {3}proxy 2: ${upUrl}$`, 'm'));
    assert.equal(await roundTrip(Number(m[1]), 'env list'), 'env list');
    await waitUntil(() => /proxy check http:\S+ failed:/.test(connect.stderr()) && /proxy http:\S+ ok: /.test(connect.stderr()), 10_000, 'a check line per proxy');
    assert.match(connect.stderr(), new RegExp(`proxy check ${downUrl} failed:\n.*warning:   cannot reach proxy`));
    assert.match(connect.stderr(), new RegExp(`proxy ${upUrl} ok: h2c over cleartext TCP`));
    for (const line of connect.stderr().split('\n')) assert.ok(line.length <= 100, line);
    assert.equal(await connect.stop('SIGINT'), 0);
  });

  it('refuses --proxy-strategy with one proxy, TLS flags with a cleartext proxy among several, and a proxy listed twice', async () => {
    const target = ['-t', '127.0.0.1:9'];
    let r = await runCli(['connect', '-p', upUrl, ...target, '--proxy-strategy', 'round-robin']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--proxy-strategy needs two or more --proxy URLs/);
    r = await runCli(['connect', '-p', 'https://127.0.0.1:1', '-p', upUrl, ...target, '--insecure']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`--insecure needs every --proxy to be https:// \\(not ${upUrl}\\)`));
    r = await runCli(['connect', '-p', `${upUrl},${upUrl}`, ...target]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--proxy .* is listed twice/);
    r = await runCli(['connect', '-p', `${upUrl},`, ...target]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /empty entry/);
  });
});
