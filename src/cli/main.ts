import { COMMAND_NAMES, COMMAND_SUMMARIES, type CommandName } from './commands/summaries.js';
import { ErrorCodes } from '../tunnel/errors.js';
import { describeError, errorCodeOf, EXIT_USAGE, UsageError } from './errors.js';
import { HELP_ALL_FLAG, renderCommandHelp, renderTopHelp } from './options/help.js';
import { closest, type CommandSchema } from './options/spec.js';
import type { ResolvedOptions } from './options/resolve.js';
import { packageVersion } from './version.js';

type AnyResolved = ResolvedOptions<Record<string, unknown>>;

/** A command's option schema: a small module of declarations and defaults, so `<command> --help` loads little. */
async function loadSchema(name: CommandName): Promise<CommandSchema> {
  switch (name) {
    case 'connect':
      return (await import('./schemas/connect.js')).CONNECT_SCHEMA;
    case 'serve':
      return (await import('./schemas/serve.js')).SERVE_SCHEMA;
    case 'inspect':
      return (await import('./schemas/inspect.js')).INSPECT_SCHEMA;
    case 'bench':
      return (await import('./schemas/bench.js')).BENCH_SCHEMA;
    case 'demo':
      return (await import('./schemas/demo.js')).DEMO_SCHEMA;
  }
}

/** Loads a command's module (the library it drives) and runs it with the resolved options. */
async function runCommand(name: CommandName, r: AnyResolved): Promise<void> {
  // Each module takes its own typed options; the schema it was resolved against guarantees their shape.
  const v = r.values as never;
  switch (name) {
    case 'connect':
      return (await import('./commands/connect.js')).runConnect(v, r as never);
    case 'serve':
      return (await import('./commands/serve.js')).runServe(v, r as never);
    case 'inspect':
      return (await import('./commands/inspect.js')).runInspect(v, r as never);
    case 'bench':
      return (await import('./commands/bench.js')).runBenchCommand(v, r as never);
    case 'demo':
      return (await import('./commands/demo.js')).runDemo(v, r as never);
  }
}

function isCommand(word: string): word is CommandName {
  return (COMMAND_NAMES as readonly string[]).includes(word);
}

function topHelp(): string {
  return renderTopHelp(
    COMMAND_NAMES.map((n) => COMMAND_SUMMARIES[n]),
    packageVersion(),
  );
}

/** Reads argv up to the point of running a command; returns an exit code when it answered by itself (help, version). */
async function dispatch(argv: readonly string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    process.stderr.write(topHelp());
    throw new UsageError('name a command: connect, serve, inspect, bench or demo');
  }
  // The version and the top-level help need no parser: answering them before anything loads keeps them as quick as node.
  if (first === '--version' && argv.length === 1) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    const topic = argv[1];
    if (topic !== undefined && isCommand(topic)) {
      process.stdout.write(renderCommandHelp(await loadSchema(topic), { all: false }));
    } else {
      process.stdout.write(topHelp());
    }
    return 0;
  }
  if (!isCommand(first)) {
    if (first.startsWith('-')) throw new UsageError(`${first} goes after a command: udp-tunnel <command> ${first}`);
    const near = closest(first, COMMAND_NAMES);
    throw new UsageError(`unknown command '${first}'${near ? `; did you mean ${near}?` : ''}`);
  }
  const rest = argv.slice(1);
  const schema = await loadSchema(first);
  const end = rest.indexOf('--');
  const flags = end < 0 ? rest : rest.slice(0, end);
  if (flags.includes(HELP_ALL_FLAG)) {
    process.stdout.write(renderCommandHelp(schema, { all: true }));
    return 0;
  }
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(renderCommandHelp(schema, { all: false }));
    return 0;
  }
  if (flags.includes('--version')) throw new UsageError(`--version is not an option of ${first}; 'udp-tunnel --version' prints the version`);
  const { resolveOptions } = await import('./options/resolve.js');
  const resolved = await resolveOptions<Record<string, unknown>>(schema, rest);
  if (resolved.values['print-config'] === true) {
    const { configObject, renderConfig } = await import('./options/print-config.js');
    if (resolved.values['json'] === true) {
      process.stdout.write(`${JSON.stringify({ event: 'config', time: new Date().toISOString(), command: first, options: configObject(schema, resolved) })}\n`);
    } else {
      process.stdout.write(await renderConfig(schema, resolved));
    }
    return 0;
  }
  await runCommand(first, resolved);
  return 0;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  // A reader that goes away (`connect --json | head -1`) is the end of the run, not a crash: exit as `head` expects.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const end = argv.indexOf('--');
  const flags = end < 0 ? argv : argv.slice(0, end);
  const verbose = flags.includes('-v') || flags.includes('--verbose');
  const json = flags.includes('--json');
  try {
    return await dispatch(argv);
  } catch (err) {
    const { code, message } = describeError(err);
    // Under --json a failure is an event too, so a script reading stdout learns why before it sees the exit code.
    // inspect's --strict verdict is already in its stream as error events; its stdout stays a replayable recording.
    const inStream = errorCodeOf(err) === ErrorCodes.INSPECT_MALFORMED;
    if (json && !inStream) process.stdout.write(`${JSON.stringify({ event: 'error', time: new Date().toISOString(), code: errorCodeOf(err), exitCode: code, message })}\n`);
    process.stderr.write(`udp-tunnel: ${message}\n`);
    if (code === EXIT_USAGE && err instanceof UsageError) {
      const cmd = argv[0] !== undefined && isCommand(argv[0]) ? `udp-tunnel ${argv[0]} --help` : 'udp-tunnel --help';
      process.stderr.write(`Run '${cmd}' for usage.\n`);
    }
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return code;
  }
}
