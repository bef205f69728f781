/**
 * Codec of CONNECT-UDP Bind (draft-ietf-masque-connect-udp-listen, "Proxying Bound UDP in HTTP"): the
 * COMPRESSION_ASSIGN / ACK / CLOSE capsule values, the uncompressed datagram payload, and the Connect-UDP-Bind and
 * Proxy-Public-Address header values. Pure: no sockets, no state (bind-contexts.ts tracks the contexts).
 */
import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { readVarint, varintLength, varintWidth, writeVarint } from './varint.js';

/** The draft this module implements, as cited in error details. */
export const BIND_DRAFT = 'draft-ietf-masque-connect-udp-listen';

export { CAPSULE_TYPE_COMPRESSION_ACK, CAPSULE_TYPE_COMPRESSION_ASSIGN, CAPSULE_TYPE_COMPRESSION_CLOSE } from './capsule.js';

/** The Connect-UDP-Bind header field name (draft §6), lowercase as HTTP/2 carries it. */
export const CONNECT_UDP_BIND_HEADER = 'connect-udp-bind';
/** The Proxy-Public-Address response header field name (draft §7), lowercase. */
export const PROXY_PUBLIC_ADDRESS_HEADER = 'proxy-public-address';

/** Longest header value the parsers below look at; longer ones are refused with a reason. */
export const MAX_BIND_HEADER_LENGTH = 4096;
/** Most addresses a Proxy-Public-Address value may list before it is refused. */
export const MAX_PUBLIC_ADDRESSES = 16;

/** An IP address and UDP port carried by a bind capsule or datagram. */
export interface BindTarget {
  /** 4 or 6. */
  ipVersion: 4 | 6;
  /** The address in text form: dotted decimal, or RFC 5952 IPv6 (lowercase, longest zero run as `::`). */
  address: string;
  /** UDP port 0..65535. */
  port: number;
}

/** A decoded COMPRESSION_ASSIGN value: an uncompressed registration (ipVersion 0) or a compressed one with a target. */
export type CompressionAssign = { contextId: number; ipVersion: 0 } | ({ contextId: number } & BindTarget);

/** A decoded uncompressed datagram payload (the bytes after the context ID). */
export interface UncompressedDatagram extends BindTarget {
  /** The UDP payload (a view into the input). */
  payload: Buffer;
}

function malformed(rule: string, section: string, message: string, extra: { contextId?: number; length?: number } = {}): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.BIND_MALFORMED, `${message} (${BIND_DRAFT} ${section})`, {
    rule,
    rfc: `${BIND_DRAFT} ${section}`,
    ...(extra.contextId !== undefined ? { contextId: String(extra.contextId) } : {}),
    ...(extra.length !== undefined ? { length: extra.length } : {}),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// IP addresses (text <-> bytes), kept here so the codec needs no socket module.

const DEC_OCTET = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses dotted-decimal IPv4 (RFC 3986 §3.2.2 IPv4address: no leading zeros); null when it is not one. */
export function parseIpv4(text: string): Buffer | null {
  if (text.length > 15) return null;
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => DEC_OCTET.test(p))) return null;
  return Buffer.from(parts.map(Number));
}

/** Parses an IPv6 address (RFC 4291 §2.2 text forms, no zone); null when it is not one. */
export function parseIpv6(text: string): Buffer | null {
  if (text.length < 2 || text.length > 45) return null;
  let s = text;
  let tail4: Buffer | null = null;
  const lastColon = s.lastIndexOf(':');
  if (lastColon < 0) return null;
  if (s.slice(lastColon + 1).includes('.')) {
    tail4 = parseIpv4(s.slice(lastColon + 1));
    if (tail4 === null) return null;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const groupsOf = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN));
  const dbl = s.indexOf('::');
  let groups: number[];
  if (dbl < 0) {
    groups = groupsOf(s);
    if (groups.length !== 8) return null;
  } else {
    if (s.indexOf('::', dbl + 1) >= 0) return null;
    const head = groupsOf(s.slice(0, dbl));
    const tail = groupsOf(s.slice(dbl + 2));
    if (head.length + tail.length > 7) return null;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  if (groups.some((g) => Number.isNaN(g))) return null;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (tail4 !== null) tail4.copy(out, 12);
  return out;
}

/** Formats 4 or 16 address bytes as text (IPv6 per RFC 5952 §4: lowercase, longest run of 2+ zero groups as `::`). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestAt < 0) return hex(groups);
  return `${hex(groups.slice(0, bestAt))}::${hex(groups.slice(bestAt + bestLen))}`;
}

/** The bytes of a target's address, checked against its IP version; throws BIND_MALFORMED when they disagree. */
function addressBytes(target: BindTarget, section: string): Buffer {
  const bytes = target.ipVersion === 4 ? parseIpv4(target.address) : target.ipVersion === 6 ? parseIpv6(target.address) : null;
  if (bytes === null) {
    throw malformed('address', section, `'${String(target.address)}' is not an IPv${String(target.ipVersion)} address`);
  }
  if (!Number.isInteger(target.port) || target.port < 0 || target.port > 0xffff) {
    throw malformed('port', section, `UDP port ${String(target.port)} is out of range`);
  }
  return bytes;
}

/** Reads `IP Version (8), IP Address (32..128), UDP Port (16)` at `offset`; `allowZero` for COMPRESSION_ASSIGN. */
function readTarget(value: Buffer, offset: number, section: string, contextId?: number): { target: BindTarget | null; end: number } {
  const extra = { length: value.length, ...(contextId !== undefined ? { contextId } : {}) };
  if (offset >= value.length) throw malformed('short', section, 'value ends before its IP Version', extra);
  const version = value[offset]!;
  if (version === 0) return { target: null, end: offset + 1 };
  if (version !== 4 && version !== 6) throw malformed('ip-version', section, `IP Version ${version} is not 4 or 6`, extra);
  const ipVersion: 4 | 6 = version;
  const addrLen = ipVersion === 4 ? 4 : 16;
  if (offset + 1 + addrLen + 2 > value.length) {
    throw malformed('short', section, `value too short for an IPv${version} address and port`, extra);
  }
  const address = formatIp(value.subarray(offset + 1, offset + 1 + addrLen));
  const port = value.readUInt16BE(offset + 1 + addrLen);
  return { target: { ipVersion, address, port }, end: offset + 1 + addrLen + 2 };
}

/** Reads the leading context ID of a capsule value; BIND_MALFORMED when missing, 0, or beyond 2^53-1. */
function readContextId(value: Buffer, section: string, what: string): number {
  const id = readVarint(value, 0);
  if (id < 0) throw malformed('short', section, `${what} value too short for its Context ID`, { length: value.length });
  // §3.1/§3.3: context ID 0 belongs to unextended UDP proxying; no capsule here can name it.
  if (id === 0) throw malformed('zero-id', section, `${what} with Context ID 0`, { contextId: 0 });
  // A local limit, not a rule of the draft: IDs are handled as safe integers (no endpoint allocates 2^53 of them).
  if (!Number.isSafeInteger(id)) throw malformed('id-range', section, `${what} Context ID beyond 2^53-1 is not supported`);
  return id;
}

function checkContextId(contextId: number, section: string, what: string): void {
  if (!Number.isSafeInteger(contextId) || contextId < 1) {
    throw malformed(contextId === 0 ? 'zero-id' : 'id-range', section, `${what} Context ID ${String(contextId)} is not a positive integer`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Capsule values

/**
 * Decodes a COMPRESSION_ASSIGN value (draft §3.1: Context ID (i), IP Version (8), [IP Address], [UDP Port]).
 * Throws BIND_MALFORMED on a short value, Context ID 0, an IP Version other than 0/4/6, or trailing bytes.
 */
export function decodeCompressionAssign(value: Buffer): CompressionAssign {
  const section = '§3.1';
  const contextId = readContextId(value, section, 'COMPRESSION_ASSIGN');
  const { target, end } = readTarget(value, varintWidth(value[0]!), section, contextId);
  // §3.1: with IP Version 0 the address and port are omitted; anything after the fields is not part of the format.
  if (end !== value.length) {
    throw malformed('trailing', section, `COMPRESSION_ASSIGN has ${value.length - end} bytes after its fields`, { contextId, length: value.length });
  }
  return target === null ? { contextId, ipVersion: 0 } : { contextId, ...target };
}

/** Encodes a COMPRESSION_ASSIGN value; throws BIND_MALFORMED for Context ID 0 or an address that is not of its version. */
export function encodeCompressionAssign(assign: CompressionAssign): Buffer {
  const section = '§3.1';
  checkContextId(assign.contextId, section, 'COMPRESSION_ASSIGN');
  if (assign.ipVersion === 0) {
    const out = Buffer.alloc(varintLength(assign.contextId) + 1);
    writeVarint(out, 0, assign.contextId);
    return out;
  }
  const addr = addressBytes(assign, section);
  const out = Buffer.alloc(varintLength(assign.contextId) + 1 + addr.length + 2);
  let off = writeVarint(out, 0, assign.contextId);
  out[off++] = assign.ipVersion;
  addr.copy(out, off);
  out.writeUInt16BE(assign.port, off + addr.length);
  return out;
}

function decodeIdOnly(value: Buffer, section: string, what: string): number {
  const contextId = readContextId(value, section, what);
  const end = varintWidth(value[0]!);
  if (end !== value.length) {
    throw malformed('trailing', section, `${what} has ${value.length - end} bytes after its Context ID`, { contextId, length: value.length });
  }
  return contextId;
}

function encodeIdOnly(contextId: number, section: string, what: string): Buffer {
  checkContextId(contextId, section, what);
  const out = Buffer.alloc(varintLength(contextId));
  writeVarint(out, 0, contextId);
  return out;
}

/**
 * Decodes a COMPRESSION_ACK value (draft §3.2: Context ID (i) only). Context ID 0 is malformed: no
 * COMPRESSION_ASSIGN can carry it (§3.1), so there is nothing to acknowledge.
 */
export function decodeCompressionAck(value: Buffer): number {
  return decodeIdOnly(value, '§3.2', 'COMPRESSION_ACK');
}

/** Encodes a COMPRESSION_ACK value. */
export function encodeCompressionAck(contextId: number): Buffer {
  return encodeIdOnly(contextId, '§3.2', 'COMPRESSION_ACK');
}

/** Decodes a COMPRESSION_CLOSE value (draft §3.3: Context ID (i) only; Context ID 0 is malformed). */
export function decodeCompressionClose(value: Buffer): number {
  return decodeIdOnly(value, '§3.3', 'COMPRESSION_CLOSE');
}

/** Encodes a COMPRESSION_CLOSE value. */
export function encodeCompressionClose(contextId: number): Buffer {
  return encodeIdOnly(contextId, '§3.3', 'COMPRESSION_CLOSE');
}

// ---------------------------------------------------------------------------------------------------------------
// Uncompressed datagrams

/**
 * Decodes the payload of an HTTP Datagram on an uncompressed context, after its context ID (draft §4: IP Version,
 * IP Address, UDP Port, UDP Payload). Throws BIND_MALFORMED when the IP Version is not 4 or 6 or the value is short.
 */
export function decodeUncompressedDatagram(bytes: Buffer): UncompressedDatagram {
  const section = '§4';
  const { target, end } = readTarget(bytes, 0, section);
  // §4: here the IP Version MUST be 4 or 6; 0 only exists in COMPRESSION_ASSIGN.
  if (target === null) throw malformed('ip-version', section, 'uncompressed datagram with IP Version 0', { length: bytes.length });
  return { ...target, payload: bytes.subarray(end) };
}

/** Encodes the bytes that follow the context ID in an uncompressed datagram (draft §4). */
export function encodeUncompressedDatagram(target: BindTarget, payload: Uint8Array): Buffer {
  const addr = addressBytes(target, '§4');
  const out = Buffer.allocUnsafe(1 + addr.length + 2 + payload.length);
  out[0] = target.ipVersion;
  addr.copy(out, 1);
  out.writeUInt16BE(target.port, 1 + addr.length);
  out.set(payload, 3 + addr.length);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Header fields (RFC 9651 structured fields, the subset these two fields use)

/** What parseConnectUdpBind found. */
export interface ConnectUdpBindResult {
  /** True only for a single Boolean item `?1` (parameters ignored, draft §6). */
  enabled: boolean;
  /** Why it is not enabled (absent, false, not a Boolean, several lines ...); null when enabled. */
  reason: string | null;
}

/** The Connect-UDP-Bind value that asks for (or grants) bound UDP proxying (draft §6). */
export function formatConnectUdpBind(): string {
  return '?1';
}

const SF_BARE = /^(?:\?[01]|-?\d{1,15}(?:\.\d{1,3})?|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*|"(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"|:[A-Za-z0-9+/=]*:)$/;

/**
 * Reads a Connect-UDP-Bind value (draft §6: an sf-boolean; anything else counts as absent, and several field lines
 * make a List, which counts as absent too). Never throws.
 */
export function parseConnectUdpBind(value: string | readonly string[] | undefined | null): ConnectUdpBindResult {
  if (value === undefined || value === null) return { enabled: false, reason: 'absent' };
  const lines = typeof value === 'string' ? [value] : value;
  if (lines.length === 0) return { enabled: false, reason: 'absent' };
  if (lines.length > 1) return { enabled: false, reason: 'several field lines (a List, not a Boolean)' };
  const text = lines[0]!.replace(/^ +| +$/g, '');
  if (text.length > MAX_BIND_HEADER_LENGTH) return { enabled: false, reason: `over ${MAX_BIND_HEADER_LENGTH} characters` };
  const m = /^\?([01])/.exec(text);
  if (m === null) return { enabled: false, reason: 'not a Boolean' };
  // RFC 9651 §3.3.6 and §3.1.2: the Boolean may carry parameters (ignored, draft §6); nothing else may follow.
  const end = skipParams(text, 2);
  if (end < 0) return { enabled: false, reason: 'bad parameters' };
  if (end !== text.length) return { enabled: false, reason: text[end] === ',' ? 'a List, not a Boolean' : `unexpected '${text.slice(end, end + 16)}'` };
  return m[1] === '1' ? { enabled: true, reason: null } : { enabled: false, reason: 'false (?0)' };
}

/** What parseProxyPublicAddress found: the addresses, or why the value is refused. */
export type ProxyPublicAddressResult =
  | { addresses: BindTarget[]; reason: null }
  | { addresses: null; reason: string };

/** Parses `IP:port` with IPv6 in brackets (draft §7, RFC 3986 §3.2); port 1..65535; null when it is not one. */
export function parseIpPort(text: string): BindTarget | null {
  let host: string;
  let port: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return null;
    host = text.slice(1, close);
    port = text.slice(close + 2);
  } else {
    const colon = text.indexOf(':');
    if (colon < 0 || text.indexOf(':', colon + 1) >= 0) return null;
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 0xffff) return null;
  const v6 = text.startsWith('[') ? parseIpv6(host) : null;
  const v4 = v6 === null && !text.startsWith('[') ? parseIpv4(host) : null;
  if (v6 !== null) return { ipVersion: 6, address: formatIp(v6), port: Number(port) };
  if (v4 !== null) return { ipVersion: 4, address: formatIp(v4), port: Number(port) };
  return null;
}

/** Formats a target as draft §7 writes it: `192.0.2.1:443`, `[2001:db8::1]:443`. */
export function formatIpPort(target: BindTarget): string {
  return target.ipVersion === 6 ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`;
}

/**
 * Reads a Proxy-Public-Address value (draft §7: an sf-list of sf-strings, each `IP:port`). Several field lines are
 * one list (RFC 9651 §3.1). Bounded by MAX_BIND_HEADER_LENGTH characters and MAX_PUBLIC_ADDRESSES members. Never throws.
 */
export function parseProxyPublicAddress(value: string | readonly string[] | undefined | null): ProxyPublicAddressResult {
  if (value === undefined || value === null) return { addresses: null, reason: 'absent' };
  const text = (typeof value === 'string' ? value : value.join(', ')).replace(/^[ \t]+|[ \t]+$/g, '');
  if (text.length > MAX_BIND_HEADER_LENGTH) return { addresses: null, reason: `over ${MAX_BIND_HEADER_LENGTH} characters` };
  if (text === '') return { addresses: null, reason: 'empty list' };
  const addresses: BindTarget[] = [];
  let i = 0;
  for (;;) {
    if (addresses.length === MAX_PUBLIC_ADDRESSES) return { addresses: null, reason: `more than ${MAX_PUBLIC_ADDRESSES} addresses` };
    if (text[i] !== '"') return { addresses: null, reason: `member ${addresses.length + 1} is not a String` };
    let s = '';
    i++;
    for (;;) {
      const c = text[i];
      if (c === undefined) return { addresses: null, reason: 'unterminated String' };
      if (c === '"') break;
      if (c === '\\') {
        const n = text[i + 1];
        if (n !== '"' && n !== '\\') return { addresses: null, reason: 'bad escape in a String' };
        s += n;
        i += 2;
        continue;
      }
      const code = c.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) return { addresses: null, reason: 'bad character in a String' };
      s += c;
      i++;
    }
    i++;
    // RFC 9651 §3.1.1: a member may carry parameters; none are defined here, so skip them after checking their form.
    const paramsEnd = skipParams(text, i);
    if (paramsEnd < 0) return { addresses: null, reason: `bad parameters after member ${addresses.length + 1}` };
    i = paramsEnd;
    const target = parseIpPort(s);
    if (target === null) return { addresses: null, reason: `'${s.slice(0, 64)}' is not IP:port` };
    addresses.push(target);
    while (text[i] === ' ' || text[i] === '\t') i++;
    if (i === text.length) return { addresses, reason: null };
    if (text[i] !== ',') return { addresses: null, reason: `unexpected '${text[i]!}' after member ${addresses.length}` };
    i++;
    while (text[i] === ' ' || text[i] === '\t') i++;
    if (i === text.length) return { addresses: null, reason: 'trailing comma' };
  }
}

/** Index after the parameters starting at `i` (or `i` when none), or -1 when they do not parse. */
function skipParams(text: string, i: number): number {
  let j = i;
  while (text[j] === ';') {
    const m = /^;[ ]*([a-z*][a-z0-9_\-.*]*)(=("(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"|[^;,\s"]+))?/.exec(text.slice(j));
    if (m === null) return -1;
    if (m[3] !== undefined && !SF_BARE.test(m[3])) return -1;
    j += m[0].length;
  }
  return j;
}

/** Formats a Proxy-Public-Address value (draft §7): `"192.0.2.1:443", "[2001:db8::1]:443"`. */
export function formatProxyPublicAddress(targets: readonly BindTarget[]): string {
  return targets.map((t) => `"${formatIpPort(t)}"`).join(', ');
}
