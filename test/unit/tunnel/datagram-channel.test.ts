import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { encodeCapsule } from '../../../src/tunnel/codec/capsule.js';
import { encodeDatagramCapsule } from '../../../src/tunnel/codec/datagram.js';
import { DatagramChannel } from '../../../src/tunnel/datagram-channel.js';
import type { DatagramChannelOptions } from '../../../src/tunnel/datagram-channel.js';
import type { UdpTunnelError } from '../../../src/tunnel/errors.js';
import { streamPair } from '../../helpers/stream-pair.js';


/** Counts the writes made on `s` and the bytes in them. */
function countWrites(s: Duplex): { writes: number; bytes: number } {
  const counts = { writes: 0, bytes: 0 };
  const write = s.write.bind(s) as (chunk: Buffer) => boolean;
  (s as unknown as { write: (chunk: Buffer) => boolean }).write = (chunk: Buffer) => {
    counts.writes++;
    counts.bytes += chunk.length;
    return write(chunk);
  };
  return counts;
}

function options(extra: Partial<DatagramChannelOptions> = {}): DatagramChannelOptions & { got: Buffer[]; malformed: UdpTunnelError[] } {
  const got: Buffer[] = [];
  const malformed: UdpTunnelError[] = [];
  return {
    session: 't',
    role: 'client',
    maxCapsuleLength: 65536 + 16,
    maxWriteBuffer: 1 << 20,
    onDatagram: (p) => got.push(Buffer.from(p)),
    onMalformed: (e) => malformed.push(e),
    got,
    malformed,
    ...extra,
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function until(cond: () => boolean): Promise<void> {
  for (const end = Date.now() + 10_000; !cond() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), 'condition not reached');
}

describe('tunnel/datagram-channel: DatagramChannel over a stream pair', () => {
  const pairs: { close(): void }[] = [];
  after(() => {
    for (const p of pairs) p.close();
  });

  it('writes the datagrams of one turn as one write at its end, intact and in order', async () => {
    const pair = streamPair();
    pairs.push(pair);
    const writes = countWrites(pair.a);
    const tx = new DatagramChannel(pair.a, options());
    const rxOpts = options({ role: 'server' });
    new DatagramChannel(pair.b, rxOpts);
    const sent = Array.from({ length: 100 }, (_, i) => Buffer.alloc(i % 7 === 0 ? 0 : 10 + i, i));
    for (const p of sent) assert.equal(tx.send(p), true);
    assert.equal(writes.writes, 0, 'nothing written before the turn ends');
    await turn();
    assert.equal(writes.writes, 1);
    assert.equal(writes.bytes, sent.reduce((a, p) => a + encodeDatagramCapsule(p).length, 0));
    await until(() => rxOpts.got.length === sent.length);
    assert.deepEqual(rxOpts.got.map((b) => b.toString('hex')), sent.map((b) => b.toString('hex')));
    assert.deepEqual(tx.counters, { rxDatagrams: 0, rxBytes: 0, txDatagrams: 100, txBytes: sent.reduce((a, p) => a + p.length, 0), dropBackpressure: 0, dropContextId: 0, dropOversize: 0, skippedCapsules: 0 });
  });

  it('writes each datagram at once when coalescing is off', async () => {
    const pair = streamPair();
    pairs.push(pair);
    const writes = countWrites(pair.a);
    const tx = new DatagramChannel(pair.a, options({ coalesceWrites: false }));
    tx.send(Buffer.from('one'));
    tx.send(Buffer.from('two'));
    assert.equal(writes.writes, 2);
  });

  it('counts the pending batch toward maxWriteBuffer and drops what does not fit', async () => {
    const pair = streamPair();
    pairs.push(pair);
    // Each 40-byte payload takes 43 bytes as a capsule; the check lets a send through while at most 100 are held.
    const tx = new DatagramChannel(pair.a, options({ maxWriteBuffer: 100 }));
    const results = Array.from({ length: 5 }, () => tx.send(Buffer.alloc(40)));
    assert.deepEqual(results, [true, true, true, false, false]);
    assert.equal(tx.counters.txDatagrams, 3);
    assert.equal(tx.counters.dropBackpressure, 2);
    await turn();
  });

  it('sendRaw writes the pending datagrams first, keeping the byte order', async () => {
    const pair = streamPair();
    pairs.push(pair);
    const tx = new DatagramChannel(pair.a, options());
    const rxOpts = options({ role: 'server' });
    const rx = new DatagramChannel(pair.b, rxOpts);
    tx.send(Buffer.from('first'));
    tx.sendRaw(encodeCapsule(0x40, Buffer.from('grease')));
    tx.send(Buffer.from('second'));
    await until(() => rxOpts.got.length === 2);
    assert.deepEqual(rxOpts.got.map(String), ['first', 'second']);
    assert.equal(rx.counters.skippedCapsules, 1);
  });

  it('delivers context 0 in a non-minimal encoding and drops other context IDs (RFC 9298 §4)', async () => {
    const pair = streamPair();
    pairs.push(pair);
    const rxOpts = options({ role: 'server' });
    const rx = new DatagramChannel(pair.b, rxOpts);
    pair.a.write(encodeCapsule(0, Buffer.from([0x40, 0x00, 0x61]))); // context 0 as two bytes, payload "a"
    pair.a.write(encodeCapsule(0, Buffer.from([0x02, 0x62]))); // context 2: an extension we do not speak
    pair.a.write(encodeCapsule(0, Buffer.from([0x00, 0x63]))); // context 0, payload "c"
    await until(() => rxOpts.got.length === 2 && rx.counters.dropContextId === 1);
    assert.deepEqual(rxOpts.got.map(String), ['a', 'c']);
    assert.equal(rx.counters.rxDatagrams, 2);
    assert.equal(rx.counters.rxBytes, 2);
  });

  it('reports a context-0 payload over 65527 bytes as malformed (RFC 9298 §5)', async () => {
    const pair = streamPair();
    pairs.push(pair);
    const rxOpts = options({ role: 'server' });
    new DatagramChannel(pair.b, rxOpts);
    pair.a.write(encodeCapsule(0, Buffer.alloc(1 + 65528)));
    await until(() => rxOpts.malformed.length === 1);
    assert.equal(rxOpts.malformed[0]!.code, 'UT_ERR_DATAGRAM_TOO_LARGE');
    assert.deepEqual(rxOpts.got, []);
  });
});
