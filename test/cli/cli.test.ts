import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { describe, it } from 'node:test';
import { ANSI_RE, runCli, startCli } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho } from '../helpers/net.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('udp-tunnel CLI', () => {
  it('--help lists the commands and exits 0', async () => {
    const r = await runCli(['--help']);
    assert.equal(r.code, 0);
    for (const cmd of ['connect', 'serve', 'inspect', 'bench', 'demo']) assert.match(r.stdout, new RegExp(`^  ${cmd} +\\S`, 'm'));
    assert.match(r.stdout, /udp-tunnel <command> --help/);
  });

  for (const cmd of ['connect', 'serve', 'demo']) {
    it(`${cmd} --help shows at least two examples`, async () => {
      const r = await runCli([cmd, '--help']);
      assert.equal(r.code, 0);
      const examples = r.stdout.split('Examples:')[1] ?? '';
      assert.ok((examples.match(/udp-tunnel /g) ?? []).length >= 2, r.stdout);
    });
  }

  it('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  it('an unknown flag is a usage error (exit 2)', async () => {
    const r = await runCli(['serve', '--no-such-flag']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.split('\n')[0], 'udp-tunnel: unknown option --no-such-flag');
  });

  it('no command is a usage error (exit 2)', async () => {
    const r = await runCli([]);
    assert.equal(r.code, 2);
  });

  it('connect without --proxy is a usage error (exit 2)', async () => {
    const r = await runCli(['connect', '--target', '127.0.0.1:53']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /proxy/);
  });

  it('a bad address gives a one-line message and exit 2', async () => {
    const r = await runCli(['connect', '--proxy', 'http://127.0.0.1:1', '--target', '::1:53']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /IPv6 addresses must be written in brackets/);
  });

  it('a bad proxy URL scheme is a usage error', async () => {
    const r = await runCli(['connect', '--proxy', 'ftp://127.0.0.1:1', '--target', '127.0.0.1:53']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /http:\/\/ .*https:\/\//);
  });

  it('a listen address in use is a runtime failure (exit 1), stack only with --verbose', async () => {
    const first = startCli(['serve', '--listen', '127.0.0.1:0', '--json']);
    const l = await first.waitForEvent('listening');
    const r = await runCli(['serve', '--listen', `127.0.0.1:${l['port']}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /address already in use/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    const v = await runCli(['serve', '--listen', `127.0.0.1:${l['port']}`, '--verbose']);
    assert.equal(v.code, 1);
    assert.match(v.stderr, /\n\s+at /);
    assert.equal(await first.stop(), 0);
  });

  it('serve --help lists the connection limits; bad values are usage errors (exit 2)', async () => {
    const help = await runCli(['serve', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--help-all/);
    const all = await runCli(['serve', '--help-all']);
    assert.equal(all.code, 0);
    assert.match(all.stdout, /--connection-idle-timeout TIME\s+GOAWAY an HTTP\/2 connection idle \(no stream\) this long \(0 = never\)\s+\[default 1m\]/);
    assert.match(all.stdout, /--max-connections N\s+TCP connections at once; more are closed on accept\s+\[default 10000;/);
    const zero = await runCli(['serve', '--listen', '127.0.0.1:0', '--max-connections', '0']);
    assert.equal(zero.code, 2);
    assert.match(zero.stderr, /--max-connections: '0' is out of range: it must be 1\.\.10000000 \(0 would turn it off\)/);
    const bad = await runCli(['serve', '--listen', '127.0.0.1:0', '--connection-idle-timeout', 'soon']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--connection-idle-timeout: 'soon' is not a duration \(examples: 500ms, 30s, 2m\)/);
  });

  it('serve: a bad --max-datagram or --max-udp-send-queue is a usage error (exit 2) with the flag named', async () => {
    const hint = `Run 'udp-tunnel serve --help' for usage.\n`;
    for (const [value, why] of [
      ['65528', "'65528' is out of range: it must be 1..65527"],
      ['-1', "'-1' is out of range: a size cannot be negative"],
      ['1.5', "'1.5' is not a whole number of bytes"],
    ]) {
      const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--max-datagram', value!]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `udp-tunnel: --max-datagram: ${why}\n${hint}`);
    }
    const queue = await runCli(['serve', '--listen', '127.0.0.1:0', '--max-udp-send-queue', '0']);
    assert.equal(queue.code, 2);
    assert.equal(queue.stderr, `udp-tunnel: --max-udp-send-queue: '0' is out of range: it must be 1..1000000 (0 would turn it off)\n${hint}`);
  });

  it('connect: refusals of --target, --mode post and --max-datagram keep their exit code 2 and messages', async () => {
    const hint = `Run 'udp-tunnel connect --help' for usage.\n`;
    const proxy = ['connect', '--local', '127.0.0.1:0', '--proxy', 'http://127.0.0.1:9'];
    const noTarget = await runCli(proxy);
    assert.equal(noTarget.code, 2);
    assert.equal(noTarget.stderr, `udp-tunnel: --target HOST:PORT is required in connect-udp mode\n${hint}`);
    const postH1 = await runCli([...proxy, '--mode', 'post', '--http', '1.1']);
    assert.equal(postH1.code, 2);
    assert.equal(postH1.stderr, `udp-tunnel: --mode post runs over HTTP/2 only; drop --http 1.1\n${hint}`);
    const big = await runCli([...proxy, '--target', '127.0.0.1:9', '--max-datagram', '65528']);
    assert.equal(big.code, 2);
    assert.equal(big.stderr, `udp-tunnel: --max-datagram: '65528' is out of range: it must be 1..65527\n${hint}`);
  });

  it('serve --connection-idle-timeout closes an idle HTTP/2 connection; the shutdown counters show it', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--connection-idle-timeout', '150ms', '--json']);
    const l = await serve.waitForEvent('listening');
    const session = http2.connect(`http://127.0.0.1:${l['port']}`);
    session.on('error', () => {});
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    const req = session.request({ ':method': 'CONNECT', ':protocol': 'connect-udp', ':scheme': 'http', ':authority': `127.0.0.1:${l['port']}`, ':path': '/nope' });
    req.on('error', () => {});
    const status = await new Promise<number>((resolve) => req.once('response', (h) => resolve(Number(h[':status']))));
    assert.equal(status, 404);
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    session.destroy();
    assert.equal(await serve.stop('SIGTERM'), 0);
    const shutdown = serve.lines.find((x) => x['event'] === 'shutdown') as { counters: { limits: Record<string, number> } } | undefined;
    assert.ok(shutdown);
    assert.equal(shutdown.counters.limits['connectionIdle'], 1);
    assert.equal(shutdown.counters.limits['connections'], 0);
  });

  it('NO_COLOR=1 output has no ANSI codes; FORCE_COLOR=1 has them', async () => {
    const plain = await runCli(['demo', '--peers', '1', '--count', '5'], { env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
    assert.equal(plain.code, 0);
    assert.doesNotMatch(plain.stdout + plain.stderr, ANSI_RE);
    const colored = await runCli(['demo', '--peers', '1', '--count', '5'], { env: { FORCE_COLOR: '1' } });
    assert.equal(colored.code, 0);
    assert.match(colored.stdout, ANSI_RE);
  });

  it('demo --json prints one parseable document and exits 0', async () => {
    const r = await runCli(['demo', '--peers', '2', '--count', '20', '--json']);
    assert.equal(r.code, 0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; peers: { sent: number; received: number; corrupted: number }[] };
    assert.equal(doc.ok, true);
    assert.equal(doc.peers.length, 2);
    for (const p of doc.peers) assert.deepEqual([p.sent, p.received, p.corrupted], [20, 20, 0]);
  });

  it('demo --ipv6 --json names each peer as [::1]:PORT', async () => {
    const r = await runCli(['demo', '--ipv6', '--peers', '2', '--count', '5', '--json']);
    assert.equal(r.code, 0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; peers: { peer: string; received: number }[] };
    assert.equal(doc.ok, true);
    for (const p of doc.peers) {
      assert.match(p.peer, /^\[::1\]:\d+$/);
      assert.equal(p.received, 5);
    }
  });

  it('serve + connect as real processes: --json listening lines carry the real ports; a datagram round-trips; SIGINT exits 0', async () => {
    const echo = await startUdpEcho();
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--json']);
    const sl = await serve.waitForEvent('listening');
    assert.equal(sl['protocol'], 'h2c');
    assert.ok(Number(sl['port']) > 0);
    const connect = startCli(['connect', '--local', '127.0.0.1:0', '--proxy', `http://127.0.0.1:${sl['port']}`, '--target', `127.0.0.1:${echo.port}`, '--json']);
    const cl = await connect.waitForEvent('listening');
    assert.equal(cl['protocol'], 'udp');
    assert.ok(Number(cl['port']) > 0);
    const peer = await openUdpPeer();
    await peer.send('cli round trip', Number(cl['port']), '127.0.0.1');
    const got = await peer.waitFor(1, 10_000);
    assert.equal(String(got[0]), 'cli round trip');
    await connect.waitForEvent('session-ready');
    assert.equal(await connect.stop('SIGINT'), 0);
    const closeEv = connect.lines.find((l) => l['event'] === 'session-close');
    assert.ok(closeEv, 'session-close event on shutdown');
    assert.equal(closeEv!['rxDatagrams'], 1);
    assert.equal(closeEv!['txDatagrams'], 1);
    assert.equal(await serve.stop('SIGTERM'), 0);
    for (const line of [...serve.lines, ...connect.lines]) assert.equal(typeof line['event'], 'string');
    await peer.close();
    await echo.close();
  });
});
