import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import { DEFAULT_BENCH_INFLIGHT, runBench } from '../../bench/harness.js';
import type { BenchEvent } from '../../bench/harness.js';
import { benchEntry, benchMode } from '../../bench/modes.js';
import { parseFailIf } from '../../bench/stats.js';
import type { LoadMode } from '../../bench/load-types.js';
import { isBareRelay, renderEvent, renderHeader, renderReport } from '../render/bench-render.js';
import { BenchEventWriter, emitBenchResult } from '../render/bench-events.js';
import { benchExports, writeBenchExports } from '../render/bench-export.js';
import { outputWidth } from '../render/width.js';
import { makeOutput } from '../common-options.js';
import { UsageError } from '../errors.js';
import { Spinner } from '../spinner.js';
import { packageVersion } from '../version.js';
import { isGiven, type ResolvedOptions } from '../options/resolve.js';
import type { BenchOptions } from '../schemas/bench.js';

/** The combinations bench refuses: each names both flags, so a flag is never silently ignored. */
function checkCombinations(o: BenchOptions, r: ResolvedOptions<BenchOptions>): void {
  const given = (name: string): boolean => isGiven(r, name);
  if (given('rate') && given('inflight')) throw new UsageError('--rate (open loop) and --inflight (closed loop) exclude each other');
  if (given('target') && !given('proxy')) throw new UsageError('--target goes with --proxy (the bench starts its own echo target otherwise)');
  for (const f of ['ca', 'insecure']) {
    if (given(f) && !(o.proxy !== undefined && /^https:/i.test(o.proxy))) throw new UsageError(`--${f} goes with an https:// --proxy`);
  }
  if (given('serve-workers') && given('proxy')) throw new UsageError("--serve-workers applies to the bench's own serve, not to --proxy");
  if (given('tls') && given('proxy')) throw new UsageError("--tls applies to the bench's own serve; with --proxy the URL scheme decides");
  if (given('post-path') && o.mode !== 'post') throw new UsageError('--post-path applies only to --mode post');
  const mode = benchMode(o.mode);
  if (given('proxy') && benchEntry(mode) === 'expose') {
    throw new UsageError(`--mode ${o.mode} sends to the public port of the bench's own serve --allow-bind; it cannot measure an external --proxy`);
  }
  const only = mode.onlyIsolation;
  if (only !== undefined && o.isolation !== only.isolation) {
    throw new UsageError(`--mode ${o.mode} runs with --isolation ${only.isolation} only (${only.why}); add --isolation ${only.isolation}`);
  }
}

/** `udp-tunnel bench`: the one-command benchmark, direct path against the tunnel. */
export async function runBenchCommand(args: BenchOptions, r: ResolvedOptions<BenchOptions>): Promise<void> {
  checkCombinations(args, r);
  const out = makeOutput(args);
  const failIf = args['fail-if'] !== undefined ? { spec: args['fail-if'], conditions: parseFailIf(args['fail-if']) } : undefined;
  const exports = benchExports(args.csv, args.markdown, out.json);
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
      durationMs: args.duration,
      warmupMs: args.warmup,
      drainMs: args.drain,
      timeoutMs: args.timeout,
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
      serveWorkers: args['serve-workers'],
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
}
