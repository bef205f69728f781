import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { benchCommand } from './commands/bench.js';
import { connectCommand } from './commands/connect.js';
import { demoCommand } from './commands/demo.js';
import { inspectCommand } from './commands/inspect.js';
import { serveCommand } from './commands/serve.js';
import { describeError, EXIT_USAGE, UsageError } from './errors.js';
import { packageVersion } from './version.js';

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  const verbose = argv.includes('-v') || argv.includes('--verbose');
  const parser = yargs(argv)
    .scriptName('udp-tunnel')
    .usage('$0 <command> [options]\n\nTunnel UDP through HTTP proxies with CONNECT-UDP (RFC 9298) and DATAGRAM capsules (RFC 9297).')
    .command(connectCommand)
    .command(serveCommand)
    .command(inspectCommand)
    .command(benchCommand)
    .command(demoCommand)
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
