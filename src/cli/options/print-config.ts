import type { OptionSource, ResolvedOptions } from './resolve.js';
import { showDuration, showSize, type CommandSchema, type OptionSpec } from './spec.js';

/** What --print-config shows in place of a secret. */
export const REDACTED = '<redacted>';

/** A secret is redacted when set; an empty list of secrets shows as empty, so one can see that none was picked up. */
function redacted(spec: OptionSpec, value: unknown): boolean {
  return spec.secret === true && !(Array.isArray(value) && value.length === 0);
}

function asText(spec: OptionSpec, value: unknown): unknown {
  if (redacted(spec, value)) return REDACTED;
  if (spec.kind === 'duration') return showDuration(value as number);
  if (spec.kind === 'size') return showSize(value as number);
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
  return `${lines.join('\n')}\n`;
}

/** The effective options as one JSON object (for --print-config --json), secrets redacted. */
export function configObject(schema: CommandSchema, resolved: ResolvedOptions<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of schema.options) {
    if (spec.flagOnly || resolved.values[spec.name] === undefined) continue;
    out[spec.name] = redacted(spec, resolved.values[spec.name]) ? REDACTED : resolved.values[spec.name];
  }
  return out;
}
