import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MAX_PROXY_STATUS_DETAILS,
  MAX_PROXY_STATUS_LENGTH,
  formatProxyStatus,
  parseProxyStatus,
  parseProxyStatusError,
  proxyStatusReport,
} from '../../../src/tunnel/proxy-status.js';

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

describe('tunnel/proxy-status: parseProxyStatus (RFC 9209 §2, RFC 8941 §4.2)', () => {
  it('reads back what formatProxyStatus writes, escapes included', () => {
    const v = formatProxyStatus('dns_error', { rcode: 'NXDOMAIN', details: 'say "no" \\ twice' });
    assert.deepEqual(parseProxyStatus(v), {
      ok: true,
      members: [{ proxy: 'udp-tunnel', params: { error: 'dns_error', rcode: 'NXDOMAIN', details: 'say "no" \\ twice' } }],
    });
  });

  it('reads every bare item type, several members and repeated field lines', () => {
    const r = parseProxyStatus(['"edge proxy"; error=connection_refused; next-hop="10.0.0.1"; received-status=503', 'b;x=-1.5;y;z=?0;w=:aGk=:']);
    assert.ok(r.ok);
    assert.deepEqual(r.members.map((m) => [m.proxy, { ...m.params }]), [
      ['edge proxy', { error: 'connection_refused', 'next-hop': '10.0.0.1', 'received-status': 503 }],
      ['b', { x: -1.5, y: true, z: false, w: 'aGk=' }],
    ]);
    assert.deepEqual(parseProxyStatus('  '), { ok: true, members: [] });
  });

  const malformed: Array<[string, RegExp]> = [
    ['p; error=x,', /trailing comma/],
    ['p; details="open', /unterminated string/],
    ['p; details="a\\qb"', /bad escape/],
    ['p; details="tab\there"', /non-printable/],
    ['p; Error=x', /bad parameter name/],
    ['p; error=', /value missing/],
    ['p error=x', /unexpected/],
    ['(a b); error=x', /inner list/],
    ['1; error=x', /does not start with a name/],
    ['p; n=1234567890123456', /number too long/],
    ['p; b=?2', /bad boolean/],
    ['p; s=:a b:', /bad byte sequence/],
    ['p; e=@1', /unexpected "@"/],
  ];
  for (const [value, reason] of malformed) {
    it(`reports ${JSON.stringify(value)} as malformed (${reason.source})`, () => {
      const r = parseProxyStatus(value);
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, reason);
    });
  }

  it(`does not parse a field over ${MAX_PROXY_STATUS_LENGTH} bytes, nor a value that is not text`, () => {
    const long = `p; error=x; details="${'a'.repeat(MAX_PROXY_STATUS_LENGTH)}"`;
    assert.deepEqual(parseProxyStatus(long), { ok: false, reason: `${long.length} bytes, over the ${MAX_PROXY_STATUS_LENGTH}-byte limit` });
    assert.deepEqual(parseProxyStatus(42), { ok: false, reason: 'not a text field' });
    assert.equal(parseProxyStatus(`p; error=x; details="${'a'.repeat(MAX_PROXY_STATUS_LENGTH - 40)}"`).ok, true);
  });

  it('never throws, whatever the input (property)', () => {
    const sfish = fc.array(fc.constantFrom('p', ';', '=', '"', '\\', ',', ' ', '?', '1', ':', '(', ')', '-', '.', 'error', 'a'), { maxLength: 64 }).map((a) => a.join(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 100 }), sfish), (s) => {
        const r = parseProxyStatus(s);
        assert.equal(typeof r.ok, 'boolean');
        proxyStatusReport(s);
      }),
      { numRuns: 2000 },
    );
  });

  it('is linear enough: a field of many short members at the limit parses at once', () => {
    const many = Array.from({ length: 1000 }, () => 'a').join(',').slice(0, MAX_PROXY_STATUS_LENGTH);
    const r = parseProxyStatus(many);
    assert.ok(r.ok);
    assert.equal(r.members.length, 1000);
  });
});

describe('tunnel/proxy-status: proxyStatusReport', () => {
  it('picks the first member that names an error (the one closest to the origin), with its details', () => {
    assert.deepEqual(proxyStatusReport('inner; error=destination_ip_prohibited; details="not allowed", outer; received-status=403'), {
      proxy: 'inner',
      error: 'destination_ip_prohibited',
      details: 'not allowed',
      members: 2,
    });
    assert.deepEqual(proxyStatusReport('relay; received-status=403, origin-side; error=dns_error; rcode="NXDOMAIN"; info-code=3'), {
      proxy: 'origin-side',
      error: 'dns_error',
      rcode: 'NXDOMAIN',
      infoCode: 3,
      members: 2,
    });
    assert.deepEqual(proxyStatusReport('relay; received-status=403; next-hop=backend'), { proxy: 'relay', nextHop: 'backend', receivedStatus: 403, members: 1 });
  });

  it('is undefined without a field, says why for a malformed one, and cuts long details', () => {
    assert.equal(proxyStatusReport(undefined), undefined);
    assert.equal(proxyStatusReport([]), undefined);
    assert.deepEqual(proxyStatusReport('p; details="x'), { members: 0, malformed: 'unterminated string' });
    const r = proxyStatusReport(`p; error=x; details="${'d'.repeat(2000)}"`);
    assert.equal(r?.details?.length, MAX_PROXY_STATUS_DETAILS);
    assert.ok(r?.details?.endsWith('...'));
  });
});
