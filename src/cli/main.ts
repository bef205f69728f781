import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { connectCommand } from '../commands/connect.js';
import { serveCommand } from '../commands/serve.js';
import { describeError, EXIT_USAGE } from './errors.js';
import { packageVersion } from './version.js';

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  const verbose = argv.includes('-v') || argv.includes('--verbose');
  let usageFailure: string | null = null;
  const parser = yargs(argv)
    .scriptName('udp-tunnel')
    .usage('$0 <command> [options]\n\nTunnel UDP through HTTP proxies with CONNECT-UDP (RFC 9298) and DATAGRAM capsules (RFC 9297).')
    .command(connectCommand)
    .command(serveCommand)
    .demandCommand(1, 'Name a command: connect or serve (see --help)')
    .strict()
    .recommendCommands()
    .version(packageVersion())
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .epilogue('Exit codes: 0 ok, 1 runtime failure, 2 usage error. Docs: README.md')
    .fail((msg, err) => {
      if (err) throw err;
      usageFailure = msg;
      // Throwing stops yargs here; returning would let it run the command handler despite the failed validation.
      throw new Error(msg);
    });
  try {
    await parser.parseAsync();
    return 0;
  } catch (err) {
    if (usageFailure !== null) {
      process.stderr.write(`${await parser.getHelp()}\n\nerror: ${usageFailure}\n`);
      return EXIT_USAGE;
    }
    const { code, message } = describeError(err);
    process.stderr.write(`udp-tunnel: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return code;
  }
}
