import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LogThrottle } from '../../../src/cli/log-throttle.js';

describe('LogThrottle', () => {
  it('lets the first report through, holds back the rest of its interval, and hands over the count with the next one', () => {
    let now = 1_000_000;
    const t = new LogThrottle(10_000, () => now);
    assert.equal(t.take(), 0);
    for (let i = 0; i < 5; i++) {
      now += 1000;
      assert.equal(t.take(), null);
    }
    assert.equal(t.pending, 5);
    now += 4999; // 9999 ms after the first report: still inside its interval
    assert.equal(t.take(), null);
    now += 1;
    assert.equal(t.take(), 6);
    assert.equal(t.pending, 0);
    now += 10_000;
    assert.equal(t.take(), 0);
  });

  it('never lets two reports through within one interval, however they are spread', () => {
    let now = 0;
    const t = new LogThrottle(10_000, () => now);
    const passed: number[] = [];
    let held = 0;
    for (let i = 0; i < 1000; i++) {
      now += (i * 7919) % 97;
      const r = t.take();
      if (r === null) held++;
      else {
        passed.push(now);
        held -= r;
      }
    }
    for (let i = 1; i < passed.length; i++) assert.ok(passed[i]! - passed[i - 1]! >= 10_000);
    assert.equal(held, t.pending, 'every held-back report is handed over or still pending');
  });
});
