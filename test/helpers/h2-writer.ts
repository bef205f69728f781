import { Buffer } from 'node:buffer';
import { huffmanEncode } from '../../src/inspect/hpack.js';

/** RFC 7541 §5.1 integer with an N-bit prefix; `high` holds the representation's leading bits. */
export function hpackInt(value: number, prefixBits: number, high = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([high | value]);
  const out = [high | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** RFC 7541 §5.2 string literal, optionally Huffman-coded. */
export function hpackString(text: string, huffman = false): Buffer {
  const raw = Buffer.from(text, 'latin1');
  const body = huffman ? huffmanEncode(raw) : raw;
  return Buffer.concat([hpackInt(body.length, 7, huffman ? 0x80 : 0), body]);
}

/** Literal header field without indexing, new name (RFC 7541 §6.2.2): every decoder must accept it. */
export function literalWithoutIndexing(name: string, value: string, huffman = false): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name, huffman), hpackString(value, huffman)]);
}

/** Literal header field with incremental indexing, new name (RFC 7541 §6.2.1). */
export function literalIncremental(name: string, value: string, huffman = false): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name, huffman), hpackString(value, huffman)]);
}

/** Indexed header field (RFC 7541 §6.1). */
export function indexed(index: number): Buffer {
  return hpackInt(index, 7, 0x80);
}

/** A header block of literal-without-indexing fields. */
export function headerBlock(headers: Array<[string, string]>, huffman = false): Buffer {
  return Buffer.concat(headers.map(([n, v]) => literalWithoutIndexing(n, v, huffman)));
}

/** One HTTP/2 frame (RFC 9113 §4.1). */
export function h2Frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

/** A SETTINGS frame with the given identifier/value pairs. */
export function settingsFrame(pairs: Array<[number, number]>, ack = false): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return h2Frame(4, ack ? 1 : 0, 0, p);
}

/** The client connection preface. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** HTTP/2 frame flags. */
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const PADDED = 0x8;
export const PRIORITY = 0x20;
