import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, startCli } from '../helpers/cli.js';

const LONG_TOKEN = 'a-long-random-token-0123456789';

describe('serve: open listeners beyond loopback, admission flags, token warnings (CLI)', () => {
  for (const listen of ['0.0.0.0:0', '[::]:0', '192.0.2.1:0']) {
    it(`--listen ${listen} without credentials is refused (exit 2) and says what to do`, async () => {
      const r = await runCli(['serve', '--listen', listen, '--json'], { env: { UDP_TUNNEL_TOKEN: undefined } });
      assert.equal(r.code, 2);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(lines.map((e) => [e['event'], e['code'], e['exitCode']]), [['error', 'UT_ERR_USAGE', 2]], 'nothing was listening: the one event is the refusal');
      assert.match(r.stderr, /refusing to listen on .* without authentication/);
      for (const flag of ['--token', '--token-file', '--basic', '--no-auth']) assert.ok(r.stderr.includes(flag), flag);
    });
  }

  it('--no-auth lets a non-loopback listener past the check (192.0.2.1 is not on this host, so binding fails: exit 1)', async () => {
    const r = await runCli(['serve', '--listen', '192.0.2.1:0', '--no-auth'], { env: { UDP_TUNNEL_TOKEN: undefined } });
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stderr, /refusing to listen/);
    assert.match(r.stderr, /EADDRNOTAVAIL/);
  });

  it('--no-auth together with credentials is a usage error', async () => {
    const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--no-auth', '--token', LONG_TOKEN]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--no-auth contradicts the credentials given/);
    assert.equal(r.stderr.includes(LONG_TOKEN), false);
  });

  it('a loopback name (localhost) still serves without credentials', async () => {
    const serve = startCli(['serve', '--listen', 'localhost:0', '--json'], { env: { UDP_TUNNEL_TOKEN: undefined } });
    const l = await serve.waitForEvent('listening');
    assert.ok(['127.0.0.1', '::1'].includes(String(l['address'])), String(l['address']));
    assert.equal(await serve.stop(), 0);
  });

  it('a token shorter than 16 characters is warned about once at start, without showing it; long tokens are not', async () => {
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--json', '--token', 'shorty', '--token', 'tiny-2', '--token', LONG_TOKEN]);
    await serve.waitForEvent('listening');
    const warning = await serve.waitForEvent('warning');
    assert.match(String(warning['message']), /^2 bearer tokens are shorter than 16 characters/);
    assert.equal(await serve.stop(), 0);
    const warnings = serve.lines.filter((l) => l['event'] === 'warning');
    assert.equal(warnings.length, 1);
    assert.equal(serve.stderr().match(/shorter than 16 characters/g)?.length, 1);
    const all = JSON.stringify(serve.lines) + serve.stderr();
    for (const t of ['shorty', 'tiny-2', LONG_TOKEN]) assert.equal(all.includes(t), false, t);

    const quiet = startCli(['serve', '--listen', '127.0.0.1:0', '--json', '--token', LONG_TOKEN]);
    await quiet.waitForEvent('listening');
    assert.equal(await quiet.stop(), 0);
    assert.equal(quiet.lines.some((l) => l['event'] === 'warning'), false);
  });

  it('the admission flags are in --help; bad values are usage errors (exit 2)', async () => {
    const help = await runCli(['serve', '--help-all']);
    assert.equal(help.code, 0);
    for (const flag of ['--max-sessions-per-client', '--max-auth-failures-per-connection', '--auth-failure-burst', '--auth-failure-rate', '--max-auth-failure-entries', '--no-auth']) {
      assert.ok(help.stdout.includes(flag.replace('--no-auth', '--auth')), flag);
    }
    assert.match(help.stdout, /--max-sessions-per-client N\s+Tunnels one client address may hold; more get 503 \[default 1000;/);
    for (const [flag, value] of [
      ['--max-sessions-per-client', '0'],
      ['--max-auth-failures-per-connection', '0'],
      ['--auth-failure-burst', '1.5'],
      ['--auth-failure-rate', '-1'],
      ['--max-auth-failure-entries', '0'],
    ] as const) {
      const r = await runCli(['serve', '--listen', '127.0.0.1:0', flag, value]);
      assert.equal(r.code, 2, `${flag} ${value}`);
      assert.ok(r.stderr.includes(flag), r.stderr);
    }
  });
});
