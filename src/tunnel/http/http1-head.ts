import { Buffer } from 'node:buffer';

/** A parsed HTTP/1.1 message head (request or response); header names are lowercased, in arrival order. */
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

/** Outcome of feeding bytes to a head parser. */
export type Http1ParseResult =
  | { state: 'incomplete' }
  | { state: 'done'; head: Http1Head }
  | { state: 'error'; status: 400 | 431 | 505; details: string };

const CRLFCRLF = Buffer.from('\r\n\r\n');
// RFC 9110 §5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// RFC 9110 §5.5: field values are VCHAR, obs-text, SP and HTAB; every other control byte is refused.
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
// RFC 9112 §3.2: a request target has no whitespace or control characters.
const BAD_TARGET = /[\x00-\x20\x7f]/;
const REQUEST_LINE = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/;
const STATUS_LINE = /^HTTP\/(\d)\.(\d) (\d{3})(?: (.*))?$/;

function fail(status: 400 | 431 | 505, details: string): Http1ParseResult {
  return { state: 'error', status, details };
}

/**
 * Finds the end of the head in `buf` and enforces `maxHeaderSize` (bytes of the head including the blank line).
 * Returns the index just past CRLFCRLF, -1 while incomplete, or -2 when the head is too large.
 */
function headEnd(buf: Buffer, maxHeaderSize: number): number {
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) return buf.length > maxHeaderSize ? -2 : -1;
  return end + 4 > maxHeaderSize ? -2 : end + 4;
}

/**
 * RFC 9112 §2.2: a recipient may reject a bare CR or LF. A head whose lines end in bare LF never holds the CRLFCRLF
 * that ends a head, so without this check it would only be dropped at the header timeout. A CR as the last byte
 * may still be followed by its LF.
 */
function hasBareLineBreak(buf: Buffer, from: number): boolean {
  // Starting one byte early rechecks a CR that ended the part scanned before.
  const start = Math.max(0, from - 1);
  for (let i = buf.indexOf(0x0a, start); i >= 0; i = buf.indexOf(0x0a, i + 1)) if (i === 0 || buf[i - 1] !== 0x0d) return true;
  for (let i = buf.indexOf(0x0d, start); i >= 0; i = buf.indexOf(0x0d, i + 1)) if (i + 1 < buf.length && buf[i + 1] !== 0x0a) return true;
  return false;
}

function parseFields(lines: string[]): [string, string][] | string {
  const headers: [string, string][] = [];
  for (const line of lines) {
    // RFC 9112 §5.2: obs-fold is refused with 400 by a server that does not unfold.
    if (line.startsWith(' ') || line.startsWith('\t')) return 'obsolete line folding';
    const colon = line.indexOf(':');
    if (colon <= 0) return 'header line without a field name';
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: no whitespace between the field name and the colon (400).
    if (!TOKEN.test(name)) return 'invalid field name';
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) return `control character in ${name.toLowerCase()}`;
    headers.push([name.toLowerCase(), value]);
  }
  return headers;
}

function splitHead(buf: Buffer, end: number): string[] | null {
  // latin1 keeps one character per byte, so obs-text survives and lengths match bytes.
  const text = buf.toString('latin1', 0, end - 4);
  // RFC 9112 §2.2: a bare CR or LF inside the head is refused rather than guessed at (request smuggling).
  const lines = text.split('\r\n');
  for (const l of lines) if (l.includes('\r') || l.includes('\n')) return null;
  return lines;
}

/**
 * Parses an HTTP/1.1 request head (RFC 9112 §2-§5) from the bytes received so far. A caller that only appends to
 * `buf` passes as `scanned` the length an earlier call found incomplete, so those bytes are not scanned for bare
 * line breaks again (a head fed in small pieces would otherwise cost time quadratic in its size).
 */
export function parseRequestHead(buf: Buffer, maxHeaderSize: number, scanned = 0): Http1ParseResult {
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
  let start = 0;
  while (start + 1 < buf.length && buf[start] === 0x0d && buf[start + 1] === 0x0a && start < 4) start += 2;
  const body = start > 0 ? buf.subarray(start) : buf;
  const end = headEnd(body, maxHeaderSize);
  if (end === -1) return hasBareLineBreak(body, scanned - start) ? fail(400, 'bare CR or LF in the request head') : { state: 'incomplete' };
  if (end === -2) return fail(431, `request head larger than ${maxHeaderSize} bytes`);
  const lines = splitHead(body, end);
  if (lines === null) return fail(400, 'bare CR or LF in the request head');
  const m = REQUEST_LINE.exec(lines[0]!);
  if (m === null) return fail(400, 'malformed request line');
  const [, method, target, major, minor] = m;
  if (!TOKEN.test(method!)) return fail(400, 'invalid method');
  if (BAD_TARGET.test(target!)) return fail(400, 'invalid request target');
  // RFC 9298 §3.2 uses HTTP/1.1 Upgrade; other versions cannot carry it (RFC 9110 §7.8).
  if (major !== '1' || minor !== '1') return fail(505, `HTTP/${major}.${minor} is not supported; use HTTP/1.1`);
  const headers = parseFields(lines.slice(1));
  if (typeof headers === 'string') return fail(400, headers);
  return { state: 'done', head: { method: method!, target: target!, status: 0, reason: '', headers, rest: body.subarray(end) } };
}

/** Parses an HTTP/1.1 response head (RFC 9112 §4) from the bytes received so far. */
export function parseResponseHead(buf: Buffer, maxHeaderSize: number): Http1ParseResult {
  const end = headEnd(buf, maxHeaderSize);
  if (end === -1) return { state: 'incomplete' };
  if (end === -2) return fail(431, `response head larger than ${maxHeaderSize} bytes`);
  const lines = splitHead(buf, end);
  if (lines === null) return fail(400, 'bare CR or LF in the response head');
  const m = STATUS_LINE.exec(lines[0]!);
  if (m === null) return fail(400, 'malformed status line');
  const headers = parseFields(lines.slice(1));
  if (typeof headers === 'string') return fail(400, headers);
  return { state: 'done', head: { method: '', target: '', status: Number(m[3]), reason: m[4] ?? '', headers, rest: buf.subarray(end) } };
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
