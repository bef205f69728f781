import type { OptionSpec } from '../options/spec.js';

/** The group every command lists its output flags under. */
export const OUTPUT_GROUP = 'Output and config';

/** Output flags every command has. */
export const OUTPUT_OPTIONS = [
  { name: 'json', kind: 'boolean', group: OUTPUT_GROUP, describe: 'NDJSON events on stdout (no colour, spinners or tables)' },
  { name: 'verbose', short: 'v', kind: 'boolean', group: OUTPUT_GROUP, describe: 'More logs on stderr; stack traces on errors' },
  { name: 'quiet', short: 'q', kind: 'boolean', group: OUTPUT_GROUP, describe: 'Only warnings and errors on stderr' },
  {
    name: 'color',
    kind: 'boolean',
    default: true,
    group: OUTPUT_GROUP,
    describe: 'Colour on a terminal (--no-color or NO_COLOR=1 turn it off)',
    advanced: true,
  },
] as const satisfies readonly OptionSpec[];

/** --config and --print-config, for the commands that run a long-lived service. */
export const CONFIG_OPTIONS = [
  {
    name: 'config',
    kind: 'string',
    value: 'FILE',
    group: OUTPUT_GROUP,
    describe: 'Read options from a YAML file (keys are the flag names)',
    details: 'Flags override the environment, which overrides the file. Unknown keys are refused.',
    flagOnly: true,
  },
  {
    name: 'print-config',
    kind: 'boolean',
    group: OUTPUT_GROUP,
    describe: 'Print the effective options as YAML (secrets redacted) and exit',
    flagOnly: true,
  },
] as const satisfies readonly OptionSpec[];
