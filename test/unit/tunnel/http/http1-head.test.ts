import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { formatResponseHead, headerValues, listsToken, parseRequestHead, parseResponseHead } from '../../../../src/tunnel/http/http1-head.js';

const REQ = 'GET /.well-known/masque/udp/127.0.0.1/53/ HTTP/1.1\r\nHost: proxy:443\r\nConnection: keep-alive, Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n';

describe('parseRequestHead', () => {
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

describe('parseResponseHead and formatResponseHead', () => {
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
