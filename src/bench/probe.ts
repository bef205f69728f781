import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';

/**
 * Bench datagram ("probe") layout, all big-endian:
 *
 * | offset | size | field                                                        |
 * |--------|------|--------------------------------------------------------------|
 * | 0      | 4    | magic `UTP1` (0x55545031)                                    |
 * | 4      | 4    | flow id (one per generator socket)                           |
 * | 8      | 8    | sequence number, unsigned, < 2^53 (high 32 bits, low 32 bits)|
 * | 16     | 8    | due time, float64 µs on the generator's monotonic clock      |
 * | 24     | 8    | actual send time, float64 µs on the same clock               |
 * | 32     | ..   | zero padding up to the requested datagram size               |
 *
 * Timestamps are only ever compared with the clock of the thread that wrote them (the echo sends them back),
 * so no clock synchronisation is involved. The due time is when the schedule wanted the datagram sent; latency
 * measured from it is not hidden by generator stalls (coordinated omission).
 */
export const PROBE_MAGIC = 0x55545031;

/** Bytes of the probe header; this is also the smallest allowed bench datagram size (`--size`). */
export const PROBE_HEADER_SIZE = 32;

/** Largest probe: the biggest UDP payload that fits an IPv4 datagram (65535 - 20 - 8), so it works on both families. */
export const MAX_PROBE_SIZE = 65507;

const OFF_MAGIC = 0;
const OFF_FLOW = 4;
const OFF_SEQ_HI = 8;
const OFF_SEQ_LO = 12;
const OFF_DUE = 16;
const OFF_SENT = 24;
const TWO_32 = 0x1_0000_0000;
// Highest value of the upper seq word that keeps seq within Number.MAX_SAFE_INTEGER (2^53 - 1).
const MAX_SEQ_HI = 0x1f_ffff;

/** The header fields of a decoded probe. */
export interface Probe {
  /** Flow id of the generator socket that sent it. */
  flowId: number;
  /** Per-flow sequence number, starting at 0. */
  seq: number;
  /** When the schedule wanted it sent (µs, generator clock). */
  dueUs: number;
  /** When it was actually handed to the socket (µs, generator clock). */
  sentUs: number;
}

/** Throws INVALID_OPTION unless `size` is an integer in PROBE_HEADER_SIZE..MAX_PROBE_SIZE. */
export function validateProbeSize(size: number): void {
  if (!Number.isInteger(size) || size < PROBE_HEADER_SIZE || size > MAX_PROBE_SIZE) {
    throw new UdpTunnelError(
      ErrorCodes.INVALID_OPTION,
      `bench datagram size must be an integer from ${PROBE_HEADER_SIZE} (the probe header) to ${MAX_PROBE_SIZE} bytes, got ${String(size)}`,
      { option: 'size', value: size, min: PROBE_HEADER_SIZE, max: MAX_PROBE_SIZE },
    );
  }
}

/** Allocates a zero-padded probe buffer of `size` bytes, to be filled again and again by encodeProbe. */
export function createProbeBuffer(size: number): Buffer {
  validateProbeSize(size);
  // Zero-filled so padding never carries stale process memory onto the wire.
  return Buffer.alloc(size);
}

/** Writes a probe header into the first PROBE_HEADER_SIZE bytes of `buf` in place (no allocation). */
export function encodeProbe(buf: Buffer, flowId: number, seq: number, dueUs: number, sentUs: number): void {
  if (buf.length < PROBE_HEADER_SIZE) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `probe buffer of ${buf.length} bytes is shorter than the ${PROBE_HEADER_SIZE}-byte header`, {
      length: buf.length,
    });
  }
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `probe sequence number must be a safe non-negative integer, got ${String(seq)}`, { seq });
  }
  buf.writeUInt32BE(PROBE_MAGIC, OFF_MAGIC);
  buf.writeUInt32BE(flowId >>> 0, OFF_FLOW);
  buf.writeUInt32BE(Math.floor(seq / TWO_32), OFF_SEQ_HI);
  buf.writeUInt32BE(seq % TWO_32, OFF_SEQ_LO);
  buf.writeDoubleBE(dueUs, OFF_DUE);
  buf.writeDoubleBE(sentUs, OFF_SENT);
}

/**
 * Reads a probe header into `out` without allocating. Returns false, leaving `out` in an unspecified state,
 * for anything that is not a probe: too short, wrong magic, sequence beyond 2^53-1 or non-finite timestamps.
 */
export function readProbe(buf: Uint8Array, out: Probe): boolean {
  if (buf.length < PROBE_HEADER_SIZE) return false;
  const view = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.readUInt32BE(OFF_MAGIC) !== PROBE_MAGIC) return false;
  const hi = view.readUInt32BE(OFF_SEQ_HI);
  if (hi > MAX_SEQ_HI) return false;
  const dueUs = view.readDoubleBE(OFF_DUE);
  const sentUs = view.readDoubleBE(OFF_SENT);
  if (!Number.isFinite(dueUs) || !Number.isFinite(sentUs)) return false;
  out.flowId = view.readUInt32BE(OFF_FLOW);
  out.seq = hi * TWO_32 + view.readUInt32BE(OFF_SEQ_LO);
  out.dueUs = dueUs;
  out.sentUs = sentUs;
  return true;
}

/** Decodes a probe header into a new object, or null when `buf` is not a probe (see readProbe). */
export function decodeProbe(buf: Uint8Array): Probe | null {
  const out: Probe = { flowId: 0, seq: 0, dueUs: 0, sentUs: 0 };
  return readProbe(buf, out) ? out : null;
}
