import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeFrame } from '../../../src/inspect/ip-tcp.js';
import { readCapture } from '../../../src/inspect/pcap.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { ACK, PSH, frame, ipPacket, ipv4Packet, ipv6Packet, linkTypeOf, writePcap, writePcapng } from '../../helpers/pcap-writer.js';
import type { CaptureRecord, Link, SegmentSpec } from '../../helpers/pcap-writer.js';

const BASE_NS = 1_700_000_000_123_456_000n;

const v4: SegmentSpec = { src: '10.1.2.3', dst: '10.9.8.7', srcPort: 40000, dstPort: 8080, seq: 0xdeadbeef, ack: 7, flags: ACK | PSH, payload: Buffer.from('abc') };
const v6: SegmentSpec = { ...v4, src: '2001:db8::1', dst: 'fe80::1:0:0:2' };

function records(link: Link, seg: SegmentSpec): CaptureRecord[] {
  return [
    { tsNs: BASE_NS, data: frame(link, ipPacket(seg)) },
    { tsNs: BASE_NS + 1_500_000n, data: frame(link, ipPacket({ ...seg, payload: Buffer.from('defg') })) },
  ];
}

function codedError(code: string, offset: number) {
  return (e: unknown): boolean => {
    assert.ok(isUdpTunnelError(e, code as 'UT_ERR_CAPTURE_INVALID'), String(e));
    assert.equal(e.details['offset'], offset, e.message);
    return true;
  };
}

describe('inspect/pcap: capture files', () => {
  const links: Link[] = ['ethernet', 'vlan', 'null-le', 'null-be', 'raw', 'sll', 'sll2'];
  const writers: Array<[string, (r: CaptureRecord[], linkType: number) => Buffer]> = [
    ['pcap LE µs', (r, l) => writePcap(r, { linkType: l })],
    ['pcap BE µs', (r, l) => writePcap(r, { linkType: l, bigEndian: true })],
    ['pcap LE ns', (r, l) => writePcap(r, { linkType: l, nanos: true })],
    ['pcap BE ns', (r, l) => writePcap(r, { linkType: l, nanos: true, bigEndian: true })],
    ['pcapng LE', (r, l) => writePcapng(r, { linkType: l })],
    ['pcapng BE', (r, l) => writePcapng(r, { linkType: l, bigEndian: true })],
    ['pcapng ns resolution', (r, l) => writePcapng(r, { linkType: l, tsresol: 9 })],
    ['pcapng 2^-20 resolution, extra blocks', (r, l) => writePcapng(r, { linkType: l, tsresol: 0x80 | 20, bigEndian: true, extraBlocks: true })],
  ];
  for (const [name, write] of writers) {
    for (const link of links) {
      for (const [fam, seg] of [['IPv4', v4], ['IPv6', v6]] as const) {
        it(`${name}, ${link}, ${fam}`, () => {
          const file = readCapture(write(records(link, seg), linkTypeOf(link)));
          assert.equal(file.truncated, false);
          assert.equal(file.packets.length, 2);
          const [a, b] = file.packets;
          // 2^-20 s units cannot express every microsecond; the difference stays within one unit.
          const exact = !name.includes('2^-20');
          const deltaNs = Number(b!.timestampNs - a!.timestampNs);
          if (exact) {
            assert.equal(a!.timestampNs, BASE_NS);
            assert.equal(deltaNs, 1_500_000);
          } else {
            assert.ok(Math.abs(deltaNs - 1_500_000) < 1000, `delta ${deltaNs}`);
          }
          const d = decodeFrame(a!.linkType, a!.data);
          assert.deepEqual(d.ok && { ...d.segment, payload: d.segment.payload.toString() }, {
            ipVersion: fam === 'IPv4' ? 4 : 6,
            src: seg.src,
            dst: seg.dst,
            srcPort: 40000,
            dstPort: 8080,
            seq: 0xdeadbeef,
            ack: 7,
            flags: ACK | PSH,
            payload: 'abc',
          });
          const e = decodeFrame(b!.linkType, b!.data);
          assert.equal(e.ok && e.segment.payload.toString(), 'defg');
        });
      }
    }
  }

  it('pcapng simple packet blocks inherit the previous time (here none: 0)', () => {
    const file = readCapture(writePcapng(records('ethernet', v4), { linkType: 1, simple: true }));
    assert.equal(file.packets.length, 2);
    assert.equal(file.packets[1]!.timestampNs, 0n);
    const d = decodeFrame(file.packets[1]!.linkType, file.packets[1]!.data);
    assert.equal(d.ok && d.segment.payload.toString(), 'defg');
  });

  it('a file cut inside its last record keeps the complete records and says so', () => {
    for (const write of [(r: CaptureRecord[]) => writePcap(r, { linkType: 1 }), (r: CaptureRecord[]) => writePcapng(r, { linkType: 1 })]) {
      const whole = write(records('ethernet', v4));
      const firstOnly = write(records('ethernet', v4).slice(0, 1));
      for (const cut of [firstOnly.length + 3, whole.length - 1]) {
        const file = readCapture(whole.subarray(0, cut));
        assert.equal(file.packets.length, 1);
        assert.equal(file.truncated, true);
        assert.equal(file.truncatedAt, firstOnly.length);
      }
    }
  });

  it('a file too short for its header is CAPTURE_TRUNCATED at byte 0', () => {
    const whole = writePcap(records('ethernet', v4), { linkType: 1 });
    assert.throws(() => readCapture(whole.subarray(0, 10)), codedError('UT_ERR_CAPTURE_TRUNCATED', 0));
    assert.throws(() => readCapture(whole.subarray(0, 2)), codedError('UT_ERR_CAPTURE_TRUNCATED', 0));
    const ng = writePcapng(records('ethernet', v4), { linkType: 1 });
    assert.throws(() => readCapture(ng.subarray(0, 20)), codedError('UT_ERR_CAPTURE_TRUNCATED', 0));
  });

  it('something that is not a capture is CAPTURE_INVALID', () => {
    assert.throws(() => readCapture(Buffer.from('{"event":"capsule"}\n')), codedError('UT_ERR_CAPTURE_INVALID', 0));
  });

  it('corrupt structures are CAPTURE_INVALID with the byte offset', () => {
    const pcap = writePcap(records('ethernet', v4), { linkType: 1 });
    const badLen = Buffer.from(pcap);
    badLen.writeUInt32LE(0x7fffffff, 24 + 8);
    assert.throws(() => readCapture(badLen), codedError('UT_ERR_CAPTURE_INVALID', 24));
    const ng = writePcapng(records('ethernet', v4), { linkType: 1 });
    const firstEpb = 28 + 20; // SHB (28 bytes) + IDB (20 bytes)
    const badTrail = Buffer.from(ng);
    const epbLen = badTrail.readUInt32LE(firstEpb + 4);
    badTrail.writeUInt32LE(epbLen + 4, firstEpb + epbLen - 4);
    assert.throws(() => readCapture(badTrail), codedError('UT_ERR_CAPTURE_INVALID', firstEpb + epbLen - 4));
    const badIface = Buffer.from(ng);
    badIface.writeUInt32LE(3, firstEpb + 8);
    assert.throws(() => readCapture(badIface), codedError('UT_ERR_CAPTURE_INVALID', firstEpb));
    const odd = Buffer.from(ng);
    odd.writeUInt32LE(30, firstEpb + 4);
    assert.throws(() => readCapture(odd), codedError('UT_ERR_CAPTURE_INVALID', firstEpb + 4));
    const bom = Buffer.from(ng);
    bom.writeUInt32LE(0x11223344, 8);
    assert.throws(() => readCapture(bom), codedError('UT_ERR_CAPTURE_INVALID', 8));
  });

  it('never fails other than with a coded error on any prefix or random corruption', () => {
    const files = [writePcap(records('ethernet', v4), { linkType: 1 }), writePcapng(records('sll2', v6), { linkType: 276 })];
    for (const f of files) {
      for (let n = 0; n <= f.length; n++) {
        try {
          const file = readCapture(f.subarray(0, n));
          for (const p of file.packets) decodeFrame(p.linkType, p.data);
        } catch (e) {
          assert.ok(isUdpTunnelError(e), String(e));
        }
      }
    }
    fc.assert(
      fc.property(fc.nat({ max: 1 }), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 6 }), (which, flips) => {
        const f = Buffer.from(files[which]!);
        for (const [pos, val] of flips) f[pos % f.length] = val;
        try {
          const file = readCapture(f);
          for (const p of file.packets) decodeFrame(p.linkType, p.data);
        } catch (e) {
          assert.ok(isUdpTunnelError(e), String(e));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('inspect/ip-tcp: decodeFrame', () => {
  it('trims Ethernet padding using the IP length', () => {
    const f = frame('ethernet', ipv4Packet({ ...v4, payload: Buffer.from('x') }));
    assert.equal(f.length, 60);
    const d = decodeFrame(1, f);
    assert.equal(d.ok && d.segment.payload.toString(), 'x');
  });

  it('walks IPv6 extension headers', () => {
    const d = decodeFrame(101, ipv6Packet(v6, { extensionHeaders: true }));
    assert.equal(d.ok && d.segment.payload.toString(), 'abc');
    assert.equal(d.ok && d.segment.dst, 'fe80::1:0:0:2');
  });

  it('skips what it cannot use, with the reason', () => {
    assert.deepEqual(decodeFrame(1, frame('ethernet', ipv4Packet(v4, { protocol: 17 }))), { ok: false, reason: 'not-tcp' });
    assert.deepEqual(decodeFrame(1, frame('ethernet', ipv4Packet(v4, { moreFragments: true }))), { ok: false, reason: 'fragment' });
    assert.deepEqual(decodeFrame(1, frame('ethernet', ipv4Packet(v4, { fragmentOffset: 10 }))), { ok: false, reason: 'fragment' });
    assert.deepEqual(decodeFrame(147, Buffer.alloc(40)), { ok: false, reason: 'unsupported-link' });
    const arp = frame('ethernet', ipv4Packet(v4));
    arp.writeUInt16BE(0x0806, 12);
    assert.deepEqual(decodeFrame(1, arp), { ok: false, reason: 'not-ip' });
    const cut = ipv4Packet(v4);
    assert.deepEqual(decodeFrame(101, cut.subarray(0, cut.length - 1)), { ok: false, reason: 'truncated' });
    assert.deepEqual(decodeFrame(1, Buffer.alloc(5)), { ok: false, reason: 'truncated' });
  });

  it('prints IPv6 addresses in RFC 5952 form', () => {
    const d = decodeFrame(101, ipv6Packet({ ...v6, src: '2001:db8:0:0:1:0:0:1', dst: '0:0:0:0:0:0:0:1' }));
    assert.equal(d.ok && d.segment.src, '2001:db8::1:0:0:1');
    assert.equal(d.ok && d.segment.dst, '::1');
  });
});
