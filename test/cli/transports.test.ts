import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, type CliResult } from '../helpers/cli.js';

const run = (...args: string[]): Promise<CliResult> => runCli(args, { env: { NO_COLOR: '1' } });

describe('CLI flags for transports, auth and TLS', () => {
  it('help says POST mode is not RFC 9298 and lists the new flags', async () => {
    const connect = await run('connect', '--help-all');
    assert.equal(connect.code, 0);
    assert.match(connect.stdout, /post \(not RFC 9298\)/);
    for (const flag of ['--http', '--mode', '--post-path', '--token', '--pin', '--cert', '--key', '--servername']) assert.ok(connect.stdout.includes(flag), flag);
    const serve = await run('serve', '--help-all');
    assert.equal(serve.code, 0);
    assert.match(serve.stdout, /not RFC 9298/);
    for (const flag of ['--post-route', '--token-file', '--basic', '--self-signed', '--client-ca', '--header-timeout', '--max-header-size', '--max-sessions-per-connection']) {
      assert.ok(serve.stdout.includes(flag), flag);
    }
  });

  const usage: Array<[string, string[], RegExp]> = [
    ['POST over HTTP/1.1', ['connect', '-p', 'http://127.0.0.1:1', '--mode', 'post', '--http', '1.1'], /--mode post runs over HTTP\/2 only/],
    ['connect-udp without a target', ['connect', '-p', 'http://127.0.0.1:1'], /--target HOST:PORT is required/],
    ['TLS flags on a cleartext proxy', ['connect', '-p', 'http://127.0.0.1:1', '-t', '127.0.0.1:1', '--insecure'], /--insecure needs an https:\/\/ proxy URL/],
    ['a malformed pin', ['connect', '-p', 'https://127.0.0.1:1', '-t', '127.0.0.1:1', '--pin', 'sha1/abc'], /--pin 'sha1\/abc'/],
    ['an unknown --http', ['connect', '-p', 'http://127.0.0.1:1', '-t', '127.0.0.1:1', '--http', '3'], /--http: '3' is not one of 2, 1\.1/],
    ['a bad POST route', ['serve', '--post-route', 'nopath'], /--post-route 'nopath'/],
    ['--client-ca without TLS', ['serve', '--client-ca', 'ca.pem'], /--client-ca needs TLS/],
    ['--self-signed with --cert', ['serve', '--self-signed', '--cert', 'a', '--key', 'b'], /exclude each other/],
    ['--keylog without TLS (serve)', ['serve', '--keylog', 'keys.txt'], /--keylog needs TLS/],
    ['--keylog on a cleartext proxy', ['connect', '-p', 'http://127.0.0.1:1', '-t', '127.0.0.1:1', '--keylog', 'keys.txt'], /--keylog needs an https:\/\/ proxy URL/],
  ];
  for (const [name, args, message] of usage) {
    it(`exits 2 for ${name}`, async () => {
      const r = await run(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }
});
