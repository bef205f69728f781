import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { buildProxiesTransport, splitProxyList } from '../../../src/tunnel/proxy-list.js';
import { FailoverTransport } from '../../../src/tunnel/transport/failover.js';

const target = { host: '127.0.0.1', port: 53 };
const invalid = (re: RegExp) => (err: unknown): boolean => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION && re.test(err.message);

describe('proxy lists', () => {
  it('splits comma-separated items, but not at commas inside a URI template', () => {
    assert.deepEqual(splitProxyList(['http://127.0.0.1:1', 'http://127.0.0.1:2, https://127.0.0.1:3']), [
      'http://127.0.0.1:1',
      'http://127.0.0.1:2',
      'https://127.0.0.1:3',
    ]);
    assert.deepEqual(splitProxyList(['http://127.0.0.1:1/masque{?target_host,target_port},http://127.0.0.1:2']), [
      'http://127.0.0.1:1/masque{?target_host,target_port}',
      'http://127.0.0.1:2',
    ]);
    assert.throws(() => splitProxyList(['http://127.0.0.1:1,']), invalid(/empty entry/));
    assert.throws(() => splitProxyList([',http://127.0.0.1:1']), invalid(/empty entry/));
  });

  it('builds one transport over the list: shared mode, per-proxy counters in order, credentials redacted', () => {
    const t = buildProxiesTransport(['http://u:pw@127.0.0.1:1', 'https://127.0.0.1:2'], { target, http: '1.1' }, { strategy: 'round-robin' });
    assert.ok(t instanceof FailoverTransport);
    assert.equal(t.name, 'h1');
    assert.equal(t.strategy, 'round-robin');
    assert.equal(t.reopensLostTunnels, true);
    assert.deepEqual(t.proxies, [
      { proxy: 'http://u:***@127.0.0.1:1', sessionsOpened: 0, sessionsActive: 0, connectFailures: 0, sessionsMoved: 0, down: false, retryInMs: 0 },
      { proxy: 'https://127.0.0.1:2', sessionsOpened: 0, sessionsActive: 0, connectFailures: 0, sessionsMoved: 0, down: false, retryInMs: 0 },
    ]);
    const one = buildProxiesTransport(['http://127.0.0.1:1'], { target });
    assert.equal(one.name, 'h2');
    assert.equal(one.strategy, 'failover');
    assert.equal(one.reopensLostTunnels, false, 'one proxy: a lost tunnel ends its session, as without a list');
  });

  it('refuses an empty list, a proxy listed twice, a bad URL (naming it) and a bad backoff', () => {
    assert.throws(() => buildProxiesTransport([], { target }), invalid(/at least one proxy/));
    assert.throws(() => buildProxiesTransport(['http://u:pw@127.0.0.1:1', 'http://u:pw@127.0.0.1:1'], { target }), invalid(/^proxy http:\/\/u:\*\*\*@127\.0\.0\.1:1 is listed twice$/));
    assert.throws(() => buildProxiesTransport(['http://127.0.0.1:1', 'ftp://127.0.0.1:2'], { target }), invalid(/not ftp:/));
    assert.throws(() => buildProxiesTransport(['http://127.0.0.1:1'], { target }, { downBackoff: { baseMs: 0, maxMs: 10 } }), invalid(/downBackoff/));
    assert.throws(() => buildProxiesTransport(['http://127.0.0.1:1'], { target }, { downBackoff: { baseMs: 10, maxMs: 5 } }), invalid(/downBackoff/));
  });
});
