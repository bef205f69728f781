import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  isInterimStatus,
  opensTunnel,
  parseCapsuleProtocol,
  parseDefaultTemplateTarget,
  requestEvent,
  requestHeadFromHttp1,
  requestHeadFromHttp2,
  responseEvent,
} from '../../../src/inspect/http-fields.js';
import { ErrorCodes, UdpTunnelError, type ErrorCode } from '../../../src/tunnel/errors.js';
import { errorFacts } from '../../../src/inspect/error-facts.js';

describe('inspect/http-fields: opensTunnel and isInterimStatus', () => {
  it('opens on 101 over HTTP/1.1 and on any 2xx over HTTP/2, nothing else', () => {
    const statuses = [0, 100, 101, 103, 199, 200, 204, 299, 300, 403, 502];
    assert.deepEqual(statuses.filter((s) => opensTunnel('1.1', s)), [101]);
    assert.deepEqual(statuses.filter((s) => opensTunnel('2', s)), [200, 204, 299]);
    assert.deepEqual(statuses.filter((s) => isInterimStatus(s)), [100, 103, 199]);
  });
});

describe('inspect/error-facts: errorFacts', () => {
  it('reads code, offset and RFC of a coded error, and falls back for anything else', () => {
    const coded = new UdpTunnelError(ErrorCodes.HTTP1_MALFORMED, 'bad line', { offset: 17, rfc: 'RFC 9112' });
    assert.deepEqual(errorFacts(coded, ErrorCodes.HPACK), { code: ErrorCodes.HTTP1_MALFORMED, offset: 17, rfc: 'RFC 9112', message: 'bad line' });
    const bare = new UdpTunnelError(ErrorCodes.HEADERS_TOO_LARGE as ErrorCode, 'too big', { offset: 'x' });
    assert.deepEqual(errorFacts(bare, ErrorCodes.HPACK), { code: ErrorCodes.HEADERS_TOO_LARGE, offset: 0, rfc: null, message: 'too big' });
    assert.deepEqual(errorFacts(new RangeError('oops'), ErrorCodes.HPACK), { code: ErrorCodes.HPACK, offset: 0, rfc: null, message: 'oops' });
    assert.deepEqual(errorFacts('text', ErrorCodes.HTTP1_MALFORMED), { code: ErrorCodes.HTTP1_MALFORMED, offset: 0, rfc: null, message: 'text' });
  });
});

describe('inspect/http-fields: request/response fields', () => {
  const targets: Array<[string, { host: string; port: number } | null]> = [
    ['/.well-known/masque/udp/192.0.2.6/443/', { host: '192.0.2.6', port: 443 }],
    ['/.well-known/masque/udp/2001%3Adb8%3A%3A42/53/', { host: '2001:db8::42', port: 53 }],
    ['/.well-known/masque/udp/2001%3adb8%3a%3a42/53/', { host: '2001:db8::42', port: 53 }],
    ['/.well-known/masque/udp/2001%253Adb8%253A%253A42/53/', { host: '2001%3Adb8%3A%3A42', port: 53 }],
    ['/.well-known/masque/udp/example.com/65535/?x=1', { host: 'example.com', port: 65535 }],
    ['/.well-known/masque/udp/%5B2001%3Adb8%3A%3A1%5D/53/', { host: '2001:db8::1', port: 53 }],
    ['/.well-known/masque/udp/example.com/0/', null],
    ['/.well-known/masque/udp/example.com/65536/', null],
    ['/.well-known/masque/udp/example.com/53', null],
    ['/.well-known/masque/udp/example.com/5x/', null],
    ['/.well-known/masque/udp//53/', null],
    ['/.well-known/masque/udp/%zz/53/', null],
    ['/.well-known/masque/udp/a/b/53/', null],
    ['/other/192.0.2.6/443/', null],
  ];
  for (const [path, expected] of targets) {
    it(`target of ${path}`, () => assert.deepEqual(parseDefaultTemplateTarget(path), expected));
  }

  const cp: Array<[string, Array<[string, string]>, boolean]> = [
    ['?1', [['capsule-protocol', '?1']], true],
    ['?1 with parameters', [['Capsule-Protocol', '?1;a=1; b']], true],
    ['?0', [['capsule-protocol', '?0']], false],
    ['absent', [], false],
    ['twice', [['capsule-protocol', '?1'], ['capsule-protocol', '?1']], false],
    ['not a boolean', [['capsule-protocol', '1']], false],
    ['a list', [['capsule-protocol', '?1, ?1']], false],
  ];
  for (const [name, headers, expected] of cp) {
    it(`Capsule-Protocol ${name}`, () => assert.equal(parseCapsuleProtocol(headers), expected));
  }

  it('builds an HTTP/2 request event', () => {
    const headers: Array<[string, string]> = [
      [':method', 'CONNECT'],
      [':protocol', 'connect-udp'],
      [':scheme', 'https'],
      [':authority', 'proxy:443'],
      [':path', '/.well-known/masque/udp/192.0.2.6/443/'],
      ['capsule-protocol', '?1'],
    ];
    assert.deepEqual(requestEvent('c1s1', 1.5, requestHeadFromHttp2(headers)), {
      event: 'request',
      tMs: 1.5,
      session: 'c1s1',
      dir: '->',
      http: '2',
      method: 'CONNECT',
      protocol: 'connect-udp',
      scheme: 'https',
      authority: 'proxy:443',
      path: '/.well-known/masque/udp/192.0.2.6/443/',
      target: { host: '192.0.2.6', port: 443 },
      capsuleProtocol: true,
      headers,
    });
  });

  it('builds an HTTP/1.1 request event from Upgrade and Host', () => {
    const headers: Array<[string, string]> = [
      ['Host', 'proxy.example.org'],
      ['Upgrade', 'connect-udp'],
    ];
    const ev = requestEvent('c1', 0, requestHeadFromHttp1('GET', '/x', headers));
    assert.equal(ev.protocol, 'connect-udp');
    assert.equal(ev.authority, 'proxy.example.org');
    assert.equal(ev.scheme, null);
    assert.equal(ev.path, '/x');
    assert.equal(ev.target, null);
    assert.equal(ev.capsuleProtocol, false);
  });

  it('builds a response event with Proxy-Status', () => {
    const headers: Array<[string, string]> = [
      [':status', '502'],
      ['proxy-status', 'udp-tunnel; error=dns_error'],
      ['Proxy-Status', 'next; error=x'],
    ];
    assert.deepEqual(responseEvent('c1s1', 2, '2', 502, headers), {
      event: 'response',
      tMs: 2,
      session: 'c1s1',
      dir: '<-',
      http: '2',
      status: 502,
      proxyStatus: 'udp-tunnel; error=dns_error, next; error=x',
      capsuleProtocol: false,
      headers,
    });
  });
});
