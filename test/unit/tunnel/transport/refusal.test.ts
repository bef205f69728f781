import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes } from '../../../../src/tunnel/errors.js';
import { refusedError } from '../../../../src/tunnel/transport/refusal.js';

describe('refusedError (both client transports)', () => {
  it('names the Proxy-Status error type and joins repeated Proxy-Status fields', () => {
    const e = refusedError(502, { 'proxy-status': ['udp-tunnel; error=dns_error', 'next; error=x'] }, 'CONNECT-UDP');
    assert.equal(e.code, ErrorCodes.TUNNEL_REFUSED);
    assert.equal(e.message, 'proxy refused CONNECT-UDP: HTTP 502 (dns_error)');
    assert.deepEqual(e.details, { status: 502, proxyStatus: 'udp-tunnel; error=dns_error, next; error=x' });
    assert.equal(e.retryable, true);
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
