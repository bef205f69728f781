import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { ErrorCodes } from '../../src/tunnel/errors.js';
import { describeCertificate, generateCertificate } from '../../src/tunnel/tls-cert.js';
import { startCli, type CliProcess } from '../helpers/cli.js';
import { attemptEcho, openTunnel } from '../helpers/attempt.js';
import { startUdpEcho, waitUntil, type UdpEcho } from '../helpers/net.js';

const A = 'token-a-0123456789abcdef';
const B = 'token-b-0123456789abcdef';
const NO_ENV_TOKEN = { UDP_TUNNEL_TOKEN: undefined };

/** Resolves once `proc` has printed `n` events named `name`; returns the n-th. */
async function nth(proc: CliProcess, name: string, n: number, ms = 20_000): Promise<Record<string, unknown>> {
  const of = (): Record<string, unknown>[] => proc.lines.filter((l) => l['event'] === name);
  await waitUntil(() => of().length >= n, ms, `${n} '${name}' events; stderr: ${proc.stderr()}`);
  return of()[n - 1]!;
}

/** The pin of the certificate a fresh TLS handshake with `port` presents. */
function presentedPin(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const raw = s.getPeerCertificate().raw;
      s.destroy();
      resolve(describeCertificate(`-----BEGIN CERTIFICATE-----\n${raw.toString('base64')}\n-----END CERTIFICATE-----\n`).pin);
    });
    s.on('error', reject);
  });
}

describe('serve: SIGHUP reloads the config file, the token file and the certificate (CLI)', () => {
  let echo: UdpEcho;
  let dir: string;
  before(async () => {
    echo = await startUdpEcho();
    dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-reload-'));
  });
  after(async () => {
    await echo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const workers of ['1', '2']) {
    it(`--workers ${workers}: a changed token file: the new token works, the old one is refused for new sessions, a live one stays`, async () => {
      const file = join(dir, `tokens-${workers}.txt`);
      writeFileSync(file, `# first\n${A}\n`);
      const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--token-file', file, '--workers', workers, '--json'], { env: NO_ENV_TOKEN });
      try {
        const l = await serve.waitForEvent('listening', 20_000);
        const url = `http://127.0.0.1:${String(l['port'])}`;
        const live = await openTunnel({ proxy: url, token: A }, echo.port);
        try {
          assert.equal(await live.echo('before'), 'before');
          writeFileSync(file, `${B}\n`);
          serve.child.kill('SIGHUP');
          const reload = await nth(serve, 'reload', 1);
          assert.deepEqual(reload['changed'], ['token-file']);
          assert.deepEqual(reload['restartNeeded'], []);
          if (workers === '2') assert.equal(reload['workers'], 2);
          // Two of each, so that with two workers each of them is likely asked; every one must agree.
          for (let i = 0; i < 2; i++) {
            assert.deepEqual(await attemptEcho({ proxy: url, token: B }, echo.port), { reply: 'hi' });
            assert.equal((await attemptEcho({ proxy: url, token: A }, echo.port)).error?.code, ErrorCodes.AUTH_REQUIRED);
          }
          assert.equal(await live.echo('after'), 'after', 'the session opened with the old token goes on');
        } finally {
          await live.close();
        }
      } finally {
        assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
      }
      const all = JSON.stringify(serve.lines) + serve.stderr();
      for (const t of [A, B]) assert.equal(all.includes(t), false, 'no token in the output');
    });
  }

  it('a broken config file is refused with reload-failed and the running settings stay; a later good one applies', async () => {
    const config = join(dir, 'serve.yaml');
    writeFileSync(config, `token: [${A}]\nmax-sessions: 100\n`);
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--config', config, '--json'], { env: NO_ENV_TOKEN });
    try {
      const l = await serve.waitForEvent('listening');
      const url = `http://127.0.0.1:${String(l['port'])}`;
      const cases: [string, RegExp][] = [
        [`token: [${B}\nmax-sessions: [`, /--config .*serve\.yaml: not valid YAML/],
        [`token: [${B}]\nmax-sesions: 5\n`, /unknown key 'max-sesions'; did you mean max-sessions\?/],
        [`token: [${B}]\nmax-sessions: 0\n`, /max-sessions/],
        [`token: [${B}]\nallow: [not-an-address]\n`, /not-an-address/],
        [`token: [${B}]\ntoken-file: ${join(dir, 'missing.txt')}\n`, /token file .*missing\.txt: ENOENT/],
      ];
      let n = 0;
      for (const [text, message] of cases) {
        writeFileSync(config, text);
        serve.child.kill('SIGHUP');
        const failed = await nth(serve, 'reload-failed', ++n);
        assert.match(String(failed['message']), message);
        assert.deepEqual(await attemptEcho({ proxy: url, token: A }, echo.port), { reply: 'hi' }, `still the old token after: ${text}`);
      }
      assert.match(serve.stderr(), /reload refused, the running settings stay: /);
      assert.equal(serve.lines.some((e) => e['event'] === 'reload'), false);

      writeFileSync(config, `token: [${B}]\nmax-sessions: 50\nlisten: 127.0.0.1:1\nmax-connections: 50\n`);
      serve.child.kill('SIGHUP');
      const reload = await nth(serve, 'reload', 1);
      assert.deepEqual(reload['changed'], ['token', 'max-sessions']);
      // --listen is a flag here, which beats the file: no change; --max-connections is fixed while the server runs.
      assert.deepEqual(reload['restartNeeded'], ['max-connections']);
      assert.match(serve.stderr(), /not applied until a restart: --max-connections \(the running values stay\)/);
      assert.deepEqual(await attemptEcho({ proxy: url, token: B }, echo.port), { reply: 'hi' });
      assert.equal((await attemptEcho({ proxy: url, token: A }, echo.port)).error?.code, ErrorCodes.AUTH_REQUIRED);
    } finally {
      assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    }
  });

  it('a new certificate in the --cert/--key files is presented to new handshakes; a mismatched pair is refused', async () => {
    const first = await generateCertificate();
    const second = await generateCertificate();
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    writeFileSync(cert, first.cert);
    writeFileSync(key, first.key);
    const serve = startCli(['serve', '--listen', '127.0.0.1:0', '--cert', cert, '--key', key, '--json'], { env: NO_ENV_TOKEN });
    try {
      const l = await serve.waitForEvent('listening');
      const port = Number(l['port']);
      const url = `https://127.0.0.1:${port}`;
      const live = await openTunnel({ proxy: url, tls: { pins: [first.pin] } }, echo.port);
      try {
        assert.equal(await live.echo('one'), 'one');
        writeFileSync(cert, second.cert);
        writeFileSync(key, second.key);
        serve.child.kill('SIGHUP');
        const reload = await nth(serve, 'reload', 1);
        assert.deepEqual(reload['changed'], ['cert', 'key']);
        assert.equal((reload['tls'] as { pin: string }).pin, second.pin);
        assert.equal(await presentedPin(port), second.pin);
        assert.deepEqual(await attemptEcho({ proxy: url, tls: { pins: [second.pin] } }, echo.port), { reply: 'hi' });

        writeFileSync(cert, first.cert);
        serve.child.kill('SIGHUP');
        const failed = await nth(serve, 'reload-failed', 1);
        assert.match(String(failed['message']), /--cert\/--key: .*key values mismatch/);
        assert.equal(await presentedPin(port), second.pin);
        assert.equal(await live.echo('two'), 'two', 'the tunnel from before the new certificate goes on');
      } finally {
        await live.close();
      }
    } finally {
      assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    }
  });
});
