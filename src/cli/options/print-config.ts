import type { OptionSource, ResolvedOptions } from './resolve.js';
import { showDuration, showSize, type CommandSchema, type OptionSpec } from './spec.js';

/** What --print-config shows in place of a secret. */
export const REDACTED = '<redacted>';

/** A secret with its value hidden: each item of a list, so the count still shows. */
function redact(value: unknown): unknown {
  return Array.isArray(value) ? value.map(() => REDACTED) : REDACTED;
}

function asText(spec: OptionSpec, value: unknown): unknown {
  if (spec.secret) return redact(value);
  if (spec.kind === 'duration') return showDuration(value as number);
  if (spec.kind === 'size') {
    const text = showSize(value as number);
    return /^\d+$/.test(text) ? Number(text) : text;
  }
  return value;
}

/** Where a value came from, as a YAML comment. */
function origin(spec: OptionSpec, source: OptionSource | undefined, file?: string): string {
  if (source === 'flag') return `  # --${spec.name}`;
  if (source === 'env') return `  # $${spec.env}`;
  if (source === 'config') return `  # ${file}`;
  return '';
}

/**
 * The effective options as a YAML config file (the keys --config reads), secrets redacted, each value commented with
 * where it came from; options without a value are listed commented out. Feeding the output back to --config (with
 * secrets filled in) gives the same options.
 */
export async function renderConfig(schema: CommandSchema, resolved: ResolvedOptions<Record<string, unknown>>): Promise<string> {
  const YAML = await import('yaml');
  const lines = [`# udp-tunnel ${schema.command}: effective options`];
  for (const group of schema.groups) {
    const specs = schema.options.filter((o) => o.group === group && !o.flagOnly);
    if (specs.length === 0) continue;
    lines.push('', `# ${group}`);
    for (const spec of specs) {
      const value = resolved.values[spec.name];
      if (value === undefined) {
        lines.push(`# ${spec.name}:`);
        continue;
      }
      const text = YAML.stringify({ [spec.name]: asText(spec, value) }, { lineWidth: 0 }).trimEnd().split('\n');
      text[0] += origin(spec, resolved.sources[spec.name], resolved.configFile);
      lines.push(...text);
    }
  }
  for (const list of schema.configLists ?? []) {
    const entries = resolved.lists?.[list.name];
    if (entries === undefined) continue;
    const shown = listAsText(schema, entries);
    const text = YAML.stringify({ [list.name]: shown }, { lineWidth: 0 }).trimEnd().split('\n');
    text[0] += `  # ${resolved.configFile}`;
    lines.push('', `# ${list.describe}`, ...text);
  }
  return `${lines.join('\n')}\n`;
}

/** A config list's entries with each value shown as its option shows it (durations and sizes as text). */
function listAsText(schema: CommandSchema, entries: readonly Readonly<Record<string, unknown>>[]): Record<string, unknown>[] {
  return entries.map((e) => Object.fromEntries(Object.entries(e).map(([k, v]) => {
    const spec = schema.options.find((o) => o.name === k);
    return [k, spec ? asText(spec, v) : v];
  })));
}

/** The effective options as one JSON object (for --print-config --json), secrets redacted. */
export function configObject(schema: CommandSchema, resolved: ResolvedOptions<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of schema.options) {
    if (spec.flagOnly || resolved.values[spec.name] === undefined) continue;
    out[spec.name] = spec.secret ? redact(resolved.values[spec.name]) : resolved.values[spec.name];
  }
  for (const [name, entries] of Object.entries(resolved.lists ?? {})) out[name] = entries;
  return out;
}
