import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { isUdpTunnelError } from '../../../../src/tunnel/errors.js';
import {
  Http1HeadParser,
  formatResponseHead,
  headerValues,
  listsToken,
  parseHttp1HeadText,
  parseRequestHead,
  parseResponseHead,
  type Http1CaptureHead,
  type Http1ParseResult,
} from '../../../../src/tunnel/http/http1-head.js';

// One parser, two modes: parseRequestHead/parseResponseHead (strict: serve and the HTTP/1.1 transport) and
// Http1HeadParser/parseHttp1HeadText (lenient: inspect reading captures and relayed connections).

const REQ = 'GET /.well-known/masque/udp/127.0.0.1/53/ HTTP/1.1\r\nHost: proxy:443\r\nConnection: keep-alive, Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n';

describe('parseRequestHead (strict mode)', () => {
  it('parses a CONNECT-UDP upgrade request and keeps the bytes after the head', () => {
    const r = parseRequestHead(Buffer.from(`${REQ}\x00\x01\x02`), 4096);
    assert.equal(r.state, 'done');
    if (r.state !== 'done') return;
    assert.equal(r.head.method, 'GET');
    assert.equal(r.head.target, '/.well-known/masque/udp/127.0.0.1/53/');
    assert.deepEqual(r.head.headers, [
      ['host', 'proxy:443'],
      ['connection', 'keep-alive, Upgrade'],
      ['upgrade', 'connect-udp'],
      ['capsule-protocol', '?1'],
    ]);
    assert.deepEqual([...r.head.rest], [0, 1, 2]);
    assert.equal(listsToken(r.head.headers, 'connection', 'upgrade'), true);
    assert.deepEqual(headerValues(r.head.headers, 'host'), ['proxy:443']);
  });

  it('is incomplete until the blank line, at every split point', () => {
    const bytes = Buffer.from(REQ);
    for (let i = 0; i < bytes.length; i++) assert.equal(parseRequestHead(bytes.subarray(0, i), 4096).state, 'incomplete', `prefix ${i}`);
  });

  it('skips leading empty lines (RFC 9112 §2.2)', () => {
    assert.equal(parseRequestHead(Buffer.from(`\r\n${REQ}`), 4096).state, 'done');
  });

  const bad: Array<[string, string, number]> = [
    ['bare LF', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n', 400],
    ['space before colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400],
    ['no colon', 'GET / HTTP/1.1\r\nHost\r\n\r\n', 400],
    ['NUL in value', 'GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n', 400],
    ['two spaces in request line', 'GET  / HTTP/1.1\r\n\r\n', 400],
    ['method not a token', 'G(T / HTTP/1.1\r\n\r\n', 400],
    ['HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\n\r\n', 505],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\n\r\n', 505],
  ];
  for (const [name, text, status] of bad) {
    it(`refuses ${name} with ${status}`, () => {
      const r = parseRequestHead(Buffer.from(text), 4096);
      assert.equal(r.state, 'error');
      if (r.state === 'error') assert.equal(r.status, status);
    });
  }

  it('refuses a head whose lines end in bare LF as soon as the first one arrives (RFC 9112 §2.2)', () => {
    // No CRLFCRLF ever comes, so waiting for the end of the head would only end at the header timeout.
    const lfOnly = 'GET / HTTP/1.1\nHost: x\n\n';
    for (const text of [lfOnly, 'GET / HTTP/1.1\n', '\nGET / HTTP/1.1\r\n', 'GET / HTTP/1.1\r\nHost: x\n']) {
      const r = parseRequestHead(Buffer.from(text), 4096);
      assert.equal(r.state, 'error', JSON.stringify(text));
      if (r.state === 'error') {
        assert.equal(r.status, 400);
        assert.equal(r.details, 'bare CR or LF in the request head');
      }
    }
    // Up to the first LF the head is only incomplete.
    assert.equal(parseRequestHead(Buffer.from('GET / HTTP/1.1'), 4096).state, 'incomplete');
  });

  it('refuses a bare CR once the byte after it is not LF; a CR at the end may still get its LF', () => {
    assert.equal(parseRequestHead(Buffer.from('GET / HTTP/1.1\r'), 4096).state, 'incomplete');
    assert.equal(parseRequestHead(Buffer.from('GET / HTTP/1.1\r\nHost: x\r'), 4096).state, 'incomplete');
    const r = parseRequestHead(Buffer.from('GET / HTTP/1.1\rHost: x'), 4096);
    assert.equal(r.state === 'error' && r.status, 400);
  });

  it('gives the same answer when told which prefix it already scanned, at every split point', () => {
    const inputs = [REQ, 'GET / HTTP/1.1\nHost: x\n\n', 'GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n', `\r\n${REQ}`, '\r\n\nGET / HTTP/1.1\r\n\r\n'];
    for (const text of inputs) {
      const bytes = Buffer.from(text);
      let scanned = 0;
      for (let i = 1; i <= bytes.length; i++) {
        const prefix = bytes.subarray(0, i);
        const full = parseRequestHead(prefix, 4096);
        const incremental = parseRequestHead(prefix, 4096, scanned);
        assert.deepEqual(incremental.state === 'error' ? incremental : incremental.state, full.state === 'error' ? full : full.state, `${JSON.stringify(text)} prefix ${i}`);
        if (full.state !== 'incomplete') break;
        scanned = i;
      }
    }
  });

  it('answers 431 once the head exceeds the limit, complete or not', () => {
    const big = `GET / HTTP/1.1\r\nX: ${'a'.repeat(100)}\r\n\r\n`;
    const r1 = parseRequestHead(Buffer.from(big), 64);
    assert.equal(r1.state === 'error' && r1.status, 431);
    const r2 = parseRequestHead(Buffer.from(big.slice(0, 80)), 64);
    assert.equal(r2.state === 'error' && r2.status, 431);
    assert.equal(parseRequestHead(Buffer.from(big), big.length).state, 'done');
    assert.equal(parseRequestHead(Buffer.from(big), big.length - 1).state, 'error');
  });
});

describe('parseResponseHead (strict mode) and formatResponseHead', () => {
  it('round-trips a 101 answer', () => {
    const text = formatResponseHead(101, { connection: 'Upgrade', upgrade: 'connect-udp', 'capsule-protocol': '?1' });
    assert.equal(text, 'HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: connect-udp\r\ncapsule-protocol: ?1\r\n\r\n');
    const r = parseResponseHead(Buffer.from(`${text}abc`), 1024);
    assert.equal(r.state, 'done');
    if (r.state !== 'done') return;
    assert.equal(r.head.status, 101);
    assert.equal(r.head.reason, 'Switching Protocols');
    assert.equal(r.head.rest.toString(), 'abc');
  });

  it('strips CR and LF from values it writes', () => {
    assert.equal(formatResponseHead(400, { x: 'a\r\nb' }), 'HTTP/1.1 400 Bad Request\r\nx: a  b\r\n\r\n');
  });

  it('refuses a malformed status line', () => {
    const r = parseResponseHead(Buffer.from('HTTP/1.1 2000 OK\r\n\r\n'), 1024);
    assert.equal(r.state, 'error');
  });
});

const UPGRADE_REQUEST =
  'GET /.well-known/masque/udp/192.0.2.6/443/ HTTP/1.1\r\n' +
  'Host: proxy.example.org\r\n' +
  'Connection: Upgrade\r\n' +
  'Upgrade: connect-udp\r\n' +
  'Capsule-Protocol: ?1\r\n\r\n';

describe('Http1HeadParser (lenient mode)', () => {
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

  it('empty lines before a request line count toward the limit, so endless CRLFs cannot grow the buffer', () => {
    const p = new Http1HeadParser('request', { maxHeadBytes: 64 });
    // RFC 9112 §2.2: a few empty lines before the request line are skipped.
    assert.ok(p.push(Buffer.from('\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n')));
    const q = new Http1HeadParser('request', { maxHeadBytes: 64 });
    let thrown: unknown = null;
    for (let i = 0; i < 100 && thrown === null; i++) {
      try {
        q.push(Buffer.from('\r\n'));
      } catch (e) {
        thrown = e;
      }
      assert.ok(q.bufferedBytes <= 66, `buffered ${q.bufferedBytes}`);
    }
    assert.ok(isUdpTunnelError(thrown, 'UT_ERR_HEADERS_TOO_LARGE'));
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

describe('strict and lenient mode on the same bytes', () => {
  const strict = (kind: 'request' | 'response', text: string): Http1ParseResult =>
    kind === 'request' ? parseRequestHead(Buffer.from(text, 'latin1'), 4096) : parseResponseHead(Buffer.from(text, 'latin1'), 4096);
  const lenient = (kind: 'request' | 'response', text: string): Http1CaptureHead | string => {
    try {
      return new Http1HeadParser(kind, { maxHeadBytes: 4096 }).push(Buffer.from(text, 'latin1'))?.head ?? 'incomplete';
    } catch (err) {
      return isUdpTunnelError(err) ? err.code : String(err);
    }
  };
  type StrictOutcome = { status: number; details?: string } | { headers: [string, string][] };
  const cases: Array<[string, 'request' | 'response', string, StrictOutcome, Partial<Http1CaptureHead> | string]> = [
    ['bare LF line ends', 'request', 'GET / HTTP/1.1\nHost: a\n\n', { status: 400, details: 'bare CR or LF in the request head' }, { headers: [['Host', 'a']] }],
    ['obsolete line folding', 'request', 'GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n', { status: 400, details: 'obsolete line folding' }, { headers: [['X', 'a b']] }],
    ['a control byte in a value', 'request', 'GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n', { status: 400, details: 'control character in x' }, { headers: [['X', 'a\x01b']] }],
    ['HTTP/1.0', 'request', 'GET / HTTP/1.0\r\nHost: a\r\n\r\n', { status: 505 }, { version: 'HTTP/1.0' }],
    ['three empty lines before the request line', 'request', '\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n', { status: 400, details: 'malformed request line' }, { method: 'GET' }],
    ['mixed-case field names', 'request', 'GET / HTTP/1.1\r\nHoSt: a\r\n\r\n', { headers: [['host', 'a']] }, { headers: [['HoSt', 'a']] }],
    ['a space before the colon', 'request', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', { status: 400, details: 'invalid field name' }, 'UT_ERR_HTTP1_MALFORMED'],
    ['a two-part request line', 'request', 'GET /\r\n\r\n', { status: 400, details: 'malformed request line' }, 'UT_ERR_HTTP1_MALFORMED'],
    ['a four-digit status', 'response', 'HTTP/1.1 2000 OK\r\n\r\n', { status: 400, details: 'malformed status line' }, 'UT_ERR_HTTP1_MALFORMED'],
    ['a reason phrase with spaces', 'response', 'HTTP/1.1 502 Bad  Gateway\r\nProxy-Status: x\r\n\r\n', { headers: [['proxy-status', 'x']] }, { status: 502, reason: 'Bad  Gateway' }],
  ];
  for (const [name, kind, text, wantStrict, wantLenient] of cases) {
    it(`${name}: strict ${'status' in wantStrict ? `refuses with ${wantStrict.status}` : 'accepts'}, lenient ${typeof wantLenient === 'string' ? 'refuses' : 'accepts'}`, () => {
      const s = strict(kind, text);
      if ('status' in wantStrict) {
        assert.equal(s.state, 'error');
        if (s.state === 'error') {
          assert.equal(s.status, wantStrict.status);
          if (wantStrict.details !== undefined) assert.equal(s.details, wantStrict.details);
        }
      } else {
        assert.equal(s.state, 'done');
        if (s.state === 'done') assert.deepEqual(s.head.headers, wantStrict.headers);
      }
      const l = lenient(kind, text);
      if (typeof wantLenient === 'string') assert.equal(l, wantLenient);
      else {
        assert.equal(typeof l, 'object', String(l));
        for (const [k, v] of Object.entries(wantLenient)) assert.deepEqual((l as unknown as Record<string, unknown>)[k], v, k);
      }
    });
  }
});
