import { build } from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import type { JsHistogram } from 'hdr-histogram-js';
import { ErrorCodes, UdpTunnelError, type ErrorDetails } from '../tunnel/errors.js';

// ---------------------------------------------------------------------------------------------------------------
// Sequence tracking
// ---------------------------------------------------------------------------------------------------------------

/** Default number of sequence numbers the tracker remembers behind the highest one seen (8 KiB of bitmap). */
export const DEFAULT_SEQUENCE_WINDOW = 65536;

/** Largest accepted window (2 MiB of bitmap): a per-flow structure must stay small. */
export const MAX_SEQUENCE_WINDOW = 1 << 24;

/**
 * What SequenceTracker.record concluded about one arrival:
 * `new` = highest so far, `late` = first arrival below the highest (out of order), `duplicate` = already seen,
 * `tooOld` = further behind the highest than the window reaches, so it cannot be classified.
 */
export type SequenceVerdict = 'new' | 'late' | 'duplicate' | 'tooOld';

/**
 * Classifies arrivals of one flow's sequence numbers with bounded memory: a circular bitmap remembers the
 * `windowSize` sequence numbers ending at the highest seen. Arrivals further behind are counted in `tooOld`
 * and never stored.
 */
export class SequenceTracker {
  /** How many sequence numbers behind (and including) the highest one are remembered. */
  readonly windowSize: number;
  /** Highest sequence number seen; -1 before the first arrival. */
  highest = -1;
  /** Every recorded arrival, duplicates and tooOld included. */
  received = 0;
  /** Distinct sequence numbers seen (within the window's memory). */
  unique = 0;
  /** First arrivals of a sequence number lower than the highest already seen. */
  outOfOrder = 0;
  /** Arrivals of a sequence number already seen. */
  duplicates = 0;
  /** Arrivals too far behind the highest to classify (not stored; neither unique nor duplicate). */
  tooOld = 0;
  private readonly bits: Uint32Array;
  private readonly mask: number;

  constructor(windowSize: number = DEFAULT_SEQUENCE_WINDOW) {
    if (!Number.isInteger(windowSize) || windowSize < 32 || windowSize > MAX_SEQUENCE_WINDOW || (windowSize & (windowSize - 1)) !== 0) {
      throw new UdpTunnelError(
        ErrorCodes.INVALID_OPTION,
        `sequence window must be a power of two from 32 to ${MAX_SEQUENCE_WINDOW}, got ${String(windowSize)}`,
        { option: 'windowSize', value: windowSize },
      );
    }
    this.windowSize = windowSize;
    this.mask = windowSize - 1;
    this.bits = new Uint32Array(windowSize >>> 5);
  }

  /** Records one arrival of `seq` (a safe non-negative integer) and classifies it. */
  record(seq: number): SequenceVerdict {
    if (!Number.isSafeInteger(seq) || seq < 0) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `sequence number must be a safe non-negative integer, got ${String(seq)}`, { seq });
    }
    this.received++;
    if (seq > this.highest) {
      // Slots of the sequence numbers skipped over still hold bits of numbers that just left the window.
      if (seq - this.highest >= this.windowSize) this.bits.fill(0);
      else this.clearRange(this.highest + 1, seq);
      this.setBit(seq);
      this.highest = seq;
      this.unique++;
      return 'new';
    }
    if (this.highest - seq >= this.windowSize) {
      this.tooOld++;
      return 'tooOld';
    }
    const idx = seq & this.mask;
    if ((this.bits[idx >>> 5]! & (1 << (idx & 31))) !== 0) {
      this.duplicates++;
      return 'duplicate';
    }
    this.setBit(seq);
    this.unique++;
    this.outOfOrder++;
    return 'late';
  }

  /**
   * Datagrams of `sent` that never arrived: sent - unique - tooOld, at least 0. A tooOld arrival is assumed to be a
   * late first arrival (the common case); this can hide a loss only when the same datagram also came back duplicated.
   */
  lost(sent: number): number {
    return Math.max(0, sent - this.unique - this.tooOld);
  }

  private setBit(seq: number): void {
    const idx = seq & this.mask;
    this.bits[idx >>> 5]! |= 1 << (idx & 31);
  }

  /** Clears the slots of sequence numbers from..to-1 (fewer than windowSize of them), a word at a time when aligned. */
  private clearRange(from: number, to: number): void {
    let s = from;
    while (s < to) {
      const idx = s & this.mask;
      if ((idx & 31) === 0 && to - s >= 32) {
        this.bits[idx >>> 5] = 0;
        s += 32;
      } else {
        this.bits[idx >>> 5]! &= ~(1 << (idx & 31));
        s++;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Jitter
// ---------------------------------------------------------------------------------------------------------------

/** Interarrival jitter estimator of RFC 3550 §6.4.1, in microseconds, fed in arrival order. */
export class JitterEstimator {
  /** Current jitter estimate J in µs. */
  jitterUs = 0;
  /** Arrivals fed so far. */
  samples = 0;
  private prevTransitUs = 0;

  /** Feeds one arrival: its send timestamp and arrival time on any common µs scale. Returns the new estimate. */
  update(sendUs: number, arrivalUs: number): number {
    const transit = arrivalUs - sendUs;
    if (this.samples > 0) {
      // RFC 3550 §6.4.1: D(i-1,i) = (Ri - Ri-1) - (Si - Si-1) = transit(i) - transit(i-1); J += (|D| - J) / 16.
      const d = Math.abs(transit - this.prevTransitUs);
      this.jitterUs += (d - this.jitterUs) / 16;
    }
    this.prevTransitUs = transit;
    this.samples++;
    return this.jitterUs;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Latency histogram
// ---------------------------------------------------------------------------------------------------------------

/** Lowest latency the recorder resolves, µs; smaller values are clamped up to it. */
export const LATENCY_MIN_US = 1;

/** Highest latency the recorder tracks (60 s), µs; larger values are clamped down to it. */
export const LATENCY_MAX_US = 60_000_000;

/** Latency distribution summary; every value in µs. All zero when count is 0. */
export interface LatencySummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  /** Values that were outside LATENCY_MIN_US..LATENCY_MAX_US and recorded clamped. */
  clamped: number;
}

/** Log-spaced latency buckets per doubling of the latency (each bucket spans a factor of 2^(1/4), about 19%). */
export const LATENCY_BUCKETS_PER_OCTAVE = 4;

/** One bucket of a latency distribution: `count` values in [fromUs, toUs). */
export interface LatencyBucket {
  fromUs: number;
  toUs: number;
  count: number;
}

/** Index of the log-spaced bucket (LATENCY_BUCKETS_PER_OCTAVE per octave) that holds `us`. */
export function latencyBucketIndex(us: number): number {
  return Math.floor(Math.log2(Math.max(LATENCY_MIN_US, us)) * LATENCY_BUCKETS_PER_OCTAVE + 1e-9);
}

/** Lower bound in µs of log-spaced bucket `index` (its upper bound is that of index + 1), rounded to 0.01 µs. */
export function latencyBucketFrom(index: number): number {
  return Math.round(2 ** (index / LATENCY_BUCKETS_PER_OCTAVE) * 100) / 100;
}

/**
 * Latency distribution over 1 µs .. 60 s with 3 significant digits (HdrHistogram, fixed memory).
 * Percentiles carry the histogram's precision (within 0.1%); count, min, max and mean are exact.
 */
export class LatencyRecorder {
  /** Values below LATENCY_MIN_US (or not a number) recorded as LATENCY_MIN_US. */
  clampedLow = 0;
  /** Values above LATENCY_MAX_US recorded as LATENCY_MAX_US. */
  clampedHigh = 0;
  private readonly hist: Histogram;
  private n = 0;
  private sum = 0;
  private lo = Infinity;
  private hi = -Infinity;

  constructor() {
    this.hist = build({
      lowestDiscernibleValue: LATENCY_MIN_US,
      highestTrackableValue: LATENCY_MAX_US,
      numberOfSignificantValueDigits: 3,
      autoResize: false,
      bitBucketSize: 32,
    });
  }

  /** Values recorded. */
  get count(): number {
    return this.n;
  }

  /** Records one latency in µs (fractions are kept for min/max/mean, rounded for the histogram). */
  record(us: number): void {
    let v = us;
    if (!(v >= LATENCY_MIN_US)) {
      v = LATENCY_MIN_US;
      this.clampedLow++;
    } else if (v > LATENCY_MAX_US) {
      v = LATENCY_MAX_US;
      this.clampedHigh++;
    }
    this.hist.recordValue(Math.round(v));
    this.n++;
    this.sum += v;
    if (v < this.lo) this.lo = v;
    if (v > this.hi) this.hi = v;
  }

  /** The value at `percentile` (0..100) in µs, bounded by the exact min and max; 0 when empty. */
  percentile(percentile: number): number {
    if (this.n === 0) return 0;
    const v = this.hist.getValueAtPercentile(percentile);
    return Math.min(this.hi, Math.max(this.lo, v));
  }

  /** Snapshot of the distribution. */
  summary(): LatencySummary {
    if (this.n === 0) return { count: 0, min: 0, max: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, clamped: 0 };
    return {
      count: this.n,
      min: this.lo,
      max: this.hi,
      mean: this.sum / this.n,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      clamped: this.clampedLow + this.clampedHigh,
    };
  }

  /**
   * The recorded values in log-spaced buckets (LATENCY_BUCKETS_PER_OCTAVE per octave), non-empty buckets only, in
   * increasing order; at most about 26 * LATENCY_BUCKETS_PER_OCTAVE entries over 1 µs .. 60 s.
   */
  buckets(): LatencyBucket[] {
    const counts = new Map<number, number>();
    // build() without useWebAssembly returns a JsHistogram, whose iterator walks the recorded values in order.
    const it = (this.hist as unknown as JsHistogram).recordedValuesIterator;
    it.reset();
    while (it.hasNext()) {
      const v = it.next();
      const i = latencyBucketIndex(v.valueIteratedTo);
      counts.set(i, (counts.get(i) ?? 0) + v.countAtValueIteratedTo);
    }
    return [...counts.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([i, count]) => ({ fromUs: latencyBucketFrom(i), toUs: latencyBucketFrom(i + 1), count }));
  }

  /** Forgets every value. */
  reset(): void {
    this.hist.reset();
    this.n = 0;
    this.sum = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
    this.clampedLow = 0;
    this.clampedHigh = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Across-run summaries
// ---------------------------------------------------------------------------------------------------------------

/** Summary of a list of numbers; all zero when n is 0. */
export interface NumberSummary {
  n: number;
  mean: number;
  /** Sample standard deviation (n - 1 in the denominator); 0 when n < 2. */
  stddev: number;
  min: number;
  max: number;
}

/** n, mean, sample standard deviation, min and max of `values`. */
export function summarize(values: readonly number[]): NumberSummary {
  const n = values.length;
  if (n === 0) return { n: 0, mean: 0, stddev: 0, min: 0, max: 0 };
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = sum / n;
  let sq = 0;
  for (const v of values) sq += (v - mean) * (v - mean);
  const stddev = n < 2 ? 0 : Math.sqrt(sq / (n - 1));
  return { n, mean, stddev, min, max };
}

/**
 * Coefficient of variation (sample stddev / |mean|) of repeated runs, for the "runs disagree widely" warning.
 * 0 with fewer than two values or when all are equal; Infinity when the mean is 0 but values differ.
 */
export function disagreement(values: readonly number[]): number {
  const s = summarize(values);
  if (s.n < 2 || s.stddev === 0) return 0;
  if (s.mean === 0) return Infinity;
  return s.stddev / Math.abs(s.mean);
}

// ---------------------------------------------------------------------------------------------------------------
// --fail-if
// ---------------------------------------------------------------------------------------------------------------

/** Metrics a --fail-if condition may name. */
export const FAIL_METRICS = ['p50', 'p90', 'p99', 'p99.9', 'max', 'mean', 'jitter', 'loss', 'ratio', 'throughput', 'mbps'] as const;

/** One metric name of FAIL_METRICS. */
export type FailMetric = (typeof FAIL_METRICS)[number];

/** Comparison operators of --fail-if. */
export type FailOperator = '>' | '>=' | '<' | '<=';

/**
 * One parsed --fail-if condition; the run fails when `actual op threshold` holds.
 * Thresholds are in the metrics' base units: µs for latencies and jitter, a 0..1 fraction for loss,
 * datagrams/s for throughput, Mbit/s for mbps, a plain factor for ratio.
 */
export interface FailCondition {
  metric: FailMetric;
  op: FailOperator;
  threshold: number;
  /** The condition as written (whitespace removed), for messages. */
  text: string;
}

/** A condition that held, with the value that made it hold. */
export interface FailIfFailure {
  condition: string;
  actual: number;
}

const LATENCY_METRICS: ReadonlySet<string> = new Set(['p50', 'p90', 'p99', 'p99.9', 'max', 'mean', 'jitter']);
const UNIT_TO_US: Readonly<Record<string, number>> = { us: 1, 'µs': 1, ms: 1000, s: 1_000_000 };
const CONDITION_RE = /^([a-z][a-z0-9.]*)(>=|<=|>|<)(.*)$/;
const NUMBER_UNIT_RE = /^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)([a-zµ%]*)$/;

function failIfError(message: string, details: ErrorDetails<typeof ErrorCodes.INVALID_OPTION>): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `failIf: ${message}`, { option: 'failIf', ...details });
}

/**
 * Parses a comma-separated --fail-if spec such as `p99>5ms,loss>0.1%,ratio<0.5,throughput<10000`.
 * Latency metrics (p50 p90 p99 p99.9 max mean jitter) need a unit us/ms/s; loss needs %; ratio, throughput
 * (datagrams/s) and mbps take plain numbers. Throws INVALID_OPTION naming the offending condition.
 */
export function parseFailIf(spec: string): FailCondition[] {
  const items = spec.split(',');
  const out: FailCondition[] = [];
  for (const raw of items) {
    const text = raw.replace(/\s+/g, '').toLowerCase();
    if (text === '') {
      throw failIfError(spec.trim() === '' ? 'empty specification' : `empty condition in "${spec}"`, { value: spec });
    }
    const m = CONDITION_RE.exec(text);
    if (!m) {
      throw failIfError(`"${raw.trim()}" is not <metric><op><value> (ops: > >= < <=)`, { value: spec, condition: raw.trim() });
    }
    const [, metricText, op, valueText] = m as unknown as [string, string, FailOperator, string];
    if (!(FAIL_METRICS as readonly string[]).includes(metricText)) {
      throw failIfError(`unknown metric "${metricText}" in "${raw.trim()}" (known: ${FAIL_METRICS.join(' ')})`, {
        value: spec,
        condition: raw.trim(),
        metric: metricText,
      });
    }
    const metric = metricText as FailMetric;
    const nm = NUMBER_UNIT_RE.exec(valueText);
    if (!nm) {
      throw failIfError(`"${valueText}" in "${raw.trim()}" is not a non-negative number with an optional unit`, {
        value: spec,
        condition: raw.trim(),
      });
    }
    const value = Number(nm[1]);
    const unit = nm[2] ?? '';
    let threshold: number;
    if (LATENCY_METRICS.has(metric)) {
      const scale = UNIT_TO_US[unit];
      if (scale === undefined) {
        throw failIfError(`${metric} needs a unit us, ms or s (e.g. ${metric}${op}5ms), got "${valueText}"`, {
          value: spec,
          condition: raw.trim(),
        });
      }
      threshold = value * scale;
    } else if (metric === 'loss') {
      if (unit !== '%') {
        throw failIfError(`loss needs a percentage (e.g. loss${op}0.1%), got "${valueText}"`, { value: spec, condition: raw.trim() });
      }
      threshold = value / 100;
    } else {
      if (unit !== '') {
        throw failIfError(`${metric} takes a plain number without a unit, got "${valueText}"`, { value: spec, condition: raw.trim() });
      }
      threshold = value;
    }
    out.push({ metric, op, threshold, text });
  }
  return out;
}

/**
 * Returns the conditions that hold for `metrics` (keyed by metric name, in the base units of FailCondition).
 * Throws INVALID_OPTION when a condition names a metric the run did not produce (e.g. ratio without a comparison).
 */
export function evaluateFailIf(conditions: readonly FailCondition[], metrics: Readonly<Record<string, number>>): FailIfFailure[] {
  const failures: FailIfFailure[] = [];
  for (const c of conditions) {
    const actual = metrics[c.metric];
    if (actual === undefined || Number.isNaN(actual)) {
      throw failIfError(`metric "${c.metric}" is not available for this run (condition "${c.text}")`, { metric: c.metric });
    }
    let holds: boolean;
    switch (c.op) {
      case '>':
        holds = actual > c.threshold;
        break;
      case '>=':
        holds = actual >= c.threshold;
        break;
      case '<':
        holds = actual < c.threshold;
        break;
      case '<=':
        holds = actual <= c.threshold;
        break;
    }
    if (holds) failures.push({ condition: c.text, actual });
  }
  return failures;
}
