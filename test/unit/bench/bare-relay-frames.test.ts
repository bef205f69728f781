import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FRAME_HEADER_BYTES, FrameDecoder, MAX_FRAME_PAYLOAD, encodeFrames, writeFrame } from '../../../src/bench/bare-relay-frames.js';

/** A decoder that copies what it delivers (payloads may be views of the chunk). */
function collecting(maxFrameLength?: number): { d: FrameDecoder; got: Buffer[]; oversize: number } {
  const got: Buffer[] = [];
  const r = { d: null as unknown as FrameDecoder, got, oversize: 0 };
  r.d = new FrameDecoder((p) => got.push(Buffer.from(p)), {
    ...(maxFrameLength !== undefined ? { maxFrameLength } : {}),
    onOversize: () => r.oversize++,
  });
  return r;
}

/** Splits `buf` at the given cut points (sorted, deduplicated, clamped). */
function split(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.min(Math.max(c, 0), buf.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
}


describe('bench/bare-relay-frames: encodeFrames, writeFrame and FrameDecoder', () => {
  it('encodes a 2-byte big-endian length before each payload', () => {
    assert.deepEqual(
      [...encodeFrames([Buffer.from([0xaa, 0xbb, 0xcc]), Buffer.alloc(0), Buffer.from([0x01])])],
      [0x00, 0x03, 0xaa, 0xbb, 0xcc, 0x00, 0x00, 0x00, 0x01, 0x01],
    );
    const big = Buffer.alloc(0x1234, 7);
    const out = Buffer.alloc(FRAME_HEADER_BYTES + big.length);
    assert.equal(writeFrame(out, 0, big), out.length);
    assert.deepEqual([out[0], out[1]], [0x12, 0x34]);
    assert.throws(() => encodeFrames([Buffer.alloc(MAX_FRAME_PAYLOAD + 1)]), RangeError);
  });

  it('decodes many frames from one chunk, including empty ones, as views without copying', () => {
    const payloads = [Buffer.from('one'), Buffer.alloc(0), Buffer.from('three'), Buffer.alloc(300, 9)];
    const chunk = encodeFrames(payloads);
    const views: Buffer[] = [];
    const d = new FrameDecoder((p) => views.push(p));
    d.push(chunk);
    assert.deepEqual(views.map((v) => v.toString('hex')), payloads.map((p) => p.toString('hex')));
    assert.equal(views[0]!.buffer, chunk.buffer, 'a frame inside one chunk is a view of it');
    assert.equal(d.bufferedBytes, 0);
    assert.equal(d.atBoundary, true);
  });

  it('decodes a stream split at every position into two chunks', () => {
    const payloads = [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cdefg')];
    const stream = encodeFrames(payloads);
    for (let cut = 0; cut <= stream.length; cut++) {
      const { d, got } = collecting();
      d.push(stream.subarray(0, cut));
      d.push(stream.subarray(cut));
      assert.deepEqual(got.map((g) => g.toString()), ['ab', '', 'cdefg'], `cut at ${cut}`);
      assert.equal(d.atBoundary, true);
    }
  });

  it('decodes any split of any frame sequence into the same payloads (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 20 }),
        fc.array(fc.nat({ max: 20_000 }), { maxLength: 40 }),
        (arrays, cuts) => {
          const payloads = arrays.map((a) => Buffer.from(a));
          const stream = encodeFrames(payloads);
          const { d, got } = collecting();
          for (const piece of split(stream, cuts)) d.push(piece);
          assert.deepEqual(got.map((g) => g.toString('hex')), payloads.map((p) => p.toString('hex')));
          assert.equal(d.bufferedBytes, 0);
          assert.equal(d.atBoundary, true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('holds at most one frame: a largest frame fed one byte at a time peaks at 2 + 65534 bytes, then is delivered', () => {
    const payload = Buffer.alloc(MAX_FRAME_PAYLOAD);
    for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
    const stream = encodeFrames([payload, Buffer.from('next')]);
    const { d, got } = collecting();
    let peak = 0;
    for (let i = 0; i < stream.length; i++) {
      d.push(stream.subarray(i, i + 1));
      peak = Math.max(peak, d.bufferedBytes);
    }
    assert.equal(peak, FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD - 1);
    assert.equal(got.length, 2);
    assert.equal(got[0]!.equals(payload), true);
    assert.equal(got[1]!.toString(), 'next');
    assert.equal(d.bufferedBytes, 0);
  });

  it('skips frames over maxFrameLength without buffering them, counts each, and keeps the frames around them', () => {
    const stream = encodeFrames([Buffer.from('ok1'), Buffer.alloc(1000, 1), Buffer.from('ok2'), Buffer.alloc(101, 2), Buffer.alloc(100, 3)]);
    for (const cuts of [[], [1], [5, 6, 7, 300, 700], Array.from({ length: stream.length }, (_, i) => i)]) {
      const r = collecting(100);
      let peak = 0;
      for (const piece of split(stream, cuts)) {
        r.d.push(piece);
        peak = Math.max(peak, r.d.bufferedBytes);
      }
      assert.deepEqual(r.got.map((g) => g.length), [3, 3, 100]);
      assert.equal(r.got[2]!.every((b) => b === 3), true);
      assert.equal(r.oversize, 2);
      assert.ok(peak <= FRAME_HEADER_BYTES + 100, `buffered ${peak} bytes`);
    }
  });

  it('reports a partial frame as not at a boundary', () => {
    const { d } = collecting();
    d.push(Buffer.from([0x00]));
    assert.equal(d.atBoundary, false);
    assert.equal(d.bufferedBytes, 1);
    d.push(Buffer.from([0x05, 0x61]));
    assert.equal(d.bufferedBytes, 3);
    assert.equal(d.atBoundary, false);
  });
});
