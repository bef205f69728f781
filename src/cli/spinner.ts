import ora, { type Ora } from 'ora';

/**
 * A spinner on stderr, only when stderr is a TTY with a known width, CI is unset and output is not JSON; otherwise
 * a no-op.
 */
export class Spinner {
  private readonly ora: Ora | null;

  constructor(text: string, opts: { json: boolean; quiet?: boolean }) {
    // A terminal that reports zero columns (e.g. a pty without a window size) would make ora's line-clearing
    // arithmetic divide by zero and flood the terminal with escape codes.
    const enabled =
      !opts.json && !opts.quiet && process.stderr.isTTY === true && (process.stderr.columns ?? 0) > 0 && !process.env['CI'];
    this.ora = enabled ? ora({ text, stream: process.stderr }).start() : null;
  }

  /** True when a spinner is actually shown (stderr is a TTY, CI unset, not JSON or quiet). */
  get active(): boolean {
    return this.ora !== null && this.ora.isSpinning;
  }

  /** Updates the live text. */
  set text(t: string) {
    if (this.ora) this.ora.text = t;
  }

  /** Stops with a success mark. */
  succeed(t?: string): void {
    this.ora?.succeed(t);
  }

  /** Stops with a failure mark. */
  fail(t?: string): void {
    this.ora?.fail(t);
  }

  /** Stops and clears the line. */
  stop(): void {
    this.ora?.stop();
  }
}
