import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameWriter, MAX_FRAME_PAYLOAD, encodeFrames, writeFrame } from '../../../src/bench/bare-relay-frames.js';
import { tcpPair, waitUntil } from '../../helpers/net.js';

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


const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('bare-relay frames', () => {
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

describe('FrameWriter', () => {
  it('writes the frames of one turn in one write, and each later turn in its own', async () => {
    const pair = await tcpPair();
    try {
      const writes: Buffer[] = [];
      const write = pair.a.write.bind(pair.a) as (chunk: Buffer) => boolean;
      (pair.a as unknown as { write: (chunk: Buffer) => boolean }).write = (chunk: Buffer) => {
        writes.push(Buffer.from(chunk));
        return write(chunk);
      };
      const w = new FrameWriter(pair.a, { maxWriteBuffer: 1 << 20 });
      const { d, got } = collecting();
      pair.b.on('data', (c: Buffer) => d.push(c));
      for (const s of ['a', 'bb', 'ccc']) assert.equal(w.send(Buffer.from(s)), true);
      assert.equal(writes.length, 0, 'nothing is written before the turn ends');
      assert.equal(w.batchedBytes, 3 * FRAME_HEADER_BYTES + 6);
      await turn();
      assert.equal(writes.length, 1);
      assert.deepEqual([...writes[0]!], [0, 1, 0x61, 0, 2, 0x62, 0x62, 0, 3, 0x63, 0x63, 0x63]);
      w.send(Buffer.from('dddd'));
      await turn();
      assert.equal(writes.length, 2);
      const until = Date.now() + 5000;
      while (got.length < 4 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(got.map((g) => g.toString()), ['a', 'bb', 'ccc', 'dddd']);
      assert.deepEqual(w.counters, { txFrames: 4, txBytes: 10, dropBackpressure: 0, dropOversize: 0, dropUnflushed: 0 });
    } finally {
      pair.close();
    }
  });

  it('drops and counts payloads once the unsent bytes would pass maxWriteBuffer, and payloads over maxFrameLength', async () => {
    const pair = await tcpPair('::1');
    try {
      const w = new FrameWriter(pair.a, { maxWriteBuffer: 1000, maxFrameLength: 500 });
      // Each 100-byte payload takes 102 bytes: 9 * 102 = 918 <= 1000 still admits a 10th; 10 * 102 = 1020 does not.
      const results = Array.from({ length: 20 }, () => w.send(Buffer.alloc(100)));
      assert.deepEqual(results, [...Array<boolean>(10).fill(true), ...Array<boolean>(10).fill(false)]);
      assert.equal(w.send(Buffer.alloc(501)), false);
      assert.deepEqual(w.counters, { txFrames: 10, txBytes: 1000, dropBackpressure: 10, dropOversize: 1, dropUnflushed: 0 });
      let received = 0;
      pair.b.on('data', (c: Buffer) => (received += c.length));
      await turn();
      const until = Date.now() + 5000;
      while (received < 1020 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
      assert.equal(received, 1020);
      // The batch went out: the limit admits new payloads again.
      assert.equal(w.send(Buffer.alloc(100)), true);
    } finally {
      pair.close();
    }
  });

  it('counts what a turn gathered when the stream closes before the turn ends, at the flush or on discard()', async () => {
    const pair = await tcpPair();
    const received: Buffer[] = [];
    pair.b.on('data', (c: Buffer) => received.push(c));
    pair.b.on('error', () => {});
    const farClosed = once(pair.b, 'close');
    const w = new FrameWriter(pair.a, { maxWriteBuffer: 1000 });
    assert.equal(w.send(Buffer.from('ab')), true);
    assert.equal(w.send(Buffer.from('cd')), true);
    pair.a.destroy();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(w.counters, { txFrames: 2, txBytes: 4, dropBackpressure: 0, dropOversize: 0, dropUnflushed: 2 });
    const other = await tcpPair();
    const otherReceived: Buffer[] = [];
    other.b.on('data', (c: Buffer) => otherReceived.push(c));
    const w2 = new FrameWriter(other.a, { maxWriteBuffer: 1000 });
    assert.equal(w2.send(Buffer.from('x')), true);
    w2.discard();
    await new Promise((r) => setImmediate(r));
    assert.equal(w2.counters.dropUnflushed, 1);
    assert.equal(w2.batchedBytes, 0);
    // The far end's close comes after anything the destroyed end wrote, so nothing can arrive later.
    await farClosed;
    assert.equal(received.length, 0);
    // On the open stream, a frame sent after the discard is the first and only thing to arrive.
    assert.equal(w2.send(Buffer.from('y')), true);
    await waitUntil(() => Buffer.concat(otherReceived).length >= FRAME_HEADER_BYTES + 1, 5000, 'the frame after the discard');
    assert.deepEqual([...Buffer.concat(otherReceived)], [0, 1, 0x79]);
    other.close();
    pair.close();
  });

  it('drops when the stream is no longer writable', async () => {
    const pair = await tcpPair();
    pair.a.destroy();
    const w = new FrameWriter(pair.a, { maxWriteBuffer: 1000 });
    assert.equal(w.send(Buffer.from('x')), false);
    assert.equal(w.counters.dropBackpressure, 1);
    pair.close();
  });
});
