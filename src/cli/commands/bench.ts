import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { parseDuration } from '../../tunnel/units.js';
import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import { BENCH_DEFAULTS, DEFAULT_BENCH_INFLIGHT, runBench } from '../../bench/harness.js';
import type { BenchEvent } from '../../bench/harness.js';
import { BENCH_MODES } from '../../bench/modes.js';
import { parseFailIf } from '../../bench/stats.js';
import type { LoadMode } from '../../bench/load-types.js';
import { isBareRelay, renderEvent, renderHeader, renderReport } from '../render/bench-render.js';
import { BenchEventWriter, emitBenchResult } from '../render/bench-events.js';
import { benchExports, writeBenchExports } from '../render/bench-export.js';
import { outputWidth } from '../render/width.js';
import { makeOutput, withCommonOptions, type CommonArgs } from '../common-options.js';
import { UsageError } from '../errors.js';
import { formatDuration } from '../format-units.js';
import { Spinner } from '../spinner.js';
import { packageVersion } from '../version.js';
import { COMMAND_SUMMARIES } from './summaries.js';

interface BenchArgs extends CommonArgs {
  size: number;
  sessions: number;
  rate?: number;
  inflight?: number;
  duration: string;
  warmup: string;
  drain: string;
  timeout: string;
  runs: number;
  tls: boolean;
  mode: string;
  'post-path'?: string;
  isolation: 'process' | 'worker';
  host: string;
  proxy?: string;
  target?: string;
  insecure: boolean;
  ca?: string;
  direct: boolean;
  'idle-sessions': number;
  'fail-if'?: string;
  'node-option': string[];
  csv?: string;
  markdown?: string;
}

/** `udp-tunnel bench`: the one-command benchmark, direct path against the tunnel. */
export const benchCommand: CommandModule<object, BenchArgs> = {
  ...COMMAND_SUMMARIES.bench,
  builder: (y: Argv) =>
    withCommonOptions(y)
      // yargs reads the lone '-' of `--csv -` / `--markdown -` as a positional: allow positionals, still refuse unknown options.
      .strict(false)
      .strictOptions(true)
      .option('size', { type: 'number', default: BENCH_DEFAULTS.size, describe: 'UDP payload bytes per datagram (32..65507)' })
      .option('sessions', { type: 'number', default: BENCH_DEFAULTS.sessions, describe: 'Local peers, each its own tunnel session' })
      .option('rate', { type: 'number', describe: 'Open loop: datagrams/s in total, sent on schedule; latency counts from the scheduled time' })
      .option('inflight', { type: 'number', describe: `Closed loop: datagrams kept in flight per session (default ${DEFAULT_BENCH_INFLIGHT} unless --rate)` })
      .conflicts('rate', 'inflight')
      .option('duration', { type: 'string', default: formatDuration(BENCH_DEFAULTS.durationMs), describe: 'Measured time of each path in each run' })
      .option('warmup', { type: 'string', default: formatDuration(BENCH_DEFAULTS.warmupMs), describe: 'Unmeasured sending before each measurement' })
      .option('drain', { type: 'string', default: formatDuration(BENCH_DEFAULTS.drainMs), hidden: true, describe: 'Wait for late replies after sending stops' })
      .option('timeout', { type: 'string', default: formatDuration(BENCH_DEFAULTS.timeoutMs), hidden: true, describe: 'Closed loop: a reply later than this frees its slot' })
      .option('runs', { type: 'number', default: BENCH_DEFAULTS.runs, describe: 'Direct + tunnel pairs; summarized as mean ± stddev' })
      .option('tls', { type: 'boolean', default: false, describe: "Run the bench's serve with TLS (throwaway self-signed certificate); bare-relay: TLS on the relays' TCP link" })
      .option('mode', {
        type: 'string',
        choices: BENCH_MODES.map((m) => m.name),
        default: BENCH_DEFAULTS.mode,
        describe: `Tunnel transport, or a reference floor: ${BENCH_MODES.map((m) => `${m.name} = ${m.describe}`).join('; ')}`,
      })
      .option('post-path', {
        type: 'string',
        describe: `With --mode post: the request path (default ${BENCH_DEFAULTS.postPath}); the bench's serve routes it to its echo, an external --proxy must route it to --target`,
      })
      .option('isolation', {
        type: 'string',
        choices: ['process', 'worker'],
        default: BENCH_DEFAULTS.isolation,
        describe: 'Run serve and connect as child processes or as worker threads',
      })
      .option('host', { type: 'string', default: BENCH_DEFAULTS.host, describe: 'Local address for echo, serve and connect (127.0.0.1 or ::1)' })
      .option('proxy', { type: 'string', describe: 'Benchmark this proxy (http:// or https:// URL) instead of a local serve; needs --target' })
      .option('target', { type: 'string', describe: 'With --proxy: a UDP echo HOST:PORT the proxy can reach (--mode post: the proxy must route --post-path to it)' })
      .option('insecure', { type: 'boolean', default: false, describe: 'With an https --proxy: do not verify its certificate' })
      .option('ca', { type: 'string', describe: 'With an https --proxy: PEM file of CAs to trust' })
      .option('direct', { type: 'boolean', default: true, describe: 'Measure the direct path too (--no-direct: tunnel only, no ratios)' })
      .option('idle-sessions', {
        type: 'number',
        default: BENCH_DEFAULTS.idleSessions,
        describe: 'After the runs, open this many idle sessions and report memory per session (0 = skip)',
      })
      .option('fail-if', { type: 'string', describe: "Exit 1 when a condition holds, e.g. 'p99>5ms,loss>0.1%,ratio<0.5'" })
      .option('node-option', {
        type: 'string',
        array: true,
        default: [],
        describe: 'Extra Node option for the serve and connect processes, e.g. --node-option=--cpu-prof',
      })
      .option('csv', { type: 'string', describe: "Also write the summary as CSV, one row per path, to this file ('-' = stdout)" })
      .option('markdown', { type: 'string', describe: "Also write the summary as a Markdown table to this file ('-' = stdout)" })
      .example('$0 bench', `Default comparison: ${BENCH_DEFAULTS.size}-byte datagrams, ${DEFAULT_BENCH_INFLIGHT} in flight, ${BENCH_DEFAULTS.runs} runs`)
      .example('$0 bench --size 1200 --inflight 64', 'Bulk throughput')
      .example('$0 bench --mode bare-relay --idle-sessions 0', 'The floor: two bare relays instead of the tunnel (not a tunnel)')
      .example('$0 bench --rate 20000 --sessions 100 --duration 10s', 'Open loop, 100 peers')
      .example("$0 bench --json --fail-if 'p99>5ms,loss>0.1%,ratio<0.5'", 'CI gate: NDJSON events ending in a result event, exit code 1 on a regression')
      .example('$0 bench --markdown results.md --csv results.csv', 'Export the summary, one row per path')
      .example('$0 bench --proxy https://proxy.example:443 --target 10.0.0.5:7 --no-direct', 'Benchmark an external proxy')
      .example('$0 bench --mode post --proxy https://proxy.example:443 --target 10.0.0.5:7', 'POST mode against an external proxy, which must route /bench to the target') as unknown as Argv<BenchArgs>,
  handler: async (args: ArgumentsCamelCase<BenchArgs>) => {
    const out = makeOutput(args);
    const failIf = args['fail-if'] !== undefined ? { spec: args['fail-if'], conditions: parseFailIf(args['fail-if']) } : undefined;
    for (const [name, v] of [
      ['size', args.size],
      ['sessions', args.sessions],
      ['runs', args.runs],
      ['idle-sessions', args['idle-sessions']],
    ] as const) {
      if (!Number.isFinite(v)) throw new UsageError(`--${name} must be a number`);
    }
    if (args.rate !== undefined && !Number.isFinite(args.rate)) throw new UsageError('--rate must be a number');
    if (args.inflight !== undefined && !Number.isFinite(args.inflight)) throw new UsageError('--inflight must be a number');
    const extra = args._.slice(1).map(String);
    const bad = extra.find((a) => a !== '-');
    if (bad !== undefined) throw new UsageError(`unexpected argument '${bad}'`);
    // The option itself was left empty by yargs when its '-' was split off.
    const dash = (v: string | undefined): string | undefined => (v === '' && extra.length > 0 ? '-' : v);
    const exports = benchExports(dash(args.csv), dash(args.markdown), out.json);
    // An export on stdout keeps stdout to itself: the human header and report go to stderr then.
    const human = exports.toStdout ? process.stderr : process.stdout;
    const width = outputWidth(human);
    const show = (text: string): void => void human.write(`${text}\n`);
    const events = out.json ? new BenchEventWriter(out) : null;
    const load: LoadMode =
      args.rate !== undefined ? { kind: 'rate', rate: args.rate } : { kind: 'inflight', inflight: args.inflight ?? DEFAULT_BENCH_INFLIGHT };
    const version = packageVersion();
    const controller = new AbortController();
    const onSignal = (): void => controller.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // Created once the header is out, so the spinner line stays below it.
    let spinner = null as Spinner | null;
    const pathLabel = isBareRelay(args.mode) ? 'relay' : 'tunnel';
    try {
      const doc = await runBench({
        toolVersion: version,
        size: args.size,
        sessions: args.sessions,
        load,
        durationMs: parseDuration(args.duration, '--duration'),
        warmupMs: parseDuration(args.warmup, '--warmup'),
        drainMs: parseDuration(args.drain, '--drain'),
        timeoutMs: parseDuration(args.timeout, '--timeout'),
        runs: args.runs,
        tls: args.tls,
        mode: args.mode,
        ...(args['post-path'] !== undefined ? { postPath: args['post-path'] } : {}),
        isolation: args.isolation,
        host: args.host,
        ...(args.proxy !== undefined ? { proxy: args.proxy } : {}),
        ...(args.target !== undefined ? { target: args.target } : {}),
        insecure: args.insecure,
        ...(args.ca !== undefined ? { caFile: args.ca } : {}),
        direct: args.direct,
        idleSessions: args['idle-sessions'],
        nodeOptions: args['node-option'],
        ...(failIf ? { failIf } : {}),
        signal: controller.signal,
        onEvent: (e: BenchEvent) => {
          events?.handle(e);
          if (e.type === 'ready') {
            if (!out.json) show(renderHeader(e.parameters, e.environment, version, width));
            spinner = new Spinner('running', { json: out.json, quiet: out.verbosity === 0 });
          }
          const line = renderEvent(e, pathLabel);
          if (line === null) return;
          if (spinner?.active) spinner.text = line;
          else if (e.type === 'run-end') out.info(line);
          else if (e.type !== 'progress') out.debug(line);
        },
      });
      spinner?.stop();
      if (out.json) emitBenchResult(out, doc);
      else show(renderReport(doc, width));
      writeBenchExports(exports, doc);
      if (doc.failIf && !doc.failIf.passed) {
        throw new UdpTunnelError(
          ErrorCodes.BENCH_FAIL_IF,
          `--fail-if: ${doc.failIf.failures.map((f) => f.condition).join(', ')} held`,
          { failures: doc.failIf.failures },
        );
      }
    } catch (err) {
      spinner?.stop();
      throw err;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
