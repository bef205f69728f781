import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MIN_TOKEN_LENGTH } from '../../../src/tunnel/auth.js';
import { TargetPolicy, parseRuleList } from '../../../src/tunnel/policy.js';
import { buildAuthenticator, listenExposure } from '../../../src/tunnel/server-config.js';
import { exposureWarning, loopbackWarning, shortTokenWarning, unauthenticatedListenError } from '../../../src/cli/serve-warnings.js';
import { policyLines, refusedLine } from '../../../src/cli/render/serve-events.js';

const warn = (addr: string, auth: boolean, tls: boolean): string | null => exposureWarning(addr, listenExposure(addr, auth, tls));

describe('cli/serve-warnings: exposureWarning', () => {
  it('warns for a non-loopback listener without authentication, and without TLS when credentials are on', () => {
    assert.equal(warn('127.0.0.1', false, false), null);
    assert.equal(warn('::1', false, false), null);
    assert.match(warn('0.0.0.0', false, true)!, /^listening on 0\.0\.0\.0 WITHOUT AUTHENTICATION/);
    assert.match(warn('::', true, false)!, /without TLS/);
    assert.equal(warn('192.0.2.1', true, true), null);
  });
});

describe('cli/serve-warnings: unauthenticatedListenError', () => {
  it('names what to do, flags included', () => {
    const msg = unauthenticatedListenError('0.0.0.0');
    assert.match(msg, /^refusing to listen on 0\.0\.0\.0 without authentication/);
    for (const flag of ['--token', '--token-file', '--basic', '--no-auth']) assert.ok(msg.includes(flag), flag);
  });
});

describe('cli/serve-warnings: shortTokenWarning', () => {
  it(`counts tokens shorter than ${MIN_TOKEN_LENGTH} characters and never shows them`, () => {
    const auth = buildAuthenticator({ tokens: ['abc', 'x'.repeat(MIN_TOKEN_LENGTH - 1), 'y'.repeat(MIN_TOKEN_LENGTH)] });
    const warning = shortTokenWarning(auth.shortTokens);
    assert.match(warning!, /^2 bearer tokens are shorter than 16 characters/);
    assert.equal(warning!.includes('abc'), false);
    assert.equal(shortTokenWarning(buildAuthenticator({ tokens: ['z'.repeat(MIN_TOKEN_LENGTH)] }).shortTokens), null);
    assert.match(shortTokenWarning(1)!, /^1 bearer token is shorter/);
  });
});

const summary = (allow: string, deny = ''): ReturnType<TargetPolicy['summary']> =>
  new TargetPolicy({ rules: [...(deny ? parseRuleList(deny, 'deny') : []), ...(allow ? parseRuleList(allow, 'allow') : [])] }).summary();

describe('cli/serve-warnings: loopbackWarning', () => {
  it('warns when allow rules are given and none lies inside loopback, in lines that fit 100 columns', () => {
    for (const allow of ['10.0.0.0/8', '0.0.0.0/0,::/0', '10.0.0.0/8:53,[2001:db8::/32]:53']) {
      const w = loopbackWarning(summary(allow));
      assert.ok(w !== null, allow);
      assert.match(w, /any --allow replaces the loopback-only default: loopback targets are refused now/);
      assert.match(w, /--allow 127\.0\.0\.0\/8,::1/);
      // "   0.123 warning: " precedes each line.
      for (const line of w.split('\n')) assert.ok(18 + line.length <= 100, line);
    }
  });

  it('stays quiet without allow rules, or when one opens loopback (even one port of it)', () => {
    for (const allow of ['', '10.0.0.0/8,127.0.0.0/8', '127.0.0.1:53', '[::1]:53']) assert.equal(loopbackWarning(summary(allow)), null, allow);
    assert.equal(loopbackWarning(summary('', '127.0.0.2/32')), null, 'deny rules alone keep the default');
  });
});

describe('cli/render/serve-events: policyLines and refusedLine', () => {
  it('lists deny rules, allow rules and the default', () => {
    assert.deepEqual(policyLines(summary('')), ['policy: default: loopback targets only (127.0.0.0/8, ::1); everything else is refused']);
    assert.deepEqual(policyLines(summary('10.0.0.0/8:53,10.1.0.0/16', '10.9.0.0/16')), [
      'policy: deny  10.9.0.0/16',
      'policy: allow 10.0.0.0/8:53, 10.1.0.0/16',
      'policy: default: every target no allow rule matches is refused',
      'policy: guarded: unspecified, loopback, link-local, multicast, broadcast',
    ]);
  });

  it('wraps long rule lists within 91 columns (100 with the time prefix), continuing under the first rule', () => {
    const allow = Array.from({ length: 12 }, (_, i) => `[2001:db8:${(i + 1).toString(16)}::/48]:1000-2000`);
    const lines = policyLines(summary(allow.join(',')));
    const allowLines = lines.filter((l) => l.startsWith('policy: allow ') || l.startsWith('              '));
    assert.ok(allowLines.length > 1);
    for (const l of lines) assert.ok(l.length <= 91, l);
    assert.deepEqual(allowLines.join(' ').replace(/\s+/g, ' ').replace('policy: allow ', '').split(', '), allow);
  });

  it('names the target, the judged address and the rule of a policy refusal; the details otherwise', () => {
    const base = { status: 403, error: 'destination_ip_prohibited', httpVersion: 2, client: '127.0.0.1:50000' } as const;
    assert.equal(
      refusedLine({ ...base, details: 'target example.test:53 (192.0.2.1) is not allowed: ...', target: 'example.test:53', resolved: '192.0.2.1', rule: 'deny 192.0.2.0/24' }),
      'refused 403 destination_ip_prohibited for 127.0.0.1:50000 -> example.test:53 (192.0.2.1): deny 192.0.2.0/24',
    );
    assert.equal(
      refusedLine({ ...base, status: 502, error: 'dns_error', details: 'NXDOMAIN', target: 'nowhere.test:53' }),
      'refused 502 dns_error for 127.0.0.1:50000 -> nowhere.test:53: NXDOMAIN',
    );
    assert.equal(refusedLine({ ...base, status: 401, error: 'http_request_denied', details: 'authentication missing' }), 'refused 401 http_request_denied for 127.0.0.1:50000: authentication missing');
  });
});
