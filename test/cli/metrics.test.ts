import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { httpGet, sample, scrapeUntil } from '../helpers/metrics.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../helpers/net.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-metrics-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The metrics base URL a process announced in its `metrics` event. */
async function metricsUrl(p: CliProcess): Promise<string> {
  const e = await p.waitForEvent('metrics');
  return String(e['url']).replace(/\/metrics$/, '');
}

/** The lines of a file once it has `n` (written asynchronously), each parsed as JSON. */
async function jsonLines(path: string, n: number): Promise<Record<string, unknown>[]> {
  const read = (): string[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : []);
  await waitUntil(() => read().length >= n, 10_000, `${n} lines in ${path}`);
  return read().map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('serve and connect --metrics and --access-log', () => {
  it('a session through serve and connect: metrics match, one access log line each with the counts, no credential anywhere', async () => {
    const token = 'metrics-test-token-0123456789';
    const serveLog = join(dir, 'serve.log');
    const connectLog = join(dir, 'connect.log');
    const echo = await startUdpEcho();
    const peer = await openUdpPeer();
    const serve = startCli(['serve', '-l', '127.0.0.1:0', '--token', token, '--metrics', '127.0.0.1:0', '--access-log', serveLog, '--json']);
    let connect: CliProcess | undefined;
    let intruder: CliProcess | undefined;
    try {
      const sl = await serve.waitForEvent('listening');
      // `listening` stays the first event; `metrics` follows it.
      assert.equal(serve.lines[0]!['event'], 'listening');
      const sm = await metricsUrl(serve);
      const proxy = `http://127.0.0.1:${sl['port']}`;
      connect = startCli(['connect', '-l', '127.0.0.1:0', '-p', proxy, '-t', `127.0.0.1:${echo.port}`, '--token', token, '--metrics', '0', '--access-log', connectLog, '--json']);
      const cl = await connect.waitForEvent('listening');
      const cm = await metricsUrl(connect);
      const n = 5;
      for (let i = 0; i < n; i++) await peer.send(`datagram-${i}`, Number(cl['port']), '127.0.0.1');
      await peer.waitFor(n, 10_000);
      const bytes = n * 'datagram-0'.length;

      const s = await scrapeUntil(`${sm}/metrics`, (t) => sample(t, 'udp_tunnel_downstream_sess_tx_datagrams') === n, 10_000, 'serve counters');
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_total'), 1);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_active'), 1);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_rx_datagrams'), n);
      assert.equal(sample(s, 'udp_tunnel_downstream_sess_rx_bytes'), bytes);
      assert.ok(s.includes('process_resident_memory_bytes'), 'process metrics');
      const c = await scrapeUntil(`${cm}/metrics`, (t) => sample(t, 'udp_tunnel_downstream_sess_tx_datagrams') === n, 10_000, 'connect counters');
      assert.equal(sample(c, 'udp_tunnel_downstream_sess_total'), 1);
      assert.equal(sample(c, 'udp_tunnel_downstream_sess_rx_bytes'), bytes);
      assert.equal(sample(c, 'udp_tunnel_sess_tunnel_success'), 1);
      assert.equal(sample(c, 'udp_tunnel_upstream_rq_total', { proxy }), 1);
      for (const base of [sm, cm]) {
        assert.equal((await httpGet(`${base}/healthz`)).status, 200);
        assert.equal((await httpGet(`${base}/readyz`)).status, 200);
        assert.equal((await httpGet(`${base}/favicon.ico`)).status, 404);
        assert.equal((await httpGet(`${base}/metrics`, 'POST')).status, 405);
      }

      // A client with a wrong token is refused: by status and error type on both sides.
      intruder = startCli(['connect', '-l', '127.0.0.1:0', '-p', proxy, '-t', `127.0.0.1:${echo.port}`, '--token', 'wrong-token-abcdef', '--metrics', '0', '--json']);
      const il = await intruder.waitForEvent('listening');
      const im = await metricsUrl(intruder);
      await peer.send('intrude', Number(il['port']), '127.0.0.1');
      const refused = await scrapeUntil(`${sm}/metrics`, (t) => sample(t, 'udp_tunnel_downstream_rq_refused', { status: '401', error_type: 'http_request_denied' }) === 1);
      assert.equal(sample(refused, 'udp_tunnel_downstream_rq_auth_failure'), 1);
      await scrapeUntil(`${im}/metrics`, (t) => sample(t, 'udp_tunnel_upstream_rq_failure', { error_type: 'http_request_denied', code: 'UT_ERR_AUTH_REQUIRED' }) === 1);
      assert.equal(await intruder.stop('SIGINT'), 0);

      assert.equal(await connect.stop('SIGINT'), 0);
      const [cline] = await jsonLines(connectLog, 1);
      assert.equal(cline!['command'], 'connect');
      assert.equal(cline!['client'], `127.0.0.1:${peer.port}`);
      assert.equal(cline!['target'], `127.0.0.1:${echo.port}`);
      assert.equal(cline!['proxy'], proxy);
      assert.equal(cline!['http_version'], '2');
      assert.equal(cline!['mode'], 'connect-udp');
      assert.equal(cline!['status'], 200);
      assert.deepEqual([cline!['rx_datagrams'], cline!['rx_bytes'], cline!['tx_datagrams'], cline!['tx_bytes']], [n, bytes, n, bytes]);
      assert.equal(cline!['close_reason'], 'client-shutdown');
      // The proxy sees the tunnel end and logs the session; the refusal has its own line.
      const lines = await jsonLines(serveLog, 2);
      const sline = lines.find((l) => l['session'] !== null)!;
      assert.deepEqual([sline['rx_datagrams'], sline['rx_bytes'], sline['tx_datagrams'], sline['tx_bytes']], [n, bytes, n, bytes]);
      assert.equal(sline['resolved'], '127.0.0.1');
      assert.equal(sline['status'], 200);
      const rline = lines.find((l) => l['session'] === null)!;
      assert.equal(rline['status'], 401);
      assert.equal(rline['proxy_status'], 'http_request_denied');
      assert.equal(await serve.stop('SIGINT'), 0);
      for (const text of [readFileSync(serveLog, 'utf8'), readFileSync(connectLog, 'utf8'), s, c]) {
        assert.ok(!text.includes(token), 'the token leaked');
        assert.ok(!/authorization/i.test(text), 'a credential header leaked');
      }
    } finally {
      await intruder?.stop('SIGKILL');
      await connect?.stop('SIGKILL');
      await serve.stop('SIGKILL');
      await peer.close();
      await echo.close();
    }
  });

  it('SIGUSR1 reopens the access log: after a rename, the next session goes to a new file by the old name', async () => {
    const path = join(dir, 'rotate.log');
    const echo = await startUdpEcho();
    const serve = startCli(['serve', '-l', '127.0.0.1:0', '--access-log', path, '--access-log-format', '%SESSION% %RX_DATAGRAMS% %TX_DATAGRAMS% %STATUS%', '--json']);
    try {
      const sl = await serve.waitForEvent('listening');
      const oneSession = async (): Promise<void> => {
        const connect = startCli(['connect', '-l', '127.0.0.1:0', '-p', `http://127.0.0.1:${sl['port']}`, '-t', `127.0.0.1:${echo.port}`, '--json']);
        const cl = await connect.waitForEvent('listening');
        const peer = await openUdpPeer();
        await peer.send('x', Number(cl['port']), '127.0.0.1');
        await peer.waitFor(1, 10_000);
        await peer.close();
        assert.equal(await connect.stop('SIGINT'), 0);
      };
      const lines = (p: string): string[] => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').filter((l) => l !== '') : []);
      await oneSession();
      await waitUntil(() => lines(path).length === 1, 10_000, 'the first line');
      renameSync(path, `${path}.1`);
      serve.child.kill('SIGUSR1');
      await waitUntil(() => existsSync(path), 10_000, 'the reopened file');
      await oneSession();
      await waitUntil(() => lines(path).length === 1, 10_000, 'the line in the new file');
      assert.deepEqual(lines(`${path}.1`), ['s1 1 1 200']);
      assert.deepEqual(lines(path), ['s2 1 1 200']);
      assert.equal(await serve.stop('SIGINT'), 0);
    } finally {
      await serve.stop('SIGKILL');
      await echo.close();
    }
  });

  it('connect /readyz: 503 while its proxy is unreachable, 200 once it answers', async () => {
    const port = await closedPort();
    const echo = await startUdpEcho();
    const connect = startCli(['connect', '-l', '127.0.0.1:0', '-p', `http://127.0.0.1:${port}`, '-t', `127.0.0.1:${echo.port}`, '--metrics', '127.0.0.1:0', '--json']);
    let serve: CliProcess | undefined;
    try {
      await connect.waitForEvent('listening');
      const base = await metricsUrl(connect);
      // The start-up probe fails; readiness says why.
      await connect.waitForEvent('proxy-check');
      const down = await httpGet(`${base}/readyz`);
      assert.equal(down.status, 503);
      assert.match(down.body, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.equal(sample((await httpGet(`${base}/metrics`)).body, 'udp_tunnel_ready'), 0);
      serve = startCli(['serve', '-l', `127.0.0.1:${port}`, '--json']);
      await serve.waitForEvent('listening');
      // Probes back off from 1 s; a generous deadline, no timing asserted.
      const deadline = Date.now() + 60_000;
      while ((await httpGet(`${base}/readyz`)).status !== 200) {
        if (Date.now() > deadline) assert.fail('connect never became ready');
        await new Promise((r) => setTimeout(r, 100));
      }
      const m = (await httpGet(`${base}/metrics`)).body;
      assert.equal(sample(m, 'udp_tunnel_proxy_reachable', { proxy: `http://127.0.0.1:${port}` }), 1);
      assert.equal(sample(m, 'udp_tunnel_ready'), 1);
    } finally {
      await connect.stop('SIGINT');
      await serve?.stop('SIGINT');
      await echo.close();
    }
  });

  it('--access-log - writes the lines on stdout (without --json)', async () => {
    const echo = await startUdpEcho();
    const serve = startCli(['serve', '-l', '127.0.0.1:0', '--json']);
    let connect: CliProcess | undefined;
    try {
      const sl = await serve.waitForEvent('listening');
      connect = startCli(['connect', '-l', '127.0.0.1:0', '-p', `http://127.0.0.1:${sl['port']}`, '-t', `127.0.0.1:${echo.port}`, '--access-log', '-', '-v']);
      await waitUntil(() => /listening on udp/.test(connect!.stderr()), 10_000, 'connect listening');
      const port = Number(/listening on udp \S*127\.0\.0\.1:(\d+)/.exec(connect.stderr().replace(/\u001b\[[0-9;]*m/g, ''))![1]);
      const peer = await openUdpPeer();
      await peer.send('x', port, '127.0.0.1');
      await peer.waitFor(1, 10_000);
      await peer.close();
      assert.equal(await connect.stop('SIGINT'), 0);
      const lines = connect.lines.filter((l) => l['command'] === 'connect');
      assert.equal(lines.length, 1);
      assert.equal(lines[0]!['rx_datagrams'], 1);
      assert.equal(lines[0]!['tx_datagrams'], 1);
    } finally {
      await connect?.stop('SIGKILL');
      await serve.stop('SIGINT');
      await echo.close();
    }
  });

  it('refuses bad combinations at start with exit 2 and a message naming the flags', async () => {
    const cases: [string[], RegExp][] = [
      [['serve', '--access-log', '-', '--json'], /--access-log - and --json/],
      [['serve', '--access-log-format', '%CLIENT%'], /--access-log-format needs --access-log/],
      [['serve', '--access-log', join(dir, 'x.log'), '--access-log-format', '%CLIENT% %TARGT%'], /unknown field %TARGT%; did you mean %TARGET%/],
      [['serve', '--access-log', join(dir, 'missing', 'x.log')], /--access-log .*missing/],
      [['connect', '-p', 'http://127.0.0.1:1', '-t', '127.0.0.1:9', '--metrics', '127.0.0.1:70000'], /invalid --metrics/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    // A metrics port already taken.
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (taken.address() as AddressInfo).port;
      const r = await runCli(['serve', '-l', '127.0.0.1:0', '--metrics', `127.0.0.1:${port}`]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--metrics 127\.0\.0\.1:\d+: the address is already in use/);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });
});
