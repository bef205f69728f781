import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import type { HeaderList } from './events.js';

/** Default limit on an HTTP/1.1 head (start line, fields and the empty line). */
export const DEFAULT_MAX_HEAD_BYTES = 16 * 1024;

/** A parsed HTTP/1.1 request head. */
export interface Http1RequestHead {
  kind: 'request';
  method: string;
  target: string;
  version: string;
  headers: HeaderList;
}

/** A parsed HTTP/1.1 response head. */
export interface Http1ResponseHead {
  kind: 'response';
  version: string;
  status: number;
  reason: string;
  headers: HeaderList;
}

/** A parsed HTTP/1.1 head. */
export type Http1Head = Http1RequestHead | Http1ResponseHead;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const VERSION = /^HTTP\/[0-9]\.[0-9]$/;

/** RFC 9112 §3: what an HTTP/1.x request line looks like (used to recognise HTTP/1.1 in a byte stream). */
export const HTTP1_REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP\/1\.[01]\r?$/;

function malformed(message: string, offset: number): never {
  throw new UdpTunnelError(ErrorCodes.HTTP1_MALFORMED, `${message} (RFC 9112)`, { offset, rfc: 'RFC 9112' });
}

/** Offset just past the empty line ending a head (CRLF CRLF, or bare LF LF as RFC 9112 §2.2 tolerates), or -1. */
function headEnd(buf: Buffer, from: number): number {
  for (let i = Math.max(0, from); i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/** Parses the text of a complete head (without the final empty line). */
export function parseHttp1HeadText(text: string, kind: 'request' | 'response'): Http1Head {
  // Split into lines while keeping each line's byte offset (terminators may be CRLF or a bare LF).
  const lines: Array<{ text: string; offset: number }> = [];
  const eol = /\r?\n/g;
  let from = 0;
  for (let m = eol.exec(text); m !== null; m = eol.exec(text)) {
    lines.push({ text: text.slice(from, m.index), offset: from });
    from = m.index + m[0].length;
  }
  lines.push({ text: text.slice(from), offset: from });
  const start = lines[0]!.text;
  const headers: HeaderList = [];
  for (let n = 1; n < lines.length; n++) {
    const { text: line, offset } = lines[n]!;
    if (line === '') continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      // RFC 9112 §5.2: obsolete line folding; a recipient may replace it with a space.
      const last = headers[headers.length - 1];
      if (last === undefined) malformed('continuation line before any field', offset);
      last[1] = `${last[1]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) malformed(`field line without a name and colon: '${line.slice(0, 40)}'`, offset);
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: no whitespace between the field name and the colon.
    if (!TOKEN.test(name)) malformed(`invalid field name '${name.slice(0, 40)}'`, offset);
    headers.push([name, line.slice(colon + 1).trim()]);
  }
  const parts = start.split(' ');
  if (kind === 'request') {
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version
    if (parts.length !== 3 || !TOKEN.test(parts[0]!) || parts[1] === '' || !VERSION.test(parts[2]!)) {
      malformed(`invalid request line '${start.slice(0, 80)}'`, 0);
    }
    return { kind, method: parts[0]!, target: parts[1]!, version: parts[2]!, headers };
  }
  // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
  if (parts.length < 2 || !VERSION.test(parts[0]!) || !/^[0-9]{3}$/.test(parts[1]!)) {
    malformed(`invalid status line '${start.slice(0, 80)}'`, 0);
  }
  return { kind, version: parts[0]!, status: Number(parts[1]), reason: parts.slice(2).join(' '), headers };
}

/** Result of feeding an Http1HeadParser. */
export interface Http1HeadResult {
  head: Http1Head;
  /** Bytes after the head (they belong to what follows: a body, or the capsule stream after an upgrade). */
  rest: Buffer;
  /** Length of the head in bytes. */
  headLength: number;
  /** The head's bytes exactly as received (leading empty lines before a request line included); `headLength` long. */
  raw: Buffer;
}

/**
 * Incremental HTTP/1.1 head parser with a size limit. Feed bytes until it returns a result; throws UdpTunnelError
 * HTTP1_MALFORMED or HEADERS_TOO_LARGE (details.offset is the byte offset in the stream where the head started + n).
 */
export class Http1HeadParser {
  private readonly kind: 'request' | 'response';
  private readonly maxHeadBytes: number;
  private parts: Buffer[] = [];
  private length = 0;
  private scanned = 0;

  constructor(kind: 'request' | 'response', options: { maxHeadBytes?: number } = {}) {
    this.kind = kind;
    this.maxHeadBytes = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
  }

  /** Bytes held for an incomplete head. */
  get bufferedBytes(): number {
    return this.length;
  }

  /** Feeds bytes; returns the head once complete (and resets for a following head), else null. */
  push(chunk: Buffer): Http1HeadResult | null {
    this.parts.push(chunk);
    this.length += chunk.length;
    const buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.parts = [buf];
    // Leading empty lines before a request line are ignored (RFC 9112 §2.2).
    let lead = 0;
    while (this.kind === 'request' && lead < buf.length && (buf[lead] === 0x0d || buf[lead] === 0x0a)) lead++;
    const end = headEnd(buf, Math.max(lead, this.scanned - 3));
    if (end < 0) {
      this.scanned = buf.length;
      if (buf.length - lead > this.maxHeadBytes) {
        throw new UdpTunnelError(ErrorCodes.HEADERS_TOO_LARGE, `HTTP/1.1 head exceeds ${this.maxHeadBytes} bytes`, {
          offset: lead + this.maxHeadBytes,
          limit: this.maxHeadBytes,
        });
      }
      return null;
    }
    if (end - lead > this.maxHeadBytes) {
      throw new UdpTunnelError(ErrorCodes.HEADERS_TOO_LARGE, `HTTP/1.1 head exceeds ${this.maxHeadBytes} bytes`, {
        offset: lead + this.maxHeadBytes,
        limit: this.maxHeadBytes,
      });
    }
    const text = buf.subarray(lead, end).toString('latin1').replace(/\r?\n\r?\n$/, '');
    let head: Http1Head;
    try {
      head = parseHttp1HeadText(text, this.kind);
    } catch (err) {
      // Offsets inside the head text are shifted by the empty lines skipped before it.
      if (err instanceof UdpTunnelError && typeof err.details['offset'] === 'number' && lead > 0) {
        throw new UdpTunnelError(err.code, err.message, { ...err.details, offset: err.details['offset'] + lead });
      }
      throw err;
    }
    const rest = buf.subarray(end);
    this.parts = [];
    this.length = 0;
    this.scanned = 0;
    return { head, rest, headLength: end, raw: buf.subarray(0, end) };
  }
}
