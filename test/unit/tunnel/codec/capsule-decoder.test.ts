import { Buffer } from 'node:buffer';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import { encodeCapsule } from '../../../../src/tunnel/codec/capsule.js';
import {
  CapsuleDecoder,
  DEFAULT_MAX_CAPSULE_LENGTH,
  MIN_VALUE_ACCUMULATOR,
  type CapsuleDecoderOptions,
  type DecodedCapsule,
} from '../../../../src/tunnel/codec/capsule-decoder.js';
import { VARINT_MAX } from '../../../../src/tunnel/codec/varint.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Plain, copied view of a delivered capsule (values may be views into chunks the caller could reuse). */
interface Seen {
  type: number | bigint;
  length: number;
  value: string | null;
  offset: number;
  typeWidth: number;
  lengthWidth: number;
}

function snapshot(c: DecodedCapsule): Seen {
  return {
    type: c.type,
    length: c.length,
    value: c.value === null ? null : c.value.toString('hex'),
    offset: c.offset,
    typeWidth: c.typeWidth,
    lengthWidth: c.lengthWidth,
  };
}

/** Feeds `chunks` in order, then ends the stream; returns what was delivered and the decoder. */
function decode(chunks: readonly Buffer[], options?: CapsuleDecoderOptions): { seen: Seen[]; decoder: CapsuleDecoder } {
  const seen: Seen[] = [];
  const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)), options);
  for (const chunk of chunks) decoder.push(chunk);
  decoder.end();
  return { seen, decoder };
}

/** Splits `buf` at the given cut points (any order, duplicates allowed: they make empty chunks). */
function chunkAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

function bytewise(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) out.push(buf.subarray(i, i + 1));
  return out;
}

function isCode(code: string, check?: (err: UdpTunnelError) => void): (err: unknown) => boolean {
  return (err: unknown) => {
    if (!(err instanceof UdpTunnelError) || err.code !== code) return false;
    check?.(err);
    return true;
  };
}

const filler = (n: number, seed: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
};

/** One capsule of the reference stream: its exact bytes and what the decoder must report for it. */
interface Segment {
  bytes: Buffer;
  type: number | bigint;
  value: Buffer;
  headerSize: number;
  typeWidth: number;
  lengthWidth: number;
}

const seg = (header: string, value: Buffer, type: number | bigint, typeWidth: number, lengthWidth: number): Segment => {
  const h = hex(header);
  return { bytes: Buffer.concat([h, value]), type, value, headerSize: h.length, typeWidth, lengthWidth };
};

const SEGMENTS: Segment[] = [
  seg('00 03', hex('00 61 62'), 0, 1, 1), // DATAGRAM, context 0, "ab"
  seg('17 04', hex('de ad be ef'), 0x17, 1, 1), // GREASE N=0
  seg('40 40 02', hex('aa bb'), 0x40, 2, 1), // GREASE N=1
  seg('52 34 40 03', hex('01 02 03'), 0x1234, 2, 2), // unknown type, non-minimal length
  seg('00 00', hex(''), 0, 1, 1), // zero-length DATAGRAM
  seg('21 00', hex(''), 0x21, 1, 1), // zero-length unknown
  seg('40 00 02', hex('00 7f'), 0, 2, 1), // non-minimal type 0 = DATAGRAM (RFC 9297 §1.1)
  seg('ff ff ff ff ff ff ff fe 01', hex('99'), 0x3ffffffffffffffen, 8, 1), // 8-byte huge unknown type
  seg('80 ff 37 a0 02', hex('00 01'), 0xff37a0, 4, 1), // legacy draft type: unknown here
  seg('00 80 00 00 05', hex('00 01 02 03 04'), 0, 1, 4),
  seg('c0 00 00 00 00 00 00 00 01', hex('ff'), 0, 8, 1), // 8-byte non-minimal DATAGRAM type
  seg('00 c0 00 00 00 00 00 00 03', hex('aa bb cc'), 0, 1, 8), // 8-byte length
  seg('00 40 c8', filler(200, 3), 0, 1, 2),
  seg('3f 40 40', filler(64, 9), 0x3f, 1, 2), // unknown 0x3f, 64-byte value skipped
];
const STREAM = Buffer.concat(SEGMENTS.map((s) => s.bytes));
const STARTS: number[] = [];
{
  let off = 0;
  for (const s of SEGMENTS) {
    STARTS.push(off);
    off += s.bytes.length;
  }
}

/** What the decoder must deliver for the reference stream; skipped types report a null value. */
function expected(deliverAll: boolean): Seen[] {
  return SEGMENTS.map((s, i) => ({
    type: s.type,
    length: s.value.length,
    value: deliverAll || s.type === 0 ? s.value.toString('hex') : null,
    offset: STARTS[i]!,
    typeWidth: s.typeWidth,
    lengthWidth: s.lengthWidth,
  }));
}
const EXPECTED = expected(false);
const EXPECTED_SKIPPED = EXPECTED.filter((e) => e.value === null).length;

function assertReference(chunks: readonly Buffer[]): void {
  const { seen, decoder } = decode(chunks);
  assert.deepEqual(seen, EXPECTED);
  assert.equal(decoder.capsules, SEGMENTS.length);
  assert.equal(decoder.skipped, EXPECTED_SKIPPED);
  assert.equal(decoder.position, STREAM.length);
  assert.equal(decoder.atBoundary, true);
  assert.equal(decoder.bufferedBytes, 0);
}

describe('capsule decoder: reference stream under any chunking', () => {
  it('the reference stream is what the test means it to be', () => {
    assert.equal(STREAM.length, 351);
    assert.equal(EXPECTED_SKIPPED, 7);
    assert.deepEqual(STARTS, [0, 5, 11, 16, 23, 25, 27, 32, 42, 49, 59, 69, 81, 284]);
  });

  it('(a) whole stream in one chunk', () => {
    assertReference([STREAM]);
  });

  it('(b) split into two chunks at every split point', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      assertReference(chunkAt(STREAM, [cut]));
    }
  });

  it('(c) one byte at a time', () => {
    assertReference(bytewise(STREAM));
  });

  it('(d) random chunkings', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: STREAM.length }), { maxLength: 60 }), (cuts) => {
        assertReference(chunkAt(STREAM, cuts));
      }),
      { numRuns: 300 },
    );
  });

  it('deliver: () => true returns every value, skipping nothing', () => {
    for (const chunks of [[STREAM], bytewise(STREAM)]) {
      const { seen, decoder } = decode(chunks, { deliver: () => true });
      assert.deepEqual(seen, expected(true));
      assert.equal(decoder.skipped, 0);
      assert.equal(decoder.capsules, SEGMENTS.length);
    }
  });

  it('deliver: () => false skips DATAGRAM too, without buffering', () => {
    const seen: Seen[] = [];
    const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)), { deliver: () => false });
    let maxBuffered = 0;
    for (const chunk of bytewise(STREAM)) {
      decoder.push(chunk);
      maxBuffered = Math.max(maxBuffered, decoder.bufferedBytes);
    }
    decoder.end();
    assert.deepEqual(
      seen,
      EXPECTED.map((e) => ({ ...e, value: null })),
    );
    assert.equal(decoder.skipped, SEGMENTS.length);
    assert.equal(maxBuffered, 8); // the longest partial header: 8-byte type, length byte not yet seen
  });

  it('a value wholly inside one chunk is delivered as a view, not a copy', () => {
    const chunk = hex('00 03 00 61 62');
    let value: Buffer | null = null;
    const decoder = new CapsuleDecoder((c) => {
      value = c.value;
    });
    decoder.push(chunk);
    assert.ok(value !== null);
    const v: Buffer = value;
    assert.equal(v.buffer, chunk.buffer);
    assert.equal(v.byteOffset, chunk.byteOffset + 2);
    assert.equal(v.toString('hex'), '006162');
  });
});

describe('capsule decoder: truncation (RFC 9297 §3.3)', () => {
  const boundaries = new Set([0, ...STARTS.slice(1), STREAM.length]);

  function checkPrefix(p: number, chunks: readonly Buffer[]): void {
    const seen: Seen[] = [];
    const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)));
    for (const chunk of chunks) decoder.push(chunk);
    const complete = EXPECTED.filter((_, i) => STARTS[i]! + SEGMENTS[i]!.bytes.length <= p);
    assert.deepEqual(seen, complete, `prefix ${p}`);
    if (boundaries.has(p)) {
      assert.equal(decoder.atBoundary, true, `prefix ${p}`);
      decoder.end();
      return;
    }
    assert.equal(decoder.atBoundary, false, `prefix ${p}`);
    const idx = STARTS.findLastIndex((s) => s < p);
    const start = STARTS[idx]!;
    const s = SEGMENTS[idx]!;
    assert.throws(
      () => decoder.end(),
      isCode(ErrorCodes.CAPSULE_TRUNCATED, (err) => {
        assert.equal(err.details['offset'], start, `prefix ${p}`);
        assert.equal(err.details['have'], p - start, `prefix ${p}`);
        assert.equal(err.details['need'], p - start >= s.headerSize ? s.bytes.length : undefined, `prefix ${p}`);
      }),
    );
    assert.throws(() => decoder.push(hex('00')), isCode(ErrorCodes.DECODER_FAILED));
  }

  it('every prefix, fed whole: clean at 0 and capsule boundaries, truncated with the right offset elsewhere', () => {
    for (let p = 0; p <= STREAM.length; p++) checkPrefix(p, p === 0 ? [] : [STREAM.subarray(0, p)]);
  });

  it('every prefix, fed one byte at a time', () => {
    for (let p = 0; p <= STREAM.length; p++) checkPrefix(p, bytewise(STREAM.subarray(0, p)));
  });

  it('the count of clean ends equals capsules + 1', () => {
    let clean = 0;
    for (let p = 0; p <= STREAM.length; p++) {
      const decoder = new CapsuleDecoder(() => {});
      decoder.push(STREAM.subarray(0, p));
      try {
        decoder.end();
        clean++;
      } catch (err) {
        assert.ok(err instanceof UdpTunnelError && err.code === ErrorCodes.CAPSULE_TRUNCATED);
      }
    }
    assert.equal(clean, SEGMENTS.length + 1);
  });
});

describe('capsule decoder: many capsules in one chunk', () => {
  it('5000 capsules in one chunk are all delivered in order', () => {
    const parts: Buffer[] = [];
    const want: Array<{ type: number; value: string | null; offset: number }> = [];
    let offset = 0;
    for (let i = 0; i < 5000; i++) {
      const unknown = i % 3 === 2;
      const type = unknown ? 0x100 + (i % 50) : 0;
      const value = unknown ? filler(i % 4, i) : Buffer.concat([Buffer.from([i >> 8, i & 0xff]), filler(i % 9, i)]);
      const c = encodeCapsule(type, value);
      parts.push(c);
      want.push({ type, value: unknown ? null : value.toString('hex'), offset });
      offset += c.length;
    }
    const { seen, decoder } = decode([Buffer.concat(parts)]);
    assert.equal(seen.length, 5000);
    assert.deepEqual(
      seen.map((c) => ({ type: c.type, value: c.value, offset: c.offset })),
      want,
    );
    assert.equal(decoder.capsules, 5000);
    assert.equal(decoder.skipped, 1666);
    assert.equal(decoder.position, offset);
  });
});

describe('capsule decoder: limits', () => {
  it('DEFAULT_MAX_CAPSULE_LENGTH is 65552', () => {
    assert.equal(DEFAULT_MAX_CAPSULE_LENGTH, 65552);
    assert.equal(new CapsuleDecoder(() => {}).maxCapsuleLength, 65552);
  });

  it('declared length 2^62-1 is rejected without buffering', () => {
    const decoder = new CapsuleDecoder(() => assert.fail('nothing is delivered'));
    assert.throws(
      () => decoder.push(hex('00 ff ff ff ff ff ff ff ff 01 02 03')),
      isCode(ErrorCodes.CAPSULE_TOO_LARGE, (err) => {
        assert.deepEqual(err.details, { offset: 0, declared: '4611686018427387903', limit: 65552, type: '0' });
      }),
    );
    assert.equal(decoder.bufferedBytes, 0);
    assert.throws(() => decoder.push(hex('00 00')), isCode(ErrorCodes.DECODER_FAILED));
    assert.throws(() => decoder.push(Buffer.alloc(0)), isCode(ErrorCodes.DECODER_FAILED));
    decoder.end(); // the failure was already reported; ending adds nothing
  });

  it('declared length 2^62-1 after a valid capsule, fed one byte at a time: header-only buffering, right offset', () => {
    const seen: Seen[] = [];
    const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)));
    const bytes = hex('00 03 00 61 62  00 ff ff ff ff ff ff ff ff  aa bb');
    let thrown: unknown = null;
    let at = -1;
    for (let i = 0; i < bytes.length && thrown === null; i++) {
      try {
        decoder.push(bytes.subarray(i, i + 1));
      } catch (err) {
        thrown = err;
        at = i;
      }
      assert.ok(decoder.bufferedBytes <= 16, `buffered ${decoder.bufferedBytes} at byte ${i}`);
    }
    assert.equal(at, 13); // the last byte of the length varint
    assert.ok(thrown instanceof UdpTunnelError && thrown.code === ErrorCodes.CAPSULE_TOO_LARGE);
    assert.equal(thrown.details['offset'], 5);
    assert.equal(thrown.details['declared'], '4611686018427387903');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.value, '006162');
    assert.throws(() => decoder.push(hex('aa')), isCode(ErrorCodes.DECODER_FAILED));
  });

  it('declared length 2^53 (beyond exact numbers) is reported exactly', () => {
    const decoder = new CapsuleDecoder(() => {});
    assert.throws(
      () => decoder.push(hex('21 c0 20 00 00 00 00 00 00')),
      isCode(ErrorCodes.CAPSULE_TOO_LARGE, (err) => {
        assert.equal(err.details['declared'], '9007199254740992');
        assert.equal(err.details['type'], '33');
      }),
    );
  });

  it('exactly maxCapsuleLength is accepted; one more is rejected, for delivered and skipped types', () => {
    const ok = encodeCapsule(0, filler(100, 1));
    const { seen } = decode(bytewise(ok), { maxCapsuleLength: 100 });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.value, filler(100, 1).toString('hex'));

    for (const type of [0, 0x21]) {
      const decoder = new CapsuleDecoder(() => {}, { maxCapsuleLength: 100 });
      decoder.push(encodeCapsule(type, filler(100, 2)));
      assert.throws(
        () => decoder.push(encodeCapsule(type, filler(101, 3))),
        isCode(ErrorCodes.CAPSULE_TOO_LARGE, (err) => {
          assert.deepEqual(err.details, { offset: 103, declared: '101', limit: 100, type: String(type) });
        }),
      );
      assert.throws(() => decoder.push(hex('00 00')), isCode(ErrorCodes.DECODER_FAILED));
    }
  });

  it('default limit: 65552 accepted, 65553 rejected', () => {
    const { seen } = decode([encodeCapsule(0, filler(65552, 4))]);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.length, 65552);
    assert.equal(seen[0]!.value, filler(65552, 4).toString('hex'));

    const decoder = new CapsuleDecoder(() => {});
    assert.throws(
      () => decoder.push(hex('00 80 01 00 11')),
      isCode(ErrorCodes.CAPSULE_TOO_LARGE, (err) => assert.equal(err.details['declared'], '65553')),
    );
  });

  it('maxCapsuleLength 0 allows only empty capsules', () => {
    const { seen } = decode([hex('00 00 17 00')], { maxCapsuleLength: 0 });
    assert.deepEqual(
      seen.map((c) => [c.type, c.value]),
      [
        [0, ''],
        [0x17, null],
      ],
    );
    const decoder = new CapsuleDecoder(() => {}, { maxCapsuleLength: 0 });
    assert.throws(() => decoder.push(hex('00 01 00')), isCode(ErrorCodes.CAPSULE_TOO_LARGE));
  });

  it('a limit that could not hold (NaN, Infinity, negative, fractional) is refused', () => {
    for (const bad of [NaN, Infinity, -1, 1.5, 2 ** 53]) {
      assert.throws(
        () => new CapsuleDecoder(() => {}, { maxCapsuleLength: bad }),
        isCode(ErrorCodes.INVALID_OPTION, (err) => assert.equal(err.details['option'], 'maxCapsuleLength')),
      );
    }
  });

  it('a large skipped capsule fed in pieces never buffers its value', () => {
    const value = filler(65552, 5);
    const stream = Buffer.concat([encodeCapsule(0x21, value), encodeCapsule(0, hex('00 42'))]);
    assert.equal(stream.subarray(0, 5).toString('hex'), '2180010010');
    const seen: Seen[] = [];
    const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)));
    // Header byte by byte, then the value in odd-sized pieces.
    const cuts = [1, 2, 3, 4, 5];
    for (let c = 5 + 997; c < stream.length; c += 997) cuts.push(c);
    let received = 0;
    for (const chunk of chunkAt(stream, cuts)) {
      decoder.push(chunk);
      received += chunk.length;
      assert.ok(decoder.bufferedBytes <= 16, `buffered ${decoder.bufferedBytes} after ${received}`);
      assert.equal(decoder.bufferedBytes, received < 5 ? received : 0);
    }
    decoder.end();
    assert.deepEqual(seen, [
      { type: 0x21, length: 65552, value: null, offset: 0, typeWidth: 1, lengthWidth: 4 },
      { type: 0, length: 2, value: '0042', offset: 65557, typeWidth: 1, lengthWidth: 1 },
    ]);
    assert.equal(decoder.skipped, 1);
  });

  it('a DATAGRAM spanning chunks buffers only the bytes received so far', () => {
    const value = filler(3000, 6);
    const stream = encodeCapsule(0, value);
    assert.equal(stream.subarray(0, 3).toString('hex'), '004bb8');
    const seen: Seen[] = [];
    const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)));
    let received = 0;
    for (const chunk of chunkAt(stream, [1, 2, 3, 4, 704, 1404, 2104, 2804])) {
      decoder.push(chunk);
      received += chunk.length;
      const done = received === stream.length;
      assert.equal(decoder.bufferedBytes, received < 3 ? received : done ? 0 : received - 3, `after ${received}`);
      assert.equal(seen.length, done ? 1 : 0);
    }
    assert.equal(seen[0]!.value, value.toString('hex'));
    decoder.end();
  });
});

/** The accumulator size after `received` value bytes arrived one at a time: 256, then doubling, capped at `declared`. */
function doublingCapacity(received: number, declared: number): number {
  if (received === 0) return 0;
  let c = 256;
  while (c < received) c *= 2;
  return Math.min(c, declared);
}

describe('capsule decoder: one accumulator per partial value', () => {
  it('MIN_VALUE_ACCUMULATOR is 256', () => {
    assert.equal(MIN_VALUE_ACCUMULATOR, 256);
  });

  it('(a) a 65552-byte DATAGRAM trickled one byte at a time: capacity doubles within 2x received, value intact', () => {
    const value = filler(65552, 11);
    const stream = encodeCapsule(0, value);
    assert.equal(stream.subarray(0, 5).toString('hex'), '0080010010');
    const seen: Seen[] = [];
    let delivered: Buffer | null = null;
    const decoder = new CapsuleDecoder((c) => {
      delivered = c.value;
      seen.push(snapshot(c));
    });
    for (let i = 0; i < 5; i++) decoder.push(stream.subarray(i, i + 1));
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.bufferedCapacity, 0);
    let peak = 0;
    let grows = 0;
    for (let received = 1; received <= 60000; received++) {
      const before: number = decoder.bufferedCapacity;
      decoder.push(Buffer.from([stream[4 + received]!]));
      const cap: number = decoder.bufferedCapacity;
      if (cap !== before) grows++;
      assert.equal(decoder.bufferedBytes, received);
      if (cap !== doublingCapacity(received, 65552)) assert.equal(cap, doublingCapacity(received, 65552), `after ${received}`);
      if (cap > Math.max(2 * received, 256) || cap > 65552) assert.fail(`capacity ${cap} after ${received} bytes`);
      peak = Math.max(peak, cap);
    }
    assert.equal(peak, 65536);
    assert.equal(grows, 9, '256, 512, ..., 65536');
    assert.equal(seen.length, 0);
    // The rest in one piece: the accumulator grows to exactly the declared length, not beyond.
    decoder.push(stream.subarray(5 + 60000));
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0], { type: 0, length: 65552, value: value.toString('hex'), offset: 0, typeWidth: 1, lengthWidth: 4 });
    assert.ok(delivered !== null);
    const v: Buffer = delivered;
    assert.equal(v.length, 65552);
    assert.equal(v.buffer.byteLength, 65552, 'the delivered value is the accumulator itself, with no slack');
    assert.equal(decoder.bufferedBytes, 0);
    assert.equal(decoder.bufferedCapacity, 0);
    decoder.end();
  });

  it('(b) one byte of a declared 65552-byte value allocates 256 bytes, not the declared length', () => {
    const decoder = new CapsuleDecoder(() => assert.fail('nothing completes'));
    decoder.push(hex('00 80 01 00 10 00'));
    assert.equal(decoder.bufferedBytes, 1);
    assert.equal(decoder.bufferedCapacity, 256);
    // A larger first piece gets 2x its size as headroom, still far from the declared length.
    const other = new CapsuleDecoder(() => assert.fail('nothing completes'));
    other.push(Buffer.concat([hex('00 80 01 00 10'), filler(1000, 1)]));
    assert.equal(other.bufferedBytes, 1000);
    assert.equal(other.bufferedCapacity, 2000);
    other.push(filler(1500, 2));
    assert.equal(other.bufferedBytes, 2500);
    assert.equal(other.bufferedCapacity, 4000);
    other.push(filler(6000, 3));
    assert.equal(other.bufferedBytes, 8500);
    assert.equal(other.bufferedCapacity, 8500, 'a piece larger than the doubling gets exactly what it needs');
  });

  it('capacity is capped at the declared length, even for a small first piece', () => {
    const seen: Seen[] = [];
    const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)));
    decoder.push(hex('00 0a 00 01 02'));
    assert.equal(decoder.bufferedBytes, 3);
    assert.equal(decoder.bufferedCapacity, 10);
    decoder.push(hex('03 04 05 06 07 08 09  00 40'));
    assert.deepEqual(
      seen.map((c) => c.value),
      ['00010203040506070809'],
    );
    assert.equal(decoder.bufferedBytes, 2, 'the next capsule header, its length varint incomplete');
    assert.equal(decoder.bufferedCapacity, 0);
  });

  it('a value spanning chunks is a copy: reusing an input chunk afterwards does not change it', () => {
    const values: Buffer[] = [];
    const decoder = new CapsuleDecoder((c) => values.push(c.value!));
    const scratch = Buffer.alloc(4);
    hex('00 06 00 aa').copy(scratch);
    decoder.push(scratch);
    scratch.fill(0xee); // the caller reuses its read buffer
    hex('bb cc dd ee').copy(scratch);
    decoder.push(scratch.subarray(0, 3));
    assert.equal(values.length, 0);
    scratch.fill(0x11);
    decoder.push(Buffer.from([0xff]));
    assert.deepEqual(
      values.map((v) => v.toString('hex')),
      ['00aabbccddff'],
    );
  });

  it('a skipped type never allocates an accumulator', () => {
    const decoder = new CapsuleDecoder(() => {});
    decoder.push(hex('21 80 01 00 10'));
    for (let i = 0; i < 3000; i++) {
      decoder.push(hex('5a'));
      if (decoder.bufferedCapacity !== 0) assert.equal(decoder.bufferedCapacity, 0, `after ${i + 1}`);
    }
    assert.equal(decoder.bufferedBytes, 0);
  });

  it('property: chunked decoding equals whole decoding, and capacity stays within max(2 x held, 256)', () => {
    const capsuleArb = fc.record({
      type: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0x3fff })),
      value: fc.uint8Array({ maxLength: 3000 }),
    });
    fc.assert(
      fc.property(
        fc.array(capsuleArb, { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        (list, sizes, all) => {
          const stream = Buffer.concat(list.map((c) => encodeCapsule(c.type, c.value)));
          const options: CapsuleDecoderOptions = all ? { deliver: () => true } : {};
          const whole = decode([stream], options).seen;
          const seen: Seen[] = [];
          const decoder = new CapsuleDecoder((c) => seen.push(snapshot(c)), options);
          let at = 0;
          for (let k = 0; at < stream.length; k++) {
            const n = sizes[k % sizes.length]!;
            decoder.push(stream.subarray(at, at + n));
            at += n;
            const held = decoder.bufferedBytes;
            const cap = decoder.bufferedCapacity;
            assert.ok(cap === 0 || (cap >= held && cap <= Math.max(2 * held, 256) && cap <= 3000), `capacity ${cap}, held ${held}`);
          }
          decoder.end();
          assert.deepEqual(seen, whole);
          assert.deepEqual(
            whole.map((c) => c.value),
            list.map((c) => (all || c.type === 0 ? Buffer.from(c.value).toString('hex') : null)),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('capsule decoder: failure is sticky', () => {
  it('an error thrown by the callback propagates and fails the decoder', () => {
    const boom = new Error('consumer refused');
    const seen: string[] = [];
    const decoder = new CapsuleDecoder((c) => {
      seen.push(c.value!.toString('hex'));
      if (seen.length === 1) throw boom;
    });
    assert.throws(() => decoder.push(hex('00 01 01  00 01 02')), (err) => err === boom);
    assert.deepEqual(seen, ['01']);
    // The unread `00 01 02` is gone; carrying on would misparse, so the decoder refuses.
    assert.throws(() => decoder.push(hex('00 01 03')), isCode(ErrorCodes.DECODER_FAILED));
    assert.deepEqual(seen, ['01']);
  });

  it('a throwing callback on a zero-length capsule assembled across chunks also fails the decoder', () => {
    const decoder = new CapsuleDecoder(() => {
      throw new RangeError('no');
    });
    decoder.push(hex('40'));
    assert.throws(() => decoder.push(hex('00 00')), RangeError);
    assert.throws(() => decoder.push(hex('00 00')), isCode(ErrorCodes.DECODER_FAILED));
  });
});

describe('capsule decoder: properties', () => {
  const typeArb: fc.Arbitrary<number | bigint> = fc.oneof(
    fc.integer({ min: 0, max: 63 }),
    fc.integer({ min: 0, max: 16383 }),
    fc.integer({ min: 0, max: 2 ** 30 - 1 }),
    fc.maxSafeNat(),
    fc.bigInt({ min: 2n ** 53n, max: VARINT_MAX }),
  );
  const listArb = fc.array(fc.record({ type: typeArb, value: fc.uint8Array({ maxLength: 200 }) }), { maxLength: 25 });
  const cutsArb = fc.array(fc.nat(), { maxLength: 30 });

  it('encodeCapsule lists decode back identically under arbitrary chunking', () => {
    fc.assert(
      fc.property(listArb, cutsArb, (list, rawCuts) => {
        const encoded = list.map((c) => encodeCapsule(c.type, c.value));
        const stream = Buffer.concat(encoded);
        const cuts = rawCuts.map((c) => c % (stream.length + 1));
        const { seen, decoder } = decode(chunkAt(stream, cuts), { deliver: () => true });
        let offset = 0;
        const want = list.map((c, i) => {
          const o = offset;
          offset += encoded[i]!.length;
          return { type: c.type, value: Buffer.from(c.value).toString('hex'), offset: o };
        });
        assert.deepEqual(
          seen.map((c) => ({ type: c.type, value: c.value, offset: c.offset })),
          want,
        );
        assert.equal(decoder.capsules, list.length);
        assert.equal(decoder.skipped, 0);
        assert.equal(decoder.position, stream.length);
      }),
      { numRuns: 300 },
    );
  });

  it('with default delivery, only type 0 carries a value and the rest are counted as skipped', () => {
    fc.assert(
      fc.property(listArb, cutsArb, (list, rawCuts) => {
        const stream = Buffer.concat(list.map((c) => encodeCapsule(c.type, c.value)));
        const cuts = rawCuts.map((c) => c % (stream.length + 1));
        const { seen, decoder } = decode(chunkAt(stream, cuts));
        assert.deepEqual(
          seen.map((c) => [c.type, c.value]),
          list.map((c) => [c.type, c.type === 0 ? Buffer.from(c.value).toString('hex') : null]),
        );
        assert.equal(decoder.skipped, list.filter((c) => c.type !== 0).length);
      }),
      { numRuns: 200 },
    );
  });

  it('arbitrary bytes never crash: only coded errors, and buffering stays within the limit', () => {
    const limit = 32;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), cutsArb, (bytes, rawCuts) => {
        const buf = Buffer.from(bytes);
        const decoder = new CapsuleDecoder(() => {}, { maxCapsuleLength: limit, deliver: (t) => t === 0 || t === 1 });
        try {
          for (const chunk of chunkAt(buf, rawCuts.map((c) => c % (buf.length + 1)))) {
            decoder.push(chunk);
            assert.ok(decoder.bufferedBytes <= limit + 16);
            assert.ok(decoder.bufferedCapacity <= limit);
          }
          decoder.end();
          assert.equal(decoder.position, buf.length);
        } catch (err) {
          assert.ok(err instanceof UdpTunnelError, String(err));
          assert.ok(err.code === ErrorCodes.CAPSULE_TOO_LARGE || err.code === ErrorCodes.CAPSULE_TRUNCATED, err.code);
        }
      }),
      { numRuns: 500 },
    );
  });
});
