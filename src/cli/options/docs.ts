import { flagLabel, renderCommandHelp, showDefault } from './help.js';
import { describeRange, type CommandSchema, type OptionSpec } from './spec.js';

/** Markers around the generated options reference in a docs/ guide. */
export const DOCS_BEGIN = '<!-- options:begin (generated from src/cli/schemas; npm run docs:options) -->';
export const DOCS_END = '<!-- options:end -->';

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function notes(spec: OptionSpec): string {
  const sentence = (t: string): string => (/[.!?)]$/.test(t) ? t : `${t}.`);
  const parts = [sentence(spec.describe)];
  if (spec.details) parts.push(sentence(spec.details));
  const range = describeRange(spec);
  if (range !== null) parts.push(`Range: ${range}.`);
  if (spec.env) parts.push(`Environment: \`${spec.env}\`.`);
  if (spec.kind === 'list' && !/repeatable/.test(spec.describe)) parts.push('Repeatable.');
  if (spec.flagOnly) parts.push('Not a config-file key.');
  if (spec.secret) parts.push('Redacted by `--print-config`.');
  return parts.join(' ');
}

/** The options reference of a command as Markdown tables, one per help group (what docs/<command>.md embeds). */
export function renderOptionsMarkdown(schema: CommandSchema): string {
  const help = renderCommandHelp(schema, { all: false, width: 100 }).trimEnd();
  const out: string[] = ['```text', `$ udp-tunnel ${schema.command} --help`, help, '```', ''];
  for (const group of schema.groups) {
    const specs = schema.options.filter((o) => o.group === group);
    if (specs.length === 0) continue;
    out.push(`**${group}**`, '', '| Option | Default | Description |', '| --- | --- | --- |');
    for (const spec of specs) {
      const def = showDefault(spec);
      out.push(`| \`${cell(flagLabel(spec).trim())}\` | ${def === null ? '' : `\`${cell(def)}\``} | ${cell(notes(spec))} |`);
    }
    out.push('');
  }
  out.push(
    'Sizes take `1500`, `64KiB`, `1MB` (k, KB and KiB all mean 1024); durations take `250us`, `500ms`, `30s`, `2m`, `1h`.',
    'A flag overrides its environment variable, which overrides the `--config` file, which overrides the default.',
  );
  return out.join('\n');
}

/** `text` (a guide) with the part between the markers replaced by `schema`'s reference; null when it has no markers. */
export function withOptionsReference(text: string, schema: CommandSchema): string | null {
  const a = text.indexOf(DOCS_BEGIN);
  const b = text.indexOf(DOCS_END);
  if (a < 0 || b < a) return null;
  return `${text.slice(0, a + DOCS_BEGIN.length)}\n${renderOptionsMarkdown(schema)}\n${text.slice(b)}`;
}
