import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rssTrend, slopeMbPerMin } from '../../../src/bench/soak.js';

const MB = 1024 * 1024;

describe('bench/soak: RSS trend', () => {
  it('slopeMbPerMin is the least-squares slope in MB per minute', () => {
    // 1 MB more every 10 s (6 MB/min) plus a ±0.25 MB wobble, whose own least-squares slope is -0.6 MB/min.
    const pts = [0, 10_000, 20_000, 30_000].map((x, i) => ({ x, y: 50 * MB + (x / 10_000) * MB + (i % 2 === 0 ? 0.25 : -0.25) * MB }));
    assert.ok(Math.abs(slopeMbPerMin(pts)! - 5.4) < 1e-9, String(slopeMbPerMin(pts)));
    assert.equal(slopeMbPerMin([0, 1000, 2000].map((x) => ({ x, y: 80 * MB }))), 0);
    assert.equal(slopeMbPerMin([{ x: 0, y: 1 }, { x: 1, y: 2 }]), null);
    assert.equal(slopeMbPerMin([0, 0, 0].map((x) => ({ x, y: x }))), null);
  });

  it('rssTrend leaves out the samples before fromMs and the unreadable ones', () => {
    const samples = [
      { tMs: 0, bytes: 10 * MB },
      { tMs: 1000, bytes: 90 * MB },
      { tMs: 2000, bytes: null },
      { tMs: 3000, bytes: 40 * MB },
      { tMs: 4000, bytes: 41 * MB },
      { tMs: 5000, bytes: 42 * MB },
    ];
    const t = rssTrend(samples, 3000);
    assert.equal(t.samples, 3);
    assert.equal(t.fromMs, 3000);
    assert.equal(t.toMs, 5000);
    assert.equal(t.minBytes, 40 * MB);
    assert.equal(t.maxBytes, 42 * MB);
    assert.ok(Math.abs(t.slopeMbPerMin! - 60) < 1e-9);
    assert.equal(t.lateSlopeMbPerMin, null, 'two samples in the later half');
    assert.equal(rssTrend(samples, 4000, 5000).slopeMbPerMin, null);
    // A step then a plateau: the whole window rises, its later half does not.
    const step = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ tMs: i * 1000, bytes: (i < 2 ? 90 : 100) * MB }));
    const st = rssTrend(step, 0);
    assert.ok(st.slopeMbPerMin! > 1);
    assert.equal(st.lateSlopeMbPerMin, 0);
  });
});
