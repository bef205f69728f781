import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeCapture } from '../../../src/inspect/pcap-decode.js';
import type { CaptureDecodeOptions } from '../../../src/inspect/pcap-decode.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import {
  END_HEADERS,
  END_STREAM,
  PADDED,
  PREFACE,
  h2Frame,
  indexed,
  literalIncremental,
  literalWithoutIndexing,
  settingsFrame,
} from '../../helpers/h2-writer.js';
import { ACK, FIN, PSH, RST, TcpFlow, frame, ipPacket, linkTypeOf, writePcap, writePcapng } from '../../helpers/pcap-writer.js';
import type { CaptureRecord, Link, SegmentSpec } from '../../helpers/pcap-writer.js';

const T0 = 1_700_000_000_000_000_000n;
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;

type Timed = [SegmentSpec, number];

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

function toRecords(pkts: Timed[], link: Link): CaptureRecord[] {
  return pkts.map(([s, ms]) => ({ tsNs: T0 + BigInt(Math.round(ms * 1e6)), data: frame(link, ipPacket(s)) }));
}

function pcap(pkts: Timed[], link: Link = 'ethernet'): Buffer {
  return writePcap(toRecords(pkts, link), { linkType: linkTypeOf(link) });
}

function decode(buf: Buffer, options: CaptureDecodeOptions = {}): InspectEvent[] {
  return JSON.parse(JSON.stringify(decodeCapture(buf, options).events)) as InspectEvent[];
}

// ---- The HTTP/2 extended CONNECT exchange ----

const TARGET_PATH = '/.well-known/masque/udp/192.0.2.6/443/';
const V6_PATH = '/.well-known/masque/udp/2001%3Adb8%3A%3A42/53/';
const REQ1_FIELDS: Array<[string, string]> = [
  [':method', 'CONNECT'],
  [':protocol', 'connect-udp'],
  [':scheme', 'https'],
  [':authority', 'proxy.example:8080'],
  [':path', TARGET_PATH],
];
const REQ3_FIELDS: Array<[string, string]> = [
  [':method', 'CONNECT'],
  [':protocol', 'connect-udp'],
  [':scheme', 'https'],
  [':authority', 'proxy.example:8080'],
  [':path', V6_PATH],
];
// Request 1 adds capsule-protocol to the client's dynamic table (Huffman-coded); request 3 refers to it by index 62.
const REQ1_BLOCK = Buffer.concat([
  ...REQ1_FIELDS.map(([n, v], i) => literalWithoutIndexing(n, v, i % 2 === 0)),
  literalIncremental('capsule-protocol', '?1', true),
]);
const REQ3_BLOCK = Buffer.concat([...REQ3_FIELDS.map(([n, v]) => literalWithoutIndexing(n, v)), indexed(62)]);
const RESP1_BLOCK = Buffer.concat([indexed(8), literalWithoutIndexing('capsule-protocol', '?1')]);
const RESP3_BLOCK = Buffer.concat([
  literalWithoutIndexing(':status', '403'),
  literalWithoutIndexing('proxy-status', 'udp-tunnel; error=destination_ip_prohibited', true),
]);

const C1 = h('00 05 00 70696e67'); // DATAGRAM "ping"
const C2 = Buffer.concat([h('00 15 00'), Buffer.alloc(20, 0x11)]); // DATAGRAM of 20 bytes
const S1 = h('00 05 00 706f6e67'); // DATAGRAM "pong"
const S2 = h('4040 02 abcd'); // GREASE 0x40

function h2Exchange(client = '10.0.0.1', server = '10.0.0.2'): Timed[] {
  const f = new TcpFlow(client, 40000, server, 8080);
  const [syn, synAck, ack] = f.handshake();
  const d1 = h2Frame(DATA, 0, 1, Buffer.concat([C1, C2.subarray(0, 10)]));
  const d2 = h2Frame(DATA, 0, 1, C2.subarray(10));
  const p1 = f.client(Buffer.concat([PREFACE, settingsFrame([])]));
  const p2 = f.server(Buffer.concat([settingsFrame([[0x8, 1]]), settingsFrame([], true)]));
  const p3 = f.client(Buffer.concat([settingsFrame([], true), h2Frame(HEADERS, END_HEADERS, 1, REQ1_BLOCK)]));
  const p4 = f.client(d1);
  const p5 = f.client(d2.subarray(0, 6)); // the DATA frame header itself is split across segments
  const p6 = f.client(d2.subarray(6));
  const p7 = f.server(h2Frame(HEADERS, END_HEADERS, 1, RESP1_BLOCK));
  const p8 = f.server(h2Frame(DATA, PADDED, 1, Buffer.concat([Buffer.from([2]), S1, S2, Buffer.alloc(2)])));
  const p9 = f.client(h2Frame(HEADERS, END_HEADERS, 3, REQ3_BLOCK));
  const p10 = f.server(h2Frame(HEADERS, END_HEADERS | END_STREAM, 3, RESP3_BLOCK));
  const p11 = f.client(h2Frame(DATA, END_STREAM, 1));
  const p12 = f.server(h2Frame(DATA, END_STREAM, 1));
  const p13 = f.client('', ACK | FIN);
  const p14 = f.server('', ACK | FIN);
  return [
    [syn!, 0],
    [synAck!, 0.5],
    [ack!, 1],
    [p1, 2],
    [p2, 3],
    [p3, 4],
    [p4, 5],
    [p6, 6], // out of order: arrives before p5
    [p5, 7], // fills the hole
    [p5, 8], // retransmission
    [p7, 9],
    [p8, 10],
    [p9, 11],
    [p10, 12],
    [p11, 13],
    [p12, 14],
    [p13, 15],
    [p14, 16],
  ];
}

function datagramEvent(t: number, session: string, dir: '->' | '<-', offset: number, payload: Buffer, truncated = false): InspectEvent {
  return {
    event: 'capsule',
    tMs: t,
    session,
    dir,
    offset,
    type: 0,
    typeName: 'DATAGRAM',
    length: payload.length + 1,
    typeWidth: 1,
    lengthWidth: 1,
    nonMinimal: false,
    contextId: 0,
    contextIdWidth: 1,
    payloadLength: payload.length,
    payloadHex: payload.subarray(0, 16).toString('hex'),
    previewTruncated: truncated,
  };
}

const H2_EVENTS: InspectEvent[] = [
  {
    event: 'request',
    tMs: 4,
    session: 'c1s1',
    dir: '->',
    http: '2',
    method: 'CONNECT',
    protocol: 'connect-udp',
    scheme: 'https',
    authority: 'proxy.example:8080',
    path: TARGET_PATH,
    target: { host: '192.0.2.6', port: 443 },
    capsuleProtocol: true,
    headers: [...REQ1_FIELDS, ['capsule-protocol', '?1']],
  },
  datagramEvent(5, 'c1s1', '->', 0, Buffer.from('ping')),
  datagramEvent(7, 'c1s1', '->', 7, Buffer.alloc(20, 0x11), true),
  {
    event: 'response',
    tMs: 9,
    session: 'c1s1',
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
  datagramEvent(10, 'c1s1', '<-', 0, Buffer.from('pong')),
  {
    event: 'capsule',
    tMs: 10,
    session: 'c1s1',
    dir: '<-',
    offset: 7,
    type: 0x40,
    typeName: 'GREASE 0x40',
    length: 2,
    typeWidth: 2,
    lengthWidth: 1,
    nonMinimal: false,
    valueHex: 'abcd',
    previewTruncated: false,
  },
  {
    event: 'request',
    tMs: 11,
    session: 'c1s3',
    dir: '->',
    http: '2',
    method: 'CONNECT',
    protocol: 'connect-udp',
    scheme: 'https',
    authority: 'proxy.example:8080',
    path: V6_PATH,
    target: { host: '2001:db8::42', port: 53 },
    capsuleProtocol: true,
    headers: [...REQ3_FIELDS, ['capsule-protocol', '?1']],
  },
  {
    event: 'response',
    tMs: 12,
    session: 'c1s3',
    dir: '<-',
    http: '2',
    status: 403,
    proxyStatus: 'udp-tunnel; error=destination_ip_prohibited',
    capsuleProtocol: false,
    headers: [
      [':status', '403'],
      ['proxy-status', 'udp-tunnel; error=destination_ip_prohibited'],
    ],
  },
  { event: 'end', tMs: 12, session: 'c1s3', dir: '->', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
  { event: 'end', tMs: 12, session: 'c1s3', dir: '<-', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
  { event: 'close', tMs: 12, session: 'c1s3', reason: 'refused', detail: 'status 403' },
  { event: 'end', tMs: 13, session: 'c1s1', dir: '->', clean: true, totalBytes: 30, capsules: 2, ignoredBytes: 0 },
  { event: 'end', tMs: 14, session: 'c1s1', dir: '<-', clean: true, totalBytes: 12, capsules: 2, ignoredBytes: 0 },
  { event: 'close', tMs: 14, session: 'c1s1', reason: 'end-stream', detail: null },
];

describe('decodeCapture: HTTP/2 extended CONNECT', () => {
  it('decodes the exchange into exact events (reordered, retransmitted and split segments)', () => {
    const result = decodeCapture(pcap(h2Exchange()));
    assert.deepEqual(JSON.parse(JSON.stringify(result.events)), H2_EVENTS);
    assert.equal(result.format, 'pcap');
    assert.equal(result.truncated, false);
    assert.deepEqual(result.warnings, []);
    assert.equal(result.stats.packets, 18);
    assert.equal(result.stats.tcpPackets, 18);
    assert.equal(result.stats.http2Connections, 1);
    assert.equal(result.stats.streams, 2);
    assert.equal(result.stats.outOfOrderSegments, 1);
    assert.equal(result.stats.retransmittedBytes, 6);
  });

  const variants: Array<[string, Link, 'pcap' | 'pcapng', boolean]> = [
    ['pcapng, SLL2, IPv6', 'sll2', 'pcapng', true],
    ['pcap, BSD loopback (big-endian family), IPv4', 'null-be', 'pcap', false],
    ['pcapng, raw IP, IPv6', 'raw', 'pcapng', true],
    ['pcap, Linux SLL, IPv6', 'sll', 'pcap', true],
    ['pcapng, VLAN Ethernet, IPv4', 'vlan', 'pcapng', false],
  ];
  for (const [name, link, format, v6] of variants) {
    it(`gives the same events from ${name}`, () => {
      const pkts = v6 ? h2Exchange('2001:db8::1', '2001:db8::2') : h2Exchange();
      const recs = toRecords(pkts, link);
      const buf = format === 'pcap' ? writePcap(recs, { linkType: linkTypeOf(link), nanos: true }) : writePcapng(recs, { linkType: linkTypeOf(link), tsresol: 9 });
      assert.deepEqual(decode(buf), H2_EVENTS);
    });
  }

  it('a capture truncated inside a record keeps every complete record, warns, and does not crash', () => {
    const pkts = h2Exchange();
    const whole = pcap(pkts);
    // Cut inside the record of the server's END_STREAM (packet 16 of 18).
    const before = pcap(pkts.slice(0, 15)).length;
    const result = decodeCapture(whole.subarray(0, before + 20));
    assert.equal(result.truncated, true);
    assert.deepEqual(result.warnings, [
      { code: 'UT_ERR_CAPTURE_TRUNCATED', message: `capture ends inside the record at byte ${before}; that partial record is ignored`, session: null, offset: before },
    ]);
    assert.deepEqual(JSON.parse(JSON.stringify(result.events)), [
      ...H2_EVENTS.slice(0, 12),
      { event: 'end', tMs: 13, session: 'c1s1', dir: '<-', clean: false, totalBytes: 12, capsules: 2, ignoredBytes: 0 },
      { event: 'close', tMs: 13, session: 'c1s1', reason: 'capture-end', detail: null },
    ]);
  });

  it('a capture cut inside its file header is a coded error at byte 0', () => {
    assert.throws(
      () => decodeCapture(pcap(h2Exchange()).subarray(0, 12)),
      (e: unknown) => isUdpTunnelError(e, 'UT_ERR_CAPTURE_TRUNCATED') && e.details['offset'] === 0,
    );
  });

  it('never crashes on any prefix of the capture', () => {
    const whole = pcapng(h2Exchange());
    for (let n = 0; n <= whole.length; n += 3) {
      try {
        decodeCapture(whole.subarray(0, n));
      } catch (e) {
        assert.ok(isUdpTunnelError(e), `prefix ${n}: ${String(e)}`);
      }
    }
  });

  it('full mode and preview size reach the capsule events', () => {
    const evs = decode(pcap(h2Exchange()), { full: true });
    const c2 = evs[2];
    assert.equal(c2?.event === 'capsule' ? c2.payloadHex : '', '11'.repeat(20));
    const small = decode(pcap(h2Exchange()), { previewBytes: 1 });
    assert.equal(small[1]?.event === 'capsule' ? small[1].payloadHex : '', '70');
  });
});

function pcapng(pkts: Timed[]): Buffer {
  return writePcapng(toRecords(pkts, 'ethernet'), { linkType: 1 });
}

describe('decodeCapture: HTTP/2 failures', () => {
  const plainBlock = Buffer.concat(REQ1_FIELDS.map(([n, v]) => literalWithoutIndexing(n, v)));
  // Client stream bytes before anything a test adds: preface, empty SETTINGS, HEADERS of stream 1.
  const clientBase = PREFACE.length + 9 + 9 + plainBlock.length;
  function base(f: TcpFlow): Timed[] {
    const [syn, synAck, ack] = f.handshake();
    return [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [f.client(Buffer.concat([PREFACE, settingsFrame([])])), 1],
      [f.server(settingsFrame([[0x8, 1]])), 2],
      [f.client(h2Frame(HEADERS, END_HEADERS, 1, plainBlock)), 3],
    ];
  }
  const request = (t: number): InspectEvent => ({
    event: 'request',
    tMs: t,
    session: 'c1s1',
    dir: '->',
    http: '2',
    method: 'CONNECT',
    protocol: 'connect-udp',
    scheme: 'https',
    authority: 'proxy.example:8080',
    path: TARGET_PATH,
    target: { host: '192.0.2.6', port: 443 },
    capsuleProtocol: false,
    headers: REQ1_FIELDS,
  });

  it('a malformed capsule gives one error; RST_STREAM then closes the session', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const pkts = [
      ...base(f),
      [f.client(h2Frame(DATA, 0, 1, h('00 00 00 02 00 aa'))), 4] as Timed,
      [f.server(h2Frame(RST_STREAM, 0, 1, h('00000001'))), 5] as Timed,
    ];
    assert.deepEqual(decode(pcap(pkts)), [
      request(3),
      {
        event: 'error',
        tMs: 4,
        session: 'c1s1',
        dir: '->',
        offset: 0,
        layer: 'capsule',
        code: 'UT_ERR_DATAGRAM_MALFORMED',
        reason: 'DATAGRAM capsule at byte 0 has a 0-byte value, too short for its context ID',
        rfc: 'RFC 9298 §5',
      },
      { event: 'end', tMs: 5, session: 'c1s1', dir: '->', clean: false, totalBytes: 6, capsules: 0, ignoredBytes: 6 },
      { event: 'end', tMs: 5, session: 'c1s1', dir: '<-', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'close', tMs: 5, session: 'c1s1', reason: 'rst-stream', detail: 'PROTOCOL_ERROR (0x1) from server' },
    ]);
  });

  it('an HPACK error is a connection-level error; DATA of known streams still decodes', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const pkts = [
      ...base(f),
      [f.client(h2Frame(HEADERS, END_HEADERS, 3, indexed(70))), 4] as Timed,
      [f.client(h2Frame(DATA, 0, 1, C1)), 5] as Timed,
    ];
    assert.deepEqual(decode(pcap(pkts)), [
      request(3),
      {
        event: 'error',
        tMs: 4,
        session: 'c1',
        dir: '->',
        offset: clientBase,
        layer: 'http',
        code: 'UT_ERR_HPACK',
        reason: 'COMPRESSION_ERROR: index 70 is beyond the tables (RFC 7541 §2.3.3); later -> header blocks are skipped',
        rfc: 'RFC 7541 §2.3.3',
      },
      datagramEvent(5, 'c1s1', '->', 0, Buffer.from('ping')),
      { event: 'end', tMs: 5, session: 'c1s1', dir: '->', clean: false, totalBytes: 7, capsules: 1, ignoredBytes: 0 },
      { event: 'end', tMs: 5, session: 'c1s1', dir: '<-', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'close', tMs: 5, session: 'c1s1', reason: 'capture-end', detail: null },
    ]);
  });

  it('a framing error stops the connection and closes its streams', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const pkts = [...base(f), [f.server(h2Frame(0x4, 0, 0, Buffer.alloc(5))), 4] as Timed];
    assert.deepEqual(decode(pcap(pkts)), [
      request(3),
      {
        event: 'error',
        tMs: 4,
        session: 'c1',
        dir: '<-',
        offset: 15,
        layer: 'http',
        code: 'UT_ERR_HTTP2_PROTOCOL',
        reason: 'FRAME_SIZE_ERROR: SETTINGS payload of 5 bytes',
        rfc: 'RFC 9113 §6.5',
      },
      { event: 'end', tMs: 4, session: 'c1s1', dir: '->', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'end', tMs: 4, session: 'c1s1', dir: '<-', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'close', tMs: 4, session: 'c1s1', reason: 'error', detail: 'HTTP/2 connection could not be decoded further' },
    ]);
  });

  it('bytes missing from the capture are a tcp-layer error', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const pkts = base(f);
    f.client(h2Frame(DATA, 0, 1, C1)); // never captured
    pkts.push([f.client(h2Frame(DATA, 0, 1, C1)), 4]);
    pkts.push([f.client('', ACK | RST), 5]);
    assert.deepEqual(decode(pcap(pkts)), [
      request(3),
      {
        event: 'error',
        tMs: 5,
        session: 'c1',
        dir: '->',
        offset: clientBase,
        layer: 'tcp',
        code: 'UT_ERR_CAPTURE_GAP',
        reason: `16 bytes missing from the capture at byte ${clientBase} of the client stream; the rest of it is not decoded`,
        rfc: null,
      },
      { event: 'end', tMs: 5, session: 'c1s1', dir: '->', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'end', tMs: 5, session: 'c1s1', dir: '<-', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'close', tMs: 5, session: 'c1s1', reason: 'tcp-rst', detail: null },
    ]);
  });

  it('GOAWAY closes streams the server did not process', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const goaway = h2Frame(0x7, 0, 0, h('00000000 0000000b'));
    const pkts = [...base(f), [f.server(goaway), 4] as Timed];
    const evs = decode(pcap(pkts));
    assert.deepEqual(evs[evs.length - 1], { event: 'close', tMs: 4, session: 'c1s1', reason: 'goaway', detail: 'ENHANCE_YOUR_CALM (0xb), last stream 0' });
  });

  it('a request that is not a tunnel is reported but its body is not decoded as capsules, unless asked', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const [syn, synAck, ack] = f.handshake();
    const post: Array<[string, string]> = [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':authority', 'proxy'],
      [':path', '/'],
    ];
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [f.client(Buffer.concat([PREFACE, settingsFrame([]), h2Frame(HEADERS, END_HEADERS, 1, Buffer.concat(post.map(([n, v]) => literalWithoutIndexing(n, v))))])), 1],
      [f.client(h2Frame(DATA, END_STREAM, 1, C1)), 2],
      [f.server(Buffer.concat([settingsFrame([]), h2Frame(HEADERS, END_HEADERS | END_STREAM, 1, indexed(8))])), 3],
    ];
    const auto = decode(pcap(pkts));
    assert.deepEqual(
      auto.map((e) => e.event),
      ['request', 'response', 'close'],
    );
    assert.deepEqual(auto[2], { event: 'close', tMs: 3, session: 'c1s1', reason: 'not-a-tunnel', detail: null });
    const all = decode(pcap(pkts), { capsuleStreams: 'all' });
    assert.deepEqual(
      all.map((e) => e.event),
      ['request', 'capsule', 'end', 'response', 'end', 'close'],
    );
    assert.deepEqual(all[5], { event: 'close', tMs: 3, session: 'c1s1', reason: 'end-stream', detail: null });
  });

  it('limits open streams per connection and counts the dropped ones', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
    const pkts = base(f);
    pkts.push([f.client(Buffer.concat([h2Frame(HEADERS, END_HEADERS, 3, plainBlock), h2Frame(HEADERS, END_HEADERS, 5, plainBlock)])), 4]);
    const result = decodeCapture(pcap(pkts), { maxStreamsPerConnection: 2 });
    assert.deepEqual(
      result.events.filter((e) => e.event === 'request').map((e) => e.session),
      ['c1s1', 'c1s3'],
    );
    assert.equal(result.stats.droppedStreams, 1);
    assert.deepEqual(result.warnings, [
      { code: 'UT_ERR_LIMIT_EXCEEDED', message: 'more than 2 open streams; later streams are not decoded', session: 'c1', offset: null },
    ]);
  });
});

// ---- HTTP/1.1 Upgrade ----

const UPGRADE =
  `GET ${TARGET_PATH} HTTP/1.1\r\n` + 'Host: proxy.example\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n';
const SWITCHING = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n';

const H1_REQUEST: InspectEvent = {
  event: 'request',
  tMs: 1,
  session: 'c1',
  dir: '->',
  http: '1.1',
  method: 'GET',
  protocol: 'connect-udp',
  scheme: null,
  authority: 'proxy.example',
  path: TARGET_PATH,
  target: { host: '192.0.2.6', port: 443 },
  capsuleProtocol: true,
  headers: [
    ['Host', 'proxy.example'],
    ['Connection', 'Upgrade'],
    ['Upgrade', 'connect-udp'],
    ['Capsule-Protocol', '?1'],
  ],
};

describe('decodeCapture: HTTP/1.1 Upgrade', () => {
  it('decodes the upgrade, optimistic capsules, capsules after 101, and truncation at FIN', () => {
    const f = new TcpFlow('192.0.2.10', 50000, '192.0.2.20', 80);
    const [syn, synAck, ack] = f.handshake();
    const yo = h('00 03 00 796f');
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0.25],
      [ack!, 0.5],
      [f.client(Buffer.concat([Buffer.from(UPGRADE, 'latin1'), h('00 03 00 6869')])), 1],
      [f.server(Buffer.concat([Buffer.from(SWITCHING, 'latin1'), yo.subarray(0, 2)])), 2],
      [f.server(yo.subarray(2)), 3],
      [f.client(h('00 06 00 aa'), ACK | PSH | FIN), 4],
      [f.server('', ACK | FIN), 5],
    ];
    const result = decodeCapture(pcap(pkts, 'raw'));
    assert.deepEqual(JSON.parse(JSON.stringify(result.events)), [
      H1_REQUEST,
      datagramEvent(1, 'c1', '->', 0, Buffer.from('hi')),
      {
        event: 'response',
        tMs: 2,
        session: 'c1',
        dir: '<-',
        http: '1.1',
        status: 101,
        proxyStatus: null,
        capsuleProtocol: true,
        headers: [
          ['Connection', 'Upgrade'],
          ['Upgrade', 'connect-udp'],
          ['Capsule-Protocol', '?1'],
        ],
      },
      datagramEvent(3, 'c1', '<-', 0, Buffer.from('yo')),
      {
        event: 'error',
        tMs: 4,
        session: 'c1',
        dir: '->',
        offset: 5,
        layer: 'capsule',
        code: 'UT_ERR_CAPSULE_TRUNCATED',
        reason: 'stream ended inside the capsule at byte 5: 4 bytes of 8',
        rfc: 'RFC 9297 §3.3',
      },
      { event: 'end', tMs: 4, session: 'c1', dir: '->', clean: false, totalBytes: 9, capsules: 1, ignoredBytes: 4 },
      { event: 'end', tMs: 5, session: 'c1', dir: '<-', clean: true, totalBytes: 5, capsules: 1, ignoredBytes: 0 },
      { event: 'close', tMs: 5, session: 'c1', reason: 'tcp-fin', detail: null },
    ]);
    assert.equal(result.stats.http1Connections, 1);
  });

  it('a refused upgrade reports the response and closes as refused', () => {
    const f = new TcpFlow('192.0.2.10', 50000, '192.0.2.20', 80);
    const [syn, synAck, ack] = f.handshake();
    const refusal = 'HTTP/1.1 400 Bad Request\r\nProxy-Status: udp-tunnel; error=http_request_error\r\nContent-Length: 0\r\n\r\n';
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [f.client(UPGRADE), 1],
      [f.server(refusal, ACK | PSH | FIN), 2],
    ];
    assert.deepEqual(decode(pcap(pkts)).slice(1), [
      {
        event: 'response',
        tMs: 2,
        session: 'c1',
        dir: '<-',
        http: '1.1',
        status: 400,
        proxyStatus: 'udp-tunnel; error=http_request_error',
        capsuleProtocol: false,
        headers: [
          ['Proxy-Status', 'udp-tunnel; error=http_request_error'],
          ['Content-Length', '0'],
        ],
      },
      { event: 'end', tMs: 2, session: 'c1', dir: '->', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'end', tMs: 2, session: 'c1', dir: '<-', clean: false, totalBytes: 0, capsules: 0, ignoredBytes: 0 },
      { event: 'close', tMs: 2, session: 'c1', reason: 'refused', detail: 'status 400' },
    ]);
  });

  it('an interim 100 response is reported before the 101', () => {
    const f = new TcpFlow('192.0.2.10', 50000, '192.0.2.20', 80);
    const [syn, synAck, ack] = f.handshake();
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [f.client(UPGRADE), 1],
      [f.server(`HTTP/1.1 100 Continue\r\n\r\n${SWITCHING}`), 2],
    ];
    const statuses = decode(pcap(pkts)).flatMap((e) => (e.event === 'response' ? [e.status] : []));
    assert.deepEqual(statuses, [100, 101]);
  });

  it('a server response captured before the request head ends still follows the request', () => {
    const f = new TcpFlow('192.0.2.10', 50000, '192.0.2.20', 80);
    const [syn, synAck, ack] = f.handshake();
    const a = f.client(UPGRADE.slice(0, 20));
    const b = f.client(UPGRADE.slice(20));
    const s = f.server(SWITCHING);
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [a, 1],
      [s, 1.5],
      [b, 1],
    ];
    assert.deepEqual(
      decode(pcap(pkts)).map((e) => `${e.event}@${e.tMs}`),
      ['request@1', 'response@1.5', 'end@1.5', 'end@1.5', 'close@1.5'],
    );
  });

  it('an Upgrade to another protocol is reported but not decoded as capsules', () => {
    const f = new TcpFlow('192.0.2.10', 50000, '192.0.2.20', 80);
    const [syn, synAck, ack] = f.handshake();
    const ws = 'GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [f.client(ws), 1],
      [f.server('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello'), 2],
      [f.client('\x81\x85abcd'), 3],
    ];
    assert.deepEqual(
      decode(pcap(pkts)).map((e) => (e.event === 'close' ? `close:${e.reason}` : e.event)),
      ['request', 'response', 'close:not-a-tunnel'],
    );
  });

  it('a malformed request head is an http-layer error', () => {
    const f = new TcpFlow('192.0.2.10', 50000, '192.0.2.20', 80);
    const [syn, synAck, ack] = f.handshake();
    const pkts: Timed[] = [
      [syn!, 0],
      [synAck!, 0],
      [ack!, 0],
      [f.client('GET / HTTP/1.1\r\nBad Header: x\r\n\r\n'), 1],
    ];
    const evs = decode(pcap(pkts));
    assert.deepEqual(evs[0], {
      event: 'error',
      tMs: 1,
      session: 'c1',
      dir: '->',
      offset: 16,
      layer: 'http',
      code: 'UT_ERR_HTTP1_MALFORMED',
      reason: "invalid field name 'Bad Header' (RFC 9112)",
      rfc: 'RFC 9112',
    });
  });
});

describe('decodeCapture: other traffic', () => {
  it('skips TLS and non-HTTP connections with warnings, and non-TCP frames with counters', () => {
    const tls = new TcpFlow('10.0.0.1', 40001, '10.0.0.2', 443);
    const junk = new TcpFlow('10.0.0.1', 40002, '10.0.0.2', 25);
    const pkts: Timed[] = [
      ...tls.handshake().map((s): Timed => [s, 0]),
      [tls.client(h('16 03 01 00 05 01 00 00 01 00')), 1],
      [junk.client('EHLO example.org\r\n'), 2],
      [junk.server('220 ready\r\n'), 3],
    ];
    const recs = toRecords(pkts, 'ethernet');
    const udp = frame('ethernet', ipPacket({ src: '10.0.0.1', dst: '10.0.0.2', srcPort: 1, dstPort: 2, seq: 0, ack: 0, flags: 0 }));
    udp[14 + 9] = 17;
    recs.push({ tsNs: T0 + 4_000_000n, data: udp });
    const result = decodeCapture(writePcap(recs, { linkType: 1 }));
    assert.deepEqual(result.events, []);
    assert.deepEqual(
      result.warnings.map((w) => w.message),
      [
        'connection c1 10.0.0.1:40001 <-> 10.0.0.2:443 skipped: TLS: encrypted traffic cannot be decoded (cleartext captures only)',
        'connection c2 10.0.0.1:40002 <-> 10.0.0.2:25 skipped: neither HTTP/2 with prior knowledge nor HTTP/1.1 (or the capture starts mid-connection)',
      ],
    );
    assert.equal(result.stats.otherConnections, 2);
    assert.equal(result.stats.skippedFrames['not-tcp'], 1);
    assert.equal(result.stats.packets, 7);
  });

  it('finds the client by content when the handshake was not captured', () => {
    const pkts = h2Exchange().slice(3);
    // Server's SETTINGS first, then the client's preface: roles must still come out right.
    const swapped: Timed[] = [pkts[1]!, pkts[0]!, ...pkts.slice(2)];
    const evs = decode(pcap(swapped));
    assert.deepEqual(
      evs.map((e) => `${e.event}:${e.session}:${'dir' in e ? e.dir : ''}`),
      H2_EVENTS.map((e) => `${e.event}:${e.session}:${'dir' in e ? e.dir : ''}`),
    );
  });

  it('limits hit while decoding are warnings with counters', () => {
    const pkts = h2Exchange();
    const result = decodeCapture(pcap(pkts), { maxTcpBufferedBytes: 4 });
    // The 16-byte tail of the split DATA frame cannot wait; the hole it leaves makes every later client segment
    // (stream 3 HEADERS, the END_STREAM DATA) out of order too.
    const dropped = 16 + (9 + REQ3_BLOCK.length) + 9;
    assert.equal(result.stats.droppedSegments, 3);
    assert.equal(result.stats.droppedBytes, dropped);
    assert.deepEqual(result.warnings, [
      {
        code: 'UT_ERR_LIMIT_EXCEEDED',
        message: `3 out-of-order TCP segments (${dropped} bytes) dropped at the reassembly buffer limit`,
        session: null,
        offset: null,
      },
    ]);
    const gap = result.events.find((e) => e.event === 'error');
    assert.equal(gap?.event === 'error' ? gap.code : '', 'UT_ERR_CAPTURE_GAP');
    const second = new TcpFlow('10.0.0.3', 40000, '10.0.0.2', 8080);
    const two = decodeCapture(pcap([...pkts, [second.client('GET / HTTP/1.1\r\n\r\n'), 20]]), { maxConnections: 1 });
    assert.equal(two.stats.droppedConnections, 0, 'the first connection had closed and made room');
    const open = decodeCapture(pcap([...pkts.slice(0, 10), [second.client('GET / HTTP/1.1\r\n\r\n'), 20]]), { maxConnections: 1 });
    assert.equal(open.stats.droppedConnections, 1);
    assert.deepEqual(open.warnings, [
      { code: 'UT_ERR_LIMIT_EXCEEDED', message: '1 TCP connections not decoded: connection limit reached', session: null, offset: null },
    ]);
  });

  it('an empty capture decodes to nothing', () => {
    const result = decodeCapture(writePcap([], { linkType: 1 }));
    assert.deepEqual(result.events, []);
    assert.equal(result.stats.packets, 0);
  });

  it('RST in the middle closes sessions as tcp-rst', () => {
    const pkts = h2Exchange().slice(0, 12);
    const f = pkts[11]![0];
    pkts.push([{ ...f, payload: Buffer.alloc(0), flags: RST | ACK, seq: f.seq + (f.payload?.length ?? 0) }, 10.5]);
    const evs = decode(pcap(pkts));
    assert.deepEqual(evs.slice(-3), [
      { event: 'end', tMs: 10.5, session: 'c1s1', dir: '->', clean: false, totalBytes: 30, capsules: 2, ignoredBytes: 0 },
      { event: 'end', tMs: 10.5, session: 'c1s1', dir: '<-', clean: false, totalBytes: 12, capsules: 2, ignoredBytes: 0 },
      { event: 'close', tMs: 10.5, session: 'c1s1', reason: 'tcp-rst', detail: null },
    ]);
  });
});

describe('decodeCapture: robustness', () => {
  it('random traffic after an HTTP/2 or HTTP/1.1 opening never throws and keeps the event invariants', () => {
    const opening = fc.constantFrom(
      Buffer.concat([PREFACE, settingsFrame([]), h2Frame(HEADERS, END_HEADERS, 1, REQ1_BLOCK)]),
      Buffer.from(UPGRADE, 'latin1'),
      Buffer.from(PREFACE),
    );
    const chunk = fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.boolean());
    fc.assert(
      fc.property(opening, fc.array(chunk, { maxLength: 12 }), fc.boolean(), (open, chunks, withSwitch) => {
        const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 8080);
        const pkts: Timed[] = f.handshake().map((s): Timed => [s, 0]);
        pkts.push([f.client(open), 1]);
        if (withSwitch) pkts.push([f.server(open[0] === 0x50 ? settingsFrame([]) : Buffer.from(SWITCHING, 'latin1')), 2]);
        let t = 3;
        for (const [fromClient, bytes, structured] of chunks) {
          // Half of the chunks are well-formed DATA frames / capsules so decoding gets past the framing.
          const payload = structured ? (open[0] === 0x50 ? h2Frame(DATA, 0, 1, Buffer.from(bytes)) : Buffer.from(bytes)) : Buffer.from(bytes);
          pkts.push([fromClient ? f.client(payload) : f.server(payload), t++]);
        }
        pkts.push([f.client('', ACK | FIN), t]);
        const result = decodeCapture(pcap(pkts));
        const perSession = new Map<string, string[]>();
        for (const e of result.events) {
          assert.doesNotThrow(() => JSON.stringify(e));
          const list = perSession.get(e.session) ?? [];
          list.push(e.event === 'end' || e.event === 'error' ? `${e.event}${'dir' in e ? e.dir : ''}` : e.event);
          perSession.set(e.session, list);
        }
        for (const [session, list] of perSession) {
          const closes = list.filter((x) => x === 'close').length;
          assert.ok(closes <= 1, `${session}: ${list.join(',')}`);
          if (closes === 1) assert.equal(list[list.length - 1], 'close', `${session}: ${list.join(',')}`);
          assert.ok(list.filter((x) => x === 'end->').length <= 1 && list.filter((x) => x === 'end<-').length <= 1);
        }
      }),
      { numRuns: 150 },
    );
  });
});
