import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { CAPSULE_TYPE_DATAGRAM } from './capsule.js';
import { readVarint, varintLength, varintWidth, writeVarint } from './varint.js';

/** RFC 9298 §5: the largest UDP payload that may be sent with context ID 0 (65535 - 8 byte UDP header). */
export const MAX_UDP_PAYLOAD = 65527;

/**
 * The largest UDP payload IPv4 can carry: RFC 791 §3.1 bounds Total Length at 65535, less a 20-byte IP header and
 * the 8-byte UDP header (RFC 768). Larger ones fit RFC 9298 §5 but the kernel refuses to send them (EMSGSIZE).
 */
export const MAX_UDP_PAYLOAD_IPV4 = 65507;

/** RFC 9298 §4: context ID 0 carries a whole UDP payload. */
export const CONTEXT_ID_UDP = 0;

/** A parsed connect-udp HTTP Datagram payload. */
export interface ConnectUdpDatagram {
  /** Context ID; Infinity when beyond 2^53-1 (an extension we do not speak either way). */
  contextId: number;
  /** The UDP payload (a view into the capsule value). */
  payload: Buffer;
}

/**
 * Parses an HTTP Datagram payload of a connect-udp stream (RFC 9298 §5: Context ID (i), payload).
 * Throws DATAGRAM_MALFORMED when the context id is missing, DATAGRAM_TOO_LARGE for a context-0 payload over 65527 bytes.
 */
export function parseConnectUdpDatagram(value: Buffer): ConnectUdpDatagram {
  const contextId = readVarint(value, 0);
  if (contextId < 0) {
    throw new UdpTunnelError(ErrorCodes.DATAGRAM_MALFORMED, 'DATAGRAM capsule too short to hold a context ID (RFC 9298 §5)', {
      length: value.length,
      rfc: 'RFC 9298 §5',
    });
  }
  const payload = value.subarray(varintWidth(value[0]!));
  if (contextId === CONTEXT_ID_UDP && payload.length > MAX_UDP_PAYLOAD) {
    throw new UdpTunnelError(
      ErrorCodes.DATAGRAM_TOO_LARGE,
      `UDP payload of ${payload.length} bytes exceeds ${MAX_UDP_PAYLOAD} (RFC 9298 §5)`,
      { length: payload.length, limit: MAX_UDP_PAYLOAD, rfc: 'RFC 9298 §5' },
    );
  }
  return { contextId, payload };
}

/**
 * Header bytes that precede a UDP payload of `payloadLength` bytes inside a DATAGRAM capsule:
 * Type 0x00, Length (i), Context ID (i) (RFC 9297 §3.5, RFC 9298 §5).
 */
export function encodeDatagramHeader(payloadLength: number, contextId = CONTEXT_ID_UDP): Buffer {
  const out = Buffer.allocUnsafe(datagramHeaderLengthFor(payloadLength, contextId));
  writeDatagramHeader(out, 0, payloadLength, contextId);
  return out;
}

/** Length of the DATAGRAM capsule header for a payload of this size on context `contextId`. */
export function datagramHeaderLengthFor(payloadLength: number, contextId: number): number {
  const ctxLen = varintLength(contextId);
  return 1 + varintLength(ctxLen + payloadLength) + ctxLen;
}

/** Writes the DATAGRAM capsule header for a payload of `payloadLength` bytes on `contextId`; returns the new offset. */
export function writeDatagramHeader(out: Buffer, offset: number, payloadLength: number, contextId: number): number {
  out[offset] = CAPSULE_TYPE_DATAGRAM;
  const off = writeVarint(out, offset + 1, varintLength(contextId) + payloadLength);
  return writeVarint(out, off, contextId);
}

/** Length of the DATAGRAM capsule header for a context-0 payload of this size. */
export function datagramHeaderLength(payloadLength: number): number {
  return 2 + varintLength(payloadLength + 1);
}

/**
 * Writes a whole context-0 DATAGRAM capsule (header and payload) into `out` at `offset`; returns the new offset.
 * Used to coalesce small datagrams into one write.
 */
export function writeDatagramCapsule(out: Buffer, offset: number, payload: Uint8Array): number {
  out[offset] = CAPSULE_TYPE_DATAGRAM;
  let off = writeVarint(out, offset + 1, payload.length + 1);
  out[off++] = CONTEXT_ID_UDP;
  out.set(payload, off);
  return off + payload.length;
}

/** Encodes a complete context-0 DATAGRAM capsule into a new Buffer. */
export function encodeDatagramCapsule(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(datagramHeaderLength(payload.length) + payload.length);
  writeDatagramCapsule(out, 0, payload);
  return out;
}
