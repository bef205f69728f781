import { Buffer } from 'node:buffer';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import {
  CAPSULE_TYPE_DATAGRAM,
  LEGACY_CAPSULE_TYPES,
  capsuleTypeName,
  encodeCapsule,
  encodeCapsuleHeader,
  isGreaseCapsuleType,
} from '../../../../src/tunnel/codec/capsule.js';

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof UdpTunnelError && err.code === code);
}

describe('capsule: GREASE types (0x29 * N + 0x17)', () => {
  it('recognises reserved values', () => {
    assert.equal(isGreaseCapsuleType(0x17), true); // N = 0
    assert.equal(isGreaseCapsuleType(0x40), true); // N = 1
    assert.equal(isGreaseCapsuleType(0x69), true); // N = 2
    assert.equal(isGreaseCapsuleType(0xa03f), true); // N = 1000
    assert.equal(isGreaseCapsuleType(0xa03fn), true);
    assert.equal(isGreaseCapsuleType(0x91a94863ca8017n), true); // N = 10^15, above 2^53
    assert.equal(isGreaseCapsuleType(0x17n), true);
  });

  it('rejects everything else', () => {
    for (const t of [0, 1, 0x16, 0x18, 0x3f, 0x41, 0x68, 0x6a, 0xa03e, 0xa040, -0x12]) {
      assert.equal(isGreaseCapsuleType(t), false, `0x${t.toString(16)}`);
    }
    assert.equal(isGreaseCapsuleType(0n), false);
    assert.equal(isGreaseCapsuleType(0x18n), false);
    assert.equal(isGreaseCapsuleType(-0x12n), false);
    assert.equal(isGreaseCapsuleType(0x91a94863ca8018n), false);
    assert.equal(isGreaseCapsuleType(1.5), false);
  });

  it('number and bigint forms agree on every safe value', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (t) => {
        assert.equal(isGreaseCapsuleType(t), isGreaseCapsuleType(BigInt(t)));
        assert.equal(isGreaseCapsuleType(t), t >= 0x17 && (t - 0x17) % 0x29 === 0);
      }),
    );
  });
});

describe('capsule: capsuleTypeName', () => {
  it('names DATAGRAM, GREASE, legacy and unknown types', () => {
    assert.equal(CAPSULE_TYPE_DATAGRAM, 0);
    assert.equal(capsuleTypeName(0), 'DATAGRAM');
    assert.equal(capsuleTypeName(0n), 'DATAGRAM');
    assert.equal(capsuleTypeName(0x17), 'GREASE 0x17');
    assert.equal(capsuleTypeName(0x40), 'GREASE 0x40');
    assert.equal(capsuleTypeName(0x91a94863ca8017n), 'GREASE 0x91a94863ca8017');
    assert.equal(capsuleTypeName(0xff37a0), 'LEGACY_DATAGRAM (legacy draft) 0xff37a0');
    assert.equal(capsuleTypeName(0xff37a5), 'LEGACY_DATAGRAM_WITHOUT_CONTEXT (legacy draft) 0xff37a5');
    assert.equal(capsuleTypeName(0xff37a0n), 'LEGACY_DATAGRAM (legacy draft) 0xff37a0');
    assert.equal(capsuleTypeName(0x18), 'UNKNOWN 0x18');
    assert.equal(capsuleTypeName(1), 'UNKNOWN 0x1');
    assert.equal(capsuleTypeName(0x3fffffffffffffffn), 'UNKNOWN 0x3fffffffffffffff');
  });

  it('every legacy type carries its label', () => {
    assert.equal(LEGACY_CAPSULE_TYPES.size, 6);
    for (const [type, label] of LEGACY_CAPSULE_TYPES) {
      assert.equal(capsuleTypeName(type), `${label} (legacy draft) 0x${type.toString(16)}`);
    }
  });
});

describe('capsule: encoding', () => {
  it('encodeCapsuleHeader writes minimal type and length varints', () => {
    assert.equal(encodeCapsuleHeader(0, 0).toString('hex'), '0000');
    assert.equal(encodeCapsuleHeader(0, 63).toString('hex'), '003f');
    assert.equal(encodeCapsuleHeader(0, 64).toString('hex'), '004040');
    assert.equal(encodeCapsuleHeader(0x40, 1).toString('hex'), '404001');
    assert.equal(encodeCapsuleHeader(5n, 2).toString('hex'), '0502');
    assert.equal(encodeCapsuleHeader(0xff37a0, 16384).toString('hex'), '80ff37a080004000');
    assert.equal(encodeCapsuleHeader(0x3fffffffffffffffn, 5).toString('hex'), 'ffffffffffffffff05');
    assert.equal(encodeCapsuleHeader(2 ** 30, 2 ** 30).toString('hex'), 'c000000040000000c000000040000000');
  });

  it('encodeCapsule appends the value', () => {
    assert.equal(encodeCapsule(0x17, Uint8Array.of(1, 2, 3)).toString('hex'), '1703010203');
    assert.equal(encodeCapsule(0, new Uint8Array(0)).toString('hex'), '0000');
    const big = encodeCapsule(0x21, Buffer.alloc(300, 0x5a));
    assert.equal(big.length, 1 + 2 + 300);
    assert.equal(big.subarray(0, 3).toString('hex'), '21412c');
    assert.deepEqual(big.subarray(3), Buffer.alloc(300, 0x5a));
  });

  it('out-of-range types and lengths throw UT_ERR_VARINT_RANGE', () => {
    throwsCode(() => encodeCapsuleHeader(-1, 0), ErrorCodes.VARINT_RANGE);
    throwsCode(() => encodeCapsuleHeader(-1n, 0), ErrorCodes.VARINT_RANGE);
    throwsCode(() => encodeCapsuleHeader(2n ** 62n, 0), ErrorCodes.VARINT_RANGE);
    throwsCode(() => encodeCapsuleHeader(0, -1), ErrorCodes.VARINT_RANGE);
    throwsCode(() => encodeCapsuleHeader(0, 1.5), ErrorCodes.VARINT_RANGE);
    throwsCode(() => encodeCapsuleHeader(0.5, 1), ErrorCodes.VARINT_RANGE);
  });
});
