import { performance } from 'node:perf_hooks';

/**
 * Fires once after `timeoutMs` without touch(). touch() only stores a timestamp, so it is cheap enough to call for
 * every datagram in both directions; the timer re-arms itself for the remaining time when it fires early.
 */
export class IdleTimer {
  private last = performance.now();
  private timer: NodeJS.Timeout | null = null;
  private readonly timeoutMs: number;
  private readonly onIdle: () => void;

  /** A timeout of 0 disables the timer. */
  constructor(timeoutMs: number, onIdle: () => void) {
    this.timeoutMs = timeoutMs;
    this.onIdle = onIdle;
    if (timeoutMs > 0) this.arm(timeoutMs);
  }

  /** Records activity now. */
  touch(): void {
    this.last = performance.now();
  }

  /** Stops the timer for good. */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => {
      const remaining = this.last + this.timeoutMs - performance.now();
      if (remaining > 1) this.arm(remaining);
      else {
        this.timer = null;
        this.onIdle();
      }
    }, Math.ceil(ms));
  }
}
