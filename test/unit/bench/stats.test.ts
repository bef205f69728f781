import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import {
  DEFAULT_SEQUENCE_WINDOW,
  JitterEstimator,
  LATENCY_MAX_US,
  LatencyRecorder,
  SequenceTracker,
  disagreement,
  evaluateFailIf,
  parseFailIf,
  summarize,
} from '../../../src/bench/stats.js';
import type { SequenceVerdict } from '../../../src/bench/stats.js';

const invalidOption = (err: unknown): boolean => isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION');

describe('SequenceTracker', () => {
  it('counts loss, reordering and duplicates on a crafted sequence', () => {
    const t = new SequenceTracker();
    const verdicts = [0, 1, 3, 2, 2, 5, 4, 1, 6].map((s) => t.record(s));
    assert.deepEqual(verdicts, ['new', 'new', 'new', 'late', 'duplicate', 'new', 'late', 'duplicate', 'new']);
    assert.equal(t.received, 9);
    assert.equal(t.unique, 7);
    assert.equal(t.outOfOrder, 2);
    assert.equal(t.duplicates, 2);
    assert.equal(t.tooOld, 0);
    assert.equal(t.highest, 6);
    assert.equal(t.lost(8), 1); // seq 7 never came
    assert.equal(t.lost(5), 0); // never negative
  });

  it('uses a 65536-sequence window by default', () => {
    assert.equal(DEFAULT_SEQUENCE_WINDOW, 65536);
    assert.equal(new SequenceTracker().windowSize, 65536);
  });

  it('counts arrivals beyond the default window as tooOld instead of storing them', () => {
    const t = new SequenceTracker();
    for (let s = 0; s <= 70000; s++) t.record(s);
    assert.equal(t.record(4464), 'tooOld'); // 70000 - 4464 = 65536: just outside
    assert.equal(t.record(4465), 'duplicate'); // 65535 behind: still remembered
    assert.equal(t.record(0), 'tooOld');
    assert.equal(t.unique, 70001);
    assert.equal(t.duplicates, 1);
    assert.equal(t.tooOld, 2);
    assert.equal(t.received, 70004);
    assert.equal(t.lost(70001), 0);
  });

  it('forgets slots the window moved past, so late arrivals are not mistaken for duplicates', () => {
    const t = new SequenceTracker(32);
    t.record(1);
    t.record(20);
    t.record(40); // advances 20: clears the slots of 21..39, including the one seq 1 used (33 shares it)
    assert.equal(t.record(33), 'late');
    assert.equal(t.record(20), 'duplicate'); // 20 behind: still remembered
    assert.equal(t.record(9), 'late'); // 31 behind: the oldest remembered
    assert.equal(t.record(8), 'tooOld'); // 32 behind
    assert.equal(t.record(100), 'new'); // a jump beyond the window clears everything
    assert.equal(t.record(72), 'late'); // shares a slot with 40 and 104
    assert.deepEqual([t.unique, t.outOfOrder, t.duplicates, t.tooOld], [7, 3, 1, 1]);
  });

  it('agrees with an unbounded model on random arrivals (property)', () => {
    // A rising position with arrivals up to 80 behind it: crosses the 64-wide window in both directions, and
    // jumps long enough to clear whole bitmap words.
    const arrivals = fc
      .array(fc.tuple(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 80 })), { minLength: 20, maxLength: 300 })
      .map((steps) => {
        let pos = 0;
        return steps.map(([step, back]) => {
          pos += step;
          return Math.max(0, pos - back);
        });
      });
    fc.assert(
      fc.property(arrivals, (seqs) => {
        const window = 64;
        const t = new SequenceTracker(window);
        const seen = new Set<number>();
        let highest = -1;
        for (const s of seqs) {
          let expected: SequenceVerdict;
          if (s > highest) expected = 'new';
          else if (highest - s >= window) expected = 'tooOld';
          else if (seen.has(s)) expected = 'duplicate';
          else expected = 'late';
          if (expected !== 'tooOld') seen.add(s);
          highest = Math.max(highest, s);
          assert.equal(t.record(s), expected, `seq ${s}`);
        }
        assert.equal(t.received, seqs.length);
      }),
    );
  });

  it('rejects bad windows and sequence numbers with INVALID_OPTION', () => {
    assert.throws(() => new SequenceTracker(48), invalidOption);
    assert.throws(() => new SequenceTracker(16), invalidOption);
    assert.throws(() => new SequenceTracker(2 ** 25), invalidOption);
    const t = new SequenceTracker(32);
    assert.throws(() => t.record(-1), invalidOption);
    assert.throws(() => t.record(1.5), invalidOption);
    assert.throws(() => t.record(Number.NaN), invalidOption);
    assert.equal(t.received, 0);
  });
});

describe('JitterEstimator (RFC 3550 §6.4.1)', () => {
  it('matches a hand computation', () => {
    // Transit times 1000, 1500, 800, 2000, 1000 µs: |D| = 500, 700, 1200, 1000.
    const j = new JitterEstimator();
    const sends = [0, 20000, 40000, 60000, 80000];
    const arrivals = [1000, 21500, 40800, 62000, 81000];
    const seen = sends.map((s, i) => j.update(s, arrivals[i]!));
    // J1 = 500/16; J2 = J1 + (700 - J1)/16; J3 = J2 + (1200 - J2)/16; J4 = J3 + (1000 - J3)/16.
    assert.deepEqual(seen, [0, 31.25, 73.046875, 143.4814453125, 197.01385498046875]);
    assert.equal(j.jitterUs, 197.01385498046875);
    assert.equal(j.samples, 5);
  });

  it('is zero for a constant transit time, whatever the offset between clocks', () => {
    const j = new JitterEstimator();
    for (let i = 0; i < 10; i++) j.update(i * 1000, i * 1000 + 5_000_000);
    assert.equal(j.jitterUs, 0);
  });
});

describe('LatencyRecorder', () => {
  it('gives exact percentiles for 1..1000 µs', () => {
    const r = new LatencyRecorder();
    for (let v = 1000; v >= 1; v--) r.record(v);
    assert.deepEqual(r.summary(), { count: 1000, min: 1, max: 1000, mean: 500.5, p50: 500, p90: 900, p99: 990, p999: 999, clamped: 0 });
  });

  it('stays within 3 significant digits for large values and reports exact min, max and mean', () => {
    const r = new LatencyRecorder();
    for (const v of [100_000, 200_000, 300_000, 400_000, 12_345_678]) r.record(v);
    const s = r.summary();
    assert.equal(s.count, 5);
    assert.equal(s.min, 100_000);
    assert.equal(s.max, 12_345_678);
    assert.equal(s.mean, 2_669_135.6);
    assert.ok(Math.abs(s.p50 - 300_000) <= 300, `p50 ${s.p50}`);
    assert.ok(Math.abs(s.p90 - 12_345_678) <= 12_346, `p90 ${s.p90}`);
    assert.equal(s.p999, 12_345_678); // bounded by the exact max
  });

  it('clamps values outside 1 µs .. 60 s and counts them', () => {
    const r = new LatencyRecorder();
    r.record(0);
    r.record(-5);
    r.record(Number.NaN);
    r.record(0.4);
    r.record(61_000_000);
    r.record(50);
    assert.equal(LATENCY_MAX_US, 60_000_000);
    assert.equal(r.clampedLow, 4);
    assert.equal(r.clampedHigh, 1);
    const s = r.summary();
    assert.equal(s.count, 6);
    assert.equal(s.clamped, 5);
    assert.equal(s.min, 1);
    assert.equal(s.max, 60_000_000);
    assert.equal(s.p50, 1);
  });

  it('summarizes an empty recorder as zeros and resets', () => {
    const r = new LatencyRecorder();
    assert.deepEqual(r.summary(), { count: 0, min: 0, max: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, clamped: 0 });
    r.record(7);
    r.record(70_000_000);
    r.reset();
    assert.equal(r.count, 0);
    assert.equal(r.clampedHigh, 0);
    r.record(9);
    assert.deepEqual(r.summary(), { count: 1, min: 9, max: 9, mean: 9, p50: 9, p90: 9, p99: 9, p999: 9, clamped: 0 });
  });
});

describe('summarize and disagreement', () => {
  it('computes mean, sample stddev, min and max', () => {
    // Squared deviations from the mean 5: 9 1 1 1 0 0 4 16 = 32; sample variance 32 / 7.
    const s = summarize([2, 4, 4, 4, 5, 5, 7, 9]);
    assert.equal(s.n, 8);
    assert.equal(s.mean, 5);
    assert.equal(s.min, 2);
    assert.equal(s.max, 9);
    assert.ok(Math.abs(s.stddev - 2.1380899352993952) < 1e-12, String(s.stddev));
    assert.ok(Math.abs(disagreement([2, 4, 4, 4, 5, 5, 7, 9]) - 0.42761798705987904) < 1e-12);
  });

  it('handles empty and single-value lists', () => {
    assert.deepEqual(summarize([]), { n: 0, mean: 0, stddev: 0, min: 0, max: 0 });
    assert.deepEqual(summarize([3]), { n: 1, mean: 3, stddev: 0, min: 3, max: 3 });
    assert.deepEqual(summarize([-1, 1]), { n: 2, mean: 0, stddev: Math.SQRT2, min: -1, max: 1 });
  });

  it('disagreement is 0 for agreeing runs and Infinity around a zero mean', () => {
    assert.equal(disagreement([]), 0);
    assert.equal(disagreement([10]), 0);
    assert.equal(disagreement([10, 10, 10]), 0);
    assert.equal(disagreement([0, 0]), 0);
    assert.equal(disagreement([-1, 1]), Number.POSITIVE_INFINITY);
    assert.equal(disagreement([90, 110]), Math.SQRT2 * 10 / 100);
  });
});

describe('parseFailIf', () => {
  const table: [string, { metric: string; op: string; threshold: number; text: string }[]][] = [
    ['p99>5ms', [{ metric: 'p99', op: '>', threshold: 5000, text: 'p99>5ms' }]],
    ['loss>1%', [{ metric: 'loss', op: '>', threshold: 0.01, text: 'loss>1%' }]],
    ['ratio<0.5', [{ metric: 'ratio', op: '<', threshold: 0.5, text: 'ratio<0.5' }]],
    ['throughput<10000', [{ metric: 'throughput', op: '<', threshold: 10000, text: 'throughput<10000' }]],
    ['p99.9 >= 2 s', [{ metric: 'p99.9', op: '>=', threshold: 2_000_000, text: 'p99.9>=2s' }]],
    ['mean<=250us', [{ metric: 'mean', op: '<=', threshold: 250, text: 'mean<=250us' }]],
    ['jitter>1.5ms', [{ metric: 'jitter', op: '>', threshold: 1500, text: 'jitter>1.5ms' }]],
    ['max>1µs', [{ metric: 'max', op: '>', threshold: 1, text: 'max>1µs' }]],
    ['p50<.5ms', [{ metric: 'p50', op: '<', threshold: 500, text: 'p50<.5ms' }]],
    ['P90>10MS', [{ metric: 'p90', op: '>', threshold: 10000, text: 'p90>10ms' }]],
    ['mbps<100', [{ metric: 'mbps', op: '<', threshold: 100, text: 'mbps<100' }]],
    [
      'p99>5ms, loss>50%,ratio<0.5,throughput<10000',
      [
        { metric: 'p99', op: '>', threshold: 5000, text: 'p99>5ms' },
        { metric: 'loss', op: '>', threshold: 0.5, text: 'loss>50%' },
        { metric: 'ratio', op: '<', threshold: 0.5, text: 'ratio<0.5' },
        { metric: 'throughput', op: '<', threshold: 10000, text: 'throughput<10000' },
      ],
    ],
  ];
  for (const [spec, expected] of table) {
    it(`parses "${spec}"`, () => {
      assert.deepEqual(parseFailIf(spec), expected);
    });
  }

  it('converts a fractional percentage to a fraction', () => {
    const [c] = parseFailIf('loss>0.1%');
    assert.ok(Math.abs(c!.threshold - 0.001) < 1e-15);
  });

  const bad: [string, RegExp][] = [
    ['', /empty specification/],
    ['p99>5ms,,loss>1%', /empty condition/],
    ['p99>5', /needs a unit us, ms or s/],
    ['p99>5%', /needs a unit us, ms or s/],
    ['p98>5ms', /unknown metric "p98"/],
    ['loss>0.1', /loss needs a percentage/],
    ['loss>1ms', /loss needs a percentage/],
    ['ratio<0.5%', /ratio takes a plain number/],
    ['throughput<10k', /throughput takes a plain number/],
    ['p99=5ms', /is not <metric><op><value>/],
    ['p99', /is not <metric><op><value>/],
    ['>5ms', /is not <metric><op><value>/],
    ['p99>ms', /is not a non-negative number/],
    ['p99>-1ms', /is not a non-negative number/],
    ['throughput<1e4', /is not a non-negative number/],
    ['p99>>5ms', /is not a non-negative number/],
  ];
  for (const [spec, message] of bad) {
    it(`rejects "${spec}"`, () => {
      assert.throws(
        () => parseFailIf(spec),
        (err: unknown) => invalidOption(err) && message.test((err as Error).message) && (err as { details: { option: string } }).details.option === 'failIf',
      );
    });
  }
});

describe('evaluateFailIf', () => {
  it('returns the conditions that hold, with the actual values', () => {
    const conds = parseFailIf('p99>5ms,loss>0.1%,ratio<0.5,throughput<10000,p50>=1ms,mbps<=2');
    const failures = evaluateFailIf(conds, { p99: 6000, loss: 0.0005, ratio: 0.5, throughput: 9999, p50: 1000, mbps: 2.5 });
    assert.deepEqual(failures, [
      { condition: 'p99>5ms', actual: 6000 },
      { condition: 'throughput<10000', actual: 9999 },
      { condition: 'p50>=1ms', actual: 1000 },
    ]);
  });

  it('returns nothing when every metric is within bounds', () => {
    assert.deepEqual(evaluateFailIf(parseFailIf('p99>5ms,loss>1%'), { p99: 5000, loss: 0.01 }), []);
  });

  it('fails on a metric the run did not produce', () => {
    assert.throws(
      () => evaluateFailIf(parseFailIf('ratio<0.5'), { p99: 1 }),
      (err: unknown) => invalidOption(err) && /metric "ratio" is not available/.test((err as Error).message),
    );
    assert.throws(() => evaluateFailIf(parseFailIf('p99>1ms'), { p99: Number.NaN }), invalidOption);
  });
});
