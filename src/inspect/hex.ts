import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';

/** Largest text parseHexText accepts (characters); a bigger paste is almost surely the wrong file. */
export const MAX_HEX_TEXT_LENGTH = 256 * 1024 * 1024;

/** Largest output parseHexText produces, also after expanding `*` repeat lines. */
export const MAX_HEX_OUTPUT_BYTES = 128 * 1024 * 1024;

/** Growable byte buffer with a hard cap. */
class ByteSink {
  private buf = Buffer.allocUnsafe(256);
  length = 0;
  push(byte: number, lineNo: number): void {
    if (this.length === this.buf.length) {
      if (this.length >= MAX_HEX_OUTPUT_BYTES) fail(lineNo, `output exceeds the ${MAX_HEX_OUTPUT_BYTES}-byte limit`);
      const next = Buffer.allocUnsafe(Math.min(this.buf.length * 2, MAX_HEX_OUTPUT_BYTES));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    this.buf[this.length++] = byte;
  }
  result(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

type DumpMode = 'plain' | 'xxd' | 'hexdump';

// `00000000: 0001 02ff  ....` (xxd, any -g grouping); the offset column ends with a colon.
const XXD_LINE = /^\s*([0-9a-fA-F]{4,16}):(?:\s(.*))?$/;
// `00000000  00 01 02 03  ...  |....|` (hexdump -C, od-like and Wireshark "hex dump" copies).
const HEXDUMP_LINE = /^\s*([0-9a-fA-F]{4,16})(?:\s{2,}(.*))?$/;
const HEX_PAIRS = /^(?:[0-9a-fA-F]{2})+$/;
const HEX_BYTE = /^[0-9a-fA-F]{2}$/;

function fail(line: number, message: string, token?: string): never {
  throw new UdpTunnelError(ErrorCodes.INVALID_INPUT, `hex input line ${line}: ${message}`, token === undefined ? { line } : { line, token });
}

function shown(token: string): string {
  return token.length > 24 ? `${token.slice(0, 24)}...` : token;
}

function isRepeatMarker(line: string): boolean {
  return line.trim() === '*';
}

function detectMode(lines: string[]): DumpMode {
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line === '*') continue;
    const x = XXD_LINE.exec(line);
    if (x && x[2] !== undefined) return 'xxd';
    const h = HEXDUMP_LINE.exec(line);
    if (h && h[2] !== undefined) {
      const first = h[2].trim().split(/\s+/)[0] ?? '';
      if (HEX_BYTE.test(first) || first.startsWith('|')) return 'hexdump';
    }
    return 'plain';
  }
  return 'plain';
}

/** Bytes of an xxd hex area: groups of hex digit pairs separated by single spaces, ended by two spaces (ASCII column). */
function xxdBytes(area: string, lineNo: number, out: number[]): void {
  const hexPart = area.split(/\s{2,}/)[0] ?? '';
  for (const group of hexPart.trim().split(' ')) {
    if (group === '') continue;
    if (!HEX_PAIRS.test(group)) fail(lineNo, `'${shown(group)}' is not a group of hex digit pairs`, group);
    for (let i = 0; i < group.length; i += 2) out.push(parseInt(group.slice(i, i + 2), 16));
  }
}

/** Bytes of a hexdump -C style hex area: two-digit tokens; the ASCII column is `|...|` or follows 3+ spaces. */
function hexdumpBytes(area: string, lineNo: number, out: number[]): void {
  let hexPart = area;
  const bar = hexPart.indexOf('|');
  if (bar >= 0) hexPart = hexPart.slice(0, bar);
  else hexPart = hexPart.split(/\s{3,}/)[0] ?? '';
  for (const token of hexPart.trim().split(/\s+/)) {
    if (token === '') continue;
    if (!HEX_BYTE.test(token)) fail(lineNo, `'${shown(token)}' is not a two-digit hex byte`, token);
    out.push(parseInt(token, 16));
  }
}

/** Bytes of a free-form line: tokens split on spaces, ',', ':' or '-', each with an optional 0x or \x prefix. */
function plainBytes(line: string, lineNo: number, out: ByteSink): void {
  for (const token of line.split(/[\s,:;-]+/)) {
    if (token === '') continue;
    const parts = token.split(/(?:0[xX]|\\[xX])/);
    for (let p = 0; p < parts.length; p++) {
      const digits = parts[p]!;
      if (digits === '') {
        if (p > 0) fail(lineNo, `'${shown(token)}' has a 0x prefix without digits`, token);
        continue;
      }
      if (!/^[0-9a-fA-F]+$/.test(digits)) fail(lineNo, `'${shown(token)}' is not hexadecimal`, token);
      if (digits.length % 2 !== 0) fail(lineNo, `'${shown(token)}' has an odd number of hex digits`, token);
      for (let i = 0; i < digits.length; i += 2) out.push(parseInt(digits.slice(i, i + 2), 16), lineNo);
    }
  }
}

/**
 * Parses hex text into bytes. Accepts free-form hex (spaces, newlines, `0x`/`\x` prefixes, `:`/`,`/`-` separators,
 * `#` comment lines), `xxd` dumps (offset column and ASCII column stripped, `*` repeat lines expanded) and
 * `hexdump -C` dumps (likewise). Throws UdpTunnelError INVALID_INPUT naming the line for odd digits or garbage.
 */
export function parseHexText(text: string): Buffer {
  if (text.length > MAX_HEX_TEXT_LENGTH) {
    throw new UdpTunnelError(ErrorCodes.INVALID_INPUT, `hex input of ${text.length} characters is over the ${MAX_HEX_TEXT_LENGTH} limit`);
  }
  const lines = text.split(/\r?\n|\r/);
  const mode = detectMode(lines);
  const out = new ByteSink();
  let base = -1; // offset of the first dump line
  let repeatPending = false;
  let lastLine: number[] = [];
  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    const raw = lines[n]!;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    if (mode === 'plain') {
      plainBytes(trimmed, lineNo, out);
      continue;
    }
    if (isRepeatMarker(trimmed)) {
      if (lastLine.length === 0) fail(lineNo, `'*' repeat marker without a previous dump line`);
      repeatPending = true;
      continue;
    }
    const m = (mode === 'xxd' ? XXD_LINE : HEXDUMP_LINE).exec(trimmed);
    if (!m) fail(lineNo, `not a ${mode === 'xxd' ? 'xxd' : 'hexdump -C'} line (expected an offset column first)`, trimmed);
    const offset = parseInt(m[1]!, 16);
    if (base < 0) base = offset;
    const expected = base + out.length;
    if (repeatPending) {
      // A '*' line stands for copies of the previous line until the offset of the next one.
      const missing = offset - expected;
      if (missing < 0 || missing % lastLine.length !== 0) {
        fail(lineNo, `offset 0x${m[1]} does not continue the repeated line (expected a multiple of ${lastLine.length} after 0x${expected.toString(16)})`);
      }
      if (out.length + missing > MAX_HEX_OUTPUT_BYTES) fail(lineNo, `output exceeds the ${MAX_HEX_OUTPUT_BYTES}-byte limit`);
      for (let k = 0; k < missing; k++) out.push(lastLine[k % lastLine.length]!, lineNo);
      repeatPending = false;
    } else if (offset !== expected) {
      fail(lineNo, `offset 0x${m[1]} does not follow the previous line (expected 0x${expected.toString(16)})`);
    }
    const area = m[2];
    if (area === undefined || area.trim() === '') continue; // hexdump's closing offset line
    const bytes: number[] = [];
    if (mode === 'xxd') xxdBytes(area, lineNo, bytes);
    else hexdumpBytes(area, lineNo, bytes);
    for (const b of bytes) out.push(b, lineNo);
    if (bytes.length > 0) lastLine = bytes;
  }
  if (repeatPending) fail(lines.length, `'*' repeat marker at the end without a closing offset line`);
  return out.result();
}

/** How many leading bytes looksLikeHexText examines. */
export const HEX_SNIFF_BYTES = 256;

/**
 * Whether the start of a binary input is hex text instead: within the first HEX_SNIFF_BYTES bytes only hex digits,
 * whitespace and `0x` prefixes, with at least two digits. Hints that `--hex` was forgotten; a real capsule stream
 * (type and length varints, then payload) almost never reads that way.
 */
export function looksLikeHexText(bytes: Uint8Array): boolean {
  const n = Math.min(bytes.length, HEX_SNIFF_BYTES);
  let digits = 0;
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if (isHexDigit(b)) digits++;
    else if (b === 0x78 || b === 0x58) {
      // 'x' only as the second character of a `0x` prefix.
      if (i === 0 || bytes[i - 1] !== 0x30 || (i >= 2 && isHexDigit(bytes[i - 2]!))) return false;
    } else if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false;
  }
  return digits >= 2;
}

function isHexDigit(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}
