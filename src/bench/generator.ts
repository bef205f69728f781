import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { isLoopback } from '../tunnel/policy.js';
import { DEFAULT_SOCKET_BUFFER_BYTES, trySetSocketBuffers } from '../tunnel/udp-socket.js';
import { OutstandingTable } from './outstanding-table.js';
import { createProbeBuffer, encodeProbe, readProbe, validateProbeSize } from './probe.js';
import type { Probe } from './probe.js';
import { JitterEstimator, LatencyRecorder, SequenceTracker } from './stats.js';
import type { TransferableLoadOptions, WorkerRequest, WorkerToParent } from './worker-messages.js';
import { resolveUdpHost } from './resolve-host.js';
import type { LoadMode, LoadOptions, LoadPhase, LoadProgress, LoadResult, LoadTarget, SessionResult } from './load-types.js';

export { MAX_INFLIGHT, MAX_RATE, MAX_SESSIONS } from './defaults.js';
import { MAX_INFLIGHT, MAX_RATE, MAX_SESSIONS } from './defaults.js';
export { DEFAULT_DRAIN_MS, DEFAULT_TIMEOUT_MS } from './defaults.js';
import { DEFAULT_DRAIN_MS, DEFAULT_TIMEOUT_MS } from './defaults.js';
/**
 * Sends a socket may have queued in user space (the kernel buffer was full) before further probes are skipped and
 * counted as unsent; bounds memory when the path cannot keep up. Lowered for many sessions of big probes so that
 * probe buffers stay within MAX_PROBE_BUFFER_BYTES.
 */
export const SEND_QUEUE_LIMIT = 32;
/** Memory all sessions' probe buffers may take at most (each session needs send-queue limit + 1 of them). */
export const MAX_PROBE_BUFFER_BYTES = 128 * 1024 * 1024;
/** Largest closed-loop window summed over sessions (bounds the outstanding tables). */
export const MAX_TOTAL_INFLIGHT = 262_144;

// Sends per event-loop turn in open loop, so replies are read between bursts.
const MAX_BATCH = 256;
const DAY_MS = 86_400_000;

/** Options after validation and defaults. */
export interface NormalizedLoadOptions {
  target: LoadTarget;
  size: number;
  sessions: number;
  mode: LoadMode;
  durationMs: number;
  warmupMs: number;
  drainMs: number;
  timeoutMs: number;
  localHost: string | undefined;
  socketBufferBytes: number;
  progressIntervalMs: number;
  /** Per-socket send queue limit, SEND_QUEUE_LIMIT or lower to honour MAX_PROBE_BUFFER_BYTES. */
  sendQueueLimit: number;
}

function invalid(option: string, value: unknown, rule: string): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${option} ${rule}, got ${String(value)}`, { option, value });
}

function checkMs(option: string, value: number, min: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > DAY_MS) {
    throw invalid(option, value, `must be a number of ms from ${min} to ${DAY_MS}`);
  }
  return value;
}

/** Validates options and fills defaults; throws INVALID_OPTION naming the bad option. */
export function normalizeLoadOptions(opts: LoadOptions): NormalizedLoadOptions {
  const t = opts.target;
  if (typeof t?.host !== 'string' || t.host === '') throw invalid('target.host', t?.host, 'must be a host name or address');
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw invalid('target.port', t.port, 'must be an integer 1..65535');
  validateProbeSize(opts.size);
  if (!Number.isInteger(opts.sessions) || opts.sessions < 1 || opts.sessions > MAX_SESSIONS) {
    throw invalid('sessions', opts.sessions, `must be an integer 1..${MAX_SESSIONS}`);
  }
  const mode = opts.mode;
  let normMode: LoadMode;
  if (mode?.kind === 'rate') {
    if (typeof mode.rate !== 'number' || !Number.isFinite(mode.rate) || mode.rate <= 0 || mode.rate > MAX_RATE) {
      throw invalid('rate', mode.rate, `must be a number of datagrams/s above 0 and at most ${MAX_RATE}`);
    }
    normMode = { kind: 'rate', rate: mode.rate };
  } else if (mode?.kind === 'inflight') {
    if (!Number.isInteger(mode.inflight) || mode.inflight < 1 || mode.inflight > MAX_INFLIGHT) {
      throw invalid('inflight', mode.inflight, `must be an integer 1..${MAX_INFLIGHT}`);
    }
    if (mode.inflight * opts.sessions > MAX_TOTAL_INFLIGHT) {
      throw invalid('inflight', mode.inflight, `times sessions (${opts.sessions}) must be at most ${MAX_TOTAL_INFLIGHT}`);
    }
    normMode = { kind: 'inflight', inflight: mode.inflight };
  } else {
    throw invalid('mode', (mode as { kind?: unknown } | undefined)?.kind, "must be { kind: 'rate' } or { kind: 'inflight' }");
  }
  // Every session needs at least two probe buffers (one in the kernel's hands, one to write).
  const perSessionBuffers = Math.floor(MAX_PROBE_BUFFER_BYTES / (opts.sessions * opts.size));
  if (perSessionBuffers < 2) {
    throw invalid('sessions', opts.sessions, `times size (${opts.size}) must be at most ${MAX_PROBE_BUFFER_BYTES / 2} bytes`);
  }
  const socketBufferBytes = opts.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES;
  if (!Number.isInteger(socketBufferBytes) || socketBufferBytes < 1 || socketBufferBytes > 1 << 30) {
    throw invalid('socketBufferBytes', socketBufferBytes, 'must be an integer 1..2^30');
  }
  return {
    target: { host: t.host, port: t.port },
    size: opts.size,
    sessions: opts.sessions,
    mode: normMode,
    durationMs: checkMs('durationMs', opts.durationMs, 1),
    warmupMs: checkMs('warmupMs', opts.warmupMs ?? 0, 0),
    drainMs: checkMs('drainMs', opts.drainMs ?? DEFAULT_DRAIN_MS, 0),
    timeoutMs: checkMs('timeoutMs', opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 1),
    localHost: opts.localHost,
    socketBufferBytes,
    progressIntervalMs: checkMs('progressIntervalMs', opts.progressIntervalMs ?? 1000, 10),
    sendQueueLimit: Math.min(SEND_QUEUE_LIMIT, perSessionBuffers - 1),
  };
}

const nowUs = (): number => performance.now() * 1000;

/** One generator session: a local socket with its own flow id and sequence space; what the hot path touches is preallocated. */
class LoadSession {
  readonly tracker = new SequenceTracker();
  readonly jitter = new JitterEstimator();
  // Ring of probe buffers: one is reused while sends complete synchronously; the ring only advances while the
  // socket queues sends, so a buffer is never rewritten before the kernel has copied it.
  readonly bufs: (Buffer | undefined)[];
  bufIdx = 0;
  nextSeq = 0;
  /** First measured sequence number, -1 while still in warmup. */
  measureStartSeq = -1;
  measuredSent = 0;
  timedOut = 0;
  inflight = 0;
  localAddress = '';
  localPort = 0;
  readonly onSent: (err: Error | null) => void;

  constructor(
    readonly socket: Socket,
    readonly flowId: number,
    readonly table: OutstandingTable | null,
    sendQueueLimit: number,
    onSendError: (err: Error) => void,
  ) {
    this.bufs = new Array<Buffer | undefined>(sendQueueLimit + 1);
    this.onSent = (err) => {
      if (err) onSendError(err);
    };
  }
}

async function openSession(
  address: string,
  family: 4 | 6,
  port: number,
  localHost: string,
  bufferBytes: number,
): Promise<Socket> {
  const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, localHost, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    trySetSocketBuffers(socket, bufferBytes);
    // A connected socket skips the per-send address lookup and only accepts datagrams from the target.
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return socket;
  } catch (err) {
    socket.close();
    throw new UdpTunnelError(
      ErrorCodes.IO,
      `cannot open a generator socket to ${address}:${port}: ${(err as Error).message}`,
      { host: address, port, localHost },
      { cause: err },
    );
  }
}

/**
 * Runs one load test: sends probes to `target` from `sessions` local sockets, matches the echoed replies and
 * returns loss, reordering, jitter, throughput and latency of the measured phase. Open-loop latency counts from
 * each probe's scheduled time, so generator or path stalls show up instead of being hidden (coordinated omission).
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const o = normalizeLoadOptions(options);
  const { address, family } = await resolveUdpHost(o.target.host);
  const localHost = o.localHost ?? (isLoopback(address) ? (family === 6 ? '::1' : '127.0.0.1') : family === 6 ? '::' : '0.0.0.0');
  return new LoadRun(o, address, family, localHost, options.onProgress, options.signal).run();
}

class LoadRun {
  private readonly sessions: LoadSession[] = [];
  private readonly latency = new LatencyRecorder();
  private readonly service = new LatencyRecorder();
  private readonly scratch: Probe = { flowId: 0, seq: 0, dueUs: 0, sentUs: 0 };
  private readonly expired: number[] = [];
  private readonly inflight: number;
  private readonly intervalUs: number;
  private readonly timeoutUs: number;
  private phase: LoadPhase = 'warmup';
  private sending = false;
  private finished = false;
  private aborted = false;
  private runStartUs = 0;
  private startUs = 0;
  // Phase boundaries are offsets from startUs, so schedule arithmetic is exact for whole-µs intervals.
  private warmupOffUs = 0;
  private endOffUs = 0;
  private stopOffUs = 0;
  private warmupEndUs = 0;
  /** Open loop: index of the next scheduled probe across all sessions. */
  private nextIndex = 0;
  private unsent = 0;
  private totalMeasuredSent = 0;
  private totalAccounted = 0;
  private sendErrors = 0;
  private socketErrors = 0;
  private invalid = 0;
  private lastError: string | null = null;
  private socketBuffers = { recv: 0, send: 0 };
  private lastProgressUs = 0;
  private lastProgressReceived = 0;
  private tickTimer: NodeJS.Timeout | null = null;
  private tickImmediate: NodeJS.Immediate | null = null;
  private phaseTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private resolveDone: (() => void) | null = null;
  private readonly tick = (): void => this.onTick();
  // Timers have millisecond granularity and may fire a little early by the monotonic clock: re-arm until due.
  private readonly stopWhenDue = (): void => {
    const left = this.endOffUs - (nowUs() - this.startUs);
    if (left > 0) this.phaseTimer = setTimeout(this.stopWhenDue, left / 1000);
    else this.stopSending();
  };
  private readonly onAbort = (): void => {
    this.aborted = true;
    if (this.sending) this.stopSending();
  };

  constructor(
    private readonly o: NormalizedLoadOptions,
    private readonly address: string,
    private readonly family: 4 | 6,
    private readonly localHost: string,
    private readonly onProgress: ((s: LoadProgress) => void) | undefined,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.inflight = o.mode.kind === 'inflight' ? o.mode.inflight : 0;
    this.intervalUs = o.mode.kind === 'rate' ? 1e6 / o.mode.rate : 0;
    this.timeoutUs = o.timeoutMs * 1000;
  }

  async run(): Promise<LoadResult> {
    this.runStartUs = nowUs();
    await this.openSockets();
    const done = new Promise<void>((resolve) => {
      this.resolveDone = resolve;
    });
    this.startUs = nowUs();
    this.warmupOffUs = this.o.warmupMs * 1000;
    this.endOffUs = this.warmupOffUs + this.o.durationMs * 1000;
    this.warmupEndUs = this.startUs + this.warmupOffUs;
    this.phase = this.o.warmupMs > 0 ? 'warmup' : 'measure';
    this.sending = true;
    this.lastProgressUs = this.startUs;
    if (this.onProgress) this.progressTimer = setInterval(() => this.reportProgress(), this.o.progressIntervalMs);
    this.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (this.signal?.aborted) {
      this.aborted = true;
      this.stopSending(0);
    } else if (this.o.mode.kind === 'rate') {
      this.onTick();
    } else {
      this.phaseTimer = setTimeout(this.stopWhenDue, this.o.durationMs + this.o.warmupMs);
      this.sweepTimer = setInterval(() => this.sweep(), Math.max(5, Math.min(250, this.o.timeoutMs / 4)));
      for (const s of this.sessions) this.fill(s);
    }
    await done;
    this.signal?.removeEventListener('abort', this.onAbort);
    await Promise.all(this.sessions.map((s) => new Promise<void>((resolve) => s.socket.close(() => resolve()))));
    return this.result();
  }

  private async openSockets(): Promise<void> {
    // A random base keeps flow ids of consecutive runs apart, so stray replies from an earlier run are rejected.
    const base = randomInt(0, 0xffff_ffff);
    const opened = await Promise.allSettled(
      Array.from({ length: this.o.sessions }, () =>
        openSession(this.address, this.family, this.o.target.port, this.localHost, this.o.socketBufferBytes),
      ),
    );
    const failure = opened.find((r) => r.status === 'rejected');
    if (failure) {
      for (const r of opened) if (r.status === 'fulfilled') r.value.close();
      throw (failure as PromiseRejectedResult).reason;
    }
    opened.forEach((r, i) => {
      const socket = (r as PromiseFulfilledResult<Socket>).value;
      const table = this.inflight > 0 ? new OutstandingTable(this.inflight) : null;
      const s = new LoadSession(socket, (base + i) >>> 0, table, this.o.sendQueueLimit, (err) => {
        this.sendErrors++;
        this.lastError = err.message;
      });
      const local = socket.address();
      s.localAddress = local.address;
      s.localPort = local.port;
      socket.on('message', (msg: Buffer) => this.onReply(s, msg));
      socket.on('error', (err: Error) => {
        this.socketErrors++;
        this.lastError = err.message;
      });
      this.sessions.push(s);
    });
    const first = this.sessions[0]!.socket;
    this.socketBuffers = { recv: first.getRecvBufferSize(), send: first.getSendBufferSize() };
  }

  /** Sends the next probe of `s`; returns its seq, or -1 when the socket's send queue is full. */
  private send(s: LoadSession, dueUs: number, sentUs: number, measured: boolean): number {
    const socket = s.socket;
    if (socket.getSendQueueCount() >= this.o.sendQueueLimit) return -1;
    let buf = s.bufs[s.bufIdx];
    if (buf === undefined) {
      buf = createProbeBuffer(this.o.size);
      s.bufs[s.bufIdx] = buf;
    }
    const seq = s.nextSeq++;
    encodeProbe(buf, s.flowId, seq, dueUs, sentUs);
    socket.send(buf, s.onSent);
    if (socket.getSendQueueCount() > 0) s.bufIdx = (s.bufIdx + 1) % s.bufs.length;
    if (measured) {
      if (s.measureStartSeq < 0) s.measureStartSeq = seq;
      s.measuredSent++;
      this.totalMeasuredSent++;
    }
    return seq;
  }

  /** Open loop: sends every probe that is due, at most MAX_BATCH per turn, then waits for the next one. */
  private onTick(): void {
    this.tickTimer = null;
    this.tickImmediate = null;
    if (!this.sending) return;
    const nowOff = nowUs() - this.startUs;
    if (this.phase === 'warmup' && nowOff >= this.warmupOffUs) this.phase = 'measure';
    const n = this.sessions.length;
    let budget = MAX_BATCH;
    let dueOff = this.nextIndex * this.intervalUs;
    while (budget > 0 && dueOff <= nowOff && dueOff < this.endOffUs) {
      const s = this.sessions[this.nextIndex % n]!;
      const measured = dueOff >= this.warmupOffUs;
      if (this.send(s, this.startUs + dueOff, nowUs(), measured) < 0 && measured) this.unsent++;
      this.nextIndex++;
      budget--;
      dueOff = this.nextIndex * this.intervalUs;
    }
    if (nowOff >= this.endOffUs) {
      this.stopSending();
    } else if (dueOff >= this.endOffUs) {
      // Everything is sent; the measured window still runs to its end so rates divide by the full duration.
      this.tickTimer = setTimeout(this.tick, (this.endOffUs - nowOff) / 1000);
    } else if (dueOff <= nowOff) {
      this.tickImmediate = setImmediate(this.tick);
    } else {
      this.tickTimer = setTimeout(this.tick, (dueOff - (nowUs() - this.startUs)) / 1000);
    }
  }

  /** Closed loop: tops the window of `s` up to `inflight`. */
  private fill(s: LoadSession): void {
    const table = s.table!;
    while (this.sending && s.inflight < this.inflight) {
      const now = nowUs();
      const seq = this.send(s, now, now, now >= this.warmupEndUs);
      if (seq < 0) break; // send queue full: the sweep retries
      table.insert(seq, now);
      s.inflight++;
    }
  }

  /** Closed loop: frees the window slots of probes unanswered for timeoutMs, then refills. */
  private sweep(): void {
    const now = nowUs();
    if (this.phase === 'warmup' && now >= this.warmupEndUs) this.phase = 'measure';
    const deadline = now - this.timeoutUs;
    for (const s of this.sessions) {
      const table = s.table!;
      const n = table.collectExpired(deadline, this.expired);
      for (let i = 0; i < n; i++) {
        const seq = this.expired[i]!;
        table.remove(seq);
        s.inflight--;
        if (s.measureStartSeq >= 0 && seq >= s.measureStartSeq) s.timedOut++;
      }
      if (this.sending) this.fill(s);
    }
  }

  private onReply(s: LoadSession, msg: Buffer): void {
    const now = nowUs();
    const p = this.scratch;
    if (msg.length !== this.o.size || !readProbe(msg, p) || p.flowId !== s.flowId || p.seq >= s.nextSeq) {
      this.invalid++;
      return;
    }
    const seq = p.seq;
    if (s.table !== null && s.table.remove(seq)) {
      s.inflight--;
      if (this.sending) this.fill(s);
    }
    if (s.measureStartSeq < 0 || seq < s.measureStartSeq) return; // warmup traffic
    const verdict = s.tracker.record(seq - s.measureStartSeq);
    if (verdict === 'duplicate') return;
    // A tooOld arrival is most likely a very late first arrival, so its latency is real and kept.
    this.latency.record(now - p.dueUs);
    this.service.record(now - p.sentUs);
    if (verdict !== 'tooOld') s.jitter.update(p.sentUs, now);
    this.totalAccounted++;
    if (!this.sending && this.totalAccounted >= this.totalMeasuredSent) this.finish();
  }

  private stopSending(atOffUs: number = nowUs() - this.startUs): void {
    if (!this.sending) return;
    this.sending = false;
    this.stopOffUs = Math.max(0, Math.min(atOffUs, this.endOffUs));
    if (this.o.mode.kind === 'rate') {
      // Probes due in the measured window that the generator never got to.
      const dueCount = Math.ceil(this.stopOffUs / this.intervalUs);
      const firstMeasured = Math.ceil(this.warmupOffUs / this.intervalUs);
      this.unsent += Math.max(0, dueCount - Math.max(this.nextIndex, firstMeasured));
    }
    if (this.tickTimer) clearTimeout(this.tickTimer);
    if (this.tickImmediate) clearImmediate(this.tickImmediate);
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    this.tickTimer = null;
    this.tickImmediate = null;
    this.phaseTimer = null;
    this.phase = 'drain';
    if (this.totalAccounted >= this.totalMeasuredSent || this.o.drainMs === 0) {
      this.finish();
    } else {
      this.drainTimer = setTimeout(() => this.finish(), this.o.drainMs);
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const t of [this.drainTimer, this.sweepTimer, this.progressTimer]) if (t) clearTimeout(t);
    this.drainTimer = null;
    this.sweepTimer = null;
    this.progressTimer = null;
    for (const s of this.sessions) s.socket.removeAllListeners('message');
    this.resolveDone?.();
  }

  private reportProgress(): void {
    const now = nowUs();
    if (this.phase === 'warmup' && now >= this.warmupEndUs) this.phase = 'measure';
    const received = this.totalAccounted;
    const dt = (now - this.lastProgressUs) / 1e6;
    const snapshot: LoadProgress = {
      phase: this.phase,
      elapsedMs: (now - this.startUs) / 1000,
      sent: this.totalMeasuredSent,
      received,
      recentDps: dt > 0 ? (received - this.lastProgressReceived) / dt : 0,
      latencyP50Us: this.latency.percentile(50),
      latencyP99Us: this.latency.percentile(99),
    };
    this.lastProgressUs = now;
    this.lastProgressReceived = received;
    try {
      this.onProgress?.(snapshot);
    } catch {
      // A failing observer must not break the measurement.
    }
  }

  private result(): LoadResult {
    const measuredUs = Math.max(0, this.stopOffUs - this.warmupOffUs);
    const seconds = measuredUs / 1e6;
    let sent = 0;
    let received = 0;
    let outOfOrder = 0;
    let duplicates = 0;
    let tooOld = 0;
    let timedOut = 0;
    let jitterSum = 0;
    let jitterN = 0;
    const perSession: SessionResult[] = this.sessions.map((s) => {
      const t = s.tracker;
      const got = s.measuredSent - t.lost(s.measuredSent);
      sent += s.measuredSent;
      received += got;
      outOfOrder += t.outOfOrder;
      duplicates += t.duplicates;
      tooOld += t.tooOld;
      timedOut += s.timedOut;
      if (s.jitter.samples >= 2) {
        jitterSum += s.jitter.jitterUs;
        jitterN++;
      }
      return {
        flowId: s.flowId,
        localAddress: s.localAddress,
        localPort: s.localPort,
        sent: s.measuredSent,
        received: got,
        lost: s.measuredSent - got,
        outOfOrder: t.outOfOrder,
        duplicates: t.duplicates,
        tooOld: t.tooOld,
        timedOut: s.timedOut,
        jitterUs: s.jitter.jitterUs,
      };
    });
    const throughputDps = seconds > 0 ? received / seconds : 0;
    return {
      target: { address: this.address, family: this.family, port: this.o.target.port },
      mode: this.o.mode,
      size: this.o.size,
      sessions: this.o.sessions,
      elapsedMs: measuredUs / 1000,
      totalMs: (nowUs() - this.runStartUs) / 1000,
      aborted: this.aborted,
      sent,
      received,
      lost: sent - received,
      lossRatio: sent > 0 ? (sent - received) / sent : 0,
      outOfOrder,
      duplicates,
      tooOld,
      timedOut,
      unsent: this.unsent,
      sendErrors: this.sendErrors,
      socketErrors: this.socketErrors,
      invalid: this.invalid,
      jitterUs: jitterN > 0 ? jitterSum / jitterN : 0,
      throughputDps,
      throughputMbps: (throughputDps * this.o.size * 8) / 1e6,
      sendRateDps: seconds > 0 ? sent / seconds : 0,
      latencyUs: this.latency.summary(),
      latencyBuckets: this.latency.buckets(),
      serviceLatencyUs: this.service.summary(),
      socketBuffers: this.socketBuffers,
      lastError: this.lastError,
      perSession,
    };
  }
}

/**
 * Runs runLoad in a worker thread so the generator has an event loop to itself (a tunnel in the same process cannot
 * stall it). Same options and result; onProgress is fed from the worker's messages and `signal` is forwarded.
 */
export async function runLoadInWorker(options: LoadOptions): Promise<LoadResult> {
  normalizeLoadOptions(options); // fail fast in the caller's thread on bad options
  const { onProgress, signal, ...rest } = options;
  const transferable: TransferableLoadOptions = rest;
  const request: WorkerRequest = { options: transferable, progress: onProgress !== undefined, aborted: signal?.aborted === true };
  // Resolved next to this module, which also holds in the compiled dist/ layout.
  const worker = new Worker(new URL('./generator-worker.js', import.meta.url), { workerData: request });
  return new Promise<LoadResult>((resolve, reject) => {
    let result: LoadResult | null = null;
    let failure: Error | null = null;
    const onAbort = (): void => worker.postMessage({ type: 'stop' });
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (msg: WorkerToParent) => {
      if (msg.type === 'progress') {
        try {
          onProgress?.(msg.snapshot);
        } catch {
          // A failing observer must not break the measurement.
        }
      } else if (msg.type === 'result') {
        result = msg.result;
      } else if (msg.type === 'error') {
        const e = msg.error;
        failure = e.code !== null ? new UdpTunnelError(e.code, e.message, e.details, { retryable: e.retryable }) : new Error(e.message);
      }
    });
    worker.on('error', (err) => {
      failure ??= new UdpTunnelError(ErrorCodes.IO, `load generator worker failed: ${err.message}`, {}, { cause: err });
    });
    // Settle on exit so no thread outlives the promise.
    worker.on('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      if (result !== null) resolve(result);
      else reject(failure ?? new UdpTunnelError(ErrorCodes.IO, `load generator worker exited with code ${code} before reporting`, { exitCode: code }));
    });
  });
}

/**
 * The --fail-if metrics of a run, keyed as parseFailIf names them, in their base units (latency percentiles from
 * the due time). `ratio` (e.g. tunnel / direct throughput) is included only when given.
 */
export function failIfMetrics(result: LoadResult, ratio?: number): Record<string, number> {
  const l = result.latencyUs;
  const metrics: Record<string, number> = {
    p50: l.p50,
    p90: l.p90,
    p99: l.p99,
    'p99.9': l.p999,
    max: l.max,
    mean: l.mean,
    jitter: result.jitterUs,
    loss: result.lossRatio,
    throughput: result.throughputDps,
    mbps: result.throughputMbps,
  };
  if (ratio !== undefined) metrics['ratio'] = ratio;
  return metrics;
}
