import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../errors.js';

/*
 * The one HTTP/1.1 head parser (RFC 9112 §2-§5), in two modes over the same grammar:
 * - strict (parseRequestHead, parseResponseHead): serve and the HTTP/1.1 client transport. A bare CR or LF, obsolete
 *   line folding, a control byte in a value and any version but 1.1 in a request are refused with the status to
 *   answer; field names are lowercased.
 * - lenient (Http1HeadParser, parseHttp1HeadText): inspect, which shows what captures and relayed connections
 *   really carry. Bare LF line ends and obsolete folding are accepted, field names stay as received, and a head that
 *   cannot be read throws UdpTunnelError with the byte offset of the problem.
 */

/** Default limit on a head read in lenient mode (start line, fields and the empty line). */
export const DEFAULT_MAX_HEAD_BYTES = 16 * 1024;

/** A head read in strict mode (request or response); header names are lowercased, in arrival order. */
export interface Http1Head {
  /** Request: method, target. Response: status and reason. */
  method: string;
  target: string;
  status: number;
  reason: string;
  headers: [string, string][];
  /** Bytes that arrived after the blank line: the start of what follows the head (here, the capsule stream). */
  rest: Buffer;
}

/** Outcome of feeding bytes to a strict head parser. */
export type Http1ParseResult =
  | { state: 'incomplete' }
  | { state: 'done'; head: Http1Head }
  | { state: 'error'; status: 400 | 431 | 505; details: string };

/** A request head read in lenient mode; field names as received. */
export interface Http1RequestHead {
  kind: 'request';
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
}

/** A response head read in lenient mode; field names as received. */
export interface Http1ResponseHead {
  kind: 'response';
  version: string;
  status: number;
  reason: string;
  headers: [string, string][];
}

/** A head read in lenient mode from captured or relayed traffic. */
export type Http1CaptureHead = Http1RequestHead | Http1ResponseHead;

/** Result of feeding an Http1HeadParser. */
export interface Http1HeadResult {
  head: Http1CaptureHead;
  /** Bytes after the head (they belong to what follows: a body, or the capsule stream after an upgrade). */
  rest: Buffer;
  /** Length of the head in bytes. */
  headLength: number;
  /** The head's bytes exactly as received (leading empty lines before a request line included); `headLength` long. */
  raw: Buffer;
}

/** RFC 9112 §3: what an HTTP/1.x request line looks like (used to recognise HTTP/1.1 in a byte stream). */
export const HTTP1_REQUEST_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP\/1\.[01]\r?$/;

// RFC 9110 §5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 §5.5: field values are VCHAR, obs-text, SP and HTAB; strict mode refuses every other control byte.
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// RFC 9112 §3.2: a request target has no whitespace or control characters.
const BAD_TARGET = /[\x00-\x20\x7f]/;
// RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
const REQUEST_LINE = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/;
// RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]; the last SP may be missing.
const STATUS_LINE = /^(HTTP\/\d\.\d) (\d{3})(?: ([\s\S]*))?$/;
const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Why a head cannot be read, and where in it (offset into the head text). */
interface Problem {
  problem: string;
  offset: number;
}

interface HeadLine {
  text: string;
  offset: number;
}

/** Where a head ends: `textEnd` before the line break(s) that end it, `end` just past the empty line. */
interface HeadBounds {
  textEnd: number;
  end: number;
}

/**
 * RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request line. Strict mode skips up to two
 * CRLFs; lenient mode any run of CR and LF.
 */
function leadingEmptyLines(buf: Buffer, lenient: boolean): number {
  let lead = 0;
  if (lenient) while (lead < buf.length && (buf[lead] === 0x0d || buf[lead] === 0x0a)) lead++;
  else while (lead + 1 < buf.length && buf[lead] === 0x0d && buf[lead + 1] === 0x0a && lead < 4) lead += 2;
  return lead;
}

/**
 * Finds the empty line that ends the head starting at `lead` in `buf`, searching from `from`, and enforces
 * `maxBytes` (head bytes including the empty line). Strict mode needs CRLF CRLF; lenient mode also takes bare LF
 * LF or LF CRLF, as RFC 9112 §2.2 lets a recipient do. Null while incomplete, 'too-large' over the limit.
 */
function locateHead(buf: Buffer, lead: number, from: number, maxBytes: number, lenient: boolean): HeadBounds | null | 'too-large' {
  let at: HeadBounds | null = null;
  if (!lenient) {
    const i = buf.indexOf(CRLFCRLF, Math.max(lead, from));
    if (i >= 0) at = { textEnd: i, end: i + 4 };
  } else {
    for (let i = Math.max(lead, from); i < buf.length && at === null; i++) {
      if (buf[i] !== 0x0a) continue;
      const end = buf[i + 1] === 0x0a ? i + 2 : buf[i + 1] === 0x0d && buf[i + 2] === 0x0a ? i + 3 : -1;
      if (end > 0) at = { textEnd: i > lead && buf[i - 1] === 0x0d ? i - 1 : i, end };
    }
  }
  // Lenient mode skips any run of empty lines, so they count toward the limit: endless CRLFs must not grow the buffer.
  if ((at === null ? buf.length : at.end) - (lenient ? 0 : lead) > maxBytes) return 'too-large';
  return at;
}

/**
 * RFC 9112 §2.2: a recipient may reject a bare CR or LF. A head whose lines end in bare LF never holds the CRLFCRLF
 * that ends a head, so without this check strict mode would only drop it at the header timeout. A CR as the last
 * byte may still be followed by its LF.
 */
function hasBareLineBreak(buf: Buffer, from: number): boolean {
  // Starting one byte early rechecks a CR that ended the part scanned before.
  const start = Math.max(0, from - 1);
  for (let i = buf.indexOf(0x0a, start); i >= 0; i = buf.indexOf(0x0a, i + 1)) if (i === 0 || buf[i - 1] !== 0x0d) return true;
  for (let i = buf.indexOf(0x0d, start); i >= 0; i = buf.indexOf(0x0d, i + 1)) if (i + 1 < buf.length && buf[i + 1] !== 0x0a) return true;
  return false;
}

/**
 * Splits head text (latin1, so obs-text survives and offsets are bytes) into lines with their offsets. Lenient mode
 * ends lines at CRLF or bare LF; strict mode only at CRLF, and returns null if a bare CR or LF is left inside a line
 * (RFC 9112 §2.2: refused rather than guessed at, which is how requests get smuggled).
 */
function splitLines(text: string, lenient: boolean): HeadLine[] | null {
  const lines: HeadLine[] = [];
  const eol = lenient ? /\r?\n/g : /\r\n/g;
  let from = 0;
  for (let m = eol.exec(text); m !== null; m = eol.exec(text)) {
    lines.push({ text: text.slice(from, m.index), offset: from });
    from = m.index + m[0].length;
  }
  lines.push({ text: text.slice(from), offset: from });
  if (!lenient && lines.some((l) => l.text.includes('\r') || l.text.includes('\n'))) return null;
  return lines;
}

/** Parses the field lines (every line after the start line). */
function parseFields(lines: HeadLine[], lenient: boolean): [string, string][] | Problem {
  const headers: [string, string][] = [];
  for (let n = 1; n < lines.length; n++) {
    const { text: line, offset } = lines[n]!;
    if (line === '') continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      // RFC 9112 §5.2: obsolete line folding; a server that does not unfold answers 400, other recipients may
      // replace it with a space.
      if (!lenient) return { problem: 'obsolete line folding', offset };
      const last = headers[headers.length - 1];
      if (last === undefined) return { problem: 'continuation line before any field', offset };
      last[1] = `${last[1]} ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return { problem: lenient ? `field line without a name and colon: '${line.slice(0, 40)}'` : 'header line without a field name', offset };
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: no whitespace between the field name and the colon (400).
    if (!TOKEN.test(name)) return { problem: lenient ? `invalid field name '${name.slice(0, 40)}'` : 'invalid field name', offset };
    if (lenient) {
      headers.push([name, line.slice(colon + 1).trim()]);
      continue;
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) return { problem: `control character in ${name.toLowerCase()}`, offset };
    headers.push([name.toLowerCase(), value]);
  }
  return headers;
}

function fail(status: 400 | 431 | 505, details: string): Http1ParseResult {
  return { state: 'error', status, details };
}

/**
 * Parses an HTTP/1.1 request head in strict mode from the bytes received so far. A caller that only appends to
 * `buf` passes as `scanned` the length an earlier call found incomplete, so those bytes are not scanned for bare
 * line breaks again (a head fed in small pieces would otherwise cost time quadratic in its size).
 */
export function parseRequestHead(buf: Buffer, maxHeaderSize: number, scanned = 0): Http1ParseResult {
  const start = leadingEmptyLines(buf, false);
  const body = start > 0 ? buf.subarray(start) : buf;
  const at = locateHead(body, 0, 0, maxHeaderSize, false);
  if (at === null) return hasBareLineBreak(body, scanned - start) ? fail(400, 'bare CR or LF in the request head') : { state: 'incomplete' };
  if (at === 'too-large') return fail(431, `request head larger than ${maxHeaderSize} bytes`);
  const lines = splitLines(body.toString('latin1', 0, at.textEnd), false);
  if (lines === null) return fail(400, 'bare CR or LF in the request head');
  const m = REQUEST_LINE.exec(lines[0]!.text);
  if (m === null) return fail(400, 'malformed request line');
  const [, method, target, major, minor] = m;
  if (!TOKEN.test(method!)) return fail(400, 'invalid method');
  if (BAD_TARGET.test(target!)) return fail(400, 'invalid request target');
  // RFC 9298 §3.2 uses HTTP/1.1 Upgrade; other versions cannot carry it (RFC 9110 §7.8).
  if (major !== '1' || minor !== '1') return fail(505, `HTTP/${major}.${minor} is not supported; use HTTP/1.1`);
  const headers = parseFields(lines, false);
  if (!Array.isArray(headers)) return fail(400, headers.problem);
  return { state: 'done', head: { method: method!, target: target!, status: 0, reason: '', headers, rest: body.subarray(at.end) } };
}

/** Parses an HTTP/1.1 response head in strict mode from the bytes received so far. */
export function parseResponseHead(buf: Buffer, maxHeaderSize: number): Http1ParseResult {
  const at = locateHead(buf, 0, 0, maxHeaderSize, false);
  if (at === null) return { state: 'incomplete' };
  if (at === 'too-large') return fail(431, `response head larger than ${maxHeaderSize} bytes`);
  const lines = splitLines(buf.toString('latin1', 0, at.textEnd), false);
  if (lines === null) return fail(400, 'bare CR or LF in the response head');
  const m = STATUS_LINE.exec(lines[0]!.text);
  if (m === null) return fail(400, 'malformed status line');
  const headers = parseFields(lines, false);
  if (!Array.isArray(headers)) return fail(400, headers.problem);
  return { state: 'done', head: { method: '', target: '', status: Number(m[2]), reason: m[3] ?? '', headers, rest: buf.subarray(at.end) } };
}

/** Lenient mode: the head in `text` (without the empty line that ends it), or why it cannot be read. */
function parseLenient(text: string, kind: 'request' | 'response'): Http1CaptureHead | Problem {
  const lines = splitLines(text, true)!;
  const headers = parseFields(lines, true);
  if (!Array.isArray(headers)) return headers;
  const start = lines[0]!.text;
  if (kind === 'request') {
    const m = REQUEST_LINE.exec(start);
    if (m === null || !TOKEN.test(m[1]!)) return { problem: `invalid request line '${start.slice(0, 80)}'`, offset: 0 };
    return { kind, method: m[1]!, target: m[2]!, version: `HTTP/${m[3]}.${m[4]}`, headers };
  }
  const m = STATUS_LINE.exec(start);
  if (m === null) return { problem: `invalid status line '${start.slice(0, 80)}'`, offset: 0 };
  return { kind, version: m[1]!, status: Number(m[2]), reason: m[3] ?? '', headers };
}

function malformed(problem: Problem, shift: number): never {
  throw new UdpTunnelError(ErrorCodes.HTTP1_MALFORMED, `${problem.problem} (RFC 9112)`, { offset: problem.offset + shift, rfc: 'RFC 9112' });
}

/** Lenient mode: parses the text of a complete head (without the final empty line); throws HTTP1_MALFORMED. */
export function parseHttp1HeadText(text: string, kind: 'request' | 'response'): Http1CaptureHead {
  const head = parseLenient(text, kind);
  if ('problem' in head) malformed(head, 0);
  return head;
}

/**
 * Incremental lenient-mode head parser with a size limit. Feed bytes until it returns a result; throws
 * UdpTunnelError HTTP1_MALFORMED or HEADERS_TOO_LARGE (details.offset is the byte offset in the stream where the
 * head started + n).
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
    const lead = this.kind === 'request' ? leadingEmptyLines(buf, true) : 0;
    const at = locateHead(buf, lead, this.scanned - 3, this.maxHeadBytes, true);
    if (at === 'too-large') {
      throw new UdpTunnelError(ErrorCodes.HEADERS_TOO_LARGE, `HTTP/1.1 head exceeds ${this.maxHeadBytes} bytes`, {
        offset: this.maxHeadBytes,
        limit: this.maxHeadBytes,
      });
    }
    if (at === null) {
      this.scanned = buf.length;
      return null;
    }
    const head = parseLenient(buf.toString('latin1', lead, at.textEnd), this.kind);
    // Offsets inside the head text are shifted by the empty lines skipped before it.
    if ('problem' in head) malformed(head, lead);
    const rest = buf.subarray(at.end);
    this.parts = [];
    this.length = 0;
    this.scanned = 0;
    return { head, rest, headLength: at.end, raw: buf.subarray(0, at.end) };
  }
}

/** Every value of a header (names lowercase), in order. */
export function headerValues(headers: readonly [string, string][], name: string): string[] {
  const out: string[] = [];
  for (const [n, v] of headers) if (n === name) out.push(v);
  return out;
}

/** True when a comma-separated header (e.g. Connection, RFC 9110 §7.6.1) lists `token`, case-insensitively. */
export function listsToken(headers: readonly [string, string][], name: string, token: string): boolean {
  const want = token.toLowerCase();
  return headerValues(headers, name).some((v) => v.split(',').some((t) => t.trim().toLowerCase() === want));
}

/** Flattens headers into the raw `[name, value, ...]` list the authenticator reads. */
export function rawHeaderList(headers: readonly [string, string][]): string[] {
  const out: string[] = [];
  for (const [n, v] of headers) out.push(n, v);
  return out;
}

const REASONS: Record<number, string> = {
  101: 'Switching Protocols',
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** Serializes a response head; values must already be free of CR/LF (ours always are). */
export function formatResponseHead(status: number, headers: Record<string, string>): string {
  let out = `HTTP/1.1 ${status} ${REASONS[status] ?? 'Status'}\r\n`;
  for (const [k, v] of Object.entries(headers)) out += `${k}: ${v.replace(/[\r\n]/g, ' ')}\r\n`;
  return `${out}\r\n`;
}
