import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startCli, type CliProcess } from '../helpers/cli.js';
import { openUdpPeer, waitUntil } from '../helpers/net.js';

/** Waits until the process's stderr matches `re`; returns the match. */
async function stderrMatch(p: CliProcess, re: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
  await waitUntil(() => re.test(p.stderr()), ms, `${re} on stderr; stderr so far: ${p.stderr()}`);
  return p.stderr().match(re)!;
}

const servePort = async (serve: CliProcess): Promise<number> => Number((await stderrMatch(serve, /serving CONNECT-UDP on http:\/\/127\.0\.0\.1:(\d+)/))[1]);

describe('serve/connect: policy diagnostics (CLI)', () => {
  it('serve prints its effective policy at start in human mode, loopback default included, without a loopback warning', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--deny', '127.0.0.2/32,[::1]:53']);
    await servePort(serve);
    assert.equal(await serve.stop(), 0);
    const err = serve.stderr();
    assert.match(err, /policy: deny {2}127\.0\.0\.2\/32, \[::1\/128\]:53\n/);
    assert.match(err, /policy: default: loopback targets only \(127\.0\.0\.0\/8, ::1\); everything else is refused\n/);
    assert.doesNotMatch(err, /policy: allow/);
    assert.doesNotMatch(err, /warning/);
  });

  it('--allow 10.0.0.0/8 prints the allow rule and warns that loopback targets are refused now, in lines of at most 100 columns', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--allow', '10.0.0.0/8']);
    await servePort(serve);
    await stderrMatch(serve, /keep them with/);
    assert.equal(await serve.stop(), 0);
    const err = serve.stderr();
    assert.match(err, /policy: allow 10\.0\.0\.0\/8\n/);
    assert.match(err, /policy: default: every target no allow rule matches is refused\n/);
    assert.match(err, /warning: any --allow replaces the loopback-only default: loopback targets are refused now\n/);
    assert.match(err, /warning: keep them with --allow 127\.0\.0\.0\/8,::1 \(or narrower: --allow 127\.0\.0\.1\/32:53\)\n/);
    for (const line of err.split('\n')) assert.ok(line.length <= 100, `${line.length} columns: ${line}`);

    const json = startCli(['serve', '--listen', '127.0.0.1:0', '--allow', '10.0.0.0/8', '--json']);
    const warning = await json.waitForEvent('warning');
    assert.match(String(warning['message']), /^any --allow replaces the loopback-only default: loopback targets are refused now; keep them with --allow/);
    assert.equal(await json.stop(), 0);

    const kept = startCli(['serve', '--listen', '127.0.0.1:0', '--allow', '10.0.0.0/8,127.0.0.1:53']);
    await servePort(kept);
    assert.equal(await kept.stop(), 0);
    assert.doesNotMatch(kept.stderr(), /warning/);
  });

  it('connect to a serve whose deny rule refuses the target prints status, error type and details once; serve logs target and rule', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--deny', '127.0.0.2/32']);
    const port = await servePort(serve);
    const connect = startCli(['connect', '--local', '127.0.0.1:0', '--proxy', `http://127.0.0.1:${port}`, '--target', '127.0.0.2:9']);
    const peer = await openUdpPeer();
    try {
      const local = Number((await stderrMatch(connect, /listening on udp 127\.0\.0\.1:(\d+)/))[1]);
      await peer.send('ping', local, '127.0.0.1');
      await stderrMatch(connect, /closed \(connect-failed\)/);
      const details = '"target 127.0.0.2:9 is not allowed: denied by rule 127.0.0.2/32"';
      const head = `c1 127.0.0.1:${peer.port}: proxy refused 127.0.0.2:9: HTTP 403 destination_ip_prohibited:`;
      const err = connect.stderr();
      // The details do not fit on the line within 100 columns, so they follow on one of their own.
      assert.ok(err.includes(`error: ${head}\n`), err);
      assert.match(err, new RegExp(`error: {3}${details.replace(/[.()/]/g, '\\$&')}\n`));
      assert.equal(err.split(details).length - 1, 1, 'the details are printed once');
      for (const line of err.split('\n').filter((l) => l.includes('error: '))) assert.ok(line.length <= 100, `${line.length} columns: ${line}`);
      await stderrMatch(serve, /refused 403/);
      assert.match(serve.stderr(), /refused 403 destination_ip_prohibited for 127\.0\.0\.1:\d+ -> 127\.0\.0\.2:9: deny 127\.0\.0\.2\/32\n/);
    } finally {
      await peer.close();
      assert.equal(await connect.stop(), 0);
      assert.equal(await serve.stop(), 0);
    }
  });

  it('connect --json: the connect-error event carries status and the parsed Proxy-Status', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--deny', '127.0.0.2/32', '--json']);
    const l = await serve.waitForEvent('listening');
    const connect = startCli(['connect', '--local', '127.0.0.1:0', '--proxy', `http://127.0.0.1:${String(l['port'])}`, '--target', '127.0.0.2:9', '--json']);
    const peer = await openUdpPeer();
    try {
      const local = await connect.waitForEvent('listening');
      await peer.send('ping', Number(local['port']), '127.0.0.1');
      const e = await connect.waitForEvent('connect-error');
      assert.deepEqual([e['status'], e['peer'], e['code']], [403, `127.0.0.1:${peer.port}`, 'UT_ERR_TUNNEL_REFUSED']);
      assert.deepEqual(e['proxyStatus'], {
        proxy: 'udp-tunnel',
        error: 'destination_ip_prohibited',
        details: 'target 127.0.0.2:9 is not allowed: denied by rule 127.0.0.2/32',
        members: 1,
      });
      const refused = await serve.waitForEvent('refused');
      assert.deepEqual([refused['target'], refused['rule']], ['127.0.0.2:9', 'deny 127.0.0.2/32']);
    } finally {
      await peer.close();
      assert.equal(await connect.stop(), 0);
      assert.equal(await serve.stop(), 0);
    }
  });
});
