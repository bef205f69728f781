import { Buffer } from 'node:buffer';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import {
  VARINT_MAX,
  encodeVarint,
  isNonMinimalVarint,
  readVarint,
  readVarintBig,
  varintLength,
  varintWidth,
  writeVarint,
  writeVarintBig,
} from '../../../../src/tunnel/codec/varint.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Asserts that `fn` throws a UdpTunnelError carrying `code`. */
function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof UdpTunnelError && err.code === code);
}

/** Encodes `value` at an explicit width, independently of the codec, to build non-minimal forms. */
function encodeAtWidth(value: bigint, width: 1 | 2 | 4 | 8): Buffer {
  const out = Buffer.alloc(width);
  let v = value;
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  const prefix = { 1: 0x00, 2: 0x40, 4: 0x80, 8: 0xc0 }[width];
  out[0] = out[0]! | prefix;
  return out;
}

const minimalWidth = (v: bigint): 1 | 2 | 4 | 8 => (v <= 63n ? 1 : v <= 16383n ? 2 : v <= 1073741823n ? 4 : 8);

describe('varint: RFC 9000 Appendix A.1 vectors', () => {
  it('c2197c5eff14e88c = 151288809941952652 (bigint exact; number is Infinity)', () => {
    const buf = hex('c2 19 7c 5e ff 14 e8 8c');
    assert.deepEqual(readVarintBig(buf, 0), { value: 151288809941952652n, length: 8 });
    assert.equal(readVarint(buf, 0), Infinity);
    assert.equal(isNonMinimalVarint(buf, 0), false);
    assert.equal(encodeVarint(151288809941952652n).toString('hex'), 'c2197c5eff14e88c');
  });

  it('9d7f3e7d = 494878333', () => {
    const buf = hex('9d 7f 3e 7d');
    assert.equal(readVarint(buf, 0), 494878333);
    assert.deepEqual(readVarintBig(buf, 0), { value: 494878333n, length: 4 });
    assert.equal(isNonMinimalVarint(buf, 0), false);
    assert.equal(encodeVarint(494878333).toString('hex'), '9d7f3e7d');
  });

  it('7bbd = 15293', () => {
    const buf = hex('7b bd');
    assert.equal(readVarint(buf, 0), 15293);
    assert.deepEqual(readVarintBig(buf, 0), { value: 15293n, length: 2 });
    assert.equal(isNonMinimalVarint(buf, 0), false);
    assert.equal(encodeVarint(15293).toString('hex'), '7bbd');
  });

  it('25 = 37', () => {
    const buf = hex('25');
    assert.equal(readVarint(buf, 0), 37);
    assert.deepEqual(readVarintBig(buf, 0), { value: 37n, length: 1 });
    assert.equal(isNonMinimalVarint(buf, 0), false);
    assert.equal(encodeVarint(37).toString('hex'), '25');
  });

  it('4025 = 37: non-minimal encoding accepted and flagged', () => {
    const buf = hex('40 25');
    assert.equal(readVarint(buf, 0), 37);
    assert.deepEqual(readVarintBig(buf, 0), { value: 37n, length: 2 });
    assert.equal(isNonMinimalVarint(buf, 0), true);
  });

  it('vectors read at a non-zero offset', () => {
    const buf = hex('ff ff 9d 7f 3e 7d 00');
    assert.equal(readVarint(buf, 2), 494878333);
    assert.equal(readVarint(buf, 6), 0);
    assert.deepEqual(readVarintBig(buf, 2), { value: 494878333n, length: 4 });
  });
});

describe('varint: width boundaries round trip', () => {
  const cases: Array<{ value: number; width: 1 | 2 | 4 | 8; bytes: string }> = [
    { value: 0, width: 1, bytes: '00' },
    { value: 63, width: 1, bytes: '3f' },
    { value: 64, width: 2, bytes: '4040' },
    { value: 16383, width: 2, bytes: '7fff' },
    { value: 16384, width: 4, bytes: '80004000' },
    { value: 2 ** 30 - 1, width: 4, bytes: 'bfffffff' },
    { value: 2 ** 30, width: 8, bytes: 'c000000040000000' },
    { value: 2 ** 32, width: 8, bytes: 'c000000100000000' },
    { value: Number.MAX_SAFE_INTEGER, width: 8, bytes: 'c01fffffffffffff' },
  ];

  for (const { value, width, bytes } of cases) {
    it(`${value} <-> ${bytes}`, () => {
      assert.equal(varintLength(value), width);
      assert.equal(encodeVarint(value).toString('hex'), bytes);
      assert.equal(encodeVarint(BigInt(value)).toString('hex'), bytes);

      // writeVarint at an offset leaves neighbouring bytes alone.
      const buf = Buffer.alloc(width + 4, 0xee);
      assert.equal(writeVarint(buf, 2, value), 2 + width);
      assert.equal(buf.toString('hex'), `eeee${bytes}eeee`);
      const big = Buffer.alloc(width + 4, 0xee);
      assert.equal(writeVarintBig(big, 2, BigInt(value)), 2 + width);
      assert.equal(big.toString('hex'), `eeee${bytes}eeee`);

      const enc = hex(bytes);
      assert.equal(varintWidth(enc[0]!), width);
      assert.equal(readVarint(enc, 0), value);
      assert.deepEqual(readVarintBig(enc, 0), { value: BigInt(value), length: width });
      assert.equal(isNonMinimalVarint(enc, 0), false);
    });
  }

  it('2^53 and 2^62-1 need the bigint API', () => {
    const two53 = encodeVarint(2n ** 53n);
    assert.equal(two53.toString('hex'), 'c020000000000000');
    assert.equal(readVarint(two53, 0), Infinity);
    assert.deepEqual(readVarintBig(two53, 0), { value: 2n ** 53n, length: 8 });

    assert.equal(VARINT_MAX, 4611686018427387903n);
    const max = encodeVarint(VARINT_MAX);
    assert.equal(max.toString('hex'), 'ffffffffffffffff');
    assert.equal(readVarint(max, 0), Infinity);
    assert.deepEqual(readVarintBig(max, 0), { value: VARINT_MAX, length: 8 });

    const buf = Buffer.alloc(10, 0xee);
    assert.equal(writeVarintBig(buf, 1, VARINT_MAX), 9);
    assert.equal(buf.toString('hex'), 'eeffffffffffffffffee');
  });

  it('varintWidth follows the two high bits of the first byte', () => {
    for (let b = 0; b < 256; b++) {
      assert.equal(varintWidth(b), b < 0x40 ? 1 : b < 0x80 ? 2 : b < 0xc0 ? 4 : 8);
    }
  });
});

describe('varint: encoding out-of-range values throws UT_ERR_VARINT_RANGE', () => {
  const badNumbers = [-1, -0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 62, 2 ** 64];
  for (const v of badNumbers) {
    it(`number ${v}`, () => {
      throwsCode(() => encodeVarint(v), ErrorCodes.VARINT_RANGE);
      throwsCode(() => varintLength(v), ErrorCodes.VARINT_RANGE);
      throwsCode(() => writeVarint(Buffer.alloc(8), 0, v), ErrorCodes.VARINT_RANGE);
    });
  }
  const badBigints = [-1n, -(2n ** 62n), VARINT_MAX + 1n, 2n ** 64n];
  for (const v of badBigints) {
    it(`bigint ${v}`, () => {
      throwsCode(() => encodeVarint(v), ErrorCodes.VARINT_RANGE);
      throwsCode(() => writeVarintBig(Buffer.alloc(8), 0, v), ErrorCodes.VARINT_RANGE);
    });
  }
});

describe('varint: short input', () => {
  // For each width: the first byte announces it, then one byte fewer than needed is present.
  const prefixes: Array<{ width: number; bytes: string }> = [
    { width: 1, bytes: '' },
    { width: 2, bytes: '7b' },
    { width: 4, bytes: '9d7f3e' },
    { width: 8, bytes: 'c2197c5eff14e8' },
  ];
  for (const { width, bytes } of prefixes) {
    it(`readVarint returns -1 and readVarintBig null for a truncated ${width}-byte varint`, () => {
      const buf = hex(bytes);
      assert.equal(readVarint(buf, 0), -1);
      assert.equal(readVarintBig(buf, 0), null);
      assert.equal(isNonMinimalVarint(buf, 0), false);
      // Every shorter prefix is short too.
      for (let n = 0; n < buf.length; n++) {
        assert.equal(readVarint(buf.subarray(0, n), 0), -1);
        assert.equal(readVarintBig(buf.subarray(0, n), 0), null);
      }
    });
  }

  it('reading at or past the end returns -1 / null', () => {
    const buf = hex('25 7b');
    assert.equal(readVarint(buf, 2), -1);
    assert.equal(readVarint(buf, 5), -1);
    assert.equal(readVarint(buf, 1), -1); // 2-byte varint with one byte left
    assert.equal(readVarintBig(buf, 2), null);
  });
});

describe('varint: non-minimal encodings', () => {
  it('every width of every boundary value decodes to the same value', () => {
    const values = [0n, 37n, 63n, 64n, 16383n, 16384n, 2n ** 30n - 1n];
    for (const v of values) {
      for (const w of [1, 2, 4, 8] as const) {
        if (w < minimalWidth(v)) continue;
        const enc = encodeAtWidth(v, w);
        assert.deepEqual(readVarintBig(enc, 0), { value: v, length: w });
        assert.equal(readVarint(enc, 0), Number(v));
        assert.equal(isNonMinimalVarint(enc, 0), w > minimalWidth(v));
      }
    }
  });
});

describe('varint: property round trips', () => {
  it('any bigint in [0, 2^62-1] round trips minimally', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: VARINT_MAX }), (v) => {
        const enc = encodeVarint(v);
        assert.equal(enc.length, minimalWidth(v));
        assert.deepEqual(readVarintBig(enc, 0), { value: v, length: enc.length });
        assert.equal(readVarint(enc, 0), v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Infinity);
        assert.equal(isNonMinimalVarint(enc, 0), false);
        assert.deepEqual(enc, encodeAtWidth(v, minimalWidth(v)));
      }),
      { numRuns: 2000 },
    );
  });

  it('any safe integer round trips through the number API', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), fc.nat(16), (v, pad) => {
        const enc = encodeVarint(v);
        assert.equal(enc.length, varintLength(v));
        assert.deepEqual(enc, encodeVarint(BigInt(v)));
        const buf = Buffer.alloc(pad + enc.length + pad, 0xaa);
        assert.equal(writeVarint(buf, pad, v), pad + enc.length);
        assert.equal(readVarint(buf, pad), v);
        assert.deepEqual(readVarintBig(buf, pad), { value: BigInt(v), length: enc.length });
      }),
      { numRuns: 2000 },
    );
  });

  it('any value at any wider width decodes to the same value and is flagged non-minimal', () => {
    const widthMax = { 1: 63n, 2: 16383n, 4: 1073741823n, 8: VARINT_MAX };
    const arb = fc
      .constantFrom<1 | 2 | 4 | 8>(1, 2, 4, 8)
      .chain((w) => fc.tuple(fc.constant(w), fc.bigInt({ min: 0n, max: widthMax[w] })));
    fc.assert(
      fc.property(arb, ([w, v]) => {
        const enc = encodeAtWidth(v, w);
        assert.deepEqual(readVarintBig(enc, 0), { value: v, length: w });
        assert.equal(readVarint(enc, 0), v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Infinity);
        assert.equal(isNonMinimalVarint(enc, 0), w > minimalWidth(v));
      }),
      { numRuns: 1000 },
    );
  });
});
