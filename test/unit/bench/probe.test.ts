import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import {
  MAX_PROBE_SIZE,
  PROBE_HEADER_SIZE,
  createProbeBuffer,
  decodeProbe,
  encodeProbe,
  readProbe,
} from '../../../src/bench/probe.js';
import type { Probe } from '../../../src/bench/probe.js';

const invalidOption = (err: unknown): boolean => isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION');

describe('probe format', () => {
  it('has a 32-byte header, which is the minimum size', () => {
    assert.equal(PROBE_HEADER_SIZE, 32);
    assert.equal(createProbeBuffer(32).length, 32);
    assert.throws(() => createProbeBuffer(31), invalidOption);
    assert.throws(() => createProbeBuffer(0), invalidOption);
    assert.throws(() => createProbeBuffer(32.5), invalidOption);
  });

  it('caps the size at the largest IPv4 UDP payload', () => {
    assert.equal(MAX_PROBE_SIZE, 65507);
    assert.equal(createProbeBuffer(65507).length, 65507);
    assert.throws(() => createProbeBuffer(65508), invalidOption);
  });

  it('writes the documented big-endian layout and zero padding', () => {
    const buf = createProbeBuffer(40);
    encodeProbe(buf, 0x01020304, 0x0000000a_0000000b, 1.5, -2);
    assert.deepEqual(
      [...buf],
      [
        0x55, 0x54, 0x50, 0x31, // magic UTP1
        0x01, 0x02, 0x03, 0x04, // flow id
        0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x0b, // seq
        0x3f, 0xf8, 0, 0, 0, 0, 0, 0, // 1.5
        0xc0, 0x00, 0, 0, 0, 0, 0, 0, // -2
        0, 0, 0, 0, 0, 0, 0, 0, // padding
      ],
    );
  });

  it('round-trips header fields, including the largest sequence number', () => {
    const buf = createProbeBuffer(64);
    encodeProbe(buf, 0xffffffff, Number.MAX_SAFE_INTEGER, 123456.789, 123457.25);
    assert.deepEqual(decodeProbe(buf), { flowId: 0xffffffff, seq: Number.MAX_SAFE_INTEGER, dueUs: 123456.789, sentUs: 123457.25 });
  });

  it('round-trips arbitrary values (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.maxSafeNat(),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.integer({ min: PROBE_HEADER_SIZE, max: 256 }),
        (flowId, seq, dueUs, sentUs, size) => {
          const buf = createProbeBuffer(size);
          encodeProbe(buf, flowId, seq, dueUs, sentUs);
          const out: Probe = { flowId: -1, seq: -1, dueUs: -1, sentUs: -1 };
          assert.equal(readProbe(buf, out), true);
          assert.deepEqual(out, { flowId, seq, dueUs, sentUs });
        },
      ),
    );
  });

  it('reuses one buffer: the last encode wins', () => {
    const buf = createProbeBuffer(32);
    encodeProbe(buf, 1, 1, 1, 1);
    encodeProbe(buf, 2, 3, 4, 5);
    assert.deepEqual(decodeProbe(buf), { flowId: 2, seq: 3, dueUs: 4, sentUs: 5 });
  });

  it('rejects a bad sequence number or a buffer shorter than the header when encoding', () => {
    const buf = createProbeBuffer(32);
    assert.throws(() => encodeProbe(buf, 1, -1, 0, 0), invalidOption);
    assert.throws(() => encodeProbe(buf, 1, 1.5, 0, 0), invalidOption);
    assert.throws(() => encodeProbe(buf, 1, 2 ** 53, 0, 0), invalidOption);
    assert.throws(() => encodeProbe(Buffer.alloc(31), 1, 1, 0, 0), invalidOption);
  });

  describe('rejects non-probes', () => {
    const valid = (): Buffer => {
      const b = createProbeBuffer(48);
      encodeProbe(b, 7, 9, 10, 11);
      return b;
    };
    it('accepts the unmodified sample (control)', () => {
      assert.notEqual(decodeProbe(valid()), null);
    });
    it('empty and short buffers', () => {
      assert.equal(decodeProbe(Buffer.alloc(0)), null);
      assert.equal(decodeProbe(valid().subarray(0, 31)), null);
    });
    it('wrong magic', () => {
      const b = valid();
      b[3] = 0x32;
      assert.equal(decodeProbe(b), null);
    });
    it('sequence number beyond 2^53 - 1', () => {
      const b = valid();
      b.writeUInt32BE(0x00200000, 8);
      assert.equal(decodeProbe(b), null);
    });
    it('non-finite timestamps', () => {
      const b = valid();
      b.writeDoubleBE(Number.NaN, 16);
      assert.equal(decodeProbe(b), null);
      const c = valid();
      c.writeDoubleBE(Number.POSITIVE_INFINITY, 24);
      assert.equal(decodeProbe(c), null);
    });
    it('random bytes without the magic (property)', () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 80 }), (bytes) => {
          fc.pre(!(bytes[0] === 0x55 && bytes[1] === 0x54 && bytes[2] === 0x50 && bytes[3] === 0x31));
          assert.equal(decodeProbe(bytes), null);
        }),
      );
    });
    it('decodes a plain Uint8Array view as well as a Buffer', () => {
      const b = valid();
      const view = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      assert.deepEqual(decodeProbe(view), { flowId: 7, seq: 9, dueUs: 10, sentUs: 11 });
    });
  });
});
