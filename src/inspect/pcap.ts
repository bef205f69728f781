import type { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';

/** Link-layer header types the decoder understands (tcpdump LINKTYPE_* numbers). */
export const LINKTYPE = {
  NULL: 0,
  ETHERNET: 1,
  RAW: 101,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;

/** One captured frame. `data` is a view into the capture buffer (no copy). */
export interface CapturePacket {
  /** 0-based index among the packets of the file. */
  index: number;
  /** Byte offset of the packet's record/block in the file. */
  fileOffset: number;
  /** Link-layer type of the interface that captured it. */
  linkType: number;
  /** Capture time in nanoseconds since the Unix epoch (exact). */
  timestampNs: bigint;
  /** Captured bytes (possibly fewer than originalLength when the snap length cut them). */
  data: Buffer;
  /** Length of the frame on the wire. */
  originalLength: number;
}

/** Capture file formats. */
export type CaptureFormat = 'pcap' | 'pcapng';

/** A capture file read into packets. */
export interface CaptureFile {
  format: CaptureFormat;
  packets: CapturePacket[];
  /** True when the file ends inside a record: the packets before it are complete, the partial one is dropped. */
  truncated: boolean;
  /** Byte offset of the partial record when truncated, else null. */
  truncatedAt: number | null;
}

/** Largest record a capture may declare; bigger is treated as corruption rather than allocated or trusted. */
export const MAX_CAPTURE_RECORD = 16 * 1024 * 1024;

const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;
const PCAPNG_IDB = 1;
const PCAPNG_PB = 2;
const PCAPNG_SPB = 3;
const PCAPNG_EPB = 6;

function corrupt(message: string, offset: number): never {
  throw new UdpTunnelError(ErrorCodes.CAPTURE_INVALID, `capture file corrupt at byte ${offset}: ${message}`, { offset });
}

function truncatedHeader(message: string, offset: number): never {
  throw new UdpTunnelError(ErrorCodes.CAPTURE_TRUNCATED, `capture file truncated at byte ${offset}: ${message}`, { offset });
}

/** Detects the format from the first bytes; null when neither pcap nor pcapng. */
export function detectCaptureFormat(buf: Buffer): CaptureFormat | null {
  if (buf.length < 4) return null;
  const be = buf.readUInt32BE(0);
  const le = buf.readUInt32LE(0);
  if (be === PCAPNG_SHB) return 'pcapng';
  if (be === PCAP_MAGIC_US || be === PCAP_MAGIC_NS || le === PCAP_MAGIC_US || le === PCAP_MAGIC_NS) return 'pcap';
  return null;
}

/**
 * Reads a classic pcap or a pcapng capture. Throws UdpTunnelError CAPTURE_INVALID (with details.offset) for an
 * unknown format or a corrupt structure, CAPTURE_TRUNCATED when even the file header is incomplete. A file cut inside
 * its last record yields the records before it with `truncated: true`.
 */
export function readCapture(buf: Buffer): CaptureFile {
  const format = detectCaptureFormat(buf);
  if (format === null) {
    if (buf.length < 4) truncatedHeader(`${buf.length} bytes is too short for a capture file header`, 0);
    corrupt(`not a pcap or pcapng file (starts with 0x${buf.subarray(0, 4).toString('hex')})`, 0);
  }
  return format === 'pcap' ? readPcap(buf) : readPcapng(buf);
}

function readPcap(buf: Buffer): CaptureFile {
  if (buf.length < 24) truncatedHeader(`pcap global header needs 24 bytes, file has ${buf.length}`, 0);
  const le = buf.readUInt32LE(0) === PCAP_MAGIC_US || buf.readUInt32LE(0) === PCAP_MAGIC_NS;
  const magic = le ? buf.readUInt32LE(0) : buf.readUInt32BE(0);
  const nanos = magic === PCAP_MAGIC_NS;
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const snaplen = u32(16);
  // The upper bits of the link-type field carry FCS information; the link type is the low 16 bits.
  const linkType = u32(20) & 0xffff;
  const limit = Math.min(Math.max(snaplen, 262144), MAX_CAPTURE_RECORD);
  const packets: CapturePacket[] = [];
  let off = 24;
  while (off < buf.length) {
    if (buf.length - off < 16) return { format: 'pcap', packets, truncated: true, truncatedAt: off };
    const sec = u32(off);
    const frac = u32(off + 4);
    const incl = u32(off + 8);
    const orig = u32(off + 12);
    if (incl > limit) corrupt(`record declares ${incl} captured bytes (limit ${limit})`, off);
    if (frac >= (nanos ? 1_000_000_000 : 1_000_000)) corrupt(`record timestamp fraction ${frac} out of range`, off);
    if (buf.length - off - 16 < incl) return { format: 'pcap', packets, truncated: true, truncatedAt: off };
    packets.push({
      index: packets.length,
      fileOffset: off,
      linkType,
      timestampNs: BigInt(sec) * 1_000_000_000n + BigInt(nanos ? frac : frac * 1000),
      data: buf.subarray(off + 16, off + 16 + incl),
      originalLength: orig,
    });
    off += 16 + incl;
  }
  return { format: 'pcap', packets, truncated: false, truncatedAt: null };
}

interface PcapngInterface {
  linkType: number;
  snaplen: number;
  /** Timestamp units per second as a divisor: ns = ts * 1e9 / unitsPerSecond. */
  unitsPerSecond: bigint;
  offsetSeconds: bigint;
}

function readPcapng(buf: Buffer): CaptureFile {
  const packets: CapturePacket[] = [];
  let interfaces: PcapngInterface[] = [];
  let le = true;
  let off = 0;
  let lastTs = 0n;
  const u16 = (o: number): number => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const result = (truncatedAt: number | null): CaptureFile => ({ format: 'pcapng', packets, truncated: truncatedAt !== null, truncatedAt });
  while (off < buf.length) {
    const isFirst = off === 0;
    if (buf.length - off < 12) {
      if (isFirst) truncatedHeader('section header block incomplete', off);
      return result(off);
    }
    const blockType = buf.readUInt32BE(off) === PCAPNG_SHB ? PCAPNG_SHB : u32(off);
    if (blockType === PCAPNG_SHB) {
      // The byte-order magic decides how this section (including this block's length) is read.
      const bom = buf.readUInt32LE(off + 8);
      if (bom === PCAPNG_BOM) le = true;
      else if (buf.readUInt32BE(off + 8) === PCAPNG_BOM) le = false;
      else corrupt(`section header byte-order magic 0x${buf.subarray(off + 8, off + 12).toString('hex')} is not 1a2b3c4d`, off + 8);
      interfaces = [];
    } else if (isFirst) {
      corrupt('pcapng file does not start with a section header block', off);
    }
    const blockLen = u32(off + 4);
    if (blockLen < 12 || blockLen % 4 !== 0) corrupt(`block length ${blockLen} is not a multiple of 4 of at least 12`, off + 4);
    if (blockLen > MAX_CAPTURE_RECORD) corrupt(`block length ${blockLen} exceeds ${MAX_CAPTURE_RECORD}`, off + 4);
    if (blockLen > buf.length - off) {
      if (blockType === PCAPNG_SHB && isFirst) truncatedHeader('section header block incomplete', off);
      return result(off);
    }
    if (u32(off + blockLen - 4) !== blockLen) {
      corrupt(`trailing block length ${u32(off + blockLen - 4)} differs from the leading ${blockLen}`, off + blockLen - 4);
    }
    const body = off + 8;
    const bodyEnd = off + blockLen - 4;
    switch (blockType) {
      case PCAPNG_SHB:
        if (bodyEnd - body < 16) corrupt('section header block too short', off);
        break;
      case PCAPNG_IDB: {
        if (bodyEnd - body < 8) corrupt('interface description block too short', off);
        const iface: PcapngInterface = { linkType: u16(body), snaplen: u32(body + 4), unitsPerSecond: 1_000_000n, offsetSeconds: 0n };
        readOptions(buf, body + 8, bodyEnd, u16, (code, at, len) => {
          if (code === 9 && len >= 1) {
            // pcapng if_tsresol: high bit clear = 10^-v seconds, set = 2^-v seconds.
            const v = buf[at]!;
            const exp = BigInt(v & 0x7f);
            if (exp > 60n) corrupt(`if_tsresol ${v} out of range`, at);
            iface.unitsPerSecond = v & 0x80 ? 1n << exp : 10n ** exp;
          } else if (code === 14 && len >= 8) {
            iface.offsetSeconds = le ? buf.readBigInt64LE(at) : buf.readBigInt64BE(at);
          }
        });
        interfaces.push(iface);
        break;
      }
      case PCAPNG_EPB:
      case PCAPNG_PB: {
        if (bodyEnd - body < 20) corrupt('packet block too short', off);
        const ifId = blockType === PCAPNG_EPB ? u32(body) : u16(body);
        const iface = interfaces[ifId];
        if (iface === undefined) corrupt(`packet block names interface ${ifId}, which was not described`, off);
        const ts = (BigInt(u32(body + 4)) << 32n) | BigInt(u32(body + 8));
        const capLen = u32(body + 12);
        const origLen = u32(body + 16);
        if (capLen > bodyEnd - body - 20) corrupt(`packet block captured length ${capLen} exceeds the block`, off + 20);
        lastTs = (ts * 1_000_000_000n) / iface.unitsPerSecond + iface.offsetSeconds * 1_000_000_000n;
        packets.push({
          index: packets.length,
          fileOffset: off,
          linkType: iface.linkType,
          timestampNs: lastTs,
          data: buf.subarray(body + 20, body + 20 + capLen),
          originalLength: origLen,
        });
        break;
      }
      case PCAPNG_SPB: {
        if (bodyEnd - body < 4) corrupt('simple packet block too short', off);
        const iface = interfaces[0];
        if (iface === undefined) corrupt('simple packet block before any interface description', off);
        const origLen = u32(body);
        let capLen = Math.min(origLen, bodyEnd - body - 4);
        if (iface.snaplen > 0) capLen = Math.min(capLen, iface.snaplen);
        // A simple packet block has no timestamp; it inherits the previous packet's time.
        packets.push({
          index: packets.length,
          fileOffset: off,
          linkType: iface.linkType,
          timestampNs: lastTs,
          data: buf.subarray(body + 4, body + 4 + capLen),
          originalLength: origLen,
        });
        break;
      }
      default:
        // Other blocks (name resolution, statistics, custom, ...) carry nothing the decoder needs.
        break;
    }
    off += blockLen;
  }
  return result(null);
}

function readOptions(
  buf: Buffer,
  from: number,
  to: number,
  u16: (o: number) => number,
  onOption: (code: number, at: number, len: number) => void,
): void {
  let o = from;
  while (o + 4 <= to) {
    const code = u16(o);
    const len = u16(o + 2);
    if (code === 0) return; // opt_endofopt
    if (o + 4 + len > to) corrupt(`option ${code} of ${len} bytes runs past its block`, o);
    onOption(code, o + 4, len);
    o += 4 + len + ((4 - (len % 4)) % 4);
  }
}
