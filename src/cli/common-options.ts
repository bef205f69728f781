import type { Argv } from 'yargs';
import { colorLevel, setupColor } from './color.js';
import { Output, type Verbosity } from './output.js';

/** Flags every command shares. */
export interface CommonArgs {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  color: boolean;
}

/** Adds --json, -v, -q, --no-color. */
export function withCommonOptions<T>(y: Argv<T>): Argv<T & CommonArgs> {
  return y
    .option('json', { type: 'boolean', default: false, describe: 'Machine output: NDJSON events on stdout (no colour, spinners or tables)' })
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'More logs on stderr; stack traces on errors' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only warnings and errors on stderr' })
    .option('color', { type: 'boolean', default: true, describe: 'Colour (also off with NO_COLOR=1); use --no-color' }) as unknown as Argv<T & CommonArgs>;
}

/** Builds the Output for a command and sets up colour. */
export function makeOutput(args: CommonArgs): Output {
  setupColor(colorLevel({ noColor: !args.color, json: args.json }));
  const verbosity: Verbosity = args.quiet ? 0 : args.verbose ? 2 : 1;
  return new Output({ json: args.json, verbosity });
}
