import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../tunnel/units.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { SOAK_DEFAULTS, SOAK_TARGETS, runSoak } from '../bench/soak.js';
import type { PathAccounting, RssTrend, SoakDocument, SoakEvent, SoakOptions } from '../bench/soak.js';
import { exitCodeFor, flagMessage } from './errors.js';
import { jsonReplacer } from './output.js';

// Entry of `npm run soak`: a bounded soak-and-chaos run on the loopback (see docs/soak.md). Progress goes to
// stderr, the report (or with --json one JSON document) to stdout.

const USAGE = `usage: npm run soak -- [options]

  --duration D       sending time (default 60s)
  --rate N           datagrams/s offered to the echo path (default: measure the tunnel's capacity first
                     and offer --overload times it)
  --overload X       multiple of the measured capacity (default ${SOAK_DEFAULTS.overload})
  --size B           UDP payload bytes (default ${SOAK_DEFAULTS.size})
  --peers N          echo-path peers sending at once (default ${SOAK_DEFAULTS.peers})
  --churn N          echo-path peers replaced per second (default ${SOAK_DEFAULTS.churnPerSecond})
  --stalled-rate N   datagrams/s toward the target that does not read (default ${SOAK_DEFAULTS.stalledRate})
  --kill-at D|off    when serve gets SIGKILL and is restarted (default 40% of the duration)
  --idle-timeout D   connect's --idle-timeout (default ${SOAK_DEFAULTS.idleTimeoutMs / 1000}s)
  --node-option O    extra Node option for serve and connect (repeatable), e.g. --node-option=--max-semi-space-size=16
  --interval D       progress period (default ${SOAK_DEFAULTS.reportIntervalMs / 1000}s)
  --json             print one JSON document at the end
  --json-file F      also write that document to file F (with the human report on stdout)
  -h, --help`;

function parse(argv: string[]): { options: SoakOptions; json: boolean; jsonFile: string | undefined } | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      rate: { type: 'string' },
      overload: { type: 'string' },
      size: { type: 'string' },
      peers: { type: 'string' },
      churn: { type: 'string' },
      'stalled-rate': { type: 'string' },
      'kill-at': { type: 'string' },
      'idle-timeout': { type: 'string' },
      interval: { type: 'string' },
      'node-option': { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      'json-file': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  const number = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x)) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--${name} must be a number, got '${v}'`);
    return x;
  };
  const ms = (name: string, v: string | undefined): number | undefined => (v === undefined ? undefined : parseDuration(v, `--${name}`));
  const options: SoakOptions = {};
  const set = <K extends keyof SoakOptions>(k: K, v: SoakOptions[K] | undefined): void => {
    if (v !== undefined) options[k] = v;
  };
  set('durationMs', ms('duration', values.duration));
  set('rate', number('rate', values.rate));
  set('overload', number('overload', values.overload));
  set('size', number('size', values.size));
  set('peers', number('peers', values.peers));
  set('churnPerSecond', number('churn', values.churn));
  set('stalledRate', number('stalled-rate', values['stalled-rate']));
  if (values['kill-at'] !== undefined) options.killAtMs = values['kill-at'] === 'off' ? null : parseDuration(values['kill-at'], '--kill-at');
  set('idleTimeoutMs', ms('idle-timeout', values['idle-timeout']));
  set('reportIntervalMs', ms('interval', values.interval));
  set('nodeOptions', values['node-option']);
  return { options, json: values.json, jsonFile: values['json-file'] };
}

const mb = (b: number | null): string => (b === null ? '-' : `${(b / 1024 / 1024).toFixed(1)} MB`);
const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const sec = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
const dropList = (d: Record<string, number>): string =>
  Object.entries(d)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => `${k}=${int(v)}`)
    .join(' ') || 'none';

function renderEvent(e: SoakEvent): string | null {
  switch (e.type) {
    case 'starting':
      return `starting ${e.what}`;
    case 'capacity':
      return `capacity (closed loop through the tunnel): ${int(e.dps)} echoes/s`;
    case 'ready': {
      const p = e.parameters;
      const procs = e.components.map((c) => `${c.role} pid ${c.pid ?? '-'} port ${c.port}`).join(', ');
      return `${procs}\noffering ${int(p.rate)}/s to the echo path (${p.rateSource === 'measured' ? `${p.overload} x measured capacity` : '--rate'}), ${int(p.stalledRate)}/s to the stalled target, for ${sec(p.durationMs)}`;
    }
    case 'progress': {
      const g = e.progress;
      const r = g.rss;
      return (
        `[${sec(g.tMs).padStart(6)}] rss serve#${r.serveIncarnation} ${mb(r.serve)}, connect ${mb(r.connect)}, connect-stalled ${mb(r.connectStalled)}` +
        ` | echo sent ${int(g.echo.sent)} echoed ${int(g.echo.echoed)} | stalled sent ${int(g.stalled.sent)}, target queue ${g.stalled.targetQueueBytes === null ? '-' : `${int(g.stalled.targetQueueBytes / 1024)} KiB`}` +
        ` | peers ${g.peers.echo}+${g.peers.stalled}\n` +
        `          drops echo: ${dropList(g.drops.echo)}\n          drops stalled: ${dropList(g.drops.stalled)}`
      );
    }
    case 'kill':
      return `[${sec(e.tMs).padStart(6)}] kill -9 serve (pid ${e.pid ?? '-'})`;
    case 'restarted':
      return `[${sec(e.tMs).padStart(6)}] serve restarted (pid ${e.pid ?? '-'}) on port ${e.port}, ${int(e.downMs)} ms after the kill`;
    case 'recovered':
      return `[${sec(e.tMs).padStart(6)}] first echo through connect ${int(e.recoveryMs)} ms after serve listened again`;
    case 'stopping':
      return `[${sec(e.tMs).padStart(6)}] sending stopped; draining, then stopping the processes`;
  }
}

const slope = (x: number | null): string => (x === null ? 'n/a' : `${x >= 0 ? '+' : ''}${x.toFixed(2)} MB/min`);

function trend(t: RssTrend): string {
  if (t.slopeMbPerMin === null) return `n/a (${t.samples} samples)`;
  return `${slope(t.slopeMbPerMin)}, later half ${slope(t.lateSlopeMbPerMin)} (${mb(t.minBytes)}..${mb(t.maxBytes)}, ${t.samples} samples)`;
}

function accountingLines(name: string, a: PathAccounting, deliveredAs: string): string[] {
  const k = a.lostWithKilledServe;
  const lost =
    k === null
      ? ''
      : ` (lost with the killed serve, estimate: ${int(k.estimate)}, of at most ${int(k.upperBound)} inside the tunnels it cut; unexplained: ${int(a.unexplained)})`;
  return [
    `${name}: sent ${int(a.sent)} (${int(a.sentPerSecond)}/s) = ${deliveredAs} ${int(a.delivered)} + dropped by counter ${int(a.countedDrops)} + unaccounted ${int(a.unaccounted)}${lost}`,
    `  by counter: ${dropList(a.drops)}`,
    ...(a.notSent > 0 ? [`  not sent (peer send queue full or sender behind schedule): ${int(a.notSent)}`] : []),
    ...(a.roundTripUs !== null && a.roundTripUs.count > 0
      ? [`  round trip of the echoed: p50 ${int(a.roundTripUs.p50 / 1000)} ms, p99 ${int(a.roundTripUs.p99 / 1000)} ms, max ${int(a.roundTripUs.max / 1000)} ms`]
      : []),
  ];
}

const met = (m: boolean | null): string => (m === null ? 'n/a' : m ? 'met' : 'NOT met');

function renderReport(d: SoakDocument): string {
  const p = d.parameters;
  const env = d.environment;
  const lines = [
    '',
    `soak${d.aborted ? ' (interrupted)' : ''}: ${sec(d.sendingMs)} of load on ${env.cpus} CPUs (${env.cpuModel}), node ${env.node}`,
    `load: echo path ${int(p.rate)}/s asked (${p.rateSource === 'measured' ? `${p.overload} x the measured capacity of ${int(p.capacityDps ?? 0)}/s` : 'from --rate'}), ` +
      `${int(d.accounting.echo.sentPerSecond)}/s sent${p.capacityDps ? ` (${(d.accounting.echo.sentPerSecond / p.capacityDps).toFixed(1)} x capacity)` : ''}, ${p.size} B, ${p.peers} peers, ${p.churnPerSecond} replaced per second; stalled target ${int(p.stalledRate)}/s from ${p.stalledPeers} peers`,
  ];
  const r = d.restart;
  if (r === null) lines.push('restart: none');
  else {
    lines.push(
      `restart: serve killed (SIGKILL) at ${sec(r.killAtMs)}, listening again ${int(r.downMs)} ms later on ${r.samePort ? 'the same' : 'ANOTHER'} port ${r.port}; ` +
        (r.reconnectMs === null ? 'no tunnel set up afterwards; ' : `first tunnel ready ${int(r.reconnectMs)} ms after that, `) +
        (r.recoveryMs === null ? 'NO echo came back' : `first echo through the same connect ${int(r.recoveryMs)} ms after it listened (echo gap ${int(r.echoGapMs ?? 0)} ms)`),
    );
  }
  lines.push(`connect stayed up: ${d.connectStayedUp ? 'yes' : 'NO'}`);
  if (p.nodeOptions.length > 0) lines.push(`node options of serve and connect: ${p.nodeOptions.join(' ')}`);
  const t = d.rss.trend;
  lines.push(`RSS slope (least squares, samples after each process's first ${sec(p.rssSkipMs)}):`);
  lines.push(`  connect          ${trend(t.connect)}`);
  lines.push(`  connect-stalled  ${trend(t.connectStalled)}`);
  t.serve.forEach((s, i) => lines.push(`  serve #${i + 1}         ${trend(s)}`));
  lines.push(...accountingLines('echo path', d.accounting.echo, 'echoed'));
  lines.push(...accountingLines('stalled path', d.accounting.stalled, 'read by the target after it resumed'));
  lines.push(
    `targets: RSS flat (<= ${SOAK_TARGETS.rssSlopeMbPerMin} MB/min): ${met(d.targets.rssFlat.met)}; recovery < ${SOAK_TARGETS.recoveryMs} ms: ${met(d.targets.recovery.met)}; nothing lost without a counter: ${met(d.targets.nothingLostUncounted.met)}`,
  );
  return lines.join('\n');
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`soak: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (parsed === null) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { options, json, jsonFile } = parsed;
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) {
      // The launcher's exit hook kills the component processes still running.
      process.stderr.write(`\nsecond ${sig}: exiting now\n`);
      process.exit(130);
    }
    process.stderr.write(`\n${sig}: stopping the soak and its processes (again to exit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const doc = await runSoak({
      ...options,
      signal: controller.signal,
      onEvent: (e) => {
        const line = renderEvent(e);
        if (line !== null) process.stderr.write(`${line}\n`);
      },
    });
    const text = `${JSON.stringify(doc, jsonReplacer, 2)}\n`;
    if (jsonFile !== undefined) writeFileSync(jsonFile, text);
    process.stdout.write(json ? text : `${renderReport(doc)}\n`);
    return doc.aborted ? 130 : 0;
  } catch (err) {
    process.stderr.write(`soak: ${err instanceof UdpTunnelError ? flagMessage(err) : (err as Error).message}\n`);
    return controller.signal.aborted ? 130 : err instanceof UdpTunnelError ? exitCodeFor(err.code) : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

process.exitCode = await main();
