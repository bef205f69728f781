// The generator's options and results, in their own module so that the generator, its worker thread and the
// messages between them share them without importing each other.
import type { LatencyBucket, LatencySummary } from './stats.js';

/** Where the generator sends probes: a UDP echo, directly or through a tunnel's local port. */
export interface LoadTarget {
  host: string;
  port: number;
}

/**
 * How load is offered. `rate`: open loop, `rate` datagrams/s in total spread evenly over the sessions, sent on
 * schedule whatever the replies do. `inflight`: closed loop, each session keeps `inflight` probes unanswered.
 */
export type LoadMode = { kind: 'rate'; rate: number } | { kind: 'inflight'; inflight: number };

/** Phase of a run as reported by progress snapshots. */
export type LoadPhase = 'warmup' | 'measure' | 'drain';

/** Periodic progress report; counts cover the measured phase only. */
export interface LoadProgress {
  phase: LoadPhase;
  /** Since the run started (warmup included), ms. */
  elapsedMs: number;
  sent: number;
  received: number;
  /** Replies per second over the last progress interval. */
  recentDps: number;
  latencyP50Us: number;
  latencyP99Us: number;
}

/** Options of runLoad. */
export interface LoadOptions {
  target: LoadTarget;
  /** UDP payload bytes per probe, PROBE_HEADER_SIZE..MAX_PROBE_SIZE. */
  size: number;
  /** Local UDP sockets, each a distinct peer with its own flow id and sequence space; 1..MAX_SESSIONS. */
  sessions: number;
  mode: LoadMode;
  /** Measured sending time, ms. */
  durationMs: number;
  /** Sending before measurement starts (excluded from every statistic), ms. Default 0. */
  warmupMs?: number;
  /** Wait for late replies after sending stops, ms; ends early once every measured probe is answered. Default 500. */
  drainMs?: number;
  /** Closed loop: a probe unanswered this long frees its window slot and counts as timed out, ms. Default 1000. */
  timeoutMs?: number;
  /** Local address to bind; default the loopback of the target's family when the target is loopback, else any. */
  localHost?: string;
  /** Socket buffer size to ask for; refusals are tolerated. Default 4 MiB. */
  socketBufferBytes?: number;
  /** Progress callback period, ms. Default 1000. */
  progressIntervalMs?: number;
  /** Called every progressIntervalMs. */
  onProgress?: (snapshot: LoadProgress) => void;
  /** Stops sending early (then drains as usual); the result says `aborted`. */
  signal?: AbortSignal;
}

/** Counts of one session (one local socket). */
export interface SessionResult {
  flowId: number;
  localAddress: string;
  localPort: number;
  sent: number;
  received: number;
  lost: number;
  outOfOrder: number;
  duplicates: number;
  tooOld: number;
  timedOut: number;
  jitterUs: number;
}

/** Outcome of a run; counts and rates cover the measured phase only, times are µs unless named Ms. */
export interface LoadResult {
  target: { address: string; family: 4 | 6; port: number };
  mode: LoadMode;
  size: number;
  sessions: number;
  /** Measured sending window actually used (shorter than durationMs when aborted), ms. */
  elapsedMs: number;
  /** Whole run: setup, warmup, measurement and drain, ms. */
  totalMs: number;
  aborted: boolean;
  /** Probes handed to the sockets. */
  sent: number;
  /** Probes that came back (first arrivals); received + lost = sent. */
  received: number;
  lost: number;
  /** lost / sent (0 when nothing was sent). */
  lossRatio: number;
  outOfOrder: number;
  duplicates: number;
  /** Replies too far behind to classify (see SequenceTracker); counted as received. */
  tooOld: number;
  /** Closed loop: probes whose window slot was freed by the timeout. */
  timedOut: number;
  /** Open loop: probes the schedule called for but the generator did not send (it fell behind, or a send queue was full). */
  unsent: number;
  /** Sends the socket reported as failed. */
  sendErrors: number;
  /** Errors the sockets reported otherwise (e.g. ECONNREFUSED when nothing listens). */
  socketErrors: number;
  /** Datagrams received that were not a reply to this run (not a probe, wrong flow, size or sequence). */
  invalid: number;
  /** RFC 3550 interarrival jitter, mean over sessions, µs. */
  jitterUs: number;
  /** Replies per second of the measured window. */
  throughputDps: number;
  /** Reply UDP payload bits per second, Mbit/s. */
  throughputMbps: number;
  /** Probes sent per second of the measured window. */
  sendRateDps: number;
  /** Round-trip latency from the time each probe was due (open loop: its scheduled time), µs. */
  latencyUs: LatencySummary;
  /** The distribution behind latencyUs in log-spaced buckets (see LatencyRecorder.buckets), non-empty ones only. */
  latencyBuckets: LatencyBucket[];
  /** Round-trip latency from the time each probe actually left, µs (excludes generator lag). */
  serviceLatencyUs: LatencySummary;
  /** Socket buffer sizes the kernel granted (first session). */
  socketBuffers: { recv: number; send: number };
  /** Message of the last socket error, if any. */
  lastError: string | null;
  perSession: SessionResult[];
}
