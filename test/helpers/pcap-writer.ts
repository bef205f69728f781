import { Buffer } from 'node:buffer';
import { isIPv4 } from 'node:net';

/** TCP flag bits. */
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

/** A TCP segment to synthesize. */
export interface SegmentSpec {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  payload?: Buffer;
}

function sum16(buf: Buffer, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) s += buf.readUInt16BE(i);
  if (buf.length % 2) s += buf[buf.length - 1]! << 8;
  return s;
}

function fold(s: number): number {
  let v = s;
  while (v > 0xffff) v = (v & 0xffff) + Math.floor(v / 0x10000);
  return ~v & 0xffff;
}

function ipv4Bytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), 2 * i));
  return out;
}

function tcpHeader(s: SegmentSpec): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(s.srcPort, 0);
  h.writeUInt16BE(s.dstPort, 2);
  h.writeUInt32BE(s.seq >>> 0, 4);
  h.writeUInt32BE(s.ack >>> 0, 8);
  h[12] = 5 << 4;
  h[13] = s.flags;
  h.writeUInt16BE(65535, 14);
  return h;
}

/** An IPv4 packet carrying the TCP segment (header and TCP checksums filled in). */
export function ipv4Packet(s: SegmentSpec, options: { moreFragments?: boolean; fragmentOffset?: number; protocol?: number } = {}): Buffer {
  const payload = s.payload ?? Buffer.alloc(0);
  const tcp = Buffer.concat([tcpHeader(s), payload]);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + tcp.length, 2);
  ip.writeUInt16BE(((options.moreFragments ? 0x2000 : 0) | (options.fragmentOffset ?? 0)) || 0x4000, 6);
  ip[8] = 64;
  ip[9] = options.protocol ?? 6;
  ipv4Bytes(s.src).copy(ip, 12);
  ipv4Bytes(s.dst).copy(ip, 16);
  ip.writeUInt16BE(fold(sum16(ip)), 10);
  const pseudo = Buffer.concat([ip.subarray(12, 20), Buffer.from([0, 6, tcp.length >> 8, tcp.length & 0xff])]);
  tcp.writeUInt16BE(fold(sum16(tcp, sum16(pseudo))), 16);
  return Buffer.concat([ip, tcp]);
}

/** An IPv6 packet carrying the TCP segment, optionally behind a hop-by-hop and a destination-options header. */
export function ipv6Packet(s: SegmentSpec, options: { extensionHeaders?: boolean } = {}): Buffer {
  const payload = s.payload ?? Buffer.alloc(0);
  const tcp = Buffer.concat([tcpHeader(s), payload]);
  const src = ipv6Bytes(s.src);
  const dst = ipv6Bytes(s.dst);
  const pseudo = Buffer.alloc(40);
  src.copy(pseudo, 0);
  dst.copy(pseudo, 16);
  pseudo.writeUInt32BE(tcp.length, 32);
  pseudo[39] = 6;
  tcp.writeUInt16BE(fold(sum16(tcp, sum16(pseudo))), 16);
  let ext = Buffer.alloc(0);
  let next = 6;
  if (options.extensionHeaders) {
    // Hop-by-hop (8 bytes, PadN) then destination options (16 bytes, PadN), then TCP.
    const dest = Buffer.alloc(16);
    dest[0] = 6;
    dest[1] = 1;
    dest[2] = 1;
    dest[3] = 12;
    const hop = Buffer.alloc(8);
    hop[0] = 60;
    hop[1] = 0;
    hop[2] = 1;
    hop[3] = 4;
    ext = Buffer.concat([hop, dest]);
    next = 0;
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(ext.length + tcp.length, 4);
  ip[6] = next;
  ip[7] = 64;
  src.copy(ip, 8);
  dst.copy(ip, 24);
  return Buffer.concat([ip, ext, tcp]);
}

/** An IP packet for the segment, v4 or v6 by the source address. */
export function ipPacket(s: SegmentSpec, options: { extensionHeaders?: boolean } = {}): Buffer {
  return isIPv4(s.src) ? ipv4Packet(s) : ipv6Packet(s, options);
}

/** Link-layer framings. */
export type Link = 'ethernet' | 'vlan' | 'null-le' | 'null-be' | 'raw' | 'sll' | 'sll2';

/** LINKTYPE number of a framing. */
export function linkTypeOf(link: Link): number {
  return { ethernet: 1, vlan: 1, 'null-le': 0, 'null-be': 0, raw: 101, sll: 113, sll2: 276 }[link];
}

/** Wraps an IP packet in a link-layer header. */
export function frame(link: Link, ip: Buffer): Buffer {
  const v6 = ip[0]! >> 4 === 6;
  const ethertype = v6 ? 0x86dd : 0x0800;
  switch (link) {
    case 'ethernet': {
      const h = Buffer.alloc(14);
      Buffer.from('020000000002', 'hex').copy(h, 0);
      Buffer.from('020000000001', 'hex').copy(h, 6);
      h.writeUInt16BE(ethertype, 12);
      // Ethernet pads short frames to 60 bytes; the decoder must trim by the IP length.
      const f = Buffer.concat([h, ip]);
      return f.length < 60 ? Buffer.concat([f, Buffer.alloc(60 - f.length)]) : f;
    }
    case 'vlan': {
      const h = Buffer.alloc(18);
      h.writeUInt16BE(0x8100, 12);
      h.writeUInt16BE(42, 14);
      h.writeUInt16BE(ethertype, 16);
      return Buffer.concat([h, ip]);
    }
    case 'null-le':
    case 'null-be': {
      const h = Buffer.alloc(4);
      const fam = v6 ? 30 : 2;
      if (link === 'null-le') h.writeUInt32LE(fam, 0);
      else h.writeUInt32BE(fam, 0);
      return Buffer.concat([h, ip]);
    }
    case 'raw':
      return ip;
    case 'sll': {
      const h = Buffer.alloc(16);
      h.writeUInt16BE(0, 0);
      h.writeUInt16BE(772, 2);
      h.writeUInt16BE(6, 4);
      h.writeUInt16BE(ethertype, 14);
      return Buffer.concat([h, ip]);
    }
    case 'sll2': {
      const h = Buffer.alloc(20);
      h.writeUInt16BE(ethertype, 0);
      h.writeUInt32BE(1, 4);
      h.writeUInt16BE(772, 8);
      h[11] = 6;
      return Buffer.concat([h, ip]);
    }
  }
}

/** One captured record. */
export interface CaptureRecord {
  /** Nanoseconds since the epoch. */
  tsNs: bigint;
  data: Buffer;
  /** Original length when different from data.length. */
  originalLength?: number;
}

/** Writes a classic pcap file. */
export function writePcap(
  records: CaptureRecord[],
  options: { linkType: number; nanos?: boolean; bigEndian?: boolean; snaplen?: number },
): Buffer {
  const be = options.bigEndian ?? false;
  const u32 = (b: Buffer, v: number, o: number): void => void (be ? b.writeUInt32BE(v >>> 0, o) : b.writeUInt32LE(v >>> 0, o));
  const u16 = (b: Buffer, v: number, o: number): void => void (be ? b.writeUInt16BE(v, o) : b.writeUInt16LE(v, o));
  const g = Buffer.alloc(24);
  u32(g, options.nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  u16(g, 2, 4);
  u16(g, 4, 6);
  u32(g, options.snaplen ?? 262144, 16);
  u32(g, options.linkType, 20);
  const parts: Buffer[] = [g];
  for (const r of records) {
    const h = Buffer.alloc(16);
    const sec = Number(r.tsNs / 1_000_000_000n);
    const ns = Number(r.tsNs % 1_000_000_000n);
    u32(h, sec, 0);
    u32(h, options.nanos ? ns : Math.floor(ns / 1000), 4);
    u32(h, r.data.length, 8);
    u32(h, r.originalLength ?? r.data.length, 12);
    parts.push(h, r.data);
  }
  return Buffer.concat(parts);
}

/** Writes a pcapng file: one section, one interface, EPB records (or SPB when `simple`). */
export function writePcapng(
  records: CaptureRecord[],
  options: { linkType: number; bigEndian?: boolean; tsresol?: number; simple?: boolean; extraBlocks?: boolean },
): Buffer {
  const be = options.bigEndian ?? false;
  const u32 = (b: Buffer, v: number, o: number): void => void (be ? b.writeUInt32BE(v >>> 0, o) : b.writeUInt32LE(v >>> 0, o));
  const u16 = (b: Buffer, v: number, o: number): void => void (be ? b.writeUInt16BE(v, o) : b.writeUInt16LE(v, o));
  const block = (type: number, body: Buffer): Buffer => {
    const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
    const len = 12 + padded.length;
    const b = Buffer.alloc(len);
    u32(b, type, 0);
    u32(b, len, 4);
    padded.copy(b, 8);
    u32(b, len, len - 4);
    return b;
  };
  const shb = Buffer.alloc(16);
  u32(shb, 0x1a2b3c4d, 0);
  u16(shb, 1, 4);
  u16(shb, 0, 6);
  shb.fill(0xff, 8, 16); // section length unknown
  const parts: Buffer[] = [block(0x0a0d0d0a, shb)];
  let idbBody = Buffer.alloc(8);
  u16(idbBody, options.linkType, 0);
  u32(idbBody, 262144, 4);
  const resol = options.tsresol ?? 6;
  if (options.tsresol !== undefined) {
    const opt = Buffer.alloc(12);
    u16(opt, 9, 0);
    u16(opt, 1, 2);
    opt[4] = resol;
    // opt_endofopt follows at offset 8 (zeros).
    idbBody = Buffer.concat([idbBody, opt]);
  }
  parts.push(block(1, idbBody));
  if (options.extraBlocks) {
    // A name resolution block (type 4) with only the end marker: readers skip blocks they do not need.
    parts.push(block(4, Buffer.alloc(4)));
  }
  const unitsPerSec = resol & 0x80 ? 2n ** BigInt(resol & 0x7f) : 10n ** BigInt(resol);
  for (const r of records) {
    if (options.simple) {
      const body = Buffer.alloc(4);
      u32(body, r.originalLength ?? r.data.length, 0);
      parts.push(block(3, Buffer.concat([body, r.data])));
      continue;
    }
    const ts = (r.tsNs * unitsPerSec) / 1_000_000_000n;
    const body = Buffer.alloc(20);
    u32(body, 0, 0);
    u32(body, Number(ts >> 32n), 4);
    u32(body, Number(ts & 0xffffffffn), 8);
    u32(body, r.data.length, 12);
    u32(body, r.originalLength ?? r.data.length, 16);
    parts.push(block(6, Buffer.concat([body, r.data])));
  }
  return Buffer.concat(parts);
}

/**
 * Builds the segments of one TCP connection, tracking sequence numbers of both sides.
 * `client(...)`/`server(...)` return the next segment and advance that side's sequence number.
 */
export class TcpFlow {
  private seqC: number;
  private seqS: number;
  constructor(
    readonly clientAddr: string,
    readonly clientPort: number,
    readonly serverAddr: string,
    readonly serverPort: number,
    isnClient = 1000,
    isnServer = 5000,
  ) {
    this.seqC = isnClient;
    this.seqS = isnServer;
  }

  /** The three segments of the handshake. */
  handshake(): SegmentSpec[] {
    const syn = this.seg('c', SYN, Buffer.alloc(0), 0);
    this.seqC = (this.seqC + 1) >>> 0;
    const synAck = this.seg('s', SYN | ACK, Buffer.alloc(0), this.seqC);
    this.seqS = (this.seqS + 1) >>> 0;
    const ack = this.seg('c', ACK, Buffer.alloc(0), this.seqS);
    return [syn, synAck, ack];
  }

  /** Next client segment carrying `payload`. */
  client(payload: Buffer | string, flags = ACK | PSH): SegmentSpec {
    const p = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
    const s = this.seg('c', flags, p, this.seqS);
    this.seqC = (this.seqC + p.length + (flags & FIN ? 1 : 0)) >>> 0;
    return s;
  }

  /** Next server segment carrying `payload`. */
  server(payload: Buffer | string, flags = ACK | PSH): SegmentSpec {
    const p = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
    const s = this.seg('s', flags, p, this.seqC);
    this.seqS = (this.seqS + p.length + (flags & FIN ? 1 : 0)) >>> 0;
    return s;
  }

  private seg(who: 'c' | 's', flags: number, payload: Buffer, ack: number): SegmentSpec {
    const c = who === 'c';
    return {
      src: c ? this.clientAddr : this.serverAddr,
      dst: c ? this.serverAddr : this.clientAddr,
      srcPort: c ? this.clientPort : this.serverPort,
      dstPort: c ? this.serverPort : this.clientPort,
      seq: c ? this.seqC : this.seqS,
      ack,
      flags,
      payload,
    };
  }
}
