import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProxyStatus, parseProxyStatusError } from '../../../src/tunnel/proxy-status.js';

describe('tunnel/proxy-status: formatProxyStatus', () => {
  it('writes the error type and quotes details as an sf-string (RFC 8941 §3.3.3)', () => {
    assert.equal(formatProxyStatus('dns_error', { rcode: 'NXDOMAIN', details: 'say "no" \\ twice' }), 'udp-tunnel; error=dns_error; rcode="NXDOMAIN"; details="say \\"no\\" \\\\ twice"');
  });

  it('spells out § and replaces any other non-ASCII character, so the field stays printable ASCII', () => {
    const v = formatProxyStatus('http_request_error', { details: 'zone identifiers are not allowed (RFC 9298 §2), café' });
    assert.equal(v, 'udp-tunnel; error=http_request_error; details="zone identifiers are not allowed (RFC 9298 section 2), caf?"');
    assert.ok(/^[\x20-\x7e]*$/.test(v));
  });

  it('reads the error type back', () => {
    assert.equal(parseProxyStatusError(formatProxyStatus('destination_ip_prohibited', { details: 'x' })), 'destination_ip_prohibited');
    assert.equal(parseProxyStatusError(undefined), undefined);
  });
});
