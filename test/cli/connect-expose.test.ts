import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ANSI_RE, runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../helpers/net.js';

/** Parses `IP:PORT` / `[IPv6]:PORT` as the exposed event writes it. */
function ipPort(text: string): { address: string; port: number } {
  const m = /^\[?([^\]]+)\]?:(\d+)$/.exec(text);
  assert.ok(m, text);
  return { address: m[1]!, port: Number(m[2]) };
}

const bracket = (host: string): string => (host.includes(':') ? `[${host}]` : host);

for (const host of ['127.0.0.1', '::1']) {
  describe(`connect --expose over ${host}`, () => {
    it('prints the exposed event; two remote peers reach the local echo service, each from its own source port', async () => {
      const service = await startUdpEcho(host);
      const serve = startCli(['serve', '--listen', `${bracket(host)}:0`, '--allow-bind', '--allow', host, '--json']);
      let connect: CliProcess | null = null;
      const a = await openUdpPeer(host);
      const b = await openUdpPeer(host);
      try {
        const l = await serve.waitForEvent('listening');
        connect = startCli(['connect', '-p', `http://${bracket(host)}:${l['port']}`, '--expose', `${bracket(host)}:${service.port}`, '--json']);
        const exposed = await connect.waitForEvent('exposed');
        assert.equal(exposed['local'], `${bracket(host)}:${service.port}`);
        assert.ok(Array.isArray(exposed['public']) && exposed['public'].length === 1, JSON.stringify(exposed));
        const pub = ipPort(String((exposed['public'] as string[])[0]));
        assert.equal(pub.address, host);
        assert.equal(exposed['reopened'], false);
        for (const [peer, text] of [[a, 'from-a'], [b, 'from-b']] as const) {
          await peer.send(text, pub.port, pub.address);
          const [reply] = await peer.waitFor(1, 10_000);
          assert.equal(reply!.toString(), text);
        }
        assert.equal(new Set(service.sources).size, 2, `the service saw ${service.sources.join(',')}`);
        await waitUntil(() => connect!.lines.filter((x) => x['event'] === 'peer-open').length === 2, 10_000, 'two peer-open events');
        const opened = connect.lines.filter((x) => x['event'] === 'peer-open');
        assert.deepEqual(new Set(opened.map((x) => x['localPort'])), new Set(service.sources));
        assert.equal(await connect.stop('SIGINT'), 0);
        const shutdown = connect.lines.find((x) => x['event'] === 'shutdown');
        assert.ok(shutdown, connect.stdout());
        const counters = shutdown['counters'] as Record<string, number>;
        assert.equal(counters['rxDatagrams'], 2);
        assert.equal(counters['txDatagrams'], 2);
        assert.equal(counters['peersTotal'], 2);
        for (const line of connect.lines) assert.equal(typeof line['event'], 'string', `every stdout line is a JSON event: ${JSON.stringify(line)}`);
      } finally {
        await connect?.stop();
        await serve.stop();
        await service.close();
        await a.close();
        await b.close();
      }
    });
  });
}

describe('connect --expose output and refusals', () => {
  it("prints 'exposed LOCAL at PUBLIC' for people, without colour under NO_COLOR", async () => {
    const service = await startUdpEcho('127.0.0.1');
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--allow-bind', '--allow', '127.0.0.1', '--json']);
    let connect: CliProcess | null = null;
    try {
      const l = await serve.waitForEvent('listening');
      connect = startCli(['connect', '-p', `http://127.0.0.1:${l['port']}`, '--expose', `127.0.0.1:${service.port}`], { env: { NO_COLOR: '1' } });
      await waitUntil(() => /exposed /.test(connect!.stderr()), 10_000, 'the exposed line');
      assert.match(connect.stderr(), new RegExp(`exposed 127\\.0\\.0\\.1:${service.port} at 127\\.0\\.0\\.1:\\d+\\n`));
      assert.doesNotMatch(connect.stderr(), ANSI_RE);
      assert.equal(connect.stdout(), '');
      assert.equal(await connect.stop('SIGTERM'), 0);
    } finally {
      await connect?.stop();
      await serve.stop();
      await service.close();
    }
  });

  it('announces a new binding after serve restarts on the same address', async () => {
    let serve = startCli(['serve', '--listen', '127.0.0.1:0', '--allow-bind', '--allow', '127.0.0.1', '--json']);
    let connect: CliProcess | null = null;
    try {
      const port = Number((await serve.waitForEvent('listening'))['port']);
      connect = startCli(['connect', '-p', `http://127.0.0.1:${port}`, '--expose', '127.0.0.1:9', '--backoff-base', '20ms', '--backoff-max', '200ms', '--json']);
      await connect.waitForEvent('exposed');
      assert.equal(await serve.stop('SIGINT'), 0);
      const lost = await connect.waitForEvent('tunnel-lost');
      assert.match(String(lost['reason']), /^tunnel-(closed|ended)$/);
      serve = startCli(['serve', '--listen', `127.0.0.1:${port}`, '--allow-bind', '--allow', '127.0.0.1', '--json']);
      await serve.waitForEvent('listening');
      await waitUntil(() => connect!.lines.filter((x) => x['event'] === 'exposed').length === 2, 20_000, 'the second exposed event');
      const again = connect.lines.filter((x) => x['event'] === 'exposed')[1]!;
      assert.equal(again['reopened'], true);
      assert.equal(await connect.stop('SIGINT'), 0);
      const shutdown = connect.lines.find((x) => x['event'] === 'shutdown')!;
      assert.equal((shutdown['counters'] as Record<string, number>)['tunnelsOpened'], 2);
    } finally {
      await connect?.stop();
      await serve.stop();
    }
  });

  it('exits 1 with UT_ERR_TUNNEL_REFUSED when the proxy does not allow bind', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--json']);
    try {
      const l = await serve.waitForEvent('listening');
      const r = await runCli(['connect', '-p', `http://127.0.0.1:${l['port']}`, '--expose', '127.0.0.1:9', '--json']);
      assert.equal(r.code, 1, r.stderr);
      const error = r.stdout.trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>).find((e) => e['event'] === 'error');
      assert.equal(error?.['code'], 'UT_ERR_TUNNEL_REFUSED');
      assert.match(String(error?.['message']), /501/);
    } finally {
      await serve.stop();
    }
  });

  const refusals: Array<[string[], RegExp]> = [
    [['--target', '127.0.0.1:53'], /--target does not apply with --expose/],
    [['-L', '5353:127.0.0.1:53'], /--expose does not combine with -L\/--forward/],
    [['--local', '127.0.0.1:5353'], /--local does not apply with --expose/],
    [['--mode', 'post'], /--expose needs CONNECT-UDP.*drop --mode post/],
    [['--check'], /--check does not apply with --expose/],
    [['--no-buffer'], /--buffer does not apply with --expose/],
    [['--metrics', '127.0.0.1:0'], /--metrics does not apply with --expose/],
  ];
  for (const [extra, message] of refusals) {
    it(`exits 2 for --expose with ${extra[0]}`, async () => {
      const r = await runCli(['connect', '-p', 'http://127.0.0.1:1', '--expose', '127.0.0.1:5353', ...extra], { env: { NO_COLOR: '1' } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }

  it('exits 2 for an --expose that is not HOST:PORT', async () => {
    const r = await runCli(['connect', '-p', 'http://127.0.0.1:1', '--expose', '127.0.0.1'], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--expose '127\.0\.0\.1'/);
  });

  it('help says what --idle-timeout and --max-sessions mean with --expose', async () => {
    const r = await runCli(['connect', '--help-all'], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--expose HOST:PORT/);
    assert.match(r.stdout.replace(/\s+/g, ' '), /With --expose: forget a remote peer idle this long/);
    assert.match(r.stdout.replace(/\s+/g, ' '), /With --expose: remote peers at once/);
  });
});
