import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConnectUdpRequest, type IncomingTunnelRequest } from '../../../../src/tunnel/server/connect-udp-request.js';
import { DEFAULT_URI_TEMPLATE, compileTemplateMatcher } from '../../../../src/tunnel/uri-template.js';

const matcher = compileTemplateMatcher(DEFAULT_URI_TEMPLATE);
const routes = new Map([['/dns', { host: '127.0.0.1', port: 53 }]]);
const h2 = (over: Partial<IncomingTunnelRequest>): IncomingTunnelRequest => ({
  httpVersion: 2,
  method: 'CONNECT',
  protocol: 'connect-udp',
  path: '/.well-known/masque/udp/2001%3Adb8%3A%3A1/443/',
  authority: 'proxy',
  scheme: 'https',
  ...over,
});
const h1 = (over: Partial<IncomingTunnelRequest>): IncomingTunnelRequest => ({
  httpVersion: 1,
  method: 'GET',
  protocol: 'connect-udp',
  path: '/.well-known/masque/udp/example.net/53/',
  authority: 'proxy',
  hostCount: 1,
  connectionUpgrade: true,
  framingHeaders: false,
  ...over,
});

describe('validateConnectUdpRequest', () => {
  it('accepts CONNECT-UDP over both HTTP versions and decodes the target once', () => {
    assert.deepEqual(validateConnectUdpRequest(h2({}), matcher), { ok: true, host: '2001:db8::1', port: 443, mode: 'connect-udp' });
    assert.deepEqual(validateConnectUdpRequest(h1({}), matcher), { ok: true, host: 'example.net', port: 53, mode: 'connect-udp' });
  });

  it('maps a POST to its route over HTTP/2 only', () => {
    assert.deepEqual(validateConnectUdpRequest(h2({ method: 'POST', protocol: undefined, path: '/dns' }), matcher, routes), {
      ok: true,
      host: '127.0.0.1',
      port: 53,
      mode: 'post',
    });
    const cases: Array<[IncomingTunnelRequest, number, string?]> = [
      [h2({ method: 'POST', protocol: undefined, path: '/other' }), 404],
      [h2({ method: 'POST', protocol: undefined, path: '/dns', framingHeaders: true }), 400],
      [h1({ method: 'POST', path: '/dns' }), 400],
      [h2({ method: 'GET' }), 405, 'CONNECT, POST'],
    ];
    for (const [req, status, allow] of cases) {
      const v = validateConnectUdpRequest(req, matcher, routes);
      assert.equal(v.ok, false);
      if (!v.ok) {
        assert.equal(v.status, status);
        if (allow) assert.equal(v.allow, allow);
      }
    }
    const noRoutes = validateConnectUdpRequest(h2({ method: 'POST', protocol: undefined, path: '/dns' }), matcher);
    assert.deepEqual(noRoutes.ok ? null : [noRoutes.status, noRoutes.allow], [405, 'CONNECT']);
  });

  it('enforces the HTTP/1.1 upgrade rules (RFC 9298 §3.2, RFC 9112 §3.2)', () => {
    const statuses = [
      h1({ hostCount: 0 }),
      h1({ hostCount: 2 }),
      h1({ connectionUpgrade: false }),
      h1({ protocol: 'websocket' }),
      h1({ framingHeaders: true }),
    ].map((r) => {
      const v = validateConnectUdpRequest(r, matcher);
      return v.ok ? 200 : v.status;
    });
    assert.deepEqual(statuses, [400, 400, 400, 400, 400]);
  });

  it('names the real reason when a decoded target_host still holds a percent sign', () => {
    const details = (host: string): string => {
      const v = validateConnectUdpRequest(h2({ path: `/.well-known/masque/udp/${host}/443/` }), matcher);
      assert.equal(v.ok, false, host);
      if (v.ok) return '';
      assert.equal(v.status, 400, host);
      assert.equal(v.error, 'http_request_error', host);
      return v.details;
    };
    // A client that encodes '::1' twice sends %253A%253A1; decoding once leaves %3A%3A1, not a zone identifier.
    for (const host of ['%253A%253A1', '2001%253Adb8%253A%253A1', '127%252E0%252E0%252E1']) {
      const d = details(host);
      assert.match(d, /percent-encoded twice/, host);
      assert.doesNotMatch(d, /zone/, host);
    }
    // A real zone identifier, single-encoded or in its RFC 6874 URI form, is still named as one (RFC 9298 §2).
    for (const host of ['fe80%3A%3A1%25eth0', 'fe80%3A%3A1%2525eth0', '%5Bfe80%3A%3A1%25lo%5D']) assert.match(details(host), /zone identifiers/, host);
    // A stray '%' that is neither.
    assert.match(details('exam%25ple.net'), /'%' is not allowed/);
  });
});
