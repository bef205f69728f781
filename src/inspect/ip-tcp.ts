import type { Buffer } from 'node:buffer';
import { LINKTYPE } from './pcap.js';

/** TCP flag bits (RFC 9293 §3.1). */
export const TCP_FLAG = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

/** One TCP segment pulled out of a captured frame. `payload` is a view into the frame. */
export interface TcpSegment {
  ipVersion: 4 | 6;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  payload: Buffer;
}

/** Why a frame yielded no TCP segment. */
export type SkipReason =
  | 'unsupported-link'
  | 'not-ip'
  | 'not-tcp'
  | 'fragment'
  | 'truncated'
  | 'malformed';

/** Result of decoding one frame. */
export type FrameDecode = { ok: true; segment: TcpSegment } | { ok: false; reason: SkipReason };

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = [0x8100, 0x88a8, 0x9100];
const IPPROTO_TCP = 6;

function skip(reason: SkipReason): FrameDecode {
  return { ok: false, reason };
}

function ipv4Text(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

function ipv6Text(b: Buffer, o: number): string {
  const groups: string[] = [];
  for (let k = 0; k < 8; k++) groups.push(b.readUInt16BE(o + 2 * k).toString(16));
  // RFC 5952 §4.2: compress the longest run (two or more) of zero groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let k = 0; k < 8; ) {
    if (groups[k] !== '0') {
      k++;
      continue;
    }
    let e = k;
    while (e < 8 && groups[e] === '0') e++;
    if (e - k > bestLen && e - k >= 2) {
      bestStart = k;
      bestLen = e - k;
    }
    k = e;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

/** Offset of the network-layer header and its ethertype for a frame of `linkType`, or null. */
function linkPayload(linkType: number, f: Buffer): { off: number; ethertype: number } | null {
  switch (linkType) {
    case LINKTYPE.ETHERNET: {
      if (f.length < 14) return null;
      let off = 12;
      let type = f.readUInt16BE(off);
      while (ETHERTYPE_VLAN.includes(type)) {
        off += 4;
        if (f.length < off + 2) return null;
        type = f.readUInt16BE(off);
      }
      return { off: off + 2, ethertype: type };
    }
    case LINKTYPE.NULL: {
      // The 4-byte address family is in the capturing host's byte order; IPv6 is 10 (Linux), 24, 28 or 30 (BSDs).
      if (f.length < 4) return null;
      const le = f.readUInt32LE(0);
      const fam = le < 0x10000 ? le : f.readUInt32BE(0);
      if (fam === 2) return { off: 4, ethertype: ETHERTYPE_IPV4 };
      if (fam === 10 || fam === 24 || fam === 28 || fam === 30) return { off: 4, ethertype: ETHERTYPE_IPV6 };
      return { off: 4, ethertype: -1 };
    }
    case LINKTYPE.RAW:
    case LINKTYPE.IPV4:
    case LINKTYPE.IPV6: {
      if (f.length < 1) return null;
      const v = f[0]! >> 4;
      return { off: 0, ethertype: v === 4 ? ETHERTYPE_IPV4 : v === 6 ? ETHERTYPE_IPV6 : -1 };
    }
    case LINKTYPE.LINUX_SLL:
      if (f.length < 16) return null;
      return { off: 16, ethertype: f.readUInt16BE(14) };
    case LINKTYPE.LINUX_SLL2:
      if (f.length < 20) return null;
      return { off: 20, ethertype: f.readUInt16BE(0) };
    default:
      return { off: 0, ethertype: -2 };
  }
}

/** Decodes a captured frame down to its TCP segment (IPv4 or IPv6; extension headers skipped). */
export function decodeFrame(linkType: number, frame: Buffer): FrameDecode {
  const link = linkPayload(linkType, frame);
  if (link === null) return skip('truncated');
  if (link.ethertype === -2) return skip('unsupported-link');
  const o = link.off;
  let src: string;
  let dst: string;
  let tcpStart: number;
  let tcpEnd: number;
  let version: 4 | 6;
  if (link.ethertype === ETHERTYPE_IPV4) {
    if (frame.length < o + 20) return skip('truncated');
    if (frame[o]! >> 4 !== 4) return skip('malformed');
    const ihl = (frame[o]! & 0x0f) * 4;
    const total = frame.readUInt16BE(o + 2);
    if (ihl < 20 || total < ihl) return skip('malformed');
    // RFC 791: a fragment (more-fragments set or a non-zero offset) cannot be decoded alone.
    const fragField = frame.readUInt16BE(o + 6);
    if ((fragField & 0x2000) !== 0 || (fragField & 0x1fff) !== 0) return skip('fragment');
    if (frame[o + 9] !== IPPROTO_TCP) return skip('not-tcp');
    version = 4;
    src = ipv4Text(frame, o + 12);
    dst = ipv4Text(frame, o + 16);
    tcpStart = o + ihl;
    // Total length 0 happens with TCP segmentation offload captures: trust the frame length then.
    tcpEnd = total === 0 ? frame.length : Math.min(o + total, frame.length);
    if (total !== 0 && o + total > frame.length) return skip('truncated');
  } else if (link.ethertype === ETHERTYPE_IPV6) {
    if (frame.length < o + 40) return skip('truncated');
    if (frame[o]! >> 4 !== 6) return skip('malformed');
    const payloadLen = frame.readUInt16BE(o + 4);
    let next = frame[o + 6]!;
    version = 6;
    src = ipv6Text(frame, o + 8);
    dst = ipv6Text(frame, o + 24);
    const end = payloadLen === 0 ? frame.length : o + 40 + payloadLen;
    if (end > frame.length) return skip('truncated');
    let p = o + 40;
    // RFC 8200 §4: walk extension headers until TCP.
    for (let hops = 0; next !== IPPROTO_TCP; hops++) {
      if (hops > 16) return skip('malformed');
      if (next === 0 || next === 43 || next === 60) {
        if (end < p + 8) return skip('truncated');
        next = frame[p]!;
        p += (frame[p + 1]! + 1) * 8;
      } else if (next === 44) {
        if (end < p + 8) return skip('truncated');
        const fo = frame.readUInt16BE(p + 2);
        if ((fo & 0xfff8) !== 0 || (fo & 1) !== 0) return skip('fragment');
        next = frame[p]!;
        p += 8;
      } else if (next === 51) {
        if (end < p + 8) return skip('truncated');
        next = frame[p]!;
        p += (frame[p + 1]! + 2) * 4;
      } else {
        return skip('not-tcp');
      }
    }
    tcpStart = p;
    tcpEnd = end;
  } else {
    return skip('not-ip');
  }
  if (tcpEnd < tcpStart + 20) return skip(tcpEnd > frame.length ? 'truncated' : 'malformed');
  const dataOff = (frame[tcpStart + 12]! >> 4) * 4;
  if (dataOff < 20 || tcpStart + dataOff > tcpEnd) return skip('malformed');
  return {
    ok: true,
    segment: {
      ipVersion: version,
      src,
      dst,
      srcPort: frame.readUInt16BE(tcpStart),
      dstPort: frame.readUInt16BE(tcpStart + 2),
      seq: frame.readUInt32BE(tcpStart + 4),
      ack: frame.readUInt32BE(tcpStart + 8),
      flags: frame[tcpStart + 13]!,
      payload: frame.subarray(tcpStart + dataOff, tcpEnd),
    },
  };
}
