import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { tapChannel } from '../../../src/tunnel/diagnostics.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { redactCredentials, trimPreview } from '../../../src/inspect/event-transform.js';
import { requestHeadFromHttp1, requestHeadFromHttp2 } from '../../../src/inspect/http-fields.js';
import { LiveSessionDecoder } from '../../../src/inspect/live-decoder.js';
import type { LiveDecoderOptions } from '../../../src/inspect/live-decoder.js';
import { TapInspector, tapCloseReason } from '../../../src/inspect/tap.js';

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

const CONNECT_FIELDS: Array<[string, string]> = [
  [':method', 'CONNECT'],
  [':protocol', 'connect-udp'],
  [':scheme', 'https'],
  [':authority', 'proxy.example:443'],
  [':path', '/.well-known/masque/udp/192.0.2.6/443/'],
  ['capsule-protocol', '?1'],
];

function collect(options: Partial<LiveDecoderOptions> = {}): { d: LiveSessionDecoder; events: InspectEvent[] } {
  const events: InspectEvent[] = [];
  const d = new LiveSessionDecoder({ ...options, onEvent: (ev) => events.push(ev) });
  return { d, events };
}

describe('LiveSessionDecoder', () => {
  it('reports request, response, capsules split across chunks, ends and close in order', () => {
    const { d, events } = collect();
    d.request('r1', 1, requestHeadFromHttp2(CONNECT_FIELDS));
    d.response('r1', 2, '2', 200, [[':status', '200'], ['capsule-protocol', '?1']]);
    const stream = h('00 05 00 70696e67  4040 02 abcd');
    d.bytes('r1', '->', stream.subarray(0, 3), 3);
    d.bytes('r1', '->', stream.subarray(3), 4);
    d.bytes('r1', '<-', h('00 02 00 ff'), 5);
    d.end('r1', '->', 6);
    d.close('r1', 7, 'end-stream', null);
    assert.deepEqual(JSON.parse(JSON.stringify(events)), [
      {
        event: 'request',
        tMs: 1,
        session: 'r1',
        dir: '->',
        http: '2',
        method: 'CONNECT',
        protocol: 'connect-udp',
        scheme: 'https',
        authority: 'proxy.example:443',
        path: '/.well-known/masque/udp/192.0.2.6/443/',
        target: { host: '192.0.2.6', port: 443 },
        capsuleProtocol: true,
        headers: CONNECT_FIELDS,
      },
      {
        event: 'response',
        tMs: 2,
        session: 'r1',
        dir: '<-',
        http: '2',
        status: 200,
        proxyStatus: null,
        capsuleProtocol: true,
        headers: [
          [':status', '200'],
          ['capsule-protocol', '?1'],
        ],
      },
      {
        event: 'capsule', tMs: 4, session: 'r1', dir: '->', offset: 0, type: 0, typeName: 'DATAGRAM', length: 5, typeWidth: 1,
        lengthWidth: 1, nonMinimal: false, contextId: 0, contextIdWidth: 1, payloadLength: 4, payloadHex: '70696e67', previewTruncated: false,
      },
      {
        event: 'capsule', tMs: 4, session: 'r1', dir: '->', offset: 7, type: 64, typeName: 'GREASE 0x40', length: 2, typeWidth: 2,
        lengthWidth: 1, nonMinimal: false, valueHex: 'abcd', previewTruncated: false,
      },
      {
        event: 'capsule', tMs: 5, session: 'r1', dir: '<-', offset: 0, type: 0, typeName: 'DATAGRAM', length: 2, typeWidth: 1,
        lengthWidth: 1, nonMinimal: false, contextId: 0, contextIdWidth: 1, payloadLength: 1, payloadHex: 'ff', previewTruncated: false,
      },
      { event: 'end', tMs: 6, session: 'r1', dir: '->', clean: true, totalBytes: 12, capsules: 2, ignoredBytes: 0 },
      { event: 'end', tMs: 7, session: 'r1', dir: '<-', clean: false, totalBytes: 4, capsules: 1, ignoredBytes: 0 },
      { event: 'close', tMs: 7, session: 'r1', reason: 'end-stream', detail: null },
    ]);
    assert.equal(d.openSessions, 0);
  });

  it('reports a stream that ends inside a capsule with its offset and RFC 9297 §3.3', () => {
    const { d, events } = collect();
    d.request('r1', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.bytes('r1', '->', h('00 01 00  00 0a 00 6162'), 1);
    d.end('r1', '->', 2);
    const tail = events.slice(-2);
    assert.deepEqual(tail, [
      {
        event: 'error',
        tMs: 2,
        session: 'r1',
        dir: '->',
        offset: 3,
        layer: 'capsule',
        code: 'UT_ERR_CAPSULE_TRUNCATED',
        reason: 'stream ended inside the capsule at byte 3: 5 bytes of 12',
        rfc: 'RFC 9297 §3.3',
      },
      { event: 'end', tMs: 2, session: 'r1', dir: '->', clean: false, totalBytes: 8, capsules: 1, ignoredBytes: 5 },
    ]);
  });

  it('does not decode the body of a request without the capsule protocol, and closes it as reported', () => {
    const { d, events } = collect();
    d.request('p1', 0, requestHeadFromHttp2([[':method', 'POST'], [':path', '/'], [':scheme', 'http'], [':authority', 'a']]));
    d.bytes('p1', '->', h('00 01 00'), 1);
    d.close('p1', 2, 'not-a-tunnel', null);
    assert.deepEqual(events.map((e) => e.event), ['request', 'close']);
    assert.equal(d.isTunnel('p1'), false);
  });

  it("with capsuleStreams 'all' decodes a POST body", () => {
    const { d, events } = collect({ capsuleStreams: 'all' });
    d.request('p1', 0, requestHeadFromHttp2([[':method', 'POST'], [':path', '/'], [':scheme', 'http'], [':authority', 'a']]));
    d.bytes('p1', '->', h('00 01 00'), 1);
    assert.deepEqual(events.map((e) => e.event), ['request', 'capsule']);
  });

  it('opens a session for bytes without a request (a source that does not report heads)', () => {
    const { d, events } = collect();
    d.bytes('x', '<-', h('00 01 00'), 1);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.event, 'capsule');
    assert.equal(events[0]!.session, 'x');
  });

  it('stops decoding new sessions at maxSessions, counts them, and never decodes their bytes mid-stream', () => {
    const { d, events } = collect({ maxSessions: 1 });
    d.request('a', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.request('b', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.bytes('b', '->', h('00 01 00'), 1);
    d.bytes('a', '->', h('00 01 00'), 1);
    d.close('a', 2, 'end-stream', null);
    // A slot is free now, but b's bytes must still not be decoded from the middle of its stream.
    d.bytes('b', '->', h('00 01 00'), 3);
    d.close('b', 4, 'end-stream', null);
    assert.deepEqual(d.stats, { sessions: 2, droppedSessions: 1, droppedChunks: 2, failures: 0 });
    assert.deepEqual(
      events.map((e) => `${e.session}:${e.event}`),
      ['a:request', 'b:request', 'a:capsule', 'a:end', 'a:end', 'a:close', 'b:close'],
    );
  });

  it('catches an exception thrown by the consumer and keeps decoding', () => {
    let n = 0;
    const d = new LiveSessionDecoder({
      onEvent: () => {
        n++;
        throw new Error('consumer bug');
      },
    });
    d.request('a', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.bytes('a', '->', h('00 01 00 00 01 00'), 1);
    assert.equal(n, 3);
    assert.equal(d.stats.failures, 3);
  });

  it('reports a capsule over maxCapsuleLength as an error without an RFC rule', () => {
    const { d, events } = collect({ maxCapsuleLength: 4 });
    d.request('a', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.bytes('a', '->', h('00 05 00 01020304'), 1);
    const err = events.find((e) => e.event === 'error');
    assert.deepEqual(err, {
      event: 'error',
      tMs: 1,
      session: 'a',
      dir: '->',
      offset: 0,
      layer: 'capsule',
      code: 'UT_ERR_CAPSULE_TOO_LARGE',
      reason: 'capsule at byte 0 declares length 5, over the limit of 4 (--max-capsule)',
      rfc: null,
    });
  });
});

describe('inspect/tap: tapCloseReason', () => {
  for (const [text, reason, detail] of [
    ['stream-reset:8', 'rst-stream', 'CANCEL (0x8)'],
    ['malformed: capsule truncated', 'error', 'malformed: capsule truncated'],
    ['connect-failed: proxy refused CONNECT-UDP: HTTP 403', 'refused', 'connect-failed: proxy refused CONNECT-UDP: HTTP 403'],
    ['stream-closed', 'end-stream', 'stream-closed'],
    ['tunnel-ended', 'end-stream', 'tunnel-ended'],
    ['idle-timeout', 'local', 'idle-timeout'],
    ['client-shutdown', 'local', 'client-shutdown'],
  ] as const) {
    it(`maps '${text}' to ${reason}`, () => {
      assert.deepEqual(tapCloseReason(text), { reason, detail });
    });
  }
});

describe('inspect/tap: TapInspector', () => {
  it('subscribes only between start and stop, and closes open sessions as local on stop', () => {
    const events: InspectEvent[] = [];
    const tap = new TapInspector({ onEvent: (ev) => events.push(ev) });
    const before = tapChannel.hasSubscribers;
    tap.start(1000);
    assert.equal(tapChannel.hasSubscribers, true);
    tapChannel.publish({ kind: 'request', session: 't1', time: 1005, headers: Object.fromEntries(CONNECT_FIELDS) });
    tapChannel.publish({ kind: 'response', session: 't1', time: 1006, http: '2', status: 200, headers: { ':status': '200', 'capsule-protocol': '?1' } });
    tapChannel.publish({ kind: 'bytes', session: 't1', time: 1007, dir: '<-', chunk: h('00 01 00') });
    tap.stop('test over');
    assert.equal(tapChannel.hasSubscribers, before);
    // Published after stop: not seen.
    tapChannel.publish({ kind: 'bytes', session: 't1', time: 1008, dir: '<-', chunk: h('00 01 00') });
    assert.deepEqual(events.slice(0, 3).map((e) => `${e.tMs} ${e.event}`), ['5 request', '6 response', '7 capsule']);
    assert.deepEqual(events.slice(3).map((e) => (e.event === 'end' ? `end ${e.dir} clean=${e.clean}` : e.event)), [
      'end -> clean=false',
      'end <- clean=false',
      'close',
    ]);
    const last = events.at(-1)!;
    assert.deepEqual(last.event === 'close' && [last.reason, last.detail], ['local', 'test over']);
    const res = events[1]!;
    assert.equal(res.event === 'response' && res.status, 200);
  });

  it('takes the HTTP version and status of a response from the message, not from earlier requests or header fields', () => {
    const events: InspectEvent[] = [];
    const tap = new TapInspector({ onEvent: (ev) => events.push(ev) });
    tap.start(1000);
    try {
      // HTTP/1.1: the status is carried by the message; the fields are the response's own, with no pseudo-header.
      tapChannel.publish({ kind: 'request', session: 'h1', time: 1001, headers: { host: 'proxy.example', connection: 'Upgrade', upgrade: 'connect-udp', 'capsule-protocol': '?1' }, requestLine: { method: 'GET', target: '/.well-known/masque/udp/192.0.2.6/443/' } });
      tapChannel.publish({ kind: 'response', session: 'h1', time: 1002, http: '1.1', status: 101, headers: { upgrade: 'connect-udp', 'capsule-protocol': '?1' } });
      // No request seen for this session (e.g. the tap started late): the version still comes from the message.
      tapChannel.publish({ kind: 'response', session: 'late', time: 1003, http: '1.1', status: 403, headers: { 'proxy-status': 'udp-tunnel; error=destination_ip_prohibited' } });
      tapChannel.publish({ kind: 'response', session: 'h2', time: 1004, http: '2', status: 200, headers: { ':status': '200', 'capsule-protocol': '?1' } });
      // The tunnel is open after the 101: capsules are decoded.
      tapChannel.publish({ kind: 'bytes', session: 'h1', time: 1005, dir: '<-', chunk: h('00 02 00 ff') });
    } finally {
      tap.stop('test over');
    }
    const responses = events.filter((e) => e.event === 'response');
    assert.deepEqual(
      responses.map((e) => (e.event === 'response' ? [e.session, e.http, e.status, e.headers, e.capsuleProtocol] : null)),
      [
        ['h1', '1.1', 101, [['upgrade', 'connect-udp'], ['capsule-protocol', '?1']], true],
        ['late', '1.1', 403, [['proxy-status', 'udp-tunnel; error=destination_ip_prohibited']], false],
        ['h2', '2', 200, [[':status', '200'], ['capsule-protocol', '?1']], true],
      ],
    );
    const caps = events.filter((e) => e.event === 'capsule');
    assert.deepEqual(caps.map((e) => (e.event === 'capsule' ? [e.session, e.typeName, e.payloadHex] : null)), [['h1', 'DATAGRAM', 'ff']]);
  });
});

describe('inspect/event-transform: trimPreview and redactCredentials', () => {
  const capsule: InspectEvent = {
    event: 'capsule', tMs: 0, session: 's', dir: '->', offset: 0, type: 0, typeName: 'DATAGRAM', length: 6, typeWidth: 1, lengthWidth: 1,
    nonMinimal: false, contextId: 0, contextIdWidth: 1, payloadLength: 5, payloadHex: '0102030405', previewTruncated: false,
  };

  it('cuts a preview to N bytes and marks it, without touching the original', () => {
    assert.deepEqual(trimPreview(capsule, 2), { ...capsule, payloadHex: '0102', previewTruncated: true });
    assert.equal(trimPreview(capsule, 5), capsule);
    assert.equal(capsule.event === 'capsule' && capsule.payloadHex, '0102030405');
  });

  it('replaces credentials but keeps the scheme', () => {
    const req: InspectEvent = {
      event: 'request', tMs: 0, session: 's', dir: '->', http: '2', method: 'CONNECT', protocol: 'connect-udp', scheme: 'https', authority: 'a',
      path: '/', target: null, capsuleProtocol: true,
      headers: [['authorization', 'Bearer s3cr3t'], ['Proxy-Authorization', 'opaque'], ['x-other', 'kept']],
    };
    const out = redactCredentials(req);
    assert.deepEqual(out.event === 'request' && out.headers, [['authorization', 'Bearer <redacted>'], ['Proxy-Authorization', '<redacted>'], ['x-other', 'kept']]);
    assert.equal(req.event === 'request' && req.headers[0]![1], 'Bearer s3cr3t');
  });
});

describe('LiveSessionDecoder and refusals', () => {
  it('a non-2xx final response ends both directions unclean and leaves its body undecoded', () => {
    const { d, events } = collect();
    d.request('r', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.response('r', 1, '2', 103, [[':status', '103']]);
    d.response('r', 2, '2', 403, [[':status', '403'], ['proxy-status', 'x; error=destination_ip_prohibited']]);
    d.bytes('r', '<-', Buffer.from('<html>'), 3);
    d.end('r', '<-', 4);
    d.close('r', 5, 'refused', 'status 403');
    assert.deepEqual(
      events.map((e) => (e.event === 'end' ? `end ${e.dir} ${e.clean} ${e.totalBytes}` : e.event === 'response' ? `response ${e.status} ${e.proxyStatus}` : e.event)),
      ['request', 'response 103 null', 'response 403 x; error=destination_ip_prohibited', 'end -> false 0', 'end <- false 0', 'close'],
    );
  });

  it('over HTTP/1.1 only 101 opens the tunnel: a 200 ends both directions and its body is not decoded (RFC 9298 §3.2)', () => {
    const fields: Array<[string, string]> = [['Host', 'p'], ['Connection', 'Upgrade'], ['Upgrade', 'connect-udp'], ['Capsule-Protocol', '?1']];
    for (const [status, decoded] of [[200, 0], [101, 1]] as const) {
      const { d, events } = collect();
      d.request('c1', 0, requestHeadFromHttp1('GET', '/.well-known/masque/udp/192.0.2.6/443/', fields));
      d.response('c1', 1, '1.1', status, []);
      d.bytes('c1', '<-', h('00 02 00 ff'), 2);
      assert.equal(events.filter((e) => e.event === 'capsule').length, decoded, `status ${status}`);
      assert.equal(events.filter((e) => e.event === 'end').length, decoded === 0 ? 2 : 0, `status ${status}`);
    }
  });
});

describe('LiveSessionDecoder.httpError', () => {
  it('reports an HTTP-layer error of a session that never had a request, and its close', () => {
    const { d, events } = collect();
    d.httpError('c7', 1, '->', 26, 'UT_ERR_HTTP1_MALFORMED', 'bad field line', 'RFC 9112');
    d.close('c7', 2, 'error', 'head could not be parsed');
    assert.deepEqual(JSON.parse(JSON.stringify(events)), [
      { event: 'error', tMs: 1, session: 'c7', dir: '->', offset: 26, layer: 'http', code: 'UT_ERR_HTTP1_MALFORMED', reason: 'bad field line', rfc: 'RFC 9112' },
      { event: 'close', tMs: 2, session: 'c7', reason: 'error', detail: 'head could not be parsed' },
    ]);
    assert.equal(d.openSessions, 0);
  });

  it('keeps an announced session open after an HTTP-layer error until close() ends its directions', () => {
    const { d, events } = collect();
    d.request('c1', 0, requestHeadFromHttp2(CONNECT_FIELDS));
    d.httpError('c1', 1, '<-', 40, 'UT_ERR_HEADERS_TOO_LARGE', 'head too large', null);
    d.close('c1', 2, 'error', null);
    assert.deepEqual(
      events.map((e) => (e.event === 'end' ? `end ${e.dir} ${e.clean}` : e.event === 'error' ? `error ${e.dir} ${e.offset} ${e.layer}` : e.event)),
      ['request', 'error <- 40 http', 'end -> false', 'end <- false', 'close'],
    );
  });
});
