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

/** The group of serve's and connect's metrics and access-log flags. */
export const OBSERVE_GROUP = 'Metrics and access log';

/** --metrics and --access-log, the same on serve and connect. */
export const OBSERVE_OPTIONS = [
  {
    name: 'metrics',
    kind: 'string',
    value: 'HOST:PORT',
    group: OBSERVE_GROUP,
    describe: 'Serve Prometheus /metrics, /healthz and /readyz on this address',
    details: 'A bare PORT listens on 127.0.0.1. The listener has no authentication: keep it on loopback or a private network. See docs/metrics.md.',
    advanced: true,
  },
  {
    name: 'access-log',
    kind: 'string',
    value: 'FILE|-',
    group: OBSERVE_GROUP,
    describe: 'Append one line per session to FILE (- = stdout); SIGUSR1 reopens it',
    details: 'JSON lines unless --access-log-format is given. Credentials never appear. See docs/access-log.md.',
    advanced: true,
  },
  {
    name: 'access-log-format',
    kind: 'string',
    value: 'FORMAT',
    group: OBSERVE_GROUP,
    describe: "Access log as text, e.g. '%START_TIME% %CLIENT% %TARGET% %STATUS%'",
    details: 'Fields are listed in docs/access-log.md; an unknown %FIELD% is refused. %% is a percent sign.',
    advanced: true,
  },
] as const satisfies readonly OptionSpec[];

/** The in-process capsule view of serve and connect. */
export const TAP_OPTIONS = [
  { name: 'inspect', kind: 'boolean', group: OUTPUT_GROUP, describe: 'Print the decoded capsule traffic on stdout (the inspect view)', advanced: true },
  { name: 'record', kind: 'string', value: 'FILE', group: OUTPUT_GROUP, describe: 'Write the decoded traffic to FILE as an NDJSON recording', advanced: true },
] as const satisfies readonly OptionSpec[];
