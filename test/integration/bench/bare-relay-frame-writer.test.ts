import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { FRAME_HEADER_BYTES, FrameDecoder, FrameWriter } from '../../../src/bench/bare-relay-frames.js';
import { tcpPair, waitUntil } from '../../helpers/net.js';

// FrameWriter over real TCP sockets; the pure framing tests are in test/unit/bench/bare-relay-frames.test.ts.

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

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('bench/bare-relay-frames: FrameWriter over TCP', () => {
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
