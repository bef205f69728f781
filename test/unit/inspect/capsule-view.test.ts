import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CapsuleView } from '../../../src/inspect/capsule-view.js';
import type { CapsuleViewOptions } from '../../../src/inspect/capsule-view.js';
import type { CapsuleEvent, InspectEvent } from '../../../src/inspect/events.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';

const SESSION = 's1';

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

/** Feeds `bytes` split at `splits`, then ends; returns every event with t zeroed. */
function run(bytes: Buffer, splits: number[] = [], options: Partial<CapsuleViewOptions> = {}): InspectEvent[] {
  const view = new CapsuleView({ session: SESSION, dir: '->', ...options });
  const events: InspectEvent[] = [];
  let prev = 0;
  for (const s of [...splits, bytes.length]) {
    events.push(...view.push(bytes.subarray(prev, s), 0));
    prev = s;
  }
  events.push(...view.end(0));
  return JSON.parse(JSON.stringify(events)) as InspectEvent[];
}

function datagram(offset: number, fields: Partial<CapsuleEvent> & { length: number; payloadHex: string }): CapsuleEvent {
  return {
    event: 'capsule',
    tMs: 0,
    session: SESSION,
    dir: '->',
    offset,
    type: 0,
    typeName: 'DATAGRAM',
    typeWidth: 1,
    lengthWidth: 1,
    nonMinimal: false,
    contextId: 0,
    contextIdWidth: 1,
    payloadLength: fields.payloadHex.length / 2,
    previewTruncated: false,
    ...fields,
  };
}

function other(offset: number, fields: Partial<CapsuleEvent> & { type: number | string; typeName: string; length: number; valueHex: string }): CapsuleEvent {
  return {
    event: 'capsule',
    tMs: 0,
    session: SESSION,
    dir: '->',
    offset,
    typeWidth: 1,
    lengthWidth: 1,
    nonMinimal: false,
    previewTruncated: false,
    ...fields,
  };
}

function end(totalBytes: number, capsules: number, clean = true, ignoredBytes = 0): InspectEvent {
  return { event: 'end', tMs: 0, session: SESSION, dir: '->', clean, totalBytes, capsules, ignoredBytes };
}

function error(offset: number, code: string, reason: string, rfc: string | null): InspectEvent {
  return { event: 'error', tMs: 0, session: SESSION, dir: '->', offset, layer: 'capsule', code, reason, rfc };
}

interface Case {
  name: string;
  bytes: Buffer;
  options?: Partial<CapsuleViewOptions>;
  expected: InspectEvent[];
}

const big65527 = Buffer.alloc(65527, 0xab);
const big65528 = Buffer.alloc(65528, 0xcd);

const CASES: Case[] = [
  {
    name: 'one DATAGRAM, context 0',
    bytes: h('00 06 00 68656c6c6f'),
    expected: [datagram(0, { length: 6, payloadHex: '68656c6c6f' }), end(8, 1)],
  },
  {
    name: 'two DATAGRAMs back to back',
    bytes: h('00 02 00 aa  00 03 00 bbcc'),
    expected: [datagram(0, { length: 2, payloadHex: 'aa' }), datagram(4, { length: 3, payloadHex: 'bbcc' }), end(9, 2)],
  },
  {
    name: 'GREASE types 0x17 (empty) and 0x40 (two-byte type) are reported and skipped',
    bytes: h('17 00  4040 03 616263  00 02 00 01'),
    expected: [
      other(0, { type: 0x17, typeName: 'GREASE 0x17', length: 0, valueHex: '' }),
      other(2, { type: 0x40, typeName: 'GREASE 0x40', length: 3, typeWidth: 2, valueHex: '616263' }),
      datagram(8, { length: 2, payloadHex: '01' }),
      end(12, 3),
    ],
  },
  {
    name: 'unknown type with a value longer than the preview',
    bytes: Buffer.concat([h('5234 14'), Buffer.from('0123456789abcdefghij')]),
    expected: [
      other(0, {
        type: 0x1234,
        typeName: 'UNKNOWN 0x1234',
        length: 20,
        typeWidth: 2,
        valueHex: Buffer.from('0123456789abcdef').toString('hex'),
        previewTruncated: true,
      }),
      end(23, 1),
    ],
  },
  {
    name: 'legacy draft DATAGRAM type keeps its name',
    bytes: h('80ff37a5 01 ee'),
    expected: [
      other(0, { type: 0xff37a5, typeName: 'LEGACY_DATAGRAM_WITHOUT_CONTEXT (legacy draft) 0xff37a5', length: 1, typeWidth: 4, valueHex: 'ee' }),
      end(6, 1),
    ],
  },
  {
    name: 'type above 2^53 is a decimal string',
    bytes: h('c020000000000001 00'),
    expected: [
      other(0, { type: '9007199254740993', typeName: 'UNKNOWN 0x20000000000001', length: 0, typeWidth: 8, valueHex: '' }),
      end(9, 1),
    ],
  },
  {
    name: 'non-minimal type, length and context id varints are valid',
    bytes: h('4000 80000004 4000 ffee'),
    expected: [
      datagram(0, { length: 4, typeWidth: 2, lengthWidth: 4, nonMinimal: true, contextIdWidth: 2, payloadHex: 'ffee' }),
      end(10, 1),
    ],
  },
  {
    name: 'non-minimal context id alone does not set nonMinimal (it covers type and length)',
    bytes: h('00 03 4000 01'),
    expected: [datagram(0, { length: 3, contextIdWidth: 2, payloadHex: '01' }), end(5, 1)],
  },
  {
    name: 'empty DATAGRAM payload (a zero-length UDP datagram)',
    bytes: h('00 01 00'),
    expected: [datagram(0, { length: 1, payloadHex: '' }), end(3, 1)],
  },
  {
    name: 'context id other than 0 is reported, not an error',
    bytes: h('00 04 02 aabbcc'),
    expected: [datagram(0, { length: 4, contextId: 2, payloadHex: 'aabbcc' }), end(6, 1)],
  },
  {
    name: 'context id above 2^53 is a decimal string',
    bytes: h('00 08 c020000000000000'),
    expected: [datagram(0, { length: 8, contextId: '9007199254740992', contextIdWidth: 8, payloadHex: '' }), end(10, 1)],
  },
  {
    name: 'DATAGRAM without a context id is malformed (RFC 9298 §5); later bytes ignored',
    bytes: h('00 01 00  00 00  00 02 00 aa'),
    expected: [
      datagram(0, { length: 1, payloadHex: '' }),
      error(3, 'UT_ERR_DATAGRAM_MALFORMED', 'DATAGRAM capsule at byte 3 has a 0-byte value, too short for its context ID', 'RFC 9298 §5'),
      end(9, 1, false, 6),
    ],
  },
  {
    name: 'context id varint cut by the capsule length is malformed',
    bytes: h('00 01 40'),
    expected: [
      error(0, 'UT_ERR_DATAGRAM_MALFORMED', 'DATAGRAM capsule at byte 0 has a 1-byte value, too short for its context ID', 'RFC 9298 §5'),
      end(3, 0, false, 3),
    ],
  },
  {
    name: 'stream ends inside a capsule value (RFC 9297 §3.3)',
    bytes: h('00 02 00 aa  00 06 00 6865'),
    expected: [
      datagram(0, { length: 2, payloadHex: 'aa' }),
      error(4, 'UT_ERR_CAPSULE_TRUNCATED', 'stream ended inside the capsule at byte 4: 5 bytes of 8', 'RFC 9297 §3.3'),
      end(9, 1, false, 5),
    ],
  },
  {
    name: 'stream ends inside a capsule header',
    bytes: h('40'),
    expected: [error(0, 'UT_ERR_CAPSULE_TRUNCATED', 'stream ended inside the capsule at byte 0: 1 bytes of an incomplete header', 'RFC 9297 §3.3'), end(1, 0, false, 1)],
  },
  {
    name: 'declared length over --max-capsule stops the direction',
    bytes: h('00 02 00 aa  00 0b 00 0102030405060708090a  00 02 00 bb'),
    options: { maxCapsuleLength: 10 },
    expected: [
      datagram(0, { length: 2, payloadHex: 'aa' }),
      error(4, 'UT_ERR_CAPSULE_TOO_LARGE', 'capsule at byte 4 declares length 11, over the limit of 10 (--max-capsule)', null),
      end(21, 1, false, 17),
    ],
  },
  {
    name: 'a 2^62-1 length is over any limit, never allocated',
    bytes: h('00 ffffffffffffffff'),
    expected: [
      error(0, 'UT_ERR_CAPSULE_TOO_LARGE', 'capsule at byte 0 declares length 4611686018427387903, over the limit of 65552 (--max-capsule)', null),
      end(9, 0, false, 9),
    ],
  },
  {
    name: 'context-0 payload of exactly 65527 bytes is fine',
    bytes: Buffer.concat([h('00 8000fff8 00'), big65527]),
    expected: [datagram(0, { length: 65528, lengthWidth: 4, payloadLength: 65527, payloadHex: 'ab'.repeat(16), previewTruncated: true }), end(65533, 1)],
  },
  {
    name: 'context-0 payload of 65528 bytes is malformed (RFC 9298 §5)',
    bytes: Buffer.concat([h('00 8000fff9 00'), big65528]),
    expected: [
      error(0, 'UT_ERR_DATAGRAM_TOO_LARGE', 'DATAGRAM capsule at byte 0 carries a 65528-byte UDP payload, over 65527', 'RFC 9298 §5'),
      end(65534, 0, false, 65534),
    ],
  },
  {
    name: 'the 65527 limit applies to context 0 only',
    bytes: Buffer.concat([h('00 8000fff9 01'), big65528]),
    expected: [
      datagram(0, { length: 65529, lengthWidth: 4, contextId: 1, payloadLength: 65528, payloadHex: 'cd'.repeat(16), previewTruncated: true }),
      end(65534, 1),
    ],
  },
  {
    name: 'empty stream ends clean',
    bytes: Buffer.alloc(0),
    expected: [end(0, 0)],
  },
];

describe('CapsuleView decoding table', () => {
  for (const c of CASES) {
    it(`${c.name} (whole)`, () => {
      assert.deepEqual(run(c.bytes, [], c.options), c.expected);
    });
    if (c.bytes.length <= 64) {
      it(`${c.name} (split at every position, and byte by byte)`, () => {
        for (let s = 1; s < c.bytes.length; s++) assert.deepEqual(run(c.bytes, [s], c.options), c.expected, `split at ${s}`);
        const every = Array.from({ length: Math.max(0, c.bytes.length - 1) }, (_, i) => i + 1);
        assert.deepEqual(run(c.bytes, every, c.options), c.expected);
      });
    } else {
      it(`${c.name} (split in the header and in the payload)`, () => {
        assert.deepEqual(run(c.bytes, [1, 3, 6, 100, 40000], c.options), c.expected);
      });
    }
  }
});

describe('CapsuleView options and timing', () => {
  it('full mode shows the whole payload; previewBytes trims it', () => {
    const bytes = h('00 06 00 68656c6c6f');
    assert.deepEqual(run(bytes, [], { full: true })[0], datagram(0, { length: 6, payloadHex: '68656c6c6f' }));
    assert.deepEqual(run(bytes, [], { previewBytes: 2 })[0], datagram(0, { length: 6, payloadHex: '6865', payloadLength: 5, previewTruncated: true }));
    assert.deepEqual(run(bytes, [], { previewBytes: 0 })[0], datagram(0, { length: 6, payloadHex: '', payloadLength: 5, previewTruncated: true }));
    const long = Buffer.concat([h('00 15 00'), Buffer.alloc(20, 7)]);
    assert.deepEqual(run(long, [], { full: true, previewBytes: 1 })[0], datagram(0, { length: 21, payloadHex: '07'.repeat(20) }));
  });

  it('events carry the time of the chunk that completed them', () => {
    const view = new CapsuleView({ session: 'x', dir: '<-' });
    assert.deepEqual(view.push(h('00 03'), 1.5), []);
    const evs = view.push(h('00 aa 00  00 03 00 01'), 2.25);
    assert.equal(evs.length, 1);
    assert.equal(evs[0]!.tMs, 2.25);
    assert.equal(evs[0]!.dir, '<-');
    assert.equal(view.bufferedBytes, 2, 'two value bytes of the second capsule');
    const tail = view.end(7);
    assert.deepEqual(tail[0], {
      event: 'error',
      tMs: 7,
      session: 'x',
      dir: '<-',
      offset: 5,
      layer: 'capsule',
      code: 'UT_ERR_CAPSULE_TRUNCATED',
      reason: 'stream ended inside the capsule at byte 5: 4 bytes of 5',
      rfc: 'RFC 9297 §3.3',
    });
    assert.deepEqual(tail[1], { event: 'end', tMs: 7, session: 'x', dir: '<-', clean: false, totalBytes: 9, capsules: 1, ignoredBytes: 4 });
  });

  it('an aborted end inside a capsule is not clean and reports no error', () => {
    const view = new CapsuleView({ session: 'x', dir: '->' });
    view.push(h('00 05 00 01'), 0);
    assert.deepEqual(view.end(3, { aborted: true }), [
      { event: 'end', tMs: 3, session: 'x', dir: '->', clean: false, totalBytes: 4, capsules: 0, ignoredBytes: 0 },
    ]);
    assert.deepEqual(view.end(4), [], 'end is reported once');
  });

  it('bytes after the error are only counted, across later pushes', () => {
    const view = new CapsuleView({ session: 'x', dir: '->', maxCapsuleLength: 4 });
    const first = view.push(h('00 05'), 0);
    assert.equal(first.length, 1);
    assert.equal(first[0]!.event, 'error');
    assert.deepEqual(view.push(h('00 01 00'), 1), []);
    assert.equal(view.failed, true);
    assert.equal(view.ignoredBytes, 5);
    assert.equal(view.totalBytes, 5);
  });

  it('rejects bad options with INVALID_OPTION', () => {
    assert.throws(() => new CapsuleView({ session: 'x', dir: '->', previewBytes: -1 }), (e) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION'));
    assert.throws(() => new CapsuleView({ session: 'x', dir: '->', maxCapsuleLength: 1.5 }), (e) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION'));
  });

  it('a partial capsule buffers at most maxCapsuleLength + header bytes', () => {
    const view = new CapsuleView({ session: 'x', dir: '->', maxCapsuleLength: 100 });
    view.push(Buffer.concat([h('00 4064 00'), Buffer.alloc(98)]), 0);
    assert.equal(view.bufferedBytes, 99);
    const evs = view.push(h('01'), 0);
    assert.equal(evs.length, 1, 'the complete capsule');
    assert.equal(view.bufferedBytes, 0);
    const over = view.push(h('00 4065'), 0);
    assert.equal(over[0]!.event === 'error' ? over[0]!.code : '', 'UT_ERR_CAPSULE_TOO_LARGE');
  });
});

describe('CapsuleView with values trickled in', () => {
  it('a large DATAGRAM and a large unknown capsule fed one byte at a time give the events of a whole feed', () => {
    const payload = Buffer.alloc(3000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff;
    const unknown = Buffer.alloc(1500, 0x5a);
    const bytes = Buffer.concat([h('00 4b b9 00'), payload, h('17 45 dc'), unknown]);
    const whole = run(bytes, [], { full: true });
    assert.equal(whole.length, 3);
    assert.deepEqual(whole[0], datagram(0, { length: 3001, lengthWidth: 2, payloadHex: payload.toString('hex') }));
    assert.deepEqual(whole[1], other(3004, { type: 0x17, typeName: 'GREASE 0x17', length: 1500, lengthWidth: 2, valueHex: unknown.toString('hex') }));
    const splits: number[] = [];
    for (let i = 1; i < bytes.length; i++) splits.push(i);
    assert.deepEqual(run(bytes, splits, { full: true }), whole);
  });
});

describe('CapsuleView properties', () => {
  it('never throws on random bytes split anywhere, and the split does not change the events', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat({ max: 300 }), { maxLength: 8 }),
        fc.integer({ min: 0, max: 200 }),
        (bytes, cuts, max) => {
          const buf = Buffer.from(bytes);
          const splits = [...new Set(cuts.filter((c) => c > 0 && c < buf.length))].sort((a, b) => a - b);
          const whole = run(buf, [], { maxCapsuleLength: max });
          const split = run(buf, splits, { maxCapsuleLength: max });
          assert.deepEqual(split, whole);
          const last = whole[whole.length - 1]!;
          assert.equal(last.event, 'end');
          const errors = whole.filter((e) => e.event === 'error');
          assert.ok(errors.length <= 1, 'at most one error');
          if (last.event === 'end') {
            assert.equal(last.totalBytes, buf.length);
            assert.equal(last.clean, errors.length === 0);
            if (errors[0]?.event === 'error') assert.equal(last.ignoredBytes, buf.length - errors[0].offset);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('round-trips generated DATAGRAM capsules with their offsets', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 70 }), { maxLength: 20 }), fc.nat({ max: 2000 }), (payloads, cut) => {
        const parts: Buffer[] = [];
        const expected: InspectEvent[] = [];
        let off = 0;
        for (const p of payloads) {
          const lenByte = p.length + 1 <= 63 ? Buffer.from([p.length + 1]) : Buffer.from([0x40 | ((p.length + 1) >> 8), (p.length + 1) & 0xff]);
          const cap = Buffer.concat([Buffer.from([0]), lenByte, Buffer.from([0]), p]);
          expected.push(
            datagram(off, {
              length: p.length + 1,
              lengthWidth: lenByte.length,
              payloadHex: Buffer.from(p).subarray(0, 16).toString('hex'),
              payloadLength: p.length,
              previewTruncated: p.length > 16,
            }),
          );
          parts.push(cap);
          off += cap.length;
        }
        const bytes = Buffer.concat(parts);
        expected.push(end(bytes.length, payloads.length));
        const split = cut > 0 && cut < bytes.length ? [cut] : [];
        assert.deepEqual(run(bytes, split), expected);
      }),
      { numRuns: 200 },
    );
  });
});
