import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { Http1HeadParser, parseHttp1HeadText } from '../../../src/inspect/http1.js';
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
import { ErrorCodes, UdpTunnelError, isUdpTunnelError, type ErrorCode } from '../../../src/tunnel/errors.js';
import { errorFacts } from '../../../src/inspect/error-facts.js';

const UPGRADE_REQUEST =
  'GET /.well-known/masque/udp/192.0.2.6/443/ HTTP/1.1\r\n' +
  'Host: proxy.example.org\r\n' +
  'Connection: Upgrade\r\n' +
  'Upgrade: connect-udp\r\n' +
  'Capsule-Protocol: ?1\r\n\r\n';

describe('Http1HeadParser', () => {
  it('parses the RFC 9298 Upgrade request and hands back the bytes after it', () => {
    const p = new Http1HeadParser('request');
    const tail = Buffer.from([0x00, 0x02, 0x00, 0xaa]);
    const r = p.push(Buffer.concat([Buffer.from(UPGRADE_REQUEST, 'latin1'), tail]));
    assert.ok(r);
    assert.deepEqual(r.head, {
      kind: 'request',
      method: 'GET',
      target: '/.well-known/masque/udp/192.0.2.6/443/',
      version: 'HTTP/1.1',
      headers: [
        ['Host', 'proxy.example.org'],
        ['Connection', 'Upgrade'],
        ['Upgrade', 'connect-udp'],
        ['Capsule-Protocol', '?1'],
      ],
    });
    assert.deepEqual([...r.rest], [...tail]);
    assert.equal(r.headLength, UPGRADE_REQUEST.length);
  });

  it('hands back the head bytes exactly as received (leading empty lines included), however the input was split', () => {
    const wire = Buffer.from(`\r\n\n${UPGRADE_REQUEST}`, 'latin1');
    const tail = Buffer.from([0x00, 0x01, 0x00]);
    const all = Buffer.concat([wire, tail]);
    for (const split of [1, 2, 3, 20, wire.length - 3, wire.length - 1]) {
      const p = new Http1HeadParser('request');
      assert.equal(p.push(all.subarray(0, split)), null);
      assert.equal(p.bufferedBytes, split);
      const r = p.push(all.subarray(split));
      assert.ok(r, `split at ${split}`);
      assert.equal(r.raw.toString('hex'), wire.toString('hex'));
      assert.equal(r.headLength, wire.length);
      assert.equal(r.rest.toString('hex'), tail.toString('hex'));
      assert.equal(p.bufferedBytes, 0);
    }
  });

  it('waits for the whole head when split byte by byte', () => {
    const p = new Http1HeadParser('response');
    const text = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n';
    const bytes = Buffer.from(text + '\x00\x01\x00', 'latin1');
    let result = null;
    for (let i = 0; i < bytes.length; i++) {
      const r = p.push(bytes.subarray(i, i + 1));
      if (r !== null) {
        assert.equal(i, text.length - 1, 'completes on the last byte of the empty line');
        result = r;
        break;
      }
    }
    assert.ok(result);
    assert.deepEqual(result.head, {
      kind: 'response',
      version: 'HTTP/1.1',
      status: 101,
      reason: 'Switching Protocols',
      headers: [
        ['Connection', 'Upgrade'],
        ['Upgrade', 'connect-udp'],
      ],
    });
  });

  it('accepts bare LF line ends, obsolete folding, and leading empty lines before a request', () => {
    const p = new Http1HeadParser('request');
    const r = p.push(Buffer.from('\r\nGET / HTTP/1.1\nX-A: one\n  two\nHost: h\n\n', 'latin1'));
    assert.ok(r);
    assert.deepEqual(r.head.headers, [
      ['X-A', 'one two'],
      ['Host', 'h'],
    ]);
  });

  it('error offsets count the bytes of the stream, CRLFs and skipped empty lines included', () => {
    assert.throws(
      () => new Http1HeadParser('request').push(Buffer.from('\r\nGET / HTTP/1.1\r\nA: 1\r\nB C: 2\r\n\r\n')),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_HTTP1_MALFORMED') && e.details['offset'] === 24,
    );
  });

  it('response without a reason phrase', () => {
    assert.deepEqual(parseHttp1HeadText('HTTP/1.1 400', 'response'), { kind: 'response', version: 'HTTP/1.1', status: 400, reason: '', headers: [] });
  });

  it('a head over the limit is HEADERS_TOO_LARGE, complete or not', () => {
    const p = new Http1HeadParser('request', { maxHeadBytes: 64 });
    p.push(Buffer.from('GET / HTTP/1.1\r\n'));
    assert.throws(
      () => p.push(Buffer.from(`X: ${'a'.repeat(60)}\r\n`)),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_HEADERS_TOO_LARGE') && e.details['offset'] === 64,
    );
    const q = new Http1HeadParser('request', { maxHeadBytes: 20 });
    assert.throws(() => q.push(Buffer.from('GET / HTTP/1.1\r\nA: b\r\n\r\n')), (e: unknown) => isUdpTunnelError(e, 'UT_ERR_HEADERS_TOO_LARGE'));
  });

  const bad: Array<[string, 'request' | 'response', string]> = [
    ['space before the colon', 'request', 'GET / HTTP/1.1\r\nHost : x\r\n\r\n'],
    ['no colon', 'request', 'GET / HTTP/1.1\r\nHost\r\n\r\n'],
    ['two-part request line', 'request', 'GET /\r\n\r\n'],
    ['bad version', 'request', 'GET / HTTP/x\r\n\r\n'],
    ['bad status', 'response', 'HTTP/1.1 2000 OK\r\n\r\n'],
    ['binary garbage', 'request', '\x16\x03\x01\x02\x00\n\n'],
    ['fold before any field', 'request', 'GET / HTTP/1.1\r\n folded\r\n\r\n'],
  ];
  for (const [name, kind, text] of bad) {
    it(`rejects: ${name}`, () => {
      assert.throws(() => new Http1HeadParser(kind).push(Buffer.from(text, 'latin1')), (e: unknown) => isUdpTunnelError(e, 'UT_ERR_HTTP1_MALFORMED'));
    });
  }
});

describe('opensTunnel and isInterimStatus', () => {
  it('opens on 101 over HTTP/1.1 and on any 2xx over HTTP/2, nothing else', () => {
    const statuses = [0, 100, 101, 103, 199, 200, 204, 299, 300, 403, 502];
    assert.deepEqual(statuses.filter((s) => opensTunnel('1.1', s)), [101]);
    assert.deepEqual(statuses.filter((s) => opensTunnel('2', s)), [200, 204, 299]);
    assert.deepEqual(statuses.filter((s) => isInterimStatus(s)), [100, 103, 199]);
  });
});

describe('errorFacts', () => {
  it('reads code, offset and RFC of a coded error, and falls back for anything else', () => {
    const coded = new UdpTunnelError(ErrorCodes.HTTP1_MALFORMED, 'bad line', { offset: 17, rfc: 'RFC 9112' });
    assert.deepEqual(errorFacts(coded, ErrorCodes.HPACK), { code: ErrorCodes.HTTP1_MALFORMED, offset: 17, rfc: 'RFC 9112', message: 'bad line' });
    // Rebuilt from a code known only at run time, so its details are not checked: errorFacts must cope.
    const bare = new UdpTunnelError(ErrorCodes.HEADERS_TOO_LARGE as ErrorCode, 'too big', { offset: 'x' });
    assert.deepEqual(errorFacts(bare, ErrorCodes.HPACK), { code: ErrorCodes.HEADERS_TOO_LARGE, offset: 0, rfc: null, message: 'too big' });
    assert.deepEqual(errorFacts(new RangeError('oops'), ErrorCodes.HPACK), { code: ErrorCodes.HPACK, offset: 0, rfc: null, message: 'oops' });
    assert.deepEqual(errorFacts('text', ErrorCodes.HTTP1_MALFORMED), { code: ErrorCodes.HTTP1_MALFORMED, offset: 0, rfc: null, message: 'text' });
  });
});

describe('request/response fields', () => {
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
      t: 1.5,
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
      t: 2,
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
