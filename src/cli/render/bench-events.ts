import type { BenchEvent } from '../../bench/harness.js';
import type { BenchDocument } from '../../bench/report.js';
import type { Output } from '../output.js';

/** Least time between two `progress` events of `bench --json`. */
export const BENCH_PROGRESS_INTERVAL_MS = 1000;

/**
 * Turns bench progress into `bench --json` NDJSON events through Output.event: `starting`, `ready`, `progress`
 * (at most one per BENCH_PROGRESS_INTERVAL_MS, and the first of each phase), `run` (one path of one run, with its
 * numbers), `idle-sessions` and `stopping`; `result` (see emitBenchResult) ends the stream.
 */
export class BenchEventWriter {
  private lastProgressMs = -Infinity;
  private lastPhase = '';
  private readonly out: Output;
  private readonly now: () => number;

  constructor(out: Output, now: () => number = () => performance.now()) {
    this.out = out;
    this.now = now;
  }

  /** Writes the event for one BenchEvent (or nothing, for a throttled progress snapshot or a run-start). */
  handle(e: BenchEvent): void {
    switch (e.type) {
      case 'starting':
        this.out.event('starting', { what: e.what });
        return;
      case 'ready':
        this.out.event('ready', { parameters: e.parameters, environment: e.environment, components: e.components, echo: e.echo });
        return;
      case 'progress': {
        const s = e.snapshot;
        const key = `${e.run}/${e.path}/${s.phase}`;
        const t = this.now();
        if (key === this.lastPhase && t - this.lastProgressMs < BENCH_PROGRESS_INTERVAL_MS) return;
        this.lastPhase = key;
        this.lastProgressMs = t;
        this.out.event('progress', {
          run: e.run,
          runs: e.runs,
          path: e.path,
          phase: s.phase,
          elapsedMs: s.elapsedMs,
          sent: s.sent,
          received: s.received,
          recentDps: s.recentDps,
          latencyP50Us: s.latencyP50Us,
          latencyP99Us: s.latencyP99Us,
        });
        return;
      }
      case 'run-end': {
        const r = e.result;
        this.out.event('run', {
          run: e.run,
          runs: e.runs,
          path: e.path,
          elapsedMs: r.elapsedMs,
          sent: r.sent,
          received: r.received,
          lost: r.lost,
          lossRatio: r.lossRatio,
          outOfOrder: r.outOfOrder,
          duplicates: r.duplicates,
          timedOut: r.timedOut,
          unsent: r.unsent,
          jitterUs: r.jitterUs,
          throughputDps: r.throughputDps,
          throughputMbps: r.throughputMbps,
          latencyUs: r.latencyUs,
          aborted: r.aborted,
        });
        return;
      }
      case 'idle-sessions':
        this.out.event('idle-sessions', { sessions: e.sessions });
        return;
      case 'stopping':
        this.out.event('stopping', {});
        return;
      default:
        return;
    }
  }
}

/** The last event of `bench --json`: `result`, whose fields are the whole udp-tunnel-bench/1 document. */
export function emitBenchResult(out: Output, doc: BenchDocument): void {
  out.event('result', { ...doc });
}
