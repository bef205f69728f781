import { Buffer } from 'node:buffer';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import type { HeaderList } from './events.js';

/** RFC 7541 Appendix A: the static table (index 1..61). */
export const HPACK_STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/**
 * RFC 7541 Appendix B: Huffman code length of each symbol 0..255 and EOS (256). The code is canonical (codes are
 * assigned in order of length, then symbol), so the lengths determine every code.
 */
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32-47
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48-63
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64-79
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80-95
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96-111
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112-127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

const EOS = 256;

/** Canonical Huffman codes (MSB-first values) built from HUFFMAN_LENGTHS. */
const HUFFMAN_CODES: readonly number[] = (() => {
  const order = HUFFMAN_LENGTHS.map((len, sym) => ({ len, sym })).sort((a, b) => a.len - b.len || a.sym - b.sym);
  const codes = new Array<number>(HUFFMAN_LENGTHS.length).fill(0);
  let code = 0;
  let prevLen = order[0]!.len;
  for (const { len, sym } of order) {
    code *= 2 ** (len - prevLen);
    prevLen = len;
    codes[sym] = code;
    code++;
  }
  return codes;
})();

/** Decoding trie: node n has children at [2n] and [2n+1]; a value >= 0 is a child node, < 0 is -(symbol + 1). */
const HUFFMAN_TRIE: Int32Array = (() => {
  const trie = new Int32Array(2 * 512);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = HUFFMAN_LENGTHS[sym]!;
    const code = HUFFMAN_CODES[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) & 1;
      const slot = 2 * node + bit;
      if (i === 0) {
        trie[slot] = -(sym + 1);
      } else {
        if (trie[slot] === 0) trie[slot] = nodes++;
        node = trie[slot]!;
      }
    }
  }
  return trie;
})();

/** The Huffman code of a symbol (0..256) as [code, bit length]; exposed for tests and encoders. */
export function huffmanCode(symbol: number): [number, number] {
  return [HUFFMAN_CODES[symbol]!, HUFFMAN_LENGTHS[symbol]!];
}

function hpackError(message: string, offset: number, rfc: string): never {
  throw new UdpTunnelError(ErrorCodes.HPACK, `${message} (${rfc})`, { offset, rfc });
}

/**
 * Decodes a Huffman-coded string (RFC 7541 §5.2). Throws HPACK on EOS inside the string, padding longer than 7 bits
 * or padding that is not the EOS prefix (all ones).
 */
export function huffmanDecode(input: Uint8Array, offset = 0): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil((input.length * 8) / 5));
  let n = 0;
  let node = 0;
  let depth = 0; // bits since the last complete symbol
  let allOnes = true;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >> b) & 1;
      const next = HUFFMAN_TRIE[2 * node + bit]!;
      depth++;
      if (bit === 0) allOnes = false;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === EOS) hpackError('Huffman string contains EOS', offset + i, 'RFC 7541 §5.2');
        out[n++] = sym;
        node = 0;
        depth = 0;
        allOnes = true;
      } else {
        node = next;
      }
    }
  }
  if (depth > 7) hpackError('Huffman padding longer than 7 bits', offset + input.length, 'RFC 7541 §5.2');
  if (!allOnes) hpackError('Huffman padding is not the EOS prefix', offset + input.length, 'RFC 7541 §5.2');
  return out.subarray(0, n);
}

/** Huffman-encodes bytes (RFC 7541 §5.2), padding with the EOS prefix. */
export function huffmanEncode(input: Uint8Array): Buffer {
  let bits = 0;
  for (const b of input) bits += HUFFMAN_LENGTHS[b]!;
  const out = Buffer.alloc(Math.ceil(bits / 8));
  let pos = 0;
  for (const b of input) {
    const code = HUFFMAN_CODES[b]!;
    const len = HUFFMAN_LENGTHS[b]!;
    for (let i = len - 1; i >= 0; i--) {
      if (Math.floor(code / 2 ** i) & 1) out[pos >> 3]! |= 0x80 >> (pos & 7);
      pos++;
    }
  }
  while (pos & 7) {
    out[pos >> 3]! |= 0x80 >> (pos & 7);
    pos++;
  }
  return out;
}

/** Options of an HpackDecoder. */
export interface HpackDecoderOptions {
  /** The decoding side's SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2); default 4096. */
  maxTableSize?: number;
  /** Largest header list (RFC 7541 §4.1 sizes: name + value + 32 per field) accepted; default 65536. */
  maxHeaderListSize?: number;
}

/** Hard cap on the dynamic table size, whatever a peer advertises. */
export const HPACK_MAX_TABLE_SIZE = 1024 * 1024;

/** Default header list limit. */
export const DEFAULT_MAX_HEADER_LIST_SIZE = 64 * 1024;

/**
 * RFC 7541 header block decoder with its dynamic table. One instance per direction of a connection; blocks must be
 * fed in order. Throws UdpTunnelError (HPACK, or HEADERS_TOO_LARGE) on malformed input; the details carry `offset`
 * within the block. After an error the table state is undefined, so the caller should stop using the instance.
 */
export class HpackDecoder {
  // Oldest at `first`, newest at the end; evicting advances `first` so adds and evictions are O(1).
  private ring: Array<[string, string, number]> = []; // [name, value, size]
  private first = 0;
  private size = 0;
  private maxSize: number;
  private allowedMax: number;
  private readonly maxHeaderListSize: number;

  constructor(options: HpackDecoderOptions = {}) {
    this.allowedMax = Math.min(options.maxTableSize ?? 4096, HPACK_MAX_TABLE_SIZE);
    this.maxSize = this.allowedMax;
    this.maxHeaderListSize = options.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE;
  }

  /** Current dynamic table size in RFC 7541 §4.1 octets. */
  get tableSize(): number {
    return this.size;
  }

  /** Number of dynamic table entries. */
  get tableLength(): number {
    return this.ring.length - this.first;
  }

  /** Current dynamic table maximum (the last size update). */
  get tableMaxSize(): number {
    return this.maxSize;
  }

  /** Dynamic table entries, newest first (index 62 first). */
  tableEntries(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (let k = this.ring.length - 1; k >= this.first; k--) out.push([this.ring[k]![0], this.ring[k]![1]]);
    return out;
  }

  /** Applies the decoding side's SETTINGS_HEADER_TABLE_SIZE: the limit for later size updates. */
  setMaxTableSize(value: number): void {
    this.allowedMax = Math.min(Math.max(0, value), HPACK_MAX_TABLE_SIZE);
  }

  /** Decodes one complete header block into its field list. */
  decode(block: Uint8Array): HeaderList {
    const headers: HeaderList = [];
    let listSize = 0;
    let i = 0;
    let fieldsSeen = false;
    const readInt = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      if (i >= block.length) hpackError('header block ends inside an integer', i, 'RFC 7541 §5.1');
      let value = block[i++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (i >= block.length) hpackError('header block ends inside an integer', i, 'RFC 7541 §5.1');
        const b = block[i++]!;
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (value > 0x7fff_ffff || shift > 35) hpackError('integer too large', i, 'RFC 7541 §5.1');
        if ((b & 0x80) === 0) return value;
      }
    };
    const readString = (): string => {
      if (i >= block.length) hpackError('header block ends before a string', i, 'RFC 7541 §5.2');
      const huffman = (block[i]! & 0x80) !== 0;
      const len = readInt(7);
      if (i + len > block.length) hpackError(`string of ${len} bytes runs past the header block`, i, 'RFC 7541 §5.2');
      const raw = block.subarray(i, i + len);
      const start = i;
      i += len;
      const bytes = huffman ? huffmanDecode(raw, start) : raw;
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    };
    const lookup = (index: number, at: number): [string, string] => {
      if (index === 0) hpackError('index 0 is not used', at, 'RFC 7541 §6.1');
      if (index <= HPACK_STATIC_TABLE.length) {
        const e = HPACK_STATIC_TABLE[index - 1]!;
        return [e[0], e[1]];
      }
      const k = index - HPACK_STATIC_TABLE.length - 1;
      const e = k < this.ring.length - this.first ? this.ring[this.ring.length - 1 - k] : undefined;
      if (e === undefined) hpackError(`index ${index} is beyond the tables`, at, 'RFC 7541 §2.3.3');
      return [e[0], e[1]];
    };
    const emit = (name: string, value: string, at: number): void => {
      listSize += name.length + value.length + 32;
      if (listSize > this.maxHeaderListSize) {
        throw new UdpTunnelError(
          ErrorCodes.HEADERS_TOO_LARGE,
          `header list exceeds ${this.maxHeaderListSize} bytes`,
          { offset: at, limit: this.maxHeaderListSize },
        );
      }
      headers.push([name, value]);
      fieldsSeen = true;
    };
    while (i < block.length) {
      const at = i;
      const b = block[i]!;
      if (b & 0x80) {
        const [name, value] = lookup(readInt(7), at);
        emit(name, value, at);
      } else if (b & 0x40) {
        const index = readInt(6);
        const name = index === 0 ? readString() : lookup(index, at)[0];
        const value = readString();
        emit(name, value, at);
        this.add(name, value);
      } else if (b & 0x20) {
        // RFC 7541 §4.2: a size update must come at the start of a header block.
        if (fieldsSeen) hpackError('dynamic table size update after a header field', at, 'RFC 7541 §4.2');
        const size = readInt(5);
        if (size > this.allowedMax) {
          hpackError(`dynamic table size update to ${size} exceeds the limit ${this.allowedMax}`, at, 'RFC 7541 §6.3');
        }
        this.maxSize = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001): 4-bit prefix, table untouched.
        const index = readInt(4);
        const name = index === 0 ? readString() : lookup(index, at)[0];
        const value = readString();
        emit(name, value, at);
      }
    }
    return headers;
  }

  private add(name: string, value: string): void {
    const entrySize = name.length + value.length + 32;
    // RFC 7541 §4.4: an entry larger than the table empties it and is not added.
    this.evict(entrySize);
    if (entrySize <= this.maxSize) {
      this.ring.push([name, value, entrySize]);
      this.size += entrySize;
    }
  }

  private evict(room: number): void {
    while (this.first < this.ring.length && this.size + room > this.maxSize) {
      this.size -= this.ring[this.first]![2];
      this.first++;
    }
    if (this.first > 64 && this.first * 2 > this.ring.length) {
      this.ring = this.ring.slice(this.first);
      this.first = 0;
    }
  }
}
