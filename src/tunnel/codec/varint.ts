import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../errors.js';

/** Largest value a QUIC variable-length integer can carry (RFC 9000 §16): 2^62 - 1. */
export const VARINT_MAX = (1n << 62n) - 1n;
const TWO_32 = 0x1_0000_0000;

/** Number of bytes the minimal encoding of `value` takes (RFC 9000 §16). */
export function varintLength(value: number): 1 | 2 | 4 | 8 {
  if (value < 0 || !Number.isInteger(value)) {
    throw new UdpTunnelError(ErrorCodes.VARINT_RANGE, `varint value out of range: ${value}`, { value: String(value) });
  }
  if (value <= 63) return 1;
  if (value <= 16383) return 2;
  if (value <= 1073741823) return 4;
  if (value <= Number.MAX_SAFE_INTEGER) return 8;
  throw new UdpTunnelError(ErrorCodes.VARINT_RANGE, `varint value not a safe integer: ${value}`, { value: String(value) });
}

/**
 * Writes `value` minimally at `offset` and returns the offset after it.
 * Values above 2^53-1 must use writeVarintBig; passing one is a programming error.
 */
export function writeVarint(buf: Uint8Array, offset: number, value: number): number {
  const len = varintLength(value);
  switch (len) {
    case 1:
      buf[offset] = value;
      return offset + 1;
    case 2:
      buf[offset] = 0x40 | (value >>> 8);
      buf[offset + 1] = value & 0xff;
      return offset + 2;
    case 4:
      buf[offset] = 0x80 | (value >>> 24);
      buf[offset + 1] = (value >>> 16) & 0xff;
      buf[offset + 2] = (value >>> 8) & 0xff;
      buf[offset + 3] = value & 0xff;
      return offset + 4;
    default: {
      const hi = Math.floor(value / TWO_32);
      const lo = value >>> 0;
      buf[offset] = 0xc0 | (hi >>> 24);
      buf[offset + 1] = (hi >>> 16) & 0xff;
      buf[offset + 2] = (hi >>> 8) & 0xff;
      buf[offset + 3] = hi & 0xff;
      buf[offset + 4] = lo >>> 24;
      buf[offset + 5] = (lo >>> 16) & 0xff;
      buf[offset + 6] = (lo >>> 8) & 0xff;
      buf[offset + 7] = lo & 0xff;
      return offset + 8;
    }
  }
}

/** Writes any value up to 2^62-1 using the 8-byte form when needed. */
export function writeVarintBig(buf: Uint8Array, offset: number, value: bigint): number {
  if (value < 0n || value > VARINT_MAX) {
    throw new UdpTunnelError(ErrorCodes.VARINT_RANGE, `varint value out of range: ${value}`, { value: String(value) });
  }
  if (value <= BigInt(Number.MAX_SAFE_INTEGER)) return writeVarint(buf, offset, Number(value));
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setBigUint64(offset, value | (3n << 62n));
  return offset + 8;
}

/** Encodes `value` minimally into a new Buffer. */
export function encodeVarint(value: number | bigint): Buffer {
  if (typeof value === 'bigint') {
    const n = value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= 0n ? varintLength(Number(value)) : 8;
    const out = Buffer.allocUnsafe(n);
    writeVarintBig(out, 0, value);
    return out;
  }
  const out = Buffer.allocUnsafe(varintLength(value));
  writeVarint(out, 0, value);
  return out;
}

/** Encoded width, in bytes, announced by the first byte of a varint (RFC 9000 §16: the two high bits). */
export function varintWidth(firstByte: number): 1 | 2 | 4 | 8 {
  return (1 << (firstByte >>> 6)) as 1 | 2 | 4 | 8;
}

/**
 * Reads a varint at `offset`. Returns the decoded value, or -1 when fewer than the needed bytes are present.
 * Values above 2^53-1 come back as `Infinity`; use readVarintBig where exact large values matter
 * (a capsule *type* that large is merely unknown; a *length* that large is always over any cap).
 */
export function readVarint(buf: Uint8Array, offset: number): number {
  if (offset >= buf.length) return -1;
  const b0 = buf[offset]!;
  const width = varintWidth(b0);
  if (offset + width > buf.length) return -1;
  switch (width) {
    case 1:
      return b0 & 0x3f;
    case 2:
      return ((b0 & 0x3f) << 8) | buf[offset + 1]!;
    case 4:
      return ((b0 & 0x3f) * 0x100_0000) + ((buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!);
    default: {
      const hi = ((b0 & 0x3f) * 0x100_0000) + ((buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!);
      if (hi >= 0x20_0000) return Infinity; // above 2^53 - 1
      const lo = ((buf[offset + 4]! << 24) >>> 0) + ((buf[offset + 5]! << 16) | (buf[offset + 6]! << 8) | buf[offset + 7]!);
      return hi * TWO_32 + lo;
    }
  }
}

/** Reads a varint exactly as a bigint; returns null when more bytes are needed. */
export function readVarintBig(buf: Uint8Array, offset: number): { value: bigint; length: number } | null {
  if (offset >= buf.length) return null;
  const width = varintWidth(buf[offset]!);
  if (offset + width > buf.length) return null;
  let v = BigInt(buf[offset]! & 0x3f);
  for (let i = 1; i < width; i++) v = (v << 8n) | BigInt(buf[offset + i]!);
  return { value: v, length: width };
}

/** True when the varint at `offset` is longer than its value needs (valid, but notable; RFC 9297 §1.1). */
export function isNonMinimalVarint(buf: Uint8Array, offset: number): boolean {
  const r = readVarintBig(buf, offset);
  if (r === null) return false;
  const min = r.value <= 63n ? 1 : r.value <= 16383n ? 2 : r.value <= 1073741823n ? 4 : 8;
  return r.length > min;
}
