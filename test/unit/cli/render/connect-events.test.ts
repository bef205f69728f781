import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import { refusedError } from '../../../../src/tunnel/transport/refusal.js';
import { refusalLines } from '../../../../src/cli/render/connect-events.js';

const refused = (proxyStatus?: string): UdpTunnelError => refusedError(403, proxyStatus === undefined ? {} : { 'proxy-status': proxyStatus }, 'CONNECT-UDP');

describe('cli/render/connect-events: refusalLines', () => {
  it('puts status, error type and details on one line when they fit, the details below otherwise', () => {
    assert.deepEqual(refusalLines('c1', '127.0.0.1:51000', '127.0.0.2:9', refused('udp-tunnel; error=destination_ip_prohibited; details="no way"')), [
      'c1 127.0.0.1:51000: proxy refused 127.0.0.2:9: HTTP 403 destination_ip_prohibited:',
      '  "no way"',
    ]);
    assert.deepEqual(refusalLines('c1', '127.0.0.1:5', '::1:9', refused('udp-tunnel; error=dns_error; rcode="NXDOMAIN"; details="gone"')), [
      'c1 127.0.0.1:5: proxy refused ::1:9: HTTP 403 dns_error rcode NXDOMAIN: "gone"',
    ]);
    assert.deepEqual(refusalLines('c1', '127.0.0.1:51000', '127.0.0.2:9', refused()), ['c1 127.0.0.1:51000: proxy refused 127.0.0.2:9: HTTP 403']);
  });

  it('moves details that do not fit to indented lines within 84 columns (100 with prefixes), at spaces', () => {
    const details = 'target 127.0.0.2:9 is not allowed: '.repeat(6).trim();
    const lines = refusalLines('c12', '[::1]:51000', 'example.test:53', refused(`p; error=destination_ip_prohibited; details="${details}"`))!;
    assert.equal(lines[0], 'c12 [::1]:51000: proxy refused example.test:53: HTTP 403 destination_ip_prohibited:');
    assert.ok(lines.length > 2);
    for (const l of lines) assert.ok(l.length <= 84, l);
    assert.equal(lines.slice(1).map((l) => l.slice(2)).join(' '), JSON.stringify(details));
  });

  it('says when the Proxy-Status is unreadable, and is null for other failures', () => {
    assert.deepEqual(refusalLines('c1', 'p', 't', refused('p; details="x')), ['c1 p: proxy refused t: HTTP 403 (unreadable Proxy-Status: unterminated string)']);
    assert.equal(refusalLines('c1', 'p', 't', new UdpTunnelError(ErrorCodes.TIMEOUT, 'slow')), null);
    assert.equal(refusalLines('c1', 'p', 't', new Error('plain')), null);
  });
});
