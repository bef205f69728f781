import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { TcpSegment } from '../../../src/inspect/ip-tcp.js';
import { TcpReassembler } from '../../../src/inspect/tcp-reassembly.js';
import type { TcpReassemblyOptions } from '../../../src/inspect/tcp-reassembly.js';
import { ACK, FIN, PSH, RST, SYN, TcpFlow } from '../../helpers/pcap-writer.js';
import type { SegmentSpec } from '../../helpers/pcap-writer.js';

function seg(s: SegmentSpec): TcpSegment {
  return { ipVersion: 4, ...s, payload: s.payload ?? Buffer.alloc(0) };
}

/** Runs segments (with their times) through a reassembler; returns a readable log and the reassembler. */
function run(segments: Array<[SegmentSpec, number]>, options: TcpReassemblyOptions = {}, finishAt = 99): { log: string[]; r: TcpReassembler } {
  const log: string[] = [];
  const r = new TcpReassembler(
    {
      onConnection: (c, t) => log.push(`conn c${c.id} ${c.endpoints[0].address}:${c.endpoints[0].port} handshake=${c.handshake} @${t}`),
      onData: (c, side, data, t) => log.push(`data c${c.id} ${side} '${data.toString('latin1')}' @${t}`),
      onGap: (c, side, offset, missing, t) => log.push(`gap c${c.id} ${side} at ${offset} missing ${missing} @${t}`),
      onEnd: (c, side, reason, t) => log.push(`end c${c.id} ${side} ${reason} @${t}`),
    },
    options,
  );
  for (const [s, t] of segments) r.push(seg(s), t);
  r.finish(finishAt);
  return { log, r };
}

describe('TcpReassembler', () => {
  it('in-order exchange with handshake and FINs', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const [syn, synAck, ack] = f.handshake();
    const { log, r } = run([
      [syn!, 0],
      [synAck!, 1],
      [ack!, 2],
      [f.client('hello'), 3],
      [f.server('world'), 4],
      [f.client('', ACK | FIN), 5],
      [f.server('!', ACK | FIN), 6],
    ]);
    assert.deepEqual(log, [
      'conn c1 10.0.0.1:40000 handshake=true @0',
      "data c1 0 'hello' @3",
      "data c1 1 'world' @4",
      'end c1 0 fin @5',
      "data c1 1 '!' @6",
      'end c1 1 fin @6',
    ]);
    assert.equal(r.stats.connections, 1);
    assert.equal(r.stats.retransmittedBytes, 0);
  });

  it('reorders out-of-order segments and delivers at the time the hole fills', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    const a = f.client('AAA');
    const b = f.client('BBB');
    const c = f.client('CCC');
    const { log, r } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [c, 1], [b, 2], [a, 3]]);
    assert.deepEqual(log.slice(1), ["data c1 0 'AAA' @3", "data c1 0 'BBB' @3", "data c1 0 'CCC' @3", 'end c1 0 capture-end @99', 'end c1 1 capture-end @99']);
    assert.equal(r.stats.outOfOrderSegments, 2);
  });

  it('delivers retransmitted and overlapping bytes once', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    const a = f.client('0123456789');
    const b = f.client('abcde');
    const overlap = { ...a, seq: a.seq + 5, payload: Buffer.from('56789abc') };
    const { log, r } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [a, 1], [a, 2], [overlap, 3], [b, 4], [b, 5]]);
    assert.deepEqual(log.slice(1, 4), ["data c1 0 '0123456789' @1", "data c1 0 'abc' @3", "data c1 0 'de' @4"]);
    assert.equal(r.stats.retransmittedBytes, 10 + 5 + 3 + 5);
  });

  it('an out-of-order segment covered by a waiting one is a retransmission; overlapping waiting ones are trimmed', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    const a = f.client('AAAA');
    const b = f.client('BBBB');
    const c = f.client('CCCC');
    const bc = { ...b, payload: Buffer.from('BBBBCC') };
    const { log } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [bc, 1], [b, 2], [c, 3], [a, 4]]);
    assert.deepEqual(log.slice(1, 4), ["data c1 0 'AAAA' @4", "data c1 0 'BBBBCC' @4", "data c1 0 'CC' @4"]);
  });

  it('drops out-of-order segments beyond the buffer limit, counts them, and reports the gap', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    const a = f.client('AAAA');
    const b = f.client('BBBB');
    const c = f.client('CCCC');
    const d = f.client('DDDD');
    const { log, r } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [b, 1], [c, 2], [d, 3], [a, 4]], { maxBufferedBytes: 8 });
    assert.equal(r.stats.droppedSegments, 1);
    assert.equal(r.stats.droppedBytes, 4);
    assert.deepEqual(log.slice(1), [
      "data c1 0 'AAAA' @4",
      "data c1 0 'BBBB' @4",
      "data c1 0 'CCCC' @4",
      'end c1 0 capture-end @99',
      'end c1 1 capture-end @99',
    ]);
    assert.equal(r.stats.gaps, 0, 'the dropped segment was the last one: nothing after it waits');
    const again = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [c, 1], [d, 2], [b, 3]], { maxBufferedBytes: 8 });
    assert.deepEqual(again.log.slice(1), ['gap c1 0 at 0 missing 8 @99', 'end c1 0 capture-end @99', 'end c1 1 capture-end @99']);
    assert.equal(again.r.stats.droppedSegments, 1);
  });

  it('also limits the number of waiting segments', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    const parts = Array.from({ length: 5 }, (_, i) => f.client(String(i)));
    const { r } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [parts[4]!, 1], [parts[3]!, 1], [parts[2]!, 1], [parts[1]!, 1]], {
      maxBufferedSegments: 2,
    });
    assert.equal(r.stats.outOfOrderSegments, 2);
    assert.equal(r.stats.droppedSegments, 2, 'parts 2 and 1: part 0 never arrives, so nothing drains');
    assert.equal(r.stats.droppedBytes, 2);
    assert.equal(r.stats.gaps, 1);
  });

  it('reports a gap before a FIN whose preceding bytes never arrive', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    f.client('lost');
    const fin = f.client('', ACK | FIN);
    const { log } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [fin, 1]]);
    assert.deepEqual(log.slice(1), ['gap c1 0 at 0 missing 4 @99', 'end c1 0 capture-end @99', 'end c1 1 capture-end @99']);
  });

  it('a FIN seen before the data it follows ends the direction once the data arrives', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    const a = f.client('data');
    const fin = f.client('', ACK | FIN);
    const { log } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [fin, 1], [a, 2]]);
    assert.deepEqual(log.slice(1, 3), ["data c1 0 'data' @2", 'end c1 0 fin @2']);
  });

  it('RST ends both directions, reporting what was still missing', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const hs = f.handshake();
    f.client('xx');
    const later = f.client('yy');
    const rst = f.server('', RST | ACK);
    const { log } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [later, 1], [rst, 2]]);
    assert.deepEqual(log.slice(1), ['gap c1 0 at 0 missing 2 @2', 'end c1 0 rst @2', 'end c1 1 rst @2']);
  });

  it('ignores a bare RST of a connection it never saw, and still picks up the connection that follows', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const stray = f.server('', RST | ACK);
    const hs = f.handshake();
    const hello = f.client('hello');
    const { log, r } = run([[stray, 0], ...hs.map((s): [SegmentSpec, number] => [s, 1]), [hello, 2]]);
    assert.deepEqual(log, ["conn c1 10.0.0.1:40000 handshake=true @1", "data c1 0 'hello' @2", 'end c1 0 capture-end @99', 'end c1 1 capture-end @99']);
    assert.equal(r.stats.droppedConnectionSegments, 0);
  });

  it('picks up a connection mid-stream at the first segment seen', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    f.handshake();
    f.client('missed');
    const s1 = f.server('from-server');
    const c1 = f.client('from-client');
    const { log } = run([
      [s1, 0],
      [c1, 1],
    ]);
    assert.deepEqual(log, [
      'conn c1 10.0.0.2:443 handshake=false @0',
      "data c1 0 'from-server' @0",
      "data c1 1 'from-client' @1",
      'end c1 0 capture-end @99',
      'end c1 1 capture-end @99',
    ]);
  });

  it('takes the sides from a SYN-ACK when the SYN was not captured', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const [, synAck, ack] = f.handshake();
    const { log } = run([
      [synAck!, 0],
      [ack!, 1],
      [f.client('hi'), 2],
    ]);
    assert.deepEqual(log.slice(0, 2), ['conn c1 10.0.0.1:40000 handshake=true @0', "data c1 0 'hi' @2"]);
  });

  it('handles sequence numbers that wrap around 2^32', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443, 0xfffffffa, 0xfffffff0);
    const hs = f.handshake();
    const a = f.client('abcd');
    const b = f.client('efgh');
    const c = f.client('ijkl');
    assert.ok(c.seq < b.seq, 'the sequence wrapped');
    const { log } = run([...hs.map((s): [SegmentSpec, number] => [s, 0]), [c, 1], [a, 2], [b, 3]]);
    assert.deepEqual(log.slice(1, 4), ["data c1 0 'abcd' @2", "data c1 0 'efgh' @3", "data c1 0 'ijkl' @3"]);
  });

  it('data carried on the SYN follows the SYN sequence number', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const syn = { ...f.handshake()[0]!, payload: Buffer.from('early') };
    const { log } = run([[syn, 0]]);
    assert.deepEqual(log.slice(1, 2), ["data c1 0 'early' @0"]);
  });

  it('a new SYN with another ISN on a used 4-tuple starts a new connection', () => {
    const f1 = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443, 100, 200);
    const f2 = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443, 9000, 9500);
    const one: Array<[SegmentSpec, number]> = [...f1.handshake().map((s): [SegmentSpec, number] => [s, 0]), [f1.client('one'), 1], [f1.client('', ACK | FIN), 2], [f1.server('', ACK | FIN), 3]];
    const two: Array<[SegmentSpec, number]> = [...f2.handshake().map((s): [SegmentSpec, number] => [s, 4]), [f2.client('two'), 5]];
    const { log, r } = run([...one, ...two]);
    assert.deepEqual(log, [
      'conn c1 10.0.0.1:40000 handshake=true @0',
      "data c1 0 'one' @1",
      'end c1 0 fin @2',
      'end c1 1 fin @3',
      'conn c2 10.0.0.1:40000 handshake=true @4',
      "data c2 0 'two' @5",
      'end c2 0 capture-end @99',
      'end c2 1 capture-end @99',
    ]);
    assert.equal(r.stats.connections, 2);
  });

  it('limits the connection table and counts what it drops', () => {
    const a = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const b = new TcpFlow('10.0.0.1', 40001, '10.0.0.2', 443);
    const { log, r } = run(
      [
        [a.client('a'), 0],
        [b.client('b'), 1],
        [b.client('c'), 2],
      ],
      { maxConnections: 1 },
    );
    assert.deepEqual(log, ['conn c1 10.0.0.1:40000 handshake=false @0', "data c1 0 'a' @0", 'end c1 0 capture-end @99', 'end c1 1 capture-end @99']);
    assert.equal(r.stats.droppedConnections, 2);
    assert.equal(r.stats.droppedConnectionSegments, 2);
  });

  it('closed connections make room in a full table', () => {
    const a = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443);
    const b = new TcpFlow('10.0.0.1', 40001, '10.0.0.2', 443);
    const { r } = run(
      [
        [a.client('a', ACK | PSH | FIN), 0],
        [a.server('', ACK | FIN), 0],
        [b.client('b'), 1],
      ],
      { maxConnections: 1 },
    );
    assert.equal(r.stats.connections, 2);
    assert.equal(r.stats.droppedConnections, 0);
  });

  it('any order of the segments yields the same stream', () => {
    const f = new TcpFlow('10.0.0.1', 40000, '10.0.0.2', 443, 0xfffffff0);
    const hs = f.handshake();
    const parts = Array.from({ length: 8 }, (_, i) => f.client(String.fromCharCode(65 + i).repeat(i + 1)));
    const expected = parts.map((p) => p.payload!.toString('latin1')).join('');
    fc.assert(
      fc.property(fc.shuffledSubarray(parts, { minLength: parts.length, maxLength: parts.length }), fc.array(fc.nat({ max: 7 }), { maxLength: 4 }), (order, dups) => {
        const segs: Array<[SegmentSpec, number]> = hs.map((s) => [s, 0]);
        for (const p of order) segs.push([p, 1]);
        for (const d of dups) segs.push([parts[d]!, 2]);
        let got = '';
        const r = new TcpReassembler({ onData: (_c, _s, data) => void (got += data.toString('latin1')), onEnd: () => undefined });
        for (const [s, t] of segs) r.push(seg(s), t);
        assert.equal(got, expected);
      }),
      { numRuns: 200 },
    );
  });
});
