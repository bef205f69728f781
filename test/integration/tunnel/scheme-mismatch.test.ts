import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { generateCertificate } from '../../../src/tunnel/tls-cert.js';

/** Opens one tunnel and returns the error it fails with. The connect timeout is long: the hint must come first. */
async function openError(proxy: string, http: '2' | '1.1'): Promise<UdpTunnelError> {
  const transport = buildTransport({ proxy, http, target: { host: '127.0.0.1', port: 9 }, tls: { insecure: true }, connectTimeoutMs: 60_000 });
  try {
    await transport.open('s1', new AbortController().signal);
  } catch (err) {
    assert.ok(err instanceof UdpTunnelError, String(err));
    return err;
  } finally {
    await transport.close();
  }
  assert.fail('the tunnel opened');
}

describe('client: https:// to a cleartext proxy and http:// to a TLS proxy fail with a hint', () => {
  let cleartext: TunnelServer;
  let secure: TunnelServer;
  let cleartextPort: number;
  let securePort: number;

  before(async () => {
    const cert = await generateCertificate({});
    // Long header timeouts: the answer must not be the server giving up on the connection.
    cleartext = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 60_000 });
    secure = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 60_000, tls: { cert: cert.cert, key: cert.key } });
    cleartextPort = (await cleartext.listen()).port;
    securePort = (await secure.listen()).port;
  });

  after(async () => {
    await cleartext.close();
    await secure.close();
  });

  for (const http of ['2', '1.1'] as const) {
    it(`HTTP/${http}: https:// to a cleartext serve says to use http://`, async () => {
      const before = cleartext.counters.schemeMismatches;
      const err = await openError(`https://127.0.0.1:${cleartextPort}`, http);
      assert.equal(err.code, ErrorCodes.TLS);
      assert.equal(err.retryable, false);
      assert.match(err.message, /the proxy speaks cleartext HTTP: use http:\/\/127\.0\.0\.1:\d+/);
      assert.equal(cleartext.counters.schemeMismatches, before + 1);
    });

    it(`HTTP/${http}: http:// to a TLS serve says to use https://`, async () => {
      const before = secure.counters.schemeMismatches;
      const err = await openError(`http://127.0.0.1:${securePort}`, http);
      assert.equal(err.code, ErrorCodes.PROXY_UNREACHABLE);
      assert.equal(err.retryable, false);
      assert.match(err.message, /the proxy speaks TLS: use https:\/\/127\.0\.0\.1:\d+/);
      assert.equal(secure.counters.schemeMismatches, before + 1);
    });
  }

  it('https:// to any cleartext HTTP server (one that answers the ClientHello with a 400) says to use http://', async () => {
    const server = http.createServer((_req, res) => res.end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const err = await openError(`https://127.0.0.1:${port}`, '1.1');
      assert.equal(err.code, ErrorCodes.TLS);
      assert.match(err.message, /the proxy speaks cleartext HTTP: use http:\/\//);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
