import { color } from './color.js';

/** Verbosity: -q = 0, default = 1, -v = 2. */
export type Verbosity = 0 | 1 | 2;

/** Where a command's output goes: data and --json on stdout, logs on stderr. */
export class Output {
  readonly json: boolean;
  readonly verbosity: Verbosity;
  private readonly started = Date.now();

  constructor(opts: { json: boolean; verbosity: Verbosity }) {
    this.json = opts.json;
    this.verbosity = opts.verbosity;
  }

  /** Writes one NDJSON event to stdout (json mode only). */
  event(name: string, fields: Record<string, unknown>): void {
    if (!this.json) return;
    process.stdout.write(`${JSON.stringify({ event: name, time: new Date().toISOString(), ...fields }, jsonReplacer)}\n`);
  }

  /** Writes a data line to stdout (human mode). */
  data(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  /** Logs an informational line on stderr (hidden by -q). */
  info(msg: string): void {
    if (this.verbosity >= 1) process.stderr.write(`${this.prefix()}${msg}\n`);
  }

  /** Logs a detail on stderr (only with -v). */
  debug(msg: string): void {
    if (this.verbosity >= 2) process.stderr.write(`${this.prefix()}${color().dim(msg)}\n`);
  }

  /** Logs a warning on stderr (even with -q). */
  warn(msg: string): void {
    process.stderr.write(`${this.prefix()}${color().yellow(`warning: ${msg}`)}\n`);
  }

  /** Logs an error on stderr. */
  error(msg: string): void {
    process.stderr.write(`${this.prefix()}${color().red(`error: ${msg}`)}\n`);
  }

  private prefix(): string {
    const t = ((Date.now() - this.started) / 1000).toFixed(3).padStart(8);
    return color().dim(`${t} `);
  }
}

/** JSON.stringify replacer: bigints become strings, Errors become {code, message}. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { code: (value as { code?: string }).code, message: value.message };
  return value;
}
