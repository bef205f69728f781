import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import type { ProxyProbeResult } from '../../tunnel/proxy-probe.js';

/** Errors of a tunnel attempt that say the proxy itself could not be reached (a refusal means it could). */
const UNREACHABLE_CODES = new Set<string>([ErrorCodes.PROXY_UNREACHABLE, ErrorCodes.TLS, ErrorCodes.TIMEOUT]);

/** Delays between probes while the proxy is unreachable. */
export interface ReadinessBackoff {
  firstMs: number;
  maxMs: number;
}

/** Probes start 1 s after a failure and back off to one every 30 s. */
export const READINESS_BACKOFF: ReadinessBackoff = { firstMs: 1_000, maxMs: 30_000 };

/**
 * Whether connect's proxy is reachable, for `/readyz`: unknown until the first probe answers; a tunnel that opens
 * proves it reachable, an attempt that cannot reach it (or a failed probe) marks it unreachable and starts probing
 * again in the background, with backoff, until a probe or a tunnel succeeds. Answers never wait for a probe.
 */
export class ProxyReadiness {
  private state: 'unknown' | 'reachable' | 'unreachable' = 'unknown';
  private why = 'the proxy has not been checked yet';
  private timer: NodeJS.Timeout | null = null;
  private delayMs: number;
  private probing = false;
  private stopped = false;
  private readonly controller = new AbortController();

  /** `probe` checks the proxy once (connect's proxy probe); `backoff` spaces the probes while it fails. */
  constructor(
    private readonly probe: (signal: AbortSignal) => Promise<ProxyProbeResult>,
    private readonly backoff: ReadinessBackoff = READINESS_BACKOFF,
  ) {
    this.delayMs = backoff.firstMs;
  }

  /** True once the proxy was last seen reachable. */
  get reachable(): boolean {
    return this.state === 'reachable';
  }

  /** Null when the proxy was last seen reachable, else why not, for `/readyz`. */
  notReady(): string | null {
    return this.state === 'reachable' ? null : this.why;
  }

  /** Probes now (unless a probe runs already). */
  check(): void {
    if (this.stopped || this.probing) return;
    this.clearTimer();
    this.probing = true;
    this.probe(this.controller.signal).then(
      (r) => {
        this.probing = false;
        this.report(r);
      },
      (err: unknown) => {
        this.probing = false;
        this.markUnreachable(`proxy check failed: ${(err as Error)?.message ?? String(err)}`);
      },
    );
  }

  /** Takes a probe's verdict (the start-up probe's, or one of ours). */
  report(r: ProxyProbeResult): void {
    if (this.stopped) return;
    if (r.ok) this.markReachable();
    else this.markUnreachable(`proxy ${r.proxy}: ${r.error?.message ?? r.problem ?? 'not usable'}`);
  }

  /** A tunnel was established: the proxy is reachable. */
  tunnelReady(): void {
    if (!this.stopped) this.markReachable();
  }

  /** A tunnel attempt failed: unreachable when the error says the proxy could not be reached. */
  tunnelFailed(error: Error): void {
    if (this.stopped) return;
    if (error instanceof UdpTunnelError && UNREACHABLE_CODES.has(error.code)) this.markUnreachable(error.message);
  }

  /** Stops probing and cancels a probe that runs. */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
    this.controller.abort();
  }

  private markReachable(): void {
    this.state = 'reachable';
    this.why = '';
    this.delayMs = this.backoff.firstMs;
    this.clearTimer();
  }

  private markUnreachable(why: string): void {
    this.state = 'unreachable';
    this.why = why;
    if (this.timer !== null || this.probing || this.stopped) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.backoff.maxMs, this.delayMs * 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.check();
    }, delay);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
