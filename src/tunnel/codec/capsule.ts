import { Buffer } from 'node:buffer';
import { varintLength, writeVarint, writeVarintBig } from './varint.js';

/** RFC 9297 §3.5: the DATAGRAM capsule type. */
export const CAPSULE_TYPE_DATAGRAM = 0x00;

/**
 * Capsule types from pre-RFC drafts that peers in the wild still emit; shown with a "legacy" label by inspect.
 * (draft-ietf-masque-h3-datagram: LEGACY_DATAGRAM 0xff37a0, LEGACY_DATAGRAM_WITHOUT_CONTEXT 0xff37a5, and the
 * REGISTER/CLOSE context capsules 0xff37a1..0xff37a4.)
 */
export const LEGACY_CAPSULE_TYPES: ReadonlyMap<number, string> = new Map([
  [0xff37a0, 'LEGACY_DATAGRAM'],
  [0xff37a1, 'LEGACY_REGISTER_DATAGRAM_CONTEXT'],
  [0xff37a2, 'LEGACY_REGISTER_DATAGRAM_NO_CONTEXT'],
  [0xff37a3, 'LEGACY_CLOSE_DATAGRAM_CONTEXT'],
  [0xff37a4, 'LEGACY_DATAGRAM_WITH_CONTEXT'],
  [0xff37a5, 'LEGACY_DATAGRAM_WITHOUT_CONTEXT'],
]);

/** draft-ietf-masque-connect-udp-listen §11.2: COMPRESSION_ASSIGN registers a context ID (codec in bind.ts). */
export const CAPSULE_TYPE_COMPRESSION_ASSIGN = 0x11;
/** draft-ietf-masque-connect-udp-listen §11.2: COMPRESSION_ACK accepts a registration. */
export const CAPSULE_TYPE_COMPRESSION_ACK = 0x12;
/** draft-ietf-masque-connect-udp-listen §11.2: COMPRESSION_CLOSE rejects or ends a registration. */
export const CAPSULE_TYPE_COMPRESSION_CLOSE = 0x13;

/** Capsule types of CONNECT-UDP Bind (draft-ietf-masque-connect-udp-listen §11.2), by value. */
export const BIND_CAPSULE_TYPES: ReadonlyMap<number, string> = new Map([
  [CAPSULE_TYPE_COMPRESSION_ASSIGN, 'COMPRESSION_ASSIGN'],
  [CAPSULE_TYPE_COMPRESSION_ACK, 'COMPRESSION_ACK'],
  [CAPSULE_TYPE_COMPRESSION_CLOSE, 'COMPRESSION_CLOSE'],
]);

/** RFC 9297 §5.4 / RFC 9000 §22.1: reserved GREASE capsule types are 0x29 * N + 0x17. */
export function isGreaseCapsuleType(type: number | bigint): boolean {
  if (typeof type === 'bigint') return type >= 0x17n && (type - 0x17n) % 0x29n === 0n;
  return type >= 0x17 && Number.isSafeInteger(type) && (type - 0x17) % 0x29 === 0;
}

/** Human name of a capsule type: DATAGRAM, COMPRESSION_ASSIGN/ACK/CLOSE, GREASE 0x40, LEGACY_... or UNKNOWN 0x.... */
export function capsuleTypeName(type: number | bigint): string {
  const hex = `0x${type.toString(16)}`;
  if (type === CAPSULE_TYPE_DATAGRAM || type === 0n) return 'DATAGRAM';
  const bind = BIND_CAPSULE_TYPES.get(typeof type === 'number' ? type : Number(type));
  if (bind !== undefined) return bind;
  if (isGreaseCapsuleType(type)) return `GREASE ${hex}`;
  const legacy = LEGACY_CAPSULE_TYPES.get(typeof type === 'number' ? type : Number(type));
  if (legacy !== undefined) return `${legacy} (legacy draft) ${hex}`;
  return `UNKNOWN ${hex}`;
}

/** Encodes a capsule header `Type (i) Length (i)` (RFC 9297 §3.2). */
export function encodeCapsuleHeader(type: number | bigint, length: number): Buffer {
  const typeLen = typeof type === 'bigint' ? (type <= BigInt(Number.MAX_SAFE_INTEGER) ? varintLength(Number(type)) : 8) : varintLength(type);
  const out = Buffer.allocUnsafe(typeLen + varintLength(length));
  const off = typeof type === 'bigint' ? writeVarintBig(out, 0, type) : writeVarint(out, 0, type);
  writeVarint(out, off, length);
  return out;
}

/** Encodes a whole capsule into one new Buffer (for tests, tools and cold paths). */
export function encodeCapsule(type: number | bigint, value: Uint8Array): Buffer {
  const header = encodeCapsuleHeader(type, value.length);
  return Buffer.concat([header, value]);
}
