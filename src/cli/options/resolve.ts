import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { closest, OptionValueError, readValue, type CommandSchema, type ConfigListSpec, type OptionSpec } from './spec.js';

/** Where an option's value came from; a flag beats the environment, which beats the config file, then the default. */
export type OptionSource = 'flag' | 'env' | 'config' | 'default';

/** A command line read against its schema. */
export interface ResolvedOptions<V> {
  readonly values: V;
  /** The origin of every option that has a value. */
  readonly sources: Readonly<Record<string, OptionSource>>;
  /** Positional arguments (only those the schema allows). */
  readonly positionals: readonly string[];
  /** The config file read, if any. */
  readonly configFile?: string;
  /** The config file's lists of mappings (schema.configLists), each value read as its option is; absent when not given. */
  readonly lists?: Readonly<Record<string, readonly Readonly<Record<string, unknown>>[]>>;
}

/** Whether an option was set by the user (flag, environment or config file) rather than left at its default. */
export function isGiven(resolved: ResolvedOptions<unknown>, name: string): boolean {
  const s = resolved.sources[name];
  return s !== undefined && s !== 'default';
}

/** How the user wrote an option, for messages: `--max-sessions` or `-l/--local`. */
export function flagName(spec: OptionSpec): string {
  return `--${spec.name}`;
}

function where(spec: OptionSpec, source: OptionSource, file?: string): string {
  if (source === 'env') return spec.env!;
  if (source === 'config') return `${file}: ${spec.name}`;
  return flagName(spec);
}

function hideSecret(message: string, raw: unknown): string {
  const texts = (Array.isArray(raw) ? raw : [raw]).map((v) => String(v)).filter((t) => t !== '');
  let out = message;
  for (const t of texts) out = out.split(`'${t}'`).join('the value');
  return out;
}

function read(spec: OptionSpec, raw: unknown, source: OptionSource, file?: string): unknown {
  try {
    return readValue(spec, raw);
  } catch (err) {
    if (!(err instanceof OptionValueError)) throw err;
    // A secret's text may itself hold quotes, so every copy of it goes, not just the first quoted part.
    const message = spec.secret ? hideSecret(err.message, raw) : err.message;
    throw new UsageError(`${where(spec, source, file)}: ${message}`);
  }
}

/** Reads a YAML config file into flag-name keys and raw values; unknown keys are refused with a suggestion. */
async function readConfigFile(schema: CommandSchema, path: string): Promise<Map<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--config ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const YAML = await import('yaml');
  let doc: unknown;
  try {
    doc = YAML.parse(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new UsageError(`--config ${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const out = new Map<string, unknown>();
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`--config ${path}: expected a mapping of option names to values (e.g. 'proxy: http://127.0.0.1:4433')`);
  const keys = [...schema.options.filter((o) => !o.flagOnly).map((o) => o.name), ...(schema.configLists ?? []).map((l) => l.name)];
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const list = schema.configLists?.find((l) => l.name === key);
    if (list !== undefined) {
      out.set(key, readConfigList(schema, list, value, path));
      continue;
    }
    const spec = schema.options.find((o) => o.name === key);
    if (spec === undefined || spec.flagOnly) {
      const hint = spec?.flagOnly ? ' (it is a command-line flag only)' : suggestion(closest(key, keys), '');
      throw new UsageError(`--config ${path}: unknown key '${key}'${hint}`);
    }
    if (value === null) throw new UsageError(`--config ${path}: ${key} has no value`);
    out.set(key, value);
  }
  return out;
}

/** Reads a config list of mappings: known keys only (with a suggestion), required keys present, each value read by its option. */
function readConfigList(schema: CommandSchema, list: ConfigListSpec, value: unknown, path: string): Record<string, unknown>[] {
  const at = (i: number): string => `--config ${path}: ${list.name}[${i}]`;
  if (!Array.isArray(value) || value.length === 0) {
    throw new UsageError(`--config ${path}: ${list.name} must be a list of mappings (e.g. '- { ${list.keys.slice(0, 2).map((k) => `${k}: ...`).join(', ')} }')`);
  }
  return value.map((item: unknown, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new UsageError(`${at(i)}: expected a mapping of ${list.keys.join(', ')}`);
    const entry: Record<string, unknown> = {};
    for (const [key, raw] of Object.entries(item as Record<string, unknown>)) {
      const spec = list.keys.includes(key) ? schema.options.find((o) => o.name === key) : undefined;
      if (spec === undefined) throw new UsageError(`${at(i)}: unknown key '${key}'${suggestion(closest(key, list.keys), '')} (keys: ${list.keys.join(', ')})`);
      if (raw === null) throw new UsageError(`${at(i)}: ${key} has no value`);
      try {
        entry[key] = readValue(spec, raw);
      } catch (err) {
        if (!(err instanceof OptionValueError)) throw err;
        throw new UsageError(`${at(i)}: ${key}: ${err.message}`);
      }
    }
    const missing = (list.required ?? []).filter((k) => entry[k] === undefined);
    if (missing.length > 0) throw new UsageError(`${at(i)}: ${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} required`);
    return entry;
  });
}

function suggestion(name: string | null, prefix: string): string {
  return name === null ? '' : `; did you mean ${prefix}${name}?`;
}

/** The raw token the user typed for an unknown parsed key, for the message. */
function typedAs(key: string, argv: readonly string[]): string {
  const long = argv.find((a) => a === `--${key}` || a.startsWith(`--${key}=`) || a === `--no-${key}`);
  if (long !== undefined) return long.split('=')[0]!;
  return key.length === 1 ? `-${key}` : `--${key}`;
}

/**
 * Reads `argv` (the command's arguments, without the command name) against `schema`: flags via yargs, then the
 * environment, the config file named by `--config`, and the defaults; every value is checked against its kind and range.
 * Throws UsageError naming the flag, variable or config key that is wrong.
 */
export async function resolveOptions<V>(schema: CommandSchema, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<ResolvedOptions<V>> {
  const { default: yargs } = await import('yargs');
  const known = new Map(schema.options.map((o) => [o.name, o]));
  const byFlag = (token: string): OptionSpec | undefined =>
    token.startsWith('--') ? known.get(token.slice(2)) : token.length === 2 ? schema.options.find((o) => o.short === token[1]) : undefined;
  const tokens: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      tokens.push(...argv.slice(i));
      break;
    }
    const spec = /^-[^-]$|^--[a-z]/.test(arg) && !arg.includes('=') ? byFlag(arg) : undefined;
    // `--raw -` and `-f -` name stdin; the parser would take a lone '-' for an argument of its own.
    if (spec !== undefined && spec.kind !== 'boolean' && argv[i + 1] === '-') {
      tokens.push(`--${spec.name}=-`);
      i++;
      continue;
    }
    // The parser reads `--flag=maybe` on a boolean as false; read it as config text is read, or refuse it.
    const eq = /^--([a-z][a-z0-9-]*)=(.*)$/s.exec(arg);
    const bool = eq ? known.get(eq[1]!) : undefined;
    if (eq && bool?.kind === 'boolean') {
      tokens.push(read(bool, eq[2], 'flag') === true ? `--${bool.name}` : `--no-${bool.name}`);
      continue;
    }
    tokens.push(arg);
  }
  let parser = yargs(tokens)
    .help(false)
    .version(false)
    .exitProcess(false)
    .parserConfiguration({
      'camel-case-expansion': false,
      'strip-aliased': true,
      'duplicate-arguments-array': true,
      'flatten-duplicate-arrays': true,
      'greedy-arrays': false,
    });
  for (const spec of schema.options) {
    parser = parser.option(spec.name, {
      type: spec.kind === 'boolean' ? 'boolean' : 'string',
      ...(spec.kind === 'list' ? { array: true } : {}),
      ...(spec.short ? { alias: spec.short } : {}),
    });
  }
  const parsed = (await parser.parseAsync()) as Record<string, unknown> & { _: (string | number)[] };

  const flagValues = new Map<string, unknown>();
  for (const [key, value] of Object.entries(parsed)) {
    if (key === '_' || key === '$0') continue;
    const spec = known.get(key);
    if (spec === undefined) {
      const typed = typedAs(key, argv);
      const names = [...known.keys()];
      throw new UsageError(`unknown option ${typed}${suggestion(closest(key.replace(/^no-/, ''), names), '--')}`);
    }
    if (value === undefined) continue;
    // A repeated scalar flag: the last one wins, as a later flag overrides an earlier one in a script.
    const v = spec.kind !== 'list' && Array.isArray(value) ? value[value.length - 1] : value;
    if ((spec.kind !== 'boolean' && spec.kind !== 'list' && v === '') || (spec.kind === 'list' && Array.isArray(v) && v.length === 0)) {
      throw new UsageError(`${flagName(spec)} needs a value${spec.value ? ` (${spec.value})` : ''}`);
    }
    flagValues.set(key, v);
  }
  const positionals = parsed._.map(String);
  const allowed = schema.positionals ?? [];
  const stray = positionals.find((p) => !allowed.includes(p));
  if (stray !== undefined) {
    // A word after `--` may already be a flag: suggesting that same flag back would only confuse.
    const asCommand = stray.startsWith('-') ? null : closest(stray, schema.options.map((o) => o.name));
    throw new UsageError(`unexpected argument '${stray}'${asCommand ? `; did you mean --${asCommand}?` : ''}`);
  }

  const configPath = flagValues.get('config') as string | undefined;
  const fromFile = configPath !== undefined ? await readConfigFile(schema, configPath) : new Map<string, unknown>();

  const values: Record<string, unknown> = {};
  const sources: Record<string, OptionSource> = {};
  const lists: Record<string, Record<string, unknown>[]> = {};
  for (const l of schema.configLists ?? []) if (fromFile.has(l.name)) lists[l.name] = fromFile.get(l.name) as Record<string, unknown>[];
  for (const spec of schema.options) {
    let source: OptionSource | undefined;
    let raw: unknown;
    if (flagValues.has(spec.name)) {
      source = 'flag';
      raw = flagValues.get(spec.name);
    } else if (spec.env !== undefined && env[spec.env] !== undefined && env[spec.env] !== '') {
      source = 'env';
      raw = env[spec.env];
    } else if (fromFile.has(spec.name)) {
      source = 'config';
      raw = fromFile.get(spec.name);
    } else if (spec.default !== undefined) {
      source = 'default';
      raw = spec.default;
    } else if (spec.kind === 'boolean') {
      source = 'default';
      raw = false;
    } else if (spec.kind === 'list') {
      source = 'default';
      raw = [];
    }
    if (source === undefined) continue;
    values[spec.name] = read(spec, raw, source, configPath);
    sources[spec.name] = source;
  }
  return {
    values: values as V,
    sources,
    positionals,
    ...(configPath !== undefined ? { configFile: configPath } : {}),
    ...(Object.keys(lists).length > 0 ? { lists } : {}),
  };
}

/**
 * Reads the config file of `previous` again (for a reload): options that came from a flag or the environment keep
 * their values, the others take the file's new value or their default. Throws UsageError as resolveOptions does.
 */
export async function reresolveConfig<V>(schema: CommandSchema, previous: ResolvedOptions<V>): Promise<ResolvedOptions<V>> {
  const path = previous.configFile;
  const fromFile = path !== undefined ? await readConfigFile(schema, path) : new Map<string, unknown>();
  const old = previous.values as Record<string, unknown>;
  const values: Record<string, unknown> = {};
  const sources: Record<string, OptionSource> = {};
  for (const spec of schema.options) {
    const was = previous.sources[spec.name];
    if (was === 'flag' || was === 'env') {
      values[spec.name] = old[spec.name];
      sources[spec.name] = was;
      continue;
    }
    let raw: unknown;
    let source: OptionSource | undefined;
    if (fromFile.has(spec.name)) {
      source = 'config';
      raw = fromFile.get(spec.name);
    } else {
      source = 'default';
      raw = spec.default ?? (spec.kind === 'boolean' ? false : spec.kind === 'list' ? [] : undefined);
    }
    if (source === undefined || raw === undefined) continue;
    values[spec.name] = read(spec, raw, source, path);
    sources[spec.name] = source;
  }
  return { values: values as V, sources, positionals: previous.positionals, ...(path !== undefined ? { configFile: path } : {}) };
}
