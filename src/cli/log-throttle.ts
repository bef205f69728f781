/**
 * Lets one report of a recurring trouble through per interval and counts the ones it holds back, so a flood (e.g.
 * every request failing while descriptors are exhausted) logs a line now and then instead of one per request.
 */
export class LogThrottle {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private last = Number.NEGATIVE_INFINITY;
  private held = 0;

  constructor(intervalMs: number, now: () => number = Date.now) {
    this.intervalMs = intervalMs;
    this.now = now;
  }

  /** Returns how many reports were held back since the last one let through, or null when this one is held back. */
  take(): number | null {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.held++;
      return null;
    }
    this.last = t;
    const held = this.held;
    this.held = 0;
    return held;
  }

  /** Reports held back since the last one let through. */
  get pending(): number {
    return this.held;
  }
}
