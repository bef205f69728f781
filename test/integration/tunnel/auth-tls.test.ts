import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Authenticator } from '../../../src/tunnel/auth.js';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { buildTransport, type ProxyConfig } from '../../../src/tunnel/client-config.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { generateCertificate, type GeneratedCertificate } from '../../../src/tunnel/tls-cert.js';
import { startCli } from '../../helpers/cli.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';
import { h1Request, rawH1 } from '../../helpers/tunnel.js';

const TOKEN = 'tok-9f8e7d';

/** Result of one attempt through a fresh client: the echoed text, or the connect error. */
async function attempt(cfg: Omit<ProxyConfig, 'target'>, echo: UdpEcho): Promise<{ reply?: string; error?: UdpTunnelError }> {
  const transport = buildTransport({ target: { host: '127.0.0.1', port: echo.port }, connectTimeoutMs: 3000, ...cfg });
  const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport });
  const errors: UdpTunnelError[] = [];
  client.on('connect-error', (e: { error: UdpTunnelError }) => errors.push(e.error));
  const local = await client.start();
  const peer = await openUdpPeer();
  try {
    await peer.send('hi', local.port, '127.0.0.1');
    await waitUntil(() => peer.messages.length > 0 || errors.length > 0, 5000, 'reply or error');
    return peer.messages.length > 0 ? { reply: peer.messages[0]!.toString() } : { error: errors[0]! };
  } finally {
    await peer.close();
    await client.close();
  }
}

describe('tunnel: authentication end to end', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  let url: string;
  const logged: string[] = [];

  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), authenticator: new Authenticator({ tokens: [TOKEN], basic: ['alice:wonder land'] }) });
    server.on('refused', (e: unknown) => logged.push(JSON.stringify(e)));
    server.on('session-open', (e: unknown) => logged.push(JSON.stringify(e)));
    url = `http://127.0.0.1:${(await server.listen()).port}`;
  });

  after(async () => {
    await server.close();
    await echo.close();
  });

  for (const http of ['2', '1.1'] as const) {
    const challengeStatus = http === '2' ? 401 : 407;
    it(`HTTP/${http}: the right token passes`, async () => {
      assert.deepEqual(await attempt({ proxy: url, http, token: TOKEN }, echo), { reply: 'hi' });
    });
    it(`HTTP/${http}: Basic credentials from the proxy URL pass`, async () => {
      assert.deepEqual(await attempt({ proxy: url.replace('//', '//alice:wonder%20land@'), http }, echo), { reply: 'hi' });
    });
    it(`HTTP/${http}: a wrong token gets ${challengeStatus} and a clear error`, async () => {
      const r = await attempt({ proxy: url, http, token: 'not-the-token' }, echo);
      assert.equal(r.error?.code, ErrorCodes.AUTH_REQUIRED);
      assert.equal(r.error?.details['status'], challengeStatus);
      assert.match(r.error!.message, /rejected the credentials/);
      assert.equal(r.error?.retryable, false);
    });
    it(`HTTP/${http}: no token gets ${challengeStatus} with a hint`, async () => {
      const r = await attempt({ proxy: url, http }, echo);
      assert.equal(r.error?.code, ErrorCodes.AUTH_REQUIRED);
      assert.equal(r.error?.details['status'], challengeStatus);
      assert.match(r.error!.message, /set token or user:pass@ in the proxy URL/);
      assert.deepEqual(r.error?.details['related'], ['token']);
    });
    it(`HTTP/${http}: wrong Basic password is refused`, async () => {
      const r = await attempt({ proxy: url.replace('//', '//alice:nope@'), http }, echo);
      assert.equal(r.error?.details['status'], challengeStatus);
    });
  }

  it('HTTP/1.1 refusal carries Proxy-Authenticate naming both schemes', async () => {
    const r = await rawH1(Number(new URL(url).port), h1Request(`/.well-known/masque/udp/127.0.0.1/${echo.port}/`));
    assert.equal(r.head?.status, 407);
    assert.equal(r.head?.headers.find(([k]) => k === 'proxy-authenticate')?.[1], 'Bearer realm="udp-tunnel", Basic realm="udp-tunnel", charset="UTF-8"');
  });

  it('counted the failures and never put a secret into an event', () => {
    assert.equal(server.counters.authFailures, 7);
    const all = logged.join('\n');
    for (const secret of [TOKEN, 'not-the-token', 'wonder', 'nope']) assert.ok(!all.includes(secret), `event text leaks ${secret}`);
  });
});

describe('tunnel: TLS trust', () => {
  let echo: UdpEcho;
  let authority: GeneratedCertificate;
  let leaf: GeneratedCertificate;
  let selfSigned: GeneratedCertificate;
  let clientCert: GeneratedCertificate;
  const servers: TunnelServer[] = [];
  const start = async (tls: { cert: string; key: string; ca?: string }): Promise<string> => {
    const s = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), tls });
    servers.push(s);
    return `https://127.0.0.1:${(await s.listen()).port}`;
  };

  before(async () => {
    echo = await startUdpEcho();
    authority = await generateCertificate({ isCa: true, commonName: 'udp-tunnel test CA', altNames: [] });
    leaf = await generateCertificate({ altNames: ['proxy.test', '127.0.0.1'], issuer: authority });
    selfSigned = await generateCertificate();
    clientCert = await generateCertificate({ commonName: 'client', altNames: ['client.test'], issuer: authority });
  });

  after(async () => {
    for (const s of servers) await s.close();
    await echo.close();
  });

  it('verifies by default: an unknown CA fails with a message that says what to do', async () => {
    const url = await start({ cert: selfSigned.cert, key: selfSigned.key });
    const r = await attempt({ proxy: url }, echo);
    assert.equal(r.error?.code, ErrorCodes.TLS);
    assert.match(r.error!.message, /self-signed certificate/);
    assert.match(r.error!.message, /set tls\.ca, tls\.pins or tls\.insecure/);
    assert.equal(r.error?.retryable, false);
  });

  it('--ca trusts a private CA, over HTTP/2, HTTP/1.1 and POST', async () => {
    const url = await start({ cert: leaf.cert, key: leaf.key });
    for (const http of ['2', '1.1'] as const) assert.deepEqual(await attempt({ proxy: url, http, tls: { ca: authority.cert } }, echo), { reply: 'hi' });
  });

  it('--servername checks the certificate against another name', async () => {
    const url = await start({ cert: leaf.cert, key: leaf.key });
    assert.deepEqual(await attempt({ proxy: url, tls: { ca: authority.cert, servername: 'proxy.test' } }, echo), { reply: 'hi' });
    const wrong = await attempt({ proxy: url, tls: { ca: authority.cert, servername: 'other.test' } }, echo);
    assert.equal(wrong.error?.code, ErrorCodes.TLS);
    assert.match(wrong.error!.message, /ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('--pin trusts a self-signed proxy by its SPKI hash; a wrong pin fails', async () => {
    const url = await start({ cert: selfSigned.cert, key: selfSigned.key });
    for (const http of ['2', '1.1'] as const) assert.deepEqual(await attempt({ proxy: url, http, tls: { pins: [selfSigned.pin] } }, echo), { reply: 'hi' });
    const r = await attempt({ proxy: url, tls: { pins: [leaf.pin] } }, echo);
    assert.equal(r.error?.code, ErrorCodes.TLS);
    assert.equal(r.error!.message, `TLS certificate pin mismatch for ${new URL(url).host}: the proxy presented ${selfSigned.pin}, which no tls.pins entry names`);
  });

  it('--insecure skips verification', async () => {
    const url = await start({ cert: selfSigned.cert, key: selfSigned.key });
    assert.deepEqual(await attempt({ proxy: url, tls: { insecure: true } }, echo), { reply: 'hi' });
  });

  it('mTLS: a client certificate from the client CA passes, none fails, for both HTTP versions', async () => {
    const url = await start({ cert: leaf.cert, key: leaf.key, ca: authority.cert });
    for (const http of ['2', '1.1'] as const) {
      assert.deepEqual(await attempt({ proxy: url, http, tls: { ca: authority.cert, cert: clientCert.cert, key: clientCert.key } }, echo), { reply: 'hi' });
      const r = await attempt({ proxy: url, http, tls: { ca: authority.cert } }, echo);
      assert.equal(r.error?.code, ErrorCodes.TLS, `HTTP/${http} without a client certificate`);
      assert.match(r.error.message, /set tls\.cert and tls\.key/);
    }
    const selfClient = await attempt({ proxy: url, tls: { ca: authority.cert, cert: selfSigned.cert, key: selfSigned.key } }, echo);
    assert.ok(selfClient.error, 'a certificate from another CA must fail');
  });

  it('plain HTTP to a TLS port is closed and counted', async () => {
    const url = await start({ cert: leaf.cert, key: leaf.key });
    const server = servers[servers.length - 1]!;
    const r = await rawH1(Number(new URL(url).port), h1Request('/'));
    assert.equal(r.head, null);
    assert.equal(r.closed, true);
    await waitUntil(() => server.counters.tlsErrors === 1, 2000, 'tls error counted');
  });

  it('serve --self-signed prints its pin in the listening event and a client pinned to it connects', async () => {
    const serve = startCli(['serve', '-l', '127.0.0.1:0', '--self-signed', '--json']);
    try {
      await serve.waitForEvent('listening');
      const ev = serve.lines[0] as unknown as { event: string; port: number; url: string; tls: { selfSigned: boolean; pin: string; fingerprint256: string } };
      assert.equal(ev.event, 'listening');
      assert.equal(ev.tls.selfSigned, true);
      assert.match(ev.tls.pin, /^sha256\/[A-Za-z0-9+/]{43}=$/);
      assert.match(ev.tls.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      assert.equal(ev.url, `https://127.0.0.1:${ev.port}`);
      assert.deepEqual(await attempt({ proxy: ev.url, tls: { pins: [ev.tls.pin] } }, echo), { reply: 'hi' });
    } finally {
      await serve.stop('SIGTERM');
    }
    assert.doesNotMatch(serve.stderr(), /error/i);
  });
});
