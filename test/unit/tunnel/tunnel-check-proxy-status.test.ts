import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProxyStatus } from '../../../src/tunnel/proxy-status.js';
import { proxyStatusEntries as parseProxyStatus } from '../../../src/tunnel/tunnel-check.js';

describe('tunnel/tunnel-check: proxyStatusEntries (RFC 9209 §2, RFC 8941 §4.2.1)', () => {
  it('reads back what formatProxyStatus writes, escapes included', () => {
    const raw = formatProxyStatus('dns_error', { rcode: 'NXDOMAIN', details: 'say "no" \\ twice' });
    const p = parseProxyStatus(raw)!;
    assert.equal(p.valid, true);
    assert.equal(p.raw, raw);
    assert.deepEqual(p.entries, [
      { proxy: 'udp-tunnel', error: 'dns_error', details: 'say "no" \\ twice', params: { error: 'dns_error', rcode: 'NXDOMAIN', details: 'say "no" \\ twice' } },
    ]);
  });

  it('reads several members, from several field lines, with every bare item type', () => {
    const p = parseProxyStatus(['"origin proxy"; error=connection_timeout; received-status=503', 'edge;next-hop=:aGk=:;cached=?0 , cdn-1;x=-1.5;flag'])!;
    assert.equal(p.valid, true);
    assert.deepEqual(
      p.entries.map((e) => [e.proxy, e.params]),
      [
        ['origin proxy', { error: 'connection_timeout', 'received-status': 503 }],
        ['edge', { 'next-hop': 'aGk=', cached: false }],
        ['cdn-1', { x: -1.5, flag: true }],
      ],
    );
    assert.equal(p.entries[0]!.error, 'connection_timeout');
  });

  it('no field is undefined; an empty field is an empty list', () => {
    assert.equal(parseProxyStatus(undefined), undefined);
    assert.deepEqual(parseProxyStatus(''), { raw: '', entries: [], valid: true });
  });

  for (const bad of ['udp-tunnel;', 'udp-tunnel; error="unterminated', 'a,', 'a b', '(a b)', 'a; Error=x', 'a; details="tab\there"', '"bad \\x escape"', '1234567890123456', 'a;b=?2']) {
    it(`refuses ${JSON.stringify(bad)} as a whole and keeps the raw text`, () => {
      assert.deepEqual(parseProxyStatus(bad), { raw: bad, entries: [], valid: false });
    });
  }
});
