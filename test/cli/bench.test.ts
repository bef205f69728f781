import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BARE_RELAY_NOTE, renderHeader, renderReport } from '../../src/cli/render/bench-render.js';
import type { BenchDocument } from '../../src/bench/report.js';
import { runCli, type CliResult } from '../helpers/cli.js';

// About a second of measuring in all: the point is that it works and reports every field, not how fast it is.
const SHORT = ['--runs', '1', '--duration', '300ms', '--warmup', '100ms'];

type Ran = CliResult;

function bench(args: string[]): Promise<Ran> {
  return runCli(['bench', ...args], { env: { NO_COLOR: '1', CI: '1' }, timeoutMs: 120_000 });
}

/** A JSON type, 'record' (an object of numbers, keys free), an array of one shape, or an object with exactly these keys. */
type Shape = 'number' | 'string' | 'boolean' | 'null' | 'number|null' | 'object|null' | 'record' | Shape[] | { [key: string]: Shape };

const LATENCY: Shape = { count: 'number', min: 'number', max: 'number', mean: 'number', p50: 'number', p90: 'number', p99: 'number', p999: 'number', clamped: 'number' };
const PATH: Shape = {
  target: { address: 'string', family: 'number', port: 'number' },
  mode: { kind: 'string', inflight: 'number' },
  size: 'number',
  sessions: 'number',
  elapsedMs: 'number',
  totalMs: 'number',
  aborted: 'boolean',
  sent: 'number',
  received: 'number',
  lost: 'number',
  lossRatio: 'number',
  outOfOrder: 'number',
  duplicates: 'number',
  tooOld: 'number',
  timedOut: 'number',
  unsent: 'number',
  sendErrors: 'number',
  socketErrors: 'number',
  invalid: 'number',
  jitterUs: 'number',
  throughputDps: 'number',
  throughputMbps: 'number',
  sendRateDps: 'number',
  latencyUs: LATENCY,
  latencyBuckets: [{ fromUs: 'number', toUs: 'number', count: 'number' }],
  serviceLatencyUs: LATENCY,
  socketBuffers: { recv: 'number', send: 'number' },
  lastError: 'null',
  sessionSpread: { minReceived: 'number', maxReceived: 'number', sessionsWithLoss: 'number' },
};
const METRICS = ['throughputDps', 'throughputMbps', 'lossRatio', 'jitterUs', 'latencyP50Us', 'latencyP90Us', 'latencyP99Us', 'latencyP999Us', 'latencyMaxUs', 'latencyMeanUs'];
const SUMMARY: Shape = { n: 'number', mean: 'number', stddev: 'number', min: 'number', max: 'number' };
const per = (shape: Shape, keys: string[]): Shape => Object.fromEntries(keys.map((k) => [k, shape]));
const USE: Shape = { rssStartBytes: 'number', rssEndBytes: 'number', rssMaxBytes: 'number', busyUs: 'number', busyFraction: 'number', wallMs: 'number' };
const TOTALS: Shape = { sent: 'number', received: 'number', lost: 'number', lossRatio: 'number', outOfOrder: 'number', duplicates: 'number', timedOut: 'number', unsent: 'number' };
const ADDED = ['p50', 'p90', 'p99', 'p999', 'mean'];
const COMPONENT: Shape = {
  role: 'string',
  isolation: 'string',
  pid: 'number',
  address: 'string',
  port: 'number',
  rssStartBytes: 'number',
  rssEndBytes: 'number',
  counters: 'object|null',
  drops: 'record',
  exitCode: 'number',
};
const IDLE_SIDE: Shape = { bytesPerSession: 'number' };

/** The whole document of one direct + tunnel run on Linux (where /proc gives RSS and CPU time). */
const DOCUMENT: Shape = {
  schema: 'string',
  tool: { name: 'string', version: 'string' },
  startedAt: 'string',
  finishedAt: 'string',
  wallMs: 'number',
  environment: {
    node: 'string',
    v8: 'string',
    platform: 'string',
    arch: 'string',
    cpus: 'number',
    cpuModel: 'string',
    totalMemoryBytes: 'number',
    loadAverageStart: ['number'],
    loadAverageEnd: ['number'],
  },
  parameters: {
    size: 'number',
    sessions: 'number',
    load: { kind: 'string', inflight: 'number' },
    durationMs: 'number',
    warmupMs: 'number',
    drainMs: 'number',
    timeoutMs: 'number',
    runs: 'number',
    tls: 'boolean',
    mode: 'string',
    isolation: 'string',
    host: 'string',
    proxy: 'null',
    target: 'null',
    direct: 'boolean',
    postPath: 'null',
    idleSessions: 'number',
  },
  runs: [
    {
      index: 'number',
      direct: PATH,
      tunnel: PATH,
      ratio: { ...(per('number', METRICS) as Record<string, Shape>), lossRatio: 'number|null' },
      addedLatencyUs: per('number', ADDED),
      resources: { serve: USE, connect: USE, benchBusyFraction: 'number' },
      rssSamples: [{ tMs: 'number', serveBytes: 'number', connectBytes: 'number' }],
      kernelUdpDrops: { rcvbufErrors: 'number', sndbufErrors: 'number' },
      connectSocketDrops: 'number',
    },
  ],
  summary: {
    direct: per(SUMMARY, METRICS),
    tunnel: per(SUMMARY, METRICS),
    ratio: { ...(per(SUMMARY, METRICS) as Record<string, Shape>), lossRatio: 'object|null' },
    addedLatencyUs: per(SUMMARY, ADDED),
    totals: { direct: TOTALS, tunnel: TOTALS },
  },
  components: [COMPONENT],
  echo: { datagrams: 'number', bytes: 'number', dropped: 'number', errors: 'number' },
  idleSessionMemory: {
    sessions: 'number',
    answered: 'number',
    samples: [{ sessions: 'number', answered: 'number', serveRssBytes: 'number', connectRssBytes: 'number' }],
    serve: IDLE_SIDE,
    connect: IDLE_SIDE,
  },
  warnings: [{ code: 'string', message: 'string' }],
  failIf: { spec: 'string', conditions: ['string'], failures: [{ condition: 'string', actual: 'number' }], passed: 'boolean' },
};

/** Asserts that `value` has exactly the keys of `shape`, recursively, with values of the given types. */
function assertShape(value: unknown, shape: Shape, at = '$'): void {
  if (shape === 'record') {
    assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${at}: expected an object`);
    for (const [k, v] of Object.entries(value as object)) assert.ok(Number.isFinite(v), `${at}.${k}: not a finite number`);
    return;
  }
  if (typeof shape === 'string') {
    const kinds = shape.split('|');
    const kind = value === null ? 'null' : typeof value;
    assert.ok(kinds.includes(kind), `${at}: expected ${shape}, got ${kind}`);
    if (kind === 'number') assert.ok(Number.isFinite(value), `${at}: not a finite number`);
    return;
  }
  if (Array.isArray(shape)) {
    assert.ok(Array.isArray(value), `${at}: expected an array`);
    (value as unknown[]).forEach((v, i) => assertShape(v, shape[0]!, `${at}[${i}]`));
    return;
  }
  assert.ok(value !== null && typeof value === 'object' && !Array.isArray(value), `${at}: expected an object`);
  assert.deepEqual(Object.keys(value as object).sort(), Object.keys(shape).sort(), `${at}: keys`);
  for (const [k, s] of Object.entries(shape)) assertShape((value as Record<string, unknown>)[k], s, `${at}.${k}`);
}

/** Every stdout line of `bench --json` as an event; asserts that each parses and carries `event` and an ISO `time`. */
function events(stdout: string): Record<string, any>[] {
  const lines = stdout.split('\n').filter((l) => l !== '');
  return lines.map((l, i) => {
    const e = JSON.parse(l) as Record<string, any>;
    assert.equal(typeof e['event'], 'string', `line ${i + 1} has an event name`);
    assert.ok(!Number.isNaN(Date.parse(e['time'])) && e['time'].endsWith('Z'), `line ${i + 1} has an ISO time`);
    return e;
  });
}

/** The udp-tunnel-bench/1 document of `bench --json`: the last event, `result`, without `event` and `time`. */
function resultDocument(stdout: string): Record<string, any> {
  let all = events(stdout);
  // A failing run (--fail-if) ends with the error event every --json failure ends with, right after the result.
  if (all[all.length - 1]?.['event'] === 'error') all = all.slice(0, -1);
  const last = all[all.length - 1]!;
  assert.equal(last['event'], 'result', 'the last event is the result');
  assert.equal(all.filter((e) => e['event'] === 'result').length, 1, 'one result event');
  const { event: _event, time: _time, ...doc } = last;
  return doc;
}

describe('udp-tunnel bench (spawned)', () => {
  it('--json prints NDJSON events ending in a result event carrying the whole document, and the tunnel delivered datagrams', async () => {
    const r = await bench([...SHORT, '--idle-sessions', '8', '--json', '--fail-if', 'loss>100%']);
    assert.equal(r.code, 0, r.stderr);
    const all = events(r.stdout);
    const names = all.map((e) => e['event']).filter((n) => n !== 'progress');
    assert.deepEqual(names, ['starting', 'starting', 'starting', 'ready', 'run', 'run', 'idle-sessions', 'stopping', 'result']);
    const runs = all.filter((e) => e['event'] === 'run');
    assert.deepEqual(
      runs.map((e) => [e['run'], e['path']]),
      [
        [1, 'direct'],
        [1, 'tunnel'],
      ],
    );
    const doc = resultDocument(r.stdout);
    assert.equal(runs[1]!['received'], doc['runs'][0].tunnel.received, "the run event carries that run's numbers");
    assert.deepEqual(runs[1]!['latencyUs'], doc['runs'][0].tunnel.latencyUs);
    const buckets = doc['runs'][0].tunnel.latencyBuckets as { count: number }[];
    assert.equal(
      buckets.reduce((a, b) => a + b.count, 0),
      doc['runs'][0].tunnel.latencyUs.count,
      'the latency buckets hold every recorded latency',
    );
    assertShape(doc, DOCUMENT);
    assert.equal(doc['schema'], 'udp-tunnel-bench/1');
    assert.equal(doc['runs'].length, 1);
    assert.ok(doc['runs'][0].tunnel.received > 0, 'tunnel delivered datagrams');
    assert.equal(doc['runs'][0].tunnel.received + doc['runs'][0].tunnel.lost, doc['runs'][0].tunnel.sent);
    assert.deepEqual(
      doc['components'].map((c: { role: string; exitCode: number }) => [c.role, c.exitCode]),
      [
        ['serve', 0],
        ['connect', 0],
      ],
    );
    assert.deepEqual(doc['failIf'], { spec: 'loss>100%', conditions: ['loss>100%'], failures: [], passed: true });
    assert.equal(doc['idleSessionMemory'].answered, 8);
    assert.deepEqual(
      doc['idleSessionMemory'].samples.map((x: { sessions: number; answered: number }) => [x.sessions, x.answered]),
      [
        [0, 0],
        [2, 2],
        [4, 4],
        [6, 6],
        [8, 8],
      ],
    );
  });

  it('--mode post runs the POST transport through a route to the echo', async () => {
    const r = await bench([...SHORT, '--mode', 'post', '--idle-sessions', '0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = resultDocument(r.stdout);
    assert.equal(doc['schema'], 'udp-tunnel-bench/1');
    assert.equal(doc['parameters'].mode, 'post');
    assert.equal(doc['parameters'].postPath, '/bench');
    assert.ok(doc['runs'][0].tunnel.received > 0, 'tunnel delivered datagrams');
    assert.equal(doc['runs'][0].tunnel.received + doc['runs'][0].tunnel.lost, doc['runs'][0].tunnel.sent);
    const [serve, connect] = doc['components'] as { role: string; exitCode: number; counters: Record<string, unknown> }[];
    assert.deepEqual([serve!.role, serve!.exitCode, serve!.counters['requests'], serve!.counters['sessionsTotal']], ['serve', 0, 1, 1]);
    assert.deepEqual([connect!.role, connect!.exitCode, connect!.counters['sess_tunnel_success']], ['connect', 0, 1]);
  });

  it('--mode bare-relay runs the relays as processes, ends in a result event, and the report says it is not a tunnel', async () => {
    const r = await bench(['--mode', 'bare-relay', '--runs', '1', '--duration', '700ms', '--warmup', '300ms', '--idle-sessions', '0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = resultDocument(r.stdout);
    assertShape(doc, { ...(DOCUMENT as Record<string, Shape>), idleSessionMemory: 'null', failIf: 'null' });
    assert.equal(doc['parameters'].mode, 'bare-relay');
    const run = doc['runs'][0];
    assert.ok(run.tunnel.received > 0, 'the relays delivered datagrams');
    assert.equal(run.tunnel.received + run.tunnel.lost, run.tunnel.sent);
    const [back, front] = doc['components'] as { role: string; exitCode: number; counters: Record<string, number>; drops: Record<string, number> }[];
    assert.deepEqual([back!.role, back!.exitCode, front!.role, front!.exitCode], ['serve', 0, 'connect', 0]);
    // Relay counters, not tunnel counters: warmup and measurement both went through the one peer's connection.
    assert.equal(front!.counters['peersTotal'], 1);
    assert.equal(back!.counters['connectionsTotal'], 1);
    assert.ok(front!.counters['rxDatagrams']! >= run.tunnel.sent);
    assert.equal(back!.counters['rxDatagrams'], front!.counters['rxDatagrams']! - front!.counters['datagramsDropped']!);
    assert.deepEqual(Object.keys(front!.drops).sort(), ['backpressure', 'bufferOverflow', 'oversize', 'udpSend', 'unsent']);
    const text = (renderHeader(doc['parameters'], doc['environment'], '9.9.9') + '\n' + renderReport(doc as BenchDocument)).replace(/\u001b\[[0-9;]*m/g, '');
    assert.match(text, /relay: bare-relay \(plain TCP, no HTTP\) on 127\.0\.0\.1, process isolation/);
    assert.equal(text.split('\n').filter((l) => l.includes(BARE_RELAY_NOTE)).length, 2);
    assert.match(text, /│ 1 +│ relay +│/);
    assert.match(text, /relay \/ direct/);
    assert.match(text, /during relay runs: relay-front \d+% of a core/);
    assert.doesNotMatch(text.replaceAll('udp-tunnel', '').replaceAll('not a tunnel', ''), /tunnel/, 'nothing in the report calls the relays a tunnel');
  });

  it('--mode bind sends to the public port of one bound tunnel: serve --allow-bind, connect --expose, each flow a remote peer', async () => {
    const r = await bench([...SHORT, '--mode', 'bind', '--sessions', '2', '--idle-sessions', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = resultDocument(r.stdout);
    assertShape(doc, { ...(DOCUMENT as Record<string, Shape>), failIf: 'null' });
    assert.equal(doc['parameters'].mode, 'bind');
    const run = doc['runs'][0];
    assert.ok(run.tunnel.received > 0, 'datagrams came back through the bound tunnel');
    assert.equal(run.tunnel.received + run.tunnel.lost, run.tunnel.sent);
    const [serve, connect] = doc['components'] as { role: string; exitCode: number; port: number; counters: Record<string, any>; drops: Record<string, number> }[];
    assert.deepEqual([serve!.role, serve!.exitCode, connect!.role, connect!.exitCode], ['serve', 0, 'connect', 0]);
    // One request, and it was a bound one: the load went to its public port, not to a port of connect's.
    assert.equal(serve!.counters['requests'], 1);
    assert.equal(serve!.counters['bind'].sessions, 1);
    assert.equal(run.tunnel.target.port, connect!.port, "the generator sent to the exposed report's public port");
    assert.notEqual(connect!.port, serve!.port);
    // The Exposer's counters: warmup and measurement went through the same two remote peers.
    assert.equal(connect!.counters['peersTotal'], 2);
    assert.equal(connect!.counters['tunnelsOpened'], 1);
    assert.ok(connect!.counters['rxDatagrams'] >= run.tunnel.received);
    assert.ok(connect!.counters['tunnel'].rxCompressed > 0, 'datagrams from peers came on compressed contexts');
    assert.ok(connect!.counters['tunnel'].txCompressed > 0, 'replies went on compressed contexts');
    // Idle sessions are idle remote peers of a fresh bound tunnel.
    assert.equal(doc['idleSessionMemory'].answered, 4);
    const text = (renderHeader(doc['parameters'], doc['environment'], '9.9.9', 200) + '\n' + renderReport(doc as BenchDocument, 200)).replace(/\u001b\[[0-9;]*m/g, '');
    assert.match(text, /2 remote peers on one bound tunnel/);
    assert.match(text, /tunnel: bind \(h2c\) on 127\.0\.0\.1, process isolation, peers -> serve's public port -> h2c -> connect --expose -> echo/);
    assert.match(text, /bound tunnel: 2 remote peers over the whole bench; on compressed contexts: \d+\.\d% of datagrams from peers/);
    assert.match(text, /memory of 4\/4 idle remote peers of one bound tunnel/);
  });

  it('--mode bind-uncompressed (worker isolation) carries every datagram on the uncompressed context', async () => {
    const r = await bench([...SHORT, '--mode', 'bind-uncompressed', '--isolation', 'worker', '--idle-sessions', '0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const doc = resultDocument(r.stdout);
    assert.equal(doc['parameters'].mode, 'bind-uncompressed');
    const run = doc['runs'][0];
    assert.ok(run.tunnel.received > 0, 'datagrams came back through the bound tunnel');
    assert.equal(run.tunnel.received + run.tunnel.lost, run.tunnel.sent);
    const connect = (doc['components'] as { role: string; isolation: string; counters: Record<string, any> }[]).find((c) => c.role === 'connect')!;
    assert.equal(connect.isolation, 'worker');
    const t = connect.counters['tunnel'];
    assert.ok(t.rxDatagrams >= run.tunnel.received && t.txDatagrams >= run.tunnel.received);
    assert.deepEqual([t.rxCompressed, t.txCompressed], [0, 0]);
    assert.ok(!(doc['warnings'] as { code: string }[]).some((w) => w.code === 'BIND_UNCOMPRESSED'));
  });

  it('--fail-if that holds exits 1 after printing the report', async () => {
    const r = await bench([...SHORT, '--idle-sessions', '0', '--no-direct', '--fail-if', 'loss>=0%']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^udp-tunnel \d+\.\d+\.\d+ bench · Node v\d+/);
    assert.match(r.stdout, /--fail-if: loss>=0% holds \(actual 0\)/);
    assert.match(r.stderr, /UT_ERR_BENCH_FAIL_IF/);
    assert.doesNotMatch(r.stdout + r.stderr, /\u001b\[/, 'NO_COLOR output has no ANSI escapes');
  });

  it('--json with a --fail-if that holds ends with the result event, then exits 1', async () => {
    const r = await bench([...SHORT, '--idle-sessions', '0', '--no-direct', '--json', '--fail-if', 'loss>=0%']);
    assert.equal(r.code, 1, r.stderr);
    const doc = resultDocument(r.stdout);
    assert.equal(doc['failIf'].passed, false);
    assert.deepEqual(doc['failIf'].failures, [{ condition: 'loss>=0%', actual: 0 }]);
    assert.match(r.stderr, /UT_ERR_BENCH_FAIL_IF/);
    const all = events(r.stdout);
    assert.deepEqual(all.slice(-2).map((e) => e['event']), ['result', 'error']);
    assert.equal(all[all.length - 1]!['code'], 'UT_ERR_BENCH_FAIL_IF');
    assert.equal(all[all.length - 1]!['exitCode'], 1);
  });

  const usage: [string, string[], RegExp][] = [
    ['two exports on stdout', ['--csv', '-', '--markdown', '-'], /cannot both write to stdout/],
    ['an export on stdout with --json', ['--json', '--markdown', '-'], /--markdown - cannot share stdout with --json/],
    ['an export into a missing directory', ['--csv', '/nonexistent-dir/x.csv'], /--csv \/nonexistent-dir\/x\.csv: cannot write/],
    ['a latency threshold without a unit', ['--fail-if', 'p99>5'], /p99 needs a unit/],
    ['an unknown --fail-if metric', ['--fail-if', 'speed<1'], /unknown metric "speed"/],
    ['ratio without the direct path', ['--no-direct', '--fail-if', 'ratio<0.5'], /needs the direct path/],
    ['--proxy without --target', ['--proxy', 'http://127.0.0.1:9'], /--proxy and --target go together/],
    ['--rate with --inflight', ['--rate', '100', '--inflight', '4'], /--rate \(open loop\) and --inflight \(closed loop\) exclude each other/],
    ['an unknown --mode', ['--mode', 'smoke-signals'], /--mode: 'smoke-signals' is not one of connect-udp, /],
    ['--post-path without --mode post', ['--post-path', '/bench'], /--post-path applies only to --mode post/],
    ['--mode bind with --proxy', ['--mode', 'bind', '--proxy', 'http://127.0.0.1:9', '--target', '127.0.0.1:7'], /--mode bind .*cannot measure an external --proxy/],
    ['--mode bind-uncompressed without --isolation worker', ['--mode', 'bind-uncompressed'], /--mode bind-uncompressed runs with --isolation worker only/],
    ['--mode bare-relay with --proxy', ['--mode', 'bare-relay', '--proxy', 'http://127.0.0.1:9', '--target', '127.0.0.1:7'], /cannot use an external --proxy/],
  ];
  for (const [what, args, message] of usage) {
    it(`exits 2 on ${what}, before starting anything`, async () => {
      const r = await bench([...SHORT, ...args]);
      assert.equal(r.code, 2, r.stderr);
      // Under --json the refusal is an error event on stdout too; otherwise stdout stays empty.
      if (args.includes('--json')) assert.deepEqual(events(r.stdout).map((e) => [e['event'], e['code'], e['exitCode']]), [['error', 'UT_ERR_USAGE', 2]]);
      else assert.equal(r.stdout, '');
      assert.match(r.stderr, message);
    });
  }
});
