import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { OutstandingTable } from '../../../src/bench/outstanding-table.js';

describe('OutstandingTable', () => {
  it('inserts, finds and removes colliding keys', () => {
    const t = new OutstandingTable(8); // 16 slots: 0, 16, 32 share a home slot
    t.insert(0, 10);
    t.insert(16, 20);
    t.insert(32, 30);
    t.insert(1, 40);
    assert.equal(t.size, 4);
    assert.equal(t.remove(16), true);
    assert.equal(t.remove(16), false);
    assert.equal(t.has(32), true); // still reachable after the hole before it was filled
    assert.equal(t.has(1), true);
    assert.equal(t.has(0), true);
    assert.equal(t.size, 3);
    const out: number[] = [99];
    assert.equal(t.collectExpired(30, out), 2);
    assert.deepEqual(out.sort((a, b) => a - b), [0, 32]);
  });

  it('refuses an insert beyond its capacity', () => {
    const t = new OutstandingTable(2);
    t.insert(5, 0);
    t.insert(6, 0);
    assert.throws(() => t.insert(7, 0), (err: unknown) => isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION'));
    assert.equal(t.size, 2);
    assert.throws(() => new OutstandingTable(0), (err: unknown) => isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION'));
  });

  it('behaves like a Map under random inserts and removes (property)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('insert' as const), seq: fc.integer({ min: 0, max: 40 }), time: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ kind: fc.constant('remove' as const), seq: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ kind: fc.constant('expire' as const), deadline: fc.integer({ min: 0, max: 50 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 20, maxLength: 300 }), (ops) => {
        const cap = 12;
        const t = new OutstandingTable(cap);
        const model = new Map<number, number>();
        const out: number[] = [];
        for (const o of ops) {
          if (o.kind === 'insert') {
            if (model.has(o.seq) || model.size >= cap) continue;
            t.insert(o.seq, o.time);
            model.set(o.seq, o.time);
          } else if (o.kind === 'remove') {
            assert.equal(t.remove(o.seq), model.delete(o.seq));
            for (const seq of model.keys()) assert.equal(t.has(seq), true, `seq ${seq} lost after removing ${o.seq}`);
          } else {
            t.collectExpired(o.deadline, out);
            const expected = [...model].filter(([, time]) => time <= o.deadline).map(([seq]) => seq);
            assert.deepEqual(out.sort((a, b) => a - b), expected.sort((a, b) => a - b));
          }
          assert.equal(t.size, model.size);
        }
        for (let seq = 0; seq <= 40; seq++) assert.equal(t.has(seq), model.has(seq), `seq ${seq}`);
      }),
    );
  });

  it('handles sequence numbers above 2^32', () => {
    const t = new OutstandingTable(4);
    const big = 2 ** 40 + 3;
    t.insert(big, 1);
    t.insert(3, 2);
    assert.equal(t.remove(big), true);
    assert.equal(t.has(3), true);
    assert.equal(t.has(big), false);
  });
});
