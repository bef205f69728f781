import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Authenticator } from '../../../src/tunnel/auth.js';
import { ErrorCodes } from '../../../src/tunnel/errors.js';
import { TargetPolicy, parseRuleList } from '../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { checkTunnel } from '../../../src/tunnel/tunnel-check.js';
import { startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';

const TOKEN = 'check-token-1';

describe('checkTunnel', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  let denying: TunnelServer;
  let proxy: string;
  let denyingProxy: string;

  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({
      host: '127.0.0.1',
      port: 0,
      policy: new TargetPolicy(),
      authenticator: new Authenticator({ tokens: [TOKEN] }),
      postRoutes: new Map([['/echo', { host: '127.0.0.1', port: echo.port }]]),
    });
    denying = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy({ rules: parseRuleList('127.0.0.0/8', 'deny') }) });
    proxy = `http://127.0.0.1:${(await server.listen()).port}`;
    denyingProxy = `http://127.0.0.1:${(await denying.listen()).port}`;
  });

  after(async () => {
    await server.close();
    await denying.close();
    await echo.close();
  });

  for (const http of ['2', '1.1'] as const) {
    it(`HTTP/${http}: a tunnel is established, reported with status, headers and time, and closed again`, async () => {
      const r = await checkTunnel({ proxy, http, token: TOKEN, target: { host: '127.0.0.1', port: echo.port } });
      assert.equal(r.ok, true, r.error?.message);
      assert.equal(r.probe.ok, true);
      assert.equal(r.status, http === '2' ? 200 : 101);
      assert.equal(r.headers?.['capsule-protocol'], '?1');
      assert.equal(typeof r.responseMs, 'number');
      assert.equal(r.proxyStatus, undefined);
      assert.deepEqual(r.request, { method: http === '2' ? 'CONNECT' : 'GET', path: `/.well-known/masque/udp/127.0.0.1/${echo.port}/` });
      assert.equal(r.error, undefined);
      await waitUntil(() => server.counters.sessionsActive === 0, 5000, 'the session closed on the proxy');
    });
  }

  it('POST mode: a 2xx from the route', async () => {
    const r = await checkTunnel({ proxy, mode: 'post', postPath: '/echo', token: TOKEN });
    assert.equal(r.ok, true, r.error?.message);
    assert.equal(r.transport, 'post');
    assert.equal(r.status, 200);
    assert.deepEqual(r.request, { method: 'POST', path: '/echo' });
  });

  for (const http of ['2', '1.1'] as const) {
    it(`HTTP/${http}: a wrong token is an authentication failure with a token hint`, async () => {
      const r = await checkTunnel({ proxy, http, token: 'wrong', target: { host: '127.0.0.1', port: echo.port } });
      assert.equal(r.ok, false);
      assert.equal(r.status, http === '2' ? 401 : 407);
      assert.equal(r.problem, 'auth');
      assert.equal(r.error?.code, ErrorCodes.AUTH_REQUIRED);
      assert.match(r.hint!, /authentication failed: check token/);
      assert.deepEqual(r.hintOptions, ['token']);
      assert.equal(r.proxyStatus?.entries[0]?.error, 'http_request_denied');
    });
  }

  it('no token: authentication required', async () => {
    const r = await checkTunnel({ proxy, target: { host: '127.0.0.1', port: echo.port } });
    assert.equal(r.problem, 'auth');
    assert.match(r.hint!, /authentication required: set token/);
  });

  it('a target the policy refuses: 403 with the parsed Proxy-Status error type and details', async () => {
    const r = await checkTunnel({ proxy: denyingProxy, target: { host: '127.0.0.1', port: echo.port } });
    assert.equal(r.ok, false);
    assert.equal(r.status, 403);
    assert.equal(r.problem, 'tunnel-refused');
    assert.equal(r.error?.code, ErrorCodes.TUNNEL_REFUSED);
    const entry = r.proxyStatus?.entries[0];
    assert.equal(entry?.proxy, 'udp-tunnel');
    assert.equal(entry?.error, 'destination_ip_prohibited');
    assert.equal(typeof entry?.details, 'string');
    assert.equal(r.headers?.['proxy-status'], r.proxyStatus?.raw);
    assert.equal(r.hint, "the proxy's target policy does not allow this target");
  });

  it('a proxy that is down: the probe says so and no request is sent', async () => {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const r = await checkTunnel({ proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: echo.port } });
    assert.equal(r.ok, false);
    assert.equal(r.problem, 'connection-refused');
    assert.equal(r.status, undefined);
    assert.equal(r.probe.problem, 'connection-refused');
    assert.equal(r.hint, `is udp-tunnel serve running on 127.0.0.1:${port}?`);
  });
});
