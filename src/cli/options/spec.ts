// The option schema: one declaration per flag, from which the CLI derives its parser, validation, help, config-file
// keys, environment variables and the options tables in docs/. This module holds the types and the value readers;
// it loads nothing else, so `--help` stays cheap.

/** What kind of value a flag takes, and so how its text is read. */
export type OptionKind = 'string' | 'boolean' | 'int' | 'number' | 'size' | 'duration' | 'choice' | 'list';

/** One flag of one command. */
export interface OptionSpec {
  /** The flag without dashes (`max-sessions`); also its key in a config file. */
  readonly name: string;
  /** A one-letter alias (`l` for `-l`). */
  readonly short?: string;
  readonly kind: OptionKind;
  /** The help group it is listed under (one of the command's `groups`). */
  readonly group: string;
  /** One line for `--help` (about 60 columns). */
  readonly describe: string;
  /** More for `--help-all` and docs/, when one line is not enough. */
  readonly details?: string;
  /** The default as a user would type it (`60s`, `16k`); a number for int/number, true/false for booleans. */
  readonly default?: string | number | boolean | readonly string[];
  /** Placeholder for the value in help (`HOST:PORT`, `FILE`, `N`). */
  readonly value?: string;
  /** Smallest and largest accepted value, in the kind's base unit (bytes, milliseconds). */
  readonly min?: number;
  readonly max?: number;
  /** Durations only: the unit of a bare number (default `s`). */
  readonly unit?: 'ms' | 's';
  /** Values a `choice` accepts. */
  readonly choices?: readonly string[];
  /** Lists: split each value on commas as well (`--allow a,b`). */
  readonly commas?: boolean;
  /** Environment variable read when neither the flag nor the config file gives a value. */
  readonly env?: string;
  /** A credential: shown as `<redacted>` by --print-config and never echoed in messages. */
  readonly secret?: boolean;
  /** Listed by `--help-all` only. */
  readonly advanced?: boolean;
  /** Not a config-file key (e.g. --config itself, one-shot actions). */
  readonly flagOnly?: boolean;
}

/**
 * A config-file key (never a flag) holding a list of mappings, each setting some of the command's own options for
 * one item (connect's `forwards:`). Each value is read as the option of that name is read.
 */
export interface ConfigListSpec {
  readonly name: string;
  /** One line for docs and messages. */
  readonly describe: string;
  /** The options a mapping may set. */
  readonly keys: readonly string[];
  /** The keys every mapping must set. */
  readonly required?: readonly string[];
}

/** A command's whole option model. */
export interface CommandSchema {
  readonly command: string;
  /** The line under `Usage:`. */
  readonly usage: string;
  /** One or two sentences under the usage line. */
  readonly summary: string;
  /** Help groups in the order `--help` shows them. */
  readonly groups: readonly string[];
  readonly options: readonly OptionSpec[];
  /** Examples that paste: each fits on one line. */
  readonly examples: readonly { readonly cmd: string; readonly what: string }[];
  /** Positional arguments the command takes besides options (inspect's `-`). */
  readonly positionals?: readonly string[];
  /** Config-file keys holding lists of mappings (see ConfigListSpec). */
  readonly configLists?: readonly ConfigListSpec[];
}

/** TypeScript type of a parsed value of each kind. */
interface KindTypes {
  string: string;
  boolean: boolean;
  int: number;
  number: number;
  size: number;
  duration: number;
  choice: string;
  list: string[];
}

type ValueOf<O extends OptionSpec> = O['kind'] extends 'choice'
  ? O extends { choices: readonly (infer C)[] }
    ? C
    : string
  : KindTypes[O['kind']];

/**
 * The parsed options of a schema, keyed by flag name: a flag with a default (or a boolean or list, which always have
 * one) is always present; any other is present only when given.
 */
export type OptionValues<S extends readonly OptionSpec[]> = {
  -readonly [O in S[number] as O extends { default: unknown } ? O['name'] : O['kind'] extends 'boolean' | 'list' ? O['name'] : never]: ValueOf<O>;
} & {
  -readonly [O in S[number] as O extends { default: unknown } ? never : O['kind'] extends 'boolean' | 'list' ? never : O['name']]?: ValueOf<O>;
};

/** A value that could not be read; `message` says what was expected, without naming where the value came from. */
export class OptionValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionValueError';
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a byte size: `1500`, `64k`, `16KiB`, `1MB`, `4m` (k, KB and KiB all mean 1024). */
export function readSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const mult = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || mult === undefined) throw new OptionValueError(`'${text}' is not a size (examples: 1500, 64KiB, 1MB)`);
  const bytes = Number(m[1]) * mult;
  if (!Number.isSafeInteger(bytes)) throw new OptionValueError(`'${text}' is not a whole number of bytes`);
  return bytes;
}

/** Parses a duration into milliseconds: `500ms`, `30s`, `2m`, `1h`, `250us`; a bare number is in `unit`. */
export function readDuration(text: string, unit: 'ms' | 's' = 's'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const mult = m ? (m[2] === '' ? DURATION_UNITS[unit] : DURATION_UNITS[m[2]!.toLowerCase()]) : undefined;
  if (!m || mult === undefined) throw new OptionValueError(`'${text}' is not a duration (examples: 500ms, 30s, 2m)`);
  return Number(m[1]) * mult;
}

/** A size for messages and defaults: `16KiB`, `4MiB`, or bytes. */
export function showSize(bytes: number): string {
  if (bytes > 0 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GiB`;
  if (bytes > 0 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MiB`;
  if (bytes > 0 && bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return String(bytes);
}

/** A duration for messages and defaults: `2m`, `30s`, `500ms`. */
export function showDuration(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function showBound(spec: OptionSpec, n: number): string {
  if (spec.kind === 'size') return showSize(n);
  if (spec.kind === 'duration') return showDuration(n);
  return String(n);
}

/** The accepted range in words, for messages and docs ('1..65535', 'at least 1'). */
export function describeRange(spec: OptionSpec): string | null {
  const { min, max } = spec;
  if (min !== undefined && max !== undefined) return `${showBound(spec, min)}..${showBound(spec, max)}`;
  if (min !== undefined) return `at least ${showBound(spec, min)}`;
  if (max !== undefined) return `at most ${showBound(spec, max)}`;
  return null;
}

/** The longest duration accepted: Node timers fire at once beyond 2^31-1 ms, so longer ones would mean "now". */
export const MAX_DURATION_MS = 596 * 3_600_000;

function checkTimer(ms: number, text: string): number {
  if (!(ms <= MAX_DURATION_MS)) throw new OptionValueError(`'${text}' is out of range: a duration must be at most ${showDuration(MAX_DURATION_MS)}`);
  return ms;
}

function checkRange(spec: OptionSpec, n: number, text: string): number {
  if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
    const zeroHint = n === 0 && spec.min !== undefined && spec.min > 0 ? ' (0 would turn it off)' : '';
    throw new OptionValueError(`'${text}' is out of range: it must be ${describeRange(spec)}${zeroHint}`);
  }
  return n;
}

/** Reads one scalar value of `spec`'s kind from text (a flag, a config file or the environment). */
export function readValue(spec: OptionSpec, raw: unknown): unknown {
  if (spec.kind === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    // A config file can hold a list or mapping here, which has no true/false reading (and may not even print).
    if (raw === null || typeof raw === 'object') throw new OptionValueError('expected true or false, not a list or mapping');
    const t = String(raw).trim().toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(t)) return true;
    if (['false', 'no', 'off', '0'].includes(t)) return false;
    throw new OptionValueError(`'${String(raw)}' is not true or false`);
  }
  if (spec.kind === 'list') {
    const items = (Array.isArray(raw) ? raw : [raw]).map((v) => {
      if (v === null || typeof v === 'object') throw new OptionValueError('expected text or a list of text');
      return String(v);
    });
    const flat = spec.commas ? items.flatMap((v) => v.split(',')).map((v) => v.trim()) : items;
    if (flat.some((v) => v === '')) throw new OptionValueError('an empty value is not allowed');
    return flat;
  }
  if (raw === null || typeof raw === 'object') throw new OptionValueError('expected a single value');
  const text = String(raw);
  switch (spec.kind) {
    case 'string':
      if (text === '') throw new OptionValueError('an empty value is not allowed');
      return text;
    case 'choice':
      if (!spec.choices!.includes(text)) throw new OptionValueError(`'${text}' is not one of ${spec.choices!.join(', ')}`);
      return text;
    case 'int': {
      const t = text.trim();
      if (!/^[+-]?\d+(\.\d+)?$/.test(t)) throw new OptionValueError(`'${text}' is not a number`);
      const n = Number(t);
      if (!Number.isInteger(n)) throw new OptionValueError(`'${text}' is not a whole number`);
      return checkRange(spec, n, text);
    }
    case 'number': {
      const t = text.trim();
      if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(t) || !Number.isFinite(Number(t))) throw new OptionValueError(`'${text}' is not a number`);
      return checkRange(spec, Number(t), text);
    }
    case 'size':
      if (/^\s*-/.test(text)) throw new OptionValueError(`'${text}' is out of range: a size cannot be negative`);
      return checkRange(spec, readSize(text), text);
    case 'duration':
      if (/^\s*-/.test(text)) throw new OptionValueError(`'${text}' is out of range: a duration cannot be negative`);
      return checkRange(spec, checkTimer(readDuration(text, spec.unit), text), text);
  }
}

/** Distance between two strings (insertions, deletions, substitutions, and swaps of neighbours). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `candidates` to `word`, if close enough to be a likely slip; else null. */
export function closest(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  // A third of the word (at least 1, at most 3) wrong still reads as the same word.
  const allowed = Math.min(3, Math.max(1, Math.floor(word.length / 3)));
  if (best !== null && bestD <= allowed) return best;
  // A prefix (`--max-sess`) is a likely slip too, when it picks one flag.
  const prefixed = candidates.filter((c) => c.startsWith(word));
  return word.length >= 3 && prefixed.length === 1 ? prefixed[0]! : null;
}
