import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../src/tunnel/auth.js';
import { TargetPolicy, parseRuleList } from '../../src/tunnel/policy.js';
import { TunnelServer } from '../../src/tunnel/server/tunnel-server.js';
import { generateCertificate, type GeneratedCertificate } from '../../src/tunnel/tls-cert.js';
import { ANSI_RE, runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../helpers/net.js';

const TOKEN = 'cli-check-token';

describe('connect checks the proxy after listening; connect --check', () => {
  let echo: UdpEcho;
  let cert: GeneratedCertificate;
  let cleartext: TunnelServer;
  let secure: TunnelServer;
  let authed: TunnelServer;
  let denying: TunnelServer;
  const url = (s: TunnelServer, scheme = 'http'): string => `${scheme}://127.0.0.1:${s.address().port}`;
  const procs: CliProcess[] = [];

  before(async () => {
    echo = await startUdpEcho();
    cert = await generateCertificate({});
    cleartext = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 60_000 });
    secure = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: cert.cert, key: cert.key } });
    authed = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), authenticator: new Authenticator({ tokens: [TOKEN] }) });
    denying = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy({ rules: parseRuleList('127.0.0.0/8', 'deny') }) });
    for (const s of [cleartext, secure, authed, denying]) await s.listen();
  });

  after(async () => {
    for (const p of procs) await p.stop('SIGKILL');
    for (const s of [cleartext, secure, authed, denying]) await s.close();
    await echo.close();
  });

  it('--json: a proxy-check event after listening, with the probe fields', async () => {
    const connect = startCli(['connect', '-p', url(cleartext), '-t', `127.0.0.1:${echo.port}`, '--json']);
    procs.push(connect);
    await connect.waitForEvent('listening');
    const check = await connect.waitForEvent('proxy-check');
    assert.equal(connect.lines[0]?.['event'], 'listening');
    assert.equal(check['ok'], true);
    assert.equal(check['transport'], 'h2c');
    assert.equal(check['extendedConnect'], true);
    assert.equal(typeof check['elapsedMs'], 'number');
    assert.equal(await connect.stop(), 0);
  });

  it('TLS with --pin: "proxy ok: h2 over TLS 1.3, extended CONNECT enabled" on stderr', async () => {
    const connect = startCli(['connect', '-p', url(secure, 'https'), '--pin', cert.pin, '-t', `127.0.0.1:${echo.port}`], { env: { NO_COLOR: '1' } });
    procs.push(connect);
    await waitUntil(() => /proxy ok: /.test(connect.stderr()), 10_000, 'proxy ok line');
    assert.match(connect.stderr(), /listening on udp [\s\S]*\n\s*[\d.]+ proxy ok: h2 over TLS 1\.3, extended CONNECT enabled\n/);
    assert.doesNotMatch(connect.stderr(), ANSI_RE);
    assert.equal(await connect.stop(), 0);
  });

  it('http:// to a TLS proxy: a warning with the scheme hint; connect keeps running', async () => {
    const connect = startCli(['connect', '-p', url(secure), '-t', `127.0.0.1:${echo.port}`, '--connect-timeout', '60s'], { env: { NO_COLOR: '1' } });
    procs.push(connect);
    await waitUntil(() => /keeps listening/.test(connect.stderr()), 10_000, 'proxy check warning');
    assert.match(connect.stderr(), /warning: proxy check: .*the proxy speaks TLS: use https:\/\/127\.0\.0\.1:\d+ \[UT_ERR_PROXY_UNREACHABLE\]/);
    assert.equal(connect.child.exitCode, null);
    assert.equal(await connect.stop(), 0);
  });

  it('a proxy that is down: a warning with "is udp-tunnel serve running on ...?"; connect still listens', async () => {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const connect = startCli(['connect', '-p', `http://127.0.0.1:${port}`, '-t', `127.0.0.1:${echo.port}`, '--json']);
    procs.push(connect);
    const check = await connect.waitForEvent('proxy-check');
    assert.equal(check['ok'], false);
    assert.equal(check['problem'], 'connection-refused');
    assert.equal(check['code'], 'UT_ERR_PROXY_UNREACHABLE');
    assert.equal(check['hint'], `is udp-tunnel serve running on 127.0.0.1:${port}?`);
    assert.equal(connect.child.exitCode, null);
    assert.equal(await connect.stop(), 0);
  });

  it('--no-proxy-check: no probe connection, the tunnel still works', async () => {
    const before = authed.counters.connections;
    const connect = startCli(['connect', '-p', url(authed), '--token', TOKEN, '-t', `127.0.0.1:${echo.port}`, '--json', '--no-proxy-check']);
    procs.push(connect);
    const l = await connect.waitForEvent('listening');
    const peer = await openUdpPeer();
    try {
      await peer.send('ping', Number(l['port']), '127.0.0.1');
      assert.equal(String((await peer.waitFor(1, 10_000))[0]), 'ping');
    } finally {
      await peer.close();
    }
    assert.equal(await connect.stop(), 0);
    assert.equal(authed.counters.connections, before + 1);
    assert.equal(connect.lines.some((e) => e['event'] === 'proxy-check'), false);
  });

  it('--check: exit 0 with the status, time and response headers', async () => {
    const r = await runCli(['connect', '-p', url(cleartext), '-t', `127.0.0.1:${echo.port}`, '--check'], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^proxy {8}http:\/\/127\.0\.0\.1:\d+ \(h2c over cleartext TCP, extended CONNECT enabled, \d+ ms\)$/m);
    assert.match(r.stdout, /^request {6}CONNECT \/\.well-known\/masque\/udp\/127\.0\.0\.1\/\d+\/ \[h2\]$/m);
    assert.match(r.stdout, /^status {7}200, tunnel established after \d+ ms$/m);
    assert.match(r.stdout, /^proxy-status none$/m);
    assert.match(r.stdout, /^ {2}capsule-protocol: \?1$/m);
    assert.equal(r.stderr, '');
    for (const line of r.stdout.split('\n')) assert.ok(line.length <= 100, line);
  });

  it('--check --json --http 1.1: one check event, status 101', async () => {
    const r = await runCli(['connect', '-p', url(cleartext), '-t', `127.0.0.1:${echo.port}`, '--check', '--json', '--http', '1.1']);
    assert.equal(r.code, 0, r.stderr);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(events.map((e) => e['event']), ['check']);
    const e = events[0]!;
    assert.deepEqual([e['ok'], e['status'], e['transport']], [true, 101, 'h1']);
    assert.equal((e['headers'] as Record<string, string>)['upgrade'], 'connect-udp');
    assert.equal((e['probe'] as Record<string, unknown>)['transport'], 'http/1.1');
  });

  it('--check to a target the policy refuses: exit 1, the Proxy-Status error type printed', async () => {
    const r = await runCli(['connect', '-p', url(denying), '-t', `127.0.0.1:${echo.port}`, '--check'], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^status {7}403, tunnel refused after \d+ ms$/m);
    assert.match(r.stdout, /^proxy-status udp-tunnel error=destination_ip_prohibited details=".+"$/m);
    assert.match(r.stdout, /^hint {9}the proxy's target policy does not allow this target$/m);
    assert.match(r.stderr, /HTTP 403 \(destination_ip_prohibited\): "target 127\.0\.0\.1:\d+ is not allowed: [^"]+" \[UT_ERR_TUNNEL_REFUSED\]/);
  });

  it('--check with a wrong token: exit 1, says authentication and names --token', async () => {
    const r = await runCli(['connect', '-p', url(authed), '-t', `127.0.0.1:${echo.port}`, '--check', '--token', 'wrong'], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^status {7}401, authentication failed after \d+ ms$/m);
    assert.match(r.stdout, /^hint {9}authentication failed: check --token/m);
    assert.match(r.stderr, /\[UT_ERR_AUTH_REQUIRED\]/);
    const json = await runCli(['connect', '-p', url(authed), '-t', `127.0.0.1:${echo.port}`, '--check', '--token', 'wrong', '--json']);
    assert.equal(json.code, 1);
    const [e, err, ...rest] = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual([e!['event'], e!['ok'], e!['status'], e!['problem'], e!['code']], ['check', false, 401, 'auth', 'UT_ERR_AUTH_REQUIRED']);
    // Every --json failure ends with an error event carrying the exit code.
    assert.deepEqual([err!['event'], err!['code'], err!['exitCode']], ['error', 'UT_ERR_AUTH_REQUIRED', 1]);
    assert.equal(rest.length, 0);
  });

  it('--check with https:// to a cleartext proxy: exit 1 with the scheme hint', async () => {
    const r = await runCli(['connect', '-p', url(cleartext, 'https'), '-t', `127.0.0.1:${echo.port}`, '--check', '--connect-timeout', '60s'], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^status {7}no response$/m);
    assert.match(r.stdout, /the proxy speaks cleartext HTTP: use http:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stderr, /\[UT_ERR_TLS\]/);
  });
});
