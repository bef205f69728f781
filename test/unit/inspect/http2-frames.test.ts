import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { H2_PREFACE } from '../../../src/tunnel/http/version-detect.js';
import { Http2FrameParser, http2ErrorName } from '../../../src/inspect/http2-frames.js';
import type { Http2FrameItem } from '../../../src/inspect/http2-frames.js';
import { END_HEADERS, END_STREAM, PADDED, PREFACE, PRIORITY, h2Frame, settingsFrame } from '../../helpers/h2-writer.js';

function parseAll(bytes: Buffer, expectPreface: boolean, splits: number[] = [], maxFrameSize?: number): Http2FrameItem[] {
  const p = new Http2FrameParser({ expectPreface, ...(maxFrameSize === undefined ? {} : { maxFrameSize }) });
  const out: Http2FrameItem[] = [];
  let prev = 0;
  for (const s of [...splits, bytes.length]) {
    out.push(...p.push(bytes.subarray(prev, s)));
    prev = s;
  }
  return out;
}

/** Frames as plain JSON (Buffers as hex) for exact comparison. */
function plain(items: Http2FrameItem[]): unknown[] {
  return JSON.parse(
    JSON.stringify(items, (_k, v: unknown) =>
      v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v,
    ),
  ) as unknown[];
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

describe('H2_PREFACE', () => {
  it('is the one preface: the listeners detect HTTP/2 by it and the frame parser expects it (RFC 9113 §3.4)', () => {
    assert.equal(H2_PREFACE.toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    assert.equal(Object.hasOwn(new Http2FrameParser({ expectPreface: true }), 'frames'), false);
    const items = plain(parseAll(Buffer.concat([H2_PREFACE, settingsFrame([])]), true)) as Array<{ type: string; offset: number }>;
    assert.deepEqual(items.map((i) => [i.type, i.offset]), [['SETTINGS', H2_PREFACE.length]]);
  });
});

describe('Http2FrameParser', () => {
  const stream = Buffer.concat([
    PREFACE,
    settingsFrame([[0x8, 1], [0x1, 4096]]),
    h2Frame(0x1, END_HEADERS | PRIORITY | PADDED, 1, Buffer.concat([Buffer.from([2]), u32(0x80000003), Buffer.from([15]), Buffer.from('abc'), Buffer.alloc(2)])),
    h2Frame(0x0, PADDED, 1, Buffer.concat([Buffer.from([3]), Buffer.from('hello'), Buffer.alloc(3)])),
    h2Frame(0x1, 0, 3, Buffer.from('AB')),
    h2Frame(0x9, 0, 3, Buffer.from('CD')),
    h2Frame(0x9, END_HEADERS, 3, Buffer.from('E')),
    h2Frame(0x2, 0, 3, Buffer.alloc(5)),
    h2Frame(0xfa, 0, 0, Buffer.from('ext')),
    h2Frame(0x6, 1, 0, Buffer.from('01234567')),
    h2Frame(0x8, 0, 1, u32(65535)),
    h2Frame(0x3, 0, 3, u32(8)),
    h2Frame(0x0, END_STREAM, 1, Buffer.alloc(0)),
    h2Frame(0x5, END_HEADERS, 1, Buffer.concat([u32(2), Buffer.from('pp')])),
    h2Frame(0x7, 0, 0, Buffer.concat([u32(3), u32(0), Buffer.from('bye')])),
  ]);
  const expected = [
    { type: 'SETTINGS', offset: 24, streamId: 0, ack: false, settings: [[8, 1], [1, 4096]] },
    { type: 'HEADERS', offset: 45, streamId: 1, endStream: false, headerBlock: '616263', priority: { exclusive: true, dependency: 3, weight: 16 }, continuations: 0 },
    { type: 'DATA', offset: 65, streamId: 1, endStream: false, data: '68656c6c6f', padLength: 3 },
    { type: 'HEADERS', offset: 83, streamId: 3, endStream: false, headerBlock: '4142434445', priority: null, continuations: 2 },
    { type: 'SKIPPED', offset: 115, streamId: 3, frameType: 2, length: 5 },
    { type: 'SKIPPED', offset: 129, streamId: 0, frameType: 0xfa, length: 3 },
    { type: 'PING', offset: 141, streamId: 0, ack: true, opaqueHex: '3031323334353637' },
    { type: 'WINDOW_UPDATE', offset: 158, streamId: 1, increment: 65535 },
    { type: 'RST_STREAM', offset: 171, streamId: 3, errorCode: 8 },
    { type: 'DATA', offset: 184, streamId: 1, endStream: true, data: '', padLength: 0 },
    { type: 'PUSH_PROMISE', offset: 193, streamId: 1, promisedStreamId: 2, headerBlock: '7070' },
    { type: 'GOAWAY', offset: 208, streamId: 0, lastStreamId: 3, errorCode: 0, debugHex: '627965' },
  ];

  it('parses every frame type it knows, with offsets', () => {
    assert.deepEqual(plain(parseAll(stream, true)), expected);
  });

  it('gives the same frames whatever the split', () => {
    for (let s = 1; s < stream.length; s++) assert.deepEqual(plain(parseAll(stream, true, [s])), expected, `split at ${s}`);
    const every = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(plain(parseAll(stream, true, every)), expected);
  });

  it('reports a bad preface once and stops', () => {
    const items = parseAll(Buffer.from('GET / HTTP/1.1\r\n\r\n'), true);
    assert.deepEqual(items, [
      { type: 'ERROR', offset: 0, code: 'UT_ERR_HTTP2_PROTOCOL', h2Error: 'PROTOCOL_ERROR', reason: 'bytes do not match the client connection preface', rfc: 'RFC 9113 §3.4' },
    ]);
    const p = new Http2FrameParser({ expectPreface: true });
    p.push(PREFACE.subarray(0, 10));
    assert.equal(p.push(Buffer.from('X'))[0]!.offset, 10);
    assert.deepEqual(p.push(settingsFrame([])), [], 'nothing after the error');
  });

  const errors: Array<[string, Buffer, string, string, number]> = [
    ['frame over the size limit', h2Frame(0x0, 0, 1, Buffer.alloc(16385)), 'FRAME_SIZE_ERROR', 'frame of 16385 bytes exceeds the maximum frame size 16384', 0],
    ['DATA on stream 0', h2Frame(0x0, 0, 0, Buffer.from('x')), 'PROTOCOL_ERROR', 'DATA frame on stream 0', 0],
    ['padding longer than the payload', h2Frame(0x0, PADDED, 1, Buffer.from([5, 1, 2])), 'PROTOCOL_ERROR', 'DATA padding length exceeds the payload', 0],
    ['SETTINGS not a multiple of 6', h2Frame(0x4, 0, 0, Buffer.alloc(7)), 'FRAME_SIZE_ERROR', 'SETTINGS payload of 7 bytes', 0],
    ['SETTINGS on a stream', h2Frame(0x4, 0, 1, Buffer.alloc(0)), 'PROTOCOL_ERROR', 'SETTINGS on a stream', 0],
    ['PING of 4 bytes', h2Frame(0x6, 0, 0, Buffer.alloc(4)), 'FRAME_SIZE_ERROR', 'PING of 4 bytes', 0],
    ['CONTINUATION alone', h2Frame(0x9, END_HEADERS, 1, Buffer.from('x')), 'PROTOCOL_ERROR', 'CONTINUATION without a preceding HEADERS', 0],
    [
      'header block interrupted',
      Buffer.concat([h2Frame(0x1, 0, 1, Buffer.from('x')), h2Frame(0x0, 0, 1, Buffer.from('y'))]),
      'PROTOCOL_ERROR',
      'frame type 0x0 interrupts the header block of stream 1',
      10,
    ],
    ['RST_STREAM of 3 bytes', h2Frame(0x3, 0, 1, Buffer.alloc(3)), 'FRAME_SIZE_ERROR', 'RST_STREAM of 3 bytes', 0],
    ['GOAWAY too short', h2Frame(0x7, 0, 0, Buffer.alloc(7)), 'FRAME_SIZE_ERROR', 'GOAWAY of 7 bytes', 0],
    ['WINDOW_UPDATE of 5 bytes', h2Frame(0x8, 0, 0, Buffer.alloc(5)), 'FRAME_SIZE_ERROR', 'WINDOW_UPDATE of 5 bytes', 0],
  ];
  for (const [name, bytes, h2Error, reason, offset] of errors) {
    it(`error: ${name}`, () => {
      const items = parseAll(bytes, false);
      const last = items[items.length - 1]!;
      assert.equal(last.type, 'ERROR');
      if (last.type === 'ERROR') {
        assert.equal(last.h2Error, h2Error);
        assert.equal(last.reason, reason);
        assert.equal(last.offset, offset);
      }
    });
  }

  it('the frame size limit follows SETTINGS_MAX_FRAME_SIZE', () => {
    const big = h2Frame(0x0, 0, 1, Buffer.alloc(20000, 1));
    assert.equal(parseAll(big, false)[0]!.type, 'ERROR');
    const p = new Http2FrameParser({ expectPreface: false });
    p.setMaxFrameSize(32768);
    const items = p.push(big);
    assert.equal(items[0]!.type, 'DATA');
    assert.equal(p.bufferedBytes, 0);
  });

  it('a header block over its limit is HEADERS_TOO_LARGE', () => {
    const p = new Http2FrameParser({ expectPreface: false, maxHeaderBlock: 10 });
    const items = p.push(Buffer.concat([h2Frame(0x1, 0, 1, Buffer.alloc(6)), h2Frame(0x9, END_HEADERS, 1, Buffer.alloc(6))]));
    assert.deepEqual(items, [
      {
        type: 'ERROR',
        offset: 0,
        code: 'UT_ERR_HEADERS_TOO_LARGE',
        h2Error: 'ENHANCE_YOUR_CALM',
        reason: 'header block of stream 1 exceeds 10 bytes',
        rfc: 'RFC 9113 §10.5.1',
      },
    ]);
  });

  it('buffers at most one partial frame', () => {
    const p = new Http2FrameParser({ expectPreface: false });
    const f = h2Frame(0x0, 0, 1, Buffer.alloc(1000));
    assert.deepEqual(p.push(f.subarray(0, 600)), []);
    assert.equal(p.bufferedBytes, 600);
    assert.equal(p.push(f.subarray(600)).length, 1);
    assert.equal(p.bufferedBytes, 0);
    assert.equal(p.atBoundary, true);
  });

  it('a large frame arriving in many small pieces is held, then delivered whole', () => {
    const p = new Http2FrameParser({ expectPreface: false });
    p.setMaxFrameSize(1 << 20);
    const payload = Buffer.alloc(1 << 20, 0x5a);
    const f = h2Frame(0x0, END_STREAM, 7, payload);
    const items: Http2FrameItem[] = [];
    for (let o = 0; o < f.length; o += 1000) {
      items.push(...p.push(f.subarray(o, o + 1000)));
      if (o + 1000 < f.length) assert.equal(p.bufferedBytes, o + 1000);
    }
    assert.equal(items.length, 1);
    const d = items[0]!;
    assert.ok(d.type === 'DATA' && d.endStream && d.streamId === 7 && d.data.equals(payload));
  });

  it('names error codes', () => {
    assert.equal(http2ErrorName(8), 'CANCEL (0x8)');
    assert.equal(http2ErrorName(0x99), 'UNKNOWN (0x99)');
  });

  it('never throws on random input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), fc.nat({ max: 400 }), (bytes, preface, cut) => {
        const b = Buffer.concat([preface ? PREFACE : Buffer.alloc(0), Buffer.from(bytes)]);
        const items = parseAll(b, preface, cut > 0 && cut < b.length ? [cut] : []);
        assert.ok(items.filter((i) => i.type === 'ERROR').length <= 1);
      }),
      { numRuns: 300 },
    );
  });
});
