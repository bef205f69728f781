import { colorLevel, setupColor } from './color.js';
import { Output, type Verbosity } from './output.js';

/** Flags every command shares. */
export interface CommonArgs {
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  color: boolean;
}

/** Builds the Output for a command and sets up colour. */
export function makeOutput(args: CommonArgs): Output {
  setupColor(colorLevel({ noColor: !args.color, json: args.json }));
  const verbosity: Verbosity = args.quiet ? 0 : args.verbose ? 2 : 1;
  return new Output({ json: args.json, verbosity });
}
