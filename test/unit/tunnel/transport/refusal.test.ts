import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes } from '../../../../src/tunnel/errors.js';
import { refusedError } from '../../../../src/tunnel/transport/refusal.js';

describe('refusedError (both client transports)', () => {
  it('names the Proxy-Status error type and joins repeated Proxy-Status fields', () => {
    const e = refusedError(502, { 'proxy-status': ['udp-tunnel; error=dns_error', 'next; error=x'] }, 'CONNECT-UDP');
    assert.equal(e.code, ErrorCodes.TUNNEL_REFUSED);
    assert.equal(e.message, 'proxy refused CONNECT-UDP: HTTP 502 (dns_error)');
    assert.deepEqual(e.details, { status: 502, proxyStatus: { proxy: 'udp-tunnel', error: 'dns_error', members: 2 } });
    assert.equal(e.retryable, true);
  });

  it('names the details and rcode in the message and keeps them parsed in details.proxyStatus', () => {
    const e = refusedError(403, { 'proxy-status': 'udp-tunnel; error=destination_ip_prohibited; details="target 127.0.0.2:9 is not allowed"' }, '127.0.0.2:9');
    assert.equal(e.message, 'proxy refused 127.0.0.2:9: HTTP 403 (destination_ip_prohibited): "target 127.0.0.2:9 is not allowed"');
    assert.deepEqual(e.details['proxyStatus'], { proxy: 'udp-tunnel', error: 'destination_ip_prohibited', details: 'target 127.0.0.2:9 is not allowed', members: 1 });
    const dns = refusedError(502, { 'proxy-status': 'udp-tunnel; error=dns_error; rcode="NXDOMAIN"' }, 'x');
    assert.equal(dns.message, 'proxy refused x: HTTP 502 (dns_error, rcode NXDOMAIN)');
  });

  it('says so when the Proxy-Status cannot be read, and still refuses by the status', () => {
    const e = refusedError(403, { 'proxy-status': 'udp-tunnel; error=x; details="unterminated' }, 'x');
    assert.equal(e.code, ErrorCodes.TUNNEL_REFUSED);
    assert.equal(e.message, 'proxy refused x: HTTP 403 (unreadable Proxy-Status: unterminated string)');
    assert.deepEqual(e.details, { status: 403, proxyStatus: { members: 0, malformed: 'unterminated string' } });
  });

  it('counts 5xx and 429 as retryable, other 4xx not', () => {
    const retryable = [400, 403, 404, 429, 500, 503].filter((s) => refusedError(s, {}, 'x').retryable);
    assert.deepEqual(retryable, [429, 500, 503]);
  });

  it('makes 401 and 407 AUTH_REQUIRED, with a hint that depends on whether credentials were sent', () => {
    for (const status of [401, 407]) {
      const none = refusedError(status, {}, 'x');
      assert.equal(none.code, ErrorCodes.AUTH_REQUIRED);
      // The library names its option; the CLI shows it as --token (details.related).
      assert.match(none.message, /the proxy requires credentials: set token or user:pass@ in the proxy URL/);
      assert.deepEqual(none.details['related'], ['token']);
      const sent = refusedError(status, { 'proxy-status': 'p; error=http_request_denied' }, 'x', true);
      assert.equal(sent.code, ErrorCodes.AUTH_REQUIRED);
      assert.equal(sent.message, `proxy refused x: HTTP ${status} (http_request_denied); the proxy rejected the credentials`);
    }
  });
});
