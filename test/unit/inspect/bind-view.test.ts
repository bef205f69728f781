import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { BindSession, requestsBind } from '../../../src/inspect/bind-view.js';
import { CapsuleView } from '../../../src/inspect/capsule-view.js';
import type { CapsuleEvent, Direction, ErrorEvent, InspectEvent } from '../../../src/inspect/events.js';
import { parseInspectEvent } from '../../../src/inspect/event-parse.js';
import { LiveSessionDecoder } from '../../../src/inspect/live-decoder.js';
import { decodeCapture } from '../../../src/inspect/pcap-decode.js';
import { encodeCapsule } from '../../../src/tunnel/codec/capsule.js';
import { encodeCompressionAck, encodeCompressionAssign, encodeCompressionClose, encodeUncompressedDatagram } from '../../../src/tunnel/codec/bind.js';
import { encodeVarint } from '../../../src/tunnel/codec/varint.js';
import { END_HEADERS, END_STREAM, PREFACE, h2Frame, headerBlock, settingsFrame } from '../../helpers/h2-writer.js';
import { ACK, FIN, TcpFlow, frame, ipPacket, linkTypeOf, writePcap } from '../../helpers/pcap-writer.js';

const assign4 = (id: number, port: number): Buffer => encodeCapsule(0x11, encodeCompressionAssign({ contextId: id, ipVersion: 4, address: '127.0.0.1', port }));
const assign0 = (id: number): Buffer => encodeCapsule(0x11, encodeCompressionAssign({ contextId: id, ipVersion: 0 }));
const ack = (id: number): Buffer => encodeCapsule(0x12, encodeCompressionAck(id));
const close = (id: number): Buffer => encodeCapsule(0x13, encodeCompressionClose(id));
const dgram = (id: number, payload: Buffer): Buffer => encodeCapsule(0, Buffer.concat([encodeVarint(id), payload]));

function feed(bytes: Buffer, dir: Direction, bind?: BindSession): InspectEvent[] {
  const view = new CapsuleView({ session: 's', dir, ...(bind ? { bind } : {}) });
  return JSON.parse(JSON.stringify([...view.push(bytes, 0), ...view.end(0)])) as InspectEvent[];
}

const capsules = (evs: InspectEvent[]): CapsuleEvent[] => evs.filter((e): e is CapsuleEvent => e.event === 'capsule');
const errors = (evs: InspectEvent[]): ErrorEvent[] => evs.filter((e): e is ErrorEvent => e.event === 'error');

describe('CapsuleView: CONNECT-UDP Bind capsules', () => {
  it('reports the fields of ASSIGN, ACK and CLOSE', () => {
    const evs = feed(Buffer.concat([assign4(2, 5353), assign0(4), ack(3), close(2)]), '->');
    const got = capsules(evs).map((c) => ({ typeName: c.typeName, contextId: c.contextId, ipVersion: c.ipVersion, address: c.address, port: c.port }));
    assert.deepEqual(got, [
      { typeName: 'COMPRESSION_ASSIGN', contextId: 2, ipVersion: 4, address: '127.0.0.1', port: 5353 },
      { typeName: 'COMPRESSION_ASSIGN', contextId: 4, ipVersion: 0, address: null, port: null },
      { typeName: 'COMPRESSION_ACK', contextId: 3, ipVersion: undefined, address: undefined, port: undefined },
      { typeName: 'COMPRESSION_CLOSE', contextId: 2, ipVersion: undefined, address: undefined, port: undefined },
    ]);
    assert.deepEqual(errors(evs), []);
    for (const ev of evs) parseInspectEvent(ev);
  });

  it('stops at a malformed value with a BIND_MALFORMED error citing the draft', () => {
    const evs = feed(Buffer.concat([assign0(2), encodeCapsule(0x11, Buffer.from('0205', 'hex')), assign0(6)]), '->');
    assert.equal(capsules(evs).length, 1);
    const [e] = errors(evs);
    assert.equal(e?.code, 'UT_ERR_BIND_MALFORMED');
    assert.equal(e?.offset, 4); // after the 4-byte first capsule
    assert.equal(e?.rfc, 'draft-ietf-masque-connect-udp-listen §3.1');
  });

  it('reports rule violations only when rules are checked', () => {
    const wrongParity = Buffer.concat([assign4(2, 1), assign4(5, 2)]);
    assert.deepEqual(errors(feed(wrongParity, '->')), []);
    const evs = feed(wrongParity, '->', new BindSession({ enabled: false, rules: true, bothDirections: false }));
    assert.equal(errors(evs)[0]?.code, 'UT_ERR_BIND_MALFORMED');
    assert.match(errors(evs)[0]!.reason, /Context ID 5/);
    for (const [bytes, dir, reason] of [
      [Buffer.concat([assign0(2), assign0(2)]), '->', /already registered/],
      [Buffer.concat([assign0(2), assign0(4)]), '->', /uncompressed context 2 is already open/],
      [assign0(1), '<-', /proxy registered an uncompressed/],
      [Buffer.concat([assign4(1, 9), assign4(3, 9)]), '<-', /already open for 127.0.0.1 port 9/],
    ] as const) {
      const e = errors(feed(bytes, dir, new BindSession({ enabled: false, rules: true, bothDirections: false })));
      assert.equal(e.length, 1, String(reason));
      assert.match(e[0]!.reason, reason);
    }
  });

  it('matches ACKs across directions in a session: an ACK without ASSIGN is an error', () => {
    const bind = new BindSession({ enabled: true, rules: true, bothDirections: true });
    assert.deepEqual(errors(feed(assign0(2), '->', bind)), []);
    assert.deepEqual(errors(feed(ack(2), '<-', bind)), []);
    const e = errors(feed(ack(4), '<-', bind));
    assert.equal(e.length, 1);
    assert.match(e[0]!.reason, /COMPRESSION_ACK for Context ID 4/);
  });

  it('shows uncompressed datagrams with their address and port in a bound session', () => {
    const bind = new BindSession({ enabled: true, rules: false, bothDirections: true });
    const udp = encodeUncompressedDatagram({ ipVersion: 6, address: '::1', port: 7 }, Buffer.from('hi'));
    const evs = capsules(feed(Buffer.concat([assign0(2), assign4(4, 53), dgram(2, udp), dgram(4, Buffer.from('yo')), dgram(0, Buffer.from('x'))]), '->', bind));
    assert.deepEqual(
      evs.slice(2).map((c) => ({ target: c.target, payloadLength: c.payloadLength, payloadHex: c.payloadHex })),
      [
        { target: { ipVersion: 6, address: '::1', port: 7, compressed: false }, payloadLength: 2, payloadHex: '6869' },
        { target: { ipVersion: 4, address: '127.0.0.1', port: 53, compressed: true }, payloadLength: 2, payloadHex: '796f' },
        { target: undefined, payloadLength: 1, payloadHex: '78' },
      ],
    );
    // Without Connect-UDP-Bind the same bytes are plain datagrams.
    const plain = capsules(feed(Buffer.concat([assign0(2), dgram(2, udp)]), '->'));
    assert.equal(plain[1]?.target, undefined);
    assert.equal(plain[1]?.payloadLength, udp.length);
  });

  it('reads Connect-UDP-Bind from the request field lines', () => {
    assert.equal(requestsBind([['connect-udp-bind', '?1']]), true);
    assert.equal(requestsBind([['Connect-UDP-Bind', '?1']]), true);
    assert.equal(requestsBind([['connect-udp-bind', '?1'], ['connect-udp-bind', '?1']]), false);
    assert.equal(requestsBind([['connect-udp-bind', '?0']]), false);
    assert.equal(requestsBind([]), false);
  });
});

describe('capture decoder: a bound session', () => {
  const REQ: Array<[string, string]> = [
    [':method', 'CONNECT'],
    [':protocol', 'connect-udp'],
    [':scheme', 'http'],
    [':authority', '127.0.0.1:4433'],
    [':path', '/.well-known/masque/udp/%2A/%2A/'],
    ['capsule-protocol', '?1'],
    ['connect-udp-bind', '?1'],
  ];
  function capture(serverCapsules: Buffer): Buffer {
    const f = new TcpFlow('127.0.0.1', 50000, '127.0.0.1', 4433);
    const udp = encodeUncompressedDatagram({ ipVersion: 4, address: '127.0.0.2', port: 9 }, Buffer.from('ping'));
    const segs = [
      ...f.handshake(),
      f.client(Buffer.concat([PREFACE, settingsFrame([])])),
      f.server(Buffer.concat([settingsFrame([[0x8, 1]]), settingsFrame([], true)])),
      f.client(Buffer.concat([settingsFrame([], true), h2Frame(1, END_HEADERS, 1, headerBlock(REQ))])),
      f.server(h2Frame(1, END_HEADERS, 1, headerBlock([[':status', '200'], ['capsule-protocol', '?1'], ['connect-udp-bind', '?1']]))),
      f.client(h2Frame(0, 0, 1, assign0(2))),
      f.server(h2Frame(0, 0, 1, serverCapsules)),
      f.client(h2Frame(0, END_STREAM, 1, dgram(2, udp))),
      f.server(h2Frame(0, END_STREAM, 1)),
      f.client('', ACK | FIN),
      f.server('', ACK | FIN),
    ];
    return writePcap(
      segs.map((s, i) => ({ tsNs: 1_700_000_000_000_000_000n + BigInt(i) * 1_000_000n, data: frame('ethernet', ipPacket(s)) })),
      { linkType: linkTypeOf('ethernet') },
    );
  }

  it('decodes uncompressed datagrams of a request with Connect-UDP-Bind: ?1', () => {
    const { events } = decodeCapture(capture(ack(2)), { bindRules: true });
    assert.deepEqual(errors(events), []);
    const d = capsules(events).find((c) => c.typeName === 'DATAGRAM');
    assert.deepEqual(d?.target, { ipVersion: 4, address: '127.0.0.2', port: 9, compressed: false });
    assert.equal(d?.payloadHex, Buffer.from('ping').toString('hex'));
  });

  it('reports an ACK without ASSIGN with bindRules, not without', () => {
    assert.deepEqual(errors(decodeCapture(capture(ack(6))).events), []);
    const e = errors(decodeCapture(capture(ack(6)), { bindRules: true }).events);
    assert.equal(e.length, 1);
    assert.equal(e[0]?.code, 'UT_ERR_BIND_MALFORMED');
    assert.equal(e[0]?.dir, '<-');
  });
});

describe('live decoder (relay, tap): a bound session', () => {
  function run(headers: Array<[string, string]>, bindRules: boolean): InspectEvent[] {
    const out: InspectEvent[] = [];
    const d = new LiveSessionDecoder({ bindRules, onEvent: (ev) => out.push(ev) });
    d.request('c1s1', 0, {
      http: '2',
      method: 'CONNECT',
      protocol: 'connect-udp',
      scheme: 'https',
      authority: 'proxy',
      path: '/.well-known/masque/udp/%2A/%2A/',
      headers: [['capsule-protocol', '?1'], ...headers],
    });
    d.bytes('c1s1', '->', assign0(2), 1);
    d.bytes('c1s1', '<-', ack(2), 2);
    d.bytes('c1s1', '->', dgram(2, encodeUncompressedDatagram({ ipVersion: 4, address: '127.0.0.3', port: 53 }, Buffer.from('q'))), 3);
    d.bytes('c1s1', '<-', ack(8), 4);
    d.close('c1s1', 5, 'end-stream', null);
    return JSON.parse(JSON.stringify(out)) as InspectEvent[];
  }

  it('reads Connect-UDP-Bind from the request and shares one context table between the directions', () => {
    const evs = run([['connect-udp-bind', '?1']], true);
    const d = capsules(evs).find((c) => c.typeName === 'DATAGRAM');
    assert.deepEqual(d?.target, { ipVersion: 4, address: '127.0.0.3', port: 53, compressed: false });
    assert.deepEqual(errors(evs).map((e) => [e.dir, e.code]), [['<-', 'UT_ERR_BIND_MALFORMED']]);
  });

  it('without the header or the rules, shows plain datagrams and no rule errors', () => {
    const evs = run([], false);
    assert.equal(capsules(evs).find((c) => c.typeName === 'DATAGRAM')?.target, undefined);
    assert.deepEqual(errors(evs), []);
  });

  it('a session that did not ask for bind: types 0x11-0x13 are unknown there, so a bad value neither stops nor breaks rules', () => {
    const out: InspectEvent[] = [];
    const d = new LiveSessionDecoder({ bindRules: true, onEvent: (ev) => out.push(ev) });
    d.request('c1s1', 0, { http: '2', method: 'CONNECT', protocol: 'connect-udp', scheme: 'https', authority: 'proxy', path: '/.well-known/masque/udp/h/53/', headers: [['capsule-protocol', '?1']] });
    // Unparseable ASSIGN, an ACK for nothing, an odd ID from the client: all fine outside a bound session.
    d.bytes('c1s1', '->', Buffer.concat([encodeCapsule(0x11, Buffer.from('0205', 'hex')), ack(9), assign4(5, 53), dgram(0, Buffer.from('x'))]), 1);
    d.close('c1s1', 2, 'end-stream', null);
    const evs = JSON.parse(JSON.stringify(out)) as InspectEvent[];
    assert.deepEqual(errors(evs), []);
    assert.deepEqual(
      capsules(evs).map((c) => [c.typeName, c.contextId ?? null]),
      [['COMPRESSION_ASSIGN', null], ['COMPRESSION_ACK', 9], ['COMPRESSION_ASSIGN', 5], ['DATAGRAM', 0]],
    );
  });
});
