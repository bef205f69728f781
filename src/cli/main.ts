import type { CommandModule } from 'yargs';
import { COMMAND_NAMES, COMMAND_SUMMARIES, type CommandName } from './commands/summaries.js';
import { describeError, EXIT_USAGE, UsageError } from './errors.js';
import { packageVersion } from './version.js';

/** Loads one command's full module (options, handler and what the handler runs). */
async function loadCommand(name: CommandName): Promise<CommandModule<object, never>> {
  switch (name) {
    case 'connect':
      return (await import('./commands/connect.js')).connectCommand as CommandModule<object, never>;
    case 'serve':
      return (await import('./commands/serve.js')).serveCommand as CommandModule<object, never>;
    case 'inspect':
      return (await import('./commands/inspect.js')).inspectCommand as CommandModule<object, never>;
    case 'bench':
      return (await import('./commands/bench.js')).benchCommand as CommandModule<object, never>;
    case 'demo':
      return (await import('./commands/demo.js')).demoCommand as CommandModule<object, never>;
  }
}

/**
 * The commands for this argv: the full module of every command named in it, and for the others only the name and
 * description that `--help` lists, so startup does not load the tunnel, TLS, histograms or decoders it will not use.
 */
async function commandsFor(argv: readonly string[]): Promise<CommandModule<object, never>[]> {
  return Promise.all(COMMAND_NAMES.map((name) => (argv.includes(name) ? loadCommand(name) : Promise.resolve(listedOnly(name)))));
}

/** A command as `--help` lists it. yargs runs a handler only for a command named in argv, and those are loaded. */
function listedOnly(name: CommandName): CommandModule<object, never> {
  return {
    ...COMMAND_SUMMARIES[name],
    handler: () => {
      throw new Error(`command ${name} was not loaded`);
    },
  };
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  // The version alone needs no parser: answering it before yargs loads keeps `--version` as quick as node itself.
  if (argv.length === 1 && argv[0] === '--version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const { default: yargs } = await import('yargs');
  const verbose = argv.includes('-v') || argv.includes('--verbose');
  const commands = await commandsFor(argv);
  const parser = yargs(argv)
    .scriptName('udp-tunnel')
    .usage('$0 <command> [options]\n\nTunnel UDP through HTTP proxies with CONNECT-UDP (RFC 9298) and DATAGRAM capsules (RFC 9297).')
    .command(commands)
    .demandCommand(1, 'Name a command: connect, serve, inspect, bench or demo (see --help)')
    .strict()
    .recommendCommands()
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .epilogue('Exit codes: 0 ok, 1 runtime failure, 2 usage error. Docs: README.md')
    .fail((msg, err) => {
      // Throwing stops yargs from running the command handler after a validation failure.
      if (err) throw err;
      throw new UsageError(msg);
    });
  try {
    await parser.parseAsync();
    return 0;
  } catch (err) {
    const { code, message } = describeError(err);
    process.stderr.write(`udp-tunnel: ${message}\n`);
    if (code === EXIT_USAGE && err instanceof UsageError) process.stderr.write(`Run 'udp-tunnel --help' or 'udp-tunnel <command> --help' for usage.\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return code;
  }
}
