import { describeRange, showDuration, showSize, type CommandSchema, type OptionSpec } from './spec.js';

/** The flag that lists every option; `--help` names it. */
export const HELP_ALL_FLAG = '--help-all';

/** Width help is laid out for: the terminal's, at most 100 columns. */
export function helpWidth(columns: number | undefined = process.stdout.columns): number {
  return Math.max(60, Math.min(100, columns || 100));
}

/** The default as help and docs show it, or null when there is none worth showing. */
export function showDefault(spec: OptionSpec): string | null {
  const d = spec.default;
  if (d === undefined) return null;
  if (Array.isArray(d)) return d.length === 0 ? null : d.join(',');
  if (spec.kind === 'boolean') return d === true ? 'on' : null;
  if (spec.kind === 'duration' && typeof d === 'string' && d.trim() !== '') return d;
  if (spec.kind === 'size' && typeof d === 'number') return showSize(d);
  if (spec.kind === 'duration' && typeof d === 'number') return showDuration(d);
  return String(d);
}

/** How the flag is written in help: `-l, --local HOST:PORT`, `--[no-]buffer`. */
export function flagLabel(spec: OptionSpec): string {
  const short = spec.short ? `-${spec.short}, ` : '    ';
  if (spec.kind === 'boolean') return `${short}--${spec.default === true ? `[no-]${spec.name}` : spec.name}`;
  const value = spec.value ?? (spec.kind === 'choice' ? spec.choices!.join('|') : defaultPlaceholder(spec));
  return `${short}--${spec.name} ${value}`;
}

function defaultPlaceholder(spec: OptionSpec): string {
  switch (spec.kind) {
    case 'int':
    case 'number':
      return 'N';
    case 'size':
      return 'SIZE';
    case 'duration':
      return 'TIME';
    default:
      return 'VALUE';
  }
}

/** Splits text into lines of at most `width` columns at spaces. */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line === '') line = word;
    else if (line.length + 1 + word.length <= width) line += ` ${word}`;
    else {
      lines.push(line);
      line = word;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** One option's description for help: the line, plus default, range and environment in `--help-all`. */
function describeFor(spec: OptionSpec, all: boolean): string {
  const parts = [all && spec.details ? `${spec.describe}. ${spec.details}` : spec.describe];
  const extras: string[] = [];
  const def = showDefault(spec);
  if (def !== null && spec.kind !== 'boolean') extras.push(`default ${def}`);
  if (all) {
    const range = describeRange(spec);
    if (range !== null) extras.push(range);
    if (spec.env) extras.push(`env ${spec.env}`);
    if (spec.kind === 'list' && !/repeatable/.test(spec.describe)) extras.push('repeatable');
  }
  if (extras.length) parts.push(`[${extras.join('; ')}]`);
  return parts.join(' ');
}

/**
 * A command's help: usage, summary, its options by group and examples. The short form lists the everyday options on
 * one line each (about 40 lines); `all` lists every option with its range and environment variable.
 */
export function renderCommandHelp(schema: CommandSchema, opts: { all: boolean; width?: number }): string {
  const width = opts.width ?? helpWidth();
  const shown = schema.options.filter((o) => opts.all || !o.advanced);
  const labelWidth = Math.min(32, Math.max(...shown.map((o) => flagLabel(o).length)) + 2);
  const usage = wrapText(`Usage: udp-tunnel ${schema.usage}`, width - 4).map((l, i) => (i === 0 ? l : `    ${l}`));
  const out: string[] = [...usage, '', ...wrapText(schema.summary, width), ''];
  for (const group of schema.groups) {
    const members = shown.filter((o) => o.group === group);
    if (members.length === 0) continue;
    out.push(`${group}:`);
    for (const spec of members) {
      const label = `  ${flagLabel(spec)}`;
      const descWidth = width - labelWidth - 2;
      const text = describeFor(spec, opts.all);
      const lines = wrapText(text, descWidth);
      if (label.length + 1 > labelWidth + 2) {
        out.push(label);
        for (const l of lines) out.push(`${' '.repeat(labelWidth + 2)}${l}`);
      } else {
        out.push(`${label.padEnd(labelWidth + 2)}${lines[0] ?? ''}`);
        for (const l of lines.slice(1)) out.push(`${' '.repeat(labelWidth + 2)}${l}`);
      }
    }
    if (opts.all) out.push('');
  }
  if (!opts.all) out.push('');
  if (schema.examples.length > 0) {
    out.push('Examples:');
    for (const ex of schema.examples.slice(0, opts.all ? undefined : 3)) {
      out.push(`  # ${ex.what}`, `  ${ex.cmd}`);
    }
    out.push('');
  }
  const hidden = schema.options.length - shown.length;
  if (!opts.all) {
    out.push(
      hidden > 0
        ? `${hidden} more options (limits, timeouts, TLS details): udp-tunnel ${schema.command} ${HELP_ALL_FLAG}`
        : `Ranges and environment variables: udp-tunnel ${schema.command} ${HELP_ALL_FLAG}`,
    );
  }
  out.push(`Guide: docs/${schema.command}.md. Exit codes: 0 ok, 1 runtime failure, 2 usage error.`);
  return `${out.join('\n')}\n`;
}

function truncate(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1).trimEnd()}…`;
}

/** A command as the top-level help lists it. */
export interface CommandListing {
  readonly name: string;
  readonly describe: string;
}

/** `udp-tunnel --help`: the commands and the global flags. */
export function renderTopHelp(commands: readonly CommandListing[], version: string, width = helpWidth()): string {
  const nameWidth = Math.max(...commands.map((c) => c.name.length)) + 4;
  const lines = [
    `udp-tunnel ${version}: UDP through HTTP proxies (CONNECT-UDP, RFC 9298; capsules, RFC 9297)`,
    '',
    'Usage: udp-tunnel <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(nameWidth)}${truncate(c.describe, width - nameWidth - 2)}`),
    '',
    'Options:',
    `  -h, --help     This help; 'udp-tunnel <command> --help' for a command's options`,
    '  --version      Print the version',
    '',
    'Try it: udp-tunnel demo. Exit codes: 0 ok, 1 runtime failure, 2 usage error. Guides: docs/',
  ];
  return `${lines.join('\n')}\n`;
}
