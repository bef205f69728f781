import { Buffer } from 'node:buffer';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import { CapsuleDecoder } from '../../../../src/tunnel/codec/capsule-decoder.js';
import { encodeCapsule } from '../../../../src/tunnel/codec/capsule.js';
import {
  CONTEXT_ID_UDP,
  MAX_UDP_PAYLOAD,
  datagramHeaderLength,
  encodeDatagramCapsule,
  encodeDatagramHeader,
  parseConnectUdpDatagram,
  writeDatagramCapsule,
} from '../../../../src/tunnel/codec/datagram.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function isCode(code: string, check?: (err: UdpTunnelError) => void): (err: unknown) => boolean {
  return (err: unknown) => {
    if (!(err instanceof UdpTunnelError) || err.code !== code) return false;
    check?.(err);
    return true;
  };
}

const payloadOf = (n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
};

/** Decodes a capsule stream (whole and byte-split) and parses every DATAGRAM as connect-udp. */
function readBack(stream: Buffer, chunkSize: number): Array<{ contextId: number; payload: Buffer }> {
  const out: Array<{ contextId: number; payload: Buffer }> = [];
  const decoder = new CapsuleDecoder((c) => {
    const d = parseConnectUdpDatagram(c.value!);
    out.push({ contextId: d.contextId, payload: Buffer.from(d.payload) });
  });
  for (let i = 0; i < stream.length; i += chunkSize) decoder.push(stream.subarray(i, i + chunkSize));
  decoder.end();
  return out;
}

describe('datagram: constants', () => {
  it('match RFC 9298', () => {
    assert.equal(MAX_UDP_PAYLOAD, 65527);
    assert.equal(CONTEXT_ID_UDP, 0);
  });
});

describe('datagram: parseConnectUdpDatagram', () => {
  it('context 0 with a payload', () => {
    const value = hex('00 68 69');
    const d = parseConnectUdpDatagram(value);
    assert.equal(d.contextId, 0);
    assert.equal(d.payload.toString('hex'), '6869');
    // The payload is a view into the capsule value, not a copy.
    assert.equal(d.payload.buffer, value.buffer);
    assert.equal(d.payload.byteOffset, value.byteOffset + 1);
  });

  it('an empty payload after the context id is a valid zero-length UDP datagram', () => {
    const d = parseConnectUdpDatagram(hex('00'));
    assert.equal(d.contextId, 0);
    assert.equal(d.payload.length, 0);
  });

  it('non-minimal context 0 is still context 0', () => {
    const d = parseConnectUdpDatagram(hex('40 00 aa'));
    assert.equal(d.contextId, 0);
    assert.equal(d.payload.toString('hex'), 'aa');
  });

  it('a missing or truncated context id is UT_ERR_DATAGRAM_MALFORMED', () => {
    assert.throws(
      () => parseConnectUdpDatagram(Buffer.alloc(0)),
      isCode(ErrorCodes.DATAGRAM_MALFORMED, (err) => assert.equal(err.details['length'], 0)),
    );
    assert.throws(
      () => parseConnectUdpDatagram(hex('40')),
      isCode(ErrorCodes.DATAGRAM_MALFORMED, (err) => assert.equal(err.details['length'], 1)),
    );
    assert.throws(() => parseConnectUdpDatagram(hex('c0 00 00 00 00 00 00')), isCode(ErrorCodes.DATAGRAM_MALFORMED));
  });

  it('65527-byte payload is accepted; 65528 is UT_ERR_DATAGRAM_TOO_LARGE', () => {
    const ok = parseConnectUdpDatagram(Buffer.concat([hex('00'), payloadOf(65527)]));
    assert.equal(ok.contextId, 0);
    assert.equal(ok.payload.length, 65527);
    assert.deepEqual(ok.payload, payloadOf(65527));
    assert.throws(
      () => parseConnectUdpDatagram(Buffer.concat([hex('00'), payloadOf(65528)])),
      isCode(ErrorCodes.DATAGRAM_TOO_LARGE, (err) => {
        assert.equal(err.details['length'], 65528);
        assert.equal(err.details['limit'], 65527);
      }),
    );
  });

  it('a non-zero context id is returned with its payload for the caller to drop', () => {
    const two = parseConnectUdpDatagram(hex('02 aa bb'));
    assert.equal(two.contextId, 2);
    assert.equal(two.payload.toString('hex'), 'aabb');

    const wide = parseConnectUdpDatagram(hex('41 2c cc'));
    assert.equal(wide.contextId, 300);
    assert.equal(wide.payload.toString('hex'), 'cc');

    // The 65527 cap belongs to context 0 (RFC 9298 §5); other contexts are an extension's business.
    const big = parseConnectUdpDatagram(Buffer.concat([hex('02'), payloadOf(70000)]));
    assert.equal(big.contextId, 2);
    assert.equal(big.payload.length, 70000);

    const huge = parseConnectUdpDatagram(hex('ff ff ff ff ff ff ff ff 01'));
    assert.equal(huge.contextId, Infinity);
    assert.equal(huge.payload.toString('hex'), '01');
  });

  it('an oversized context-0 datagram arriving through the decoder is rejected by the parser', () => {
    const stream = encodeCapsule(0, Buffer.concat([hex('00'), payloadOf(65528)]));
    assert.throws(() => readBack(stream, 4096), isCode(ErrorCodes.DATAGRAM_TOO_LARGE));
  });
});

describe('datagram: encoders round trip through decoder and parser', () => {
  // Expected capsule header (type 00, Length (i) = payload + 1, context 00) for each size.
  const cases: Array<[number, string]> = [
    [0, '000100'],
    [1, '000200'],
    [62, '003f00'],
    [63, '00404000'],
    [64, '00404100'],
    [1200, '0044b100'],
    [16382, '007fff00'],
    [16383, '008000400000'],
    [65527, '008000fff800'],
  ];

  for (const [size, header] of cases) {
    it(`payload of ${size} bytes`, () => {
      const payload = payloadOf(size);
      const headerLen = header.length / 2;
      assert.equal(datagramHeaderLength(size), headerLen);

      const capsule = encodeDatagramCapsule(payload);
      assert.equal(capsule.length, headerLen + size);
      assert.equal(capsule.subarray(0, headerLen).toString('hex'), header);
      assert.deepEqual(capsule.subarray(headerLen), payload);

      const h = encodeDatagramHeader(size);
      assert.equal(h.toString('hex'), header);
      assert.deepEqual(Buffer.concat([h, payload]), capsule);

      const out = Buffer.alloc(capsule.length + 6, 0xee);
      assert.equal(writeDatagramCapsule(out, 3, payload), 3 + capsule.length);
      assert.deepEqual(out.subarray(3, 3 + capsule.length), capsule);
      assert.equal(out.subarray(0, 3).toString('hex'), 'eeeeee');
      assert.equal(out.subarray(3 + capsule.length).toString('hex'), 'eeeeee');

      for (const chunkSize of [capsule.length, 1000, 7]) {
        const got = readBack(capsule, chunkSize);
        assert.equal(got.length, 1);
        assert.equal(got[0]!.contextId, 0);
        assert.deepEqual(got[0]!.payload, payload);
      }
    });
  }

  it('writeDatagramCapsule coalesces many datagrams into one buffer that decodes in order', () => {
    const sizes = cases.map(([s]) => s);
    const total = sizes.reduce((n, s) => n + datagramHeaderLength(s) + s, 0);
    const out = Buffer.alloc(total);
    let off = 0;
    for (const s of sizes) off = writeDatagramCapsule(out, off, payloadOf(s));
    assert.equal(off, total);
    const got = readBack(out, 1499);
    assert.deepEqual(
      got.map((d) => [d.contextId, d.payload.length]),
      sizes.map((s) => [0, s]),
    );
    got.forEach((d, i) => assert.deepEqual(d.payload, payloadOf(sizes[i]!)));
  });

  it('encodeDatagramHeader with a non-zero context id', () => {
    assert.equal(encodeDatagramHeader(2, 2).toString('hex'), '000302');
    assert.equal(encodeDatagramHeader(62, 300).toString('hex'), '004040412c');
    const payload = payloadOf(5);
    const stream = Buffer.concat([encodeDatagramHeader(5, 300), payload]);
    const got = readBack(stream, 2);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.contextId, 300);
    assert.deepEqual(got[0]!.payload, payload);
  });
});
