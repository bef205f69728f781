import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { Authenticator } from '../../../../src/tunnel/auth.js';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../../src/tunnel/server/tunnel-server.js';
import { describeCertificate, generateCertificate, type GeneratedCertificate } from '../../../../src/tunnel/tls-cert.js';
import { attemptEcho, openTunnel } from '../../../helpers/attempt.js';
import { startUdpEcho, type UdpEcho } from '../../../helpers/net.js';

const OLD = 'old-token-0123456789';
const NEW = 'new-token-9876543210';

/** The certificate a fresh TLS handshake with `port` presents, as a pin. */
function presentedPin(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      const cert = s.getPeerCertificate();
      s.destroy();
      resolve(describeCertificate(`-----BEGIN CERTIFICATE-----\n${cert.raw.toString('base64')}\n-----END CERTIFICATE-----\n`).pin);
    });
    s.on('error', reject);
  });
}

describe('TunnelServer#update: new settings for new requests, live sessions stay', () => {
  let echo: UdpEcho;
  before(async () => {
    echo = await startUdpEcho();
  });
  after(async () => {
    await echo.close();
  });

  for (const http of ['2', '1.1'] as const) {
    it(`HTTP/${http}: a new token is required for new tunnels; a tunnel opened with the old one keeps echoing`, async () => {
      const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), authenticator: new Authenticator({ tokens: [OLD] }) });
      const url = `http://127.0.0.1:${(await server.listen()).port}`;
      const live = await openTunnel({ proxy: url, http, token: OLD }, echo.port);
      try {
        assert.equal(await live.echo('before'), 'before');
        assert.equal(server.counters.sessionsTotal, 1);
        server.update({ authenticator: new Authenticator({ tokens: [NEW] }) });
        const old = await attemptEcho({ proxy: url, http, token: OLD }, echo.port);
        assert.equal(old.error?.code, ErrorCodes.AUTH_REQUIRED, 'the old token is refused for a new tunnel');
        assert.deepEqual(await attemptEcho({ proxy: url, http, token: NEW }, echo.port), { reply: 'hi' });
        assert.equal(await live.echo('after'), 'after');
        assert.equal(server.counters.sessionsTotal, 2, 'the live tunnel was not reopened: one for it, one for the new token');
        assert.equal(server.activeSessions, 1);
      } finally {
        await live.close();
        await server.close();
      }
    });
  }

  it('a new certificate is presented to new handshakes; a tunnel made before keeps echoing', async () => {
    const a: GeneratedCertificate = await generateCertificate();
    const b: GeneratedCertificate = await generateCertificate();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: a.cert, key: a.key } });
    const port = (await server.listen()).port;
    const url = `https://127.0.0.1:${port}`;
    const live = await openTunnel({ proxy: url, tls: { pins: [a.pin] } }, echo.port);
    try {
      assert.equal(await live.echo('one'), 'one');
      assert.equal(await presentedPin(port), a.pin);
      server.update({ tls: { cert: b.cert, key: b.key } });
      assert.equal(await presentedPin(port), b.pin);
      assert.deepEqual(await attemptEcho({ proxy: url, tls: { pins: [b.pin] } }, echo.port), { reply: 'hi' }, 'ALPN h2 still works after the swap');
      assert.deepEqual(await attemptEcho({ proxy: url, http: '1.1', tls: { pins: [b.pin] } }, echo.port), { reply: 'hi' });
      assert.equal((await attemptEcho({ proxy: url, tls: { pins: [a.pin] } }, echo.port)).error?.code, ErrorCodes.TLS);
      assert.equal(await live.echo('two'), 'two');
      assert.equal(server.counters.sessionsTotal, 3);
    } finally {
      await live.close();
      await server.close();
    }
  });

  it('a bad update throws a coded error and changes nothing', async () => {
    const cert = await generateCertificate();
    const other = await generateCertificate();
    const plain = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), authenticator: new Authenticator({ tokens: [OLD] }) });
    const url = `http://127.0.0.1:${(await plain.listen()).port}`;
    try {
      const bad = (f: () => void, re: RegExp, code: string = ErrorCodes.INVALID_OPTION): void =>
        assert.throws(f, (e: unknown) => e instanceof UdpTunnelError && e.code === code && re.test(e.message));
      // The authenticator comes before the bad value in the update: all or nothing means it is not applied either.
      bad(() => plain.update({ authenticator: new Authenticator({ tokens: [NEW] }), maxDatagram: 70_000 }), /maxDatagram/);
      bad(() => plain.update({ authenticator: new Authenticator({ tokens: [NEW] }), tls: { cert: cert.cert, key: cert.key } }), /cleartext/);
      bad(() => plain.update({ authenticator: new Authenticator({ tokens: [NEW] }), template: '/no-variables' }), /URI template/, ErrorCodes.INVALID_TEMPLATE);
      assert.deepEqual(await attemptEcho({ proxy: url, token: OLD }, echo.port), { reply: 'hi' });
    } finally {
      await plain.close();
    }
    const secure = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls: { cert: cert.cert, key: cert.key } });
    const port = (await secure.listen()).port;
    try {
      assert.throws(() => secure.update({ tls: { cert: other.cert, key: cert.key } }), (e: unknown) => e instanceof UdpTunnelError && e.code === ErrorCodes.INVALID_OPTION);
      assert.throws(() => secure.update({ tls: { cert: other.cert, key: other.key, ca: other.cert } }), /client certificate checks on or off/);
      assert.equal(await presentedPin(port), cert.pin);
    } finally {
      await secure.close();
    }
  });
});
