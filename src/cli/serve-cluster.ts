import cluster, { type Worker } from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { emptyServerCounters, type ServerCounters } from '../tunnel/server/counters.js';
import { TunnelServer } from '../tunnel/server/tunnel-server.js';
import { setupColor, colorLevel } from './color.js';
import { describeError, EXIT_USAGE, UsageError } from './errors.js';
import { openKeylog } from './keylog.js';
import { untilShutdown } from './lifecycle.js';
import { serveSecrets, startClusterMetrics, startServeWorkerObservability } from './observability.js';
import { Output } from './output.js';
import { attachServerOutput, renderServeListening } from './render/serve-events.js';
import { onReloadSignal, planReload, reloadError, reportReload, reportReloadFailed, serverUpdate, type ReloadPlan } from './serve-reload.js';
import { buildServeSettings, listeningOf, type ServeSettings, type ServeState } from './serve-settings.js';

// `serve --workers N`: a primary process and N workers (node:cluster). The primary reads and checks the options and
// files once, picks the port, and owns the listening socket (node:cluster accepts there and hands each connection to
// a worker in turn); each worker runs a TunnelServer and relays the connections it is handed. The primary restarts
// a worker that dies, forwards reloads, and shuts every worker down on SIGINT/SIGTERM.

/** Restarts of dead workers allowed within a minute, across all workers; past it a dead worker stays dead. */
export const MAX_RESTARTS_PER_MINUTE = 10;
/** The first restart of a worker waits this long; each further one within a minute waits twice as long. */
export const RESTART_BASE_DELAY_MS = 100;
/** Longest wait before restarting a worker. */
export const RESTART_MAX_DELAY_MS = 10_000;
/** How long the primary waits for workers to close before it kills them. */
export const WORKER_CLOSE_TIMEOUT_MS = 10_000;
/** How long the primary waits for every worker to confirm a reload. */
const RELOAD_ACK_TIMEOUT_MS = 10_000;

/** Primary -> worker. */
type ToWorker =
  | { type: 'start'; id: number; port: number; state: ServeState }
  | { type: 'reload'; state: ServeState; tlsChanged: boolean; seq: number }
  | { type: 'shutdown' };

/** Worker -> primary. */
type FromWorker =
  | { type: 'ready' }
  | { type: 'listening'; address: AddressInfo }
  | { type: 'start-failed'; message: string; exitCode: number }
  | { type: 'reloaded'; seq: number }
  | { type: 'reload-failed'; seq: number; message: string }
  | { type: 'counters'; counters: ServerCounters };

/** Adds every number of `b` into `a`, recursively (counters of several workers into one total). */
export function addCounters<T extends object>(a: T, b: T): T {
  const x = a as Record<string, unknown>;
  for (const [k, v] of Object.entries(b as Record<string, unknown>)) {
    if (typeof v === 'number') x[k] = (typeof x[k] === 'number' ? (x[k] as number) : 0) + v;
    else if (v !== null && typeof v === 'object') x[k] = addCounters((x[k] as object | undefined) ?? {}, v);
  }
  return a;
}

/** Picks a free port on `host` by binding port 0 once, so that every worker shares one port. */
async function pickPort(host: string): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ host, port: 0 }, () => resolve());
  });
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** One worker position: a process, and the one that replaces it when it dies. */
interface Slot {
  id: number;
  worker: Worker | null;
  /** The state its worker was started with. */
  startedWith: ServeState | null;
  listening: boolean;
  counters: ServerCounters | null;
  restartTimer: NodeJS.Timeout | null;
}

/** Runs `serve --workers N` in the primary; resolves once every worker has shut down. */
export async function runServePrimary(initial: ServeState, settings: ServeSettings, count: number, out: Output): Promise<void> {
  let state = initial;
  const host = settings.listen.host;
  // node:cluster shares a listening socket among workers by address and port; port 0 is made concrete first so
  // that a worker started later (a restart) joins the same port.
  const port = settings.listen.port === 0 ? await pickPort(host) : settings.listen.port;
  cluster.setupPrimary({ exec: fileURLToPath(new URL('./serve-worker-main.js', import.meta.url)), args: [], silent: false });
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({ id: i + 1, worker: null, startedWith: null, listening: false, counters: null, restartTimer: null }));
  const restarts: number[] = [];
  let shuttingDown = false;
  let started = false;
  let reloadSeq = 0;
  const reloadAcks = new Map<number, (w: number, failure: string | null) => void>();
  let startFailure: { message: string; exitCode: number } | null = null;
  /** The address the first worker reported (the real one, e.g. for a host name). */
  let firstAddress: AddressInfo | null = null;
  let onStartProgress: () => void = () => {};
  let onAllGone: () => void = () => {};
  const alive = (): Slot[] => slots.filter((s) => s.worker !== null);

  const fork = (slot: Slot, restart: boolean): void => {
    const worker = cluster.fork({ UDP_TUNNEL_WORKER: String(slot.id) });
    slot.worker = worker;
    slot.listening = false;
    // A message to a worker that has just died fails on its closed channel; its 'exit' follows and is handled there.
    worker.on('error', () => {});
    worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ready': {
          // A message sent before the worker's module has loaded would find no listener and be lost.
          const start: ToWorker = { type: 'start', id: slot.id, port, state };
          slot.startedWith = state;
          worker.send(start);
          return;
        }
        case 'listening':
          slot.listening = true;
          firstAddress ??= m.address;
          // A reload while this worker was starting reached the others only: bring it up to date.
          if (slot.startedWith !== state) {
            const update: ToWorker = { type: 'reload', state, tlsChanged: true, seq: 0 };
            worker.send(update);
          }
          if (restart) {
            out.event('worker-restarted', { worker: slot.id, pid: worker.process.pid });
            out.info(`worker ${slot.id} restarted (pid ${worker.process.pid})`);
          }
          onStartProgress();
          return;
        case 'start-failed':
          if (!started) startFailure ??= { message: m.message, exitCode: m.exitCode };
          else out.error(`worker ${slot.id} could not start: ${m.message}`);
          return;
        case 'reloaded':
        case 'reload-failed':
          reloadAcks.get(m.seq)?.(slot.id, m.type === 'reload-failed' ? m.message : null);
          return;
        case 'counters':
          slot.counters = addCounters(slot.counters ?? emptyServerCounters(), m.counters);
          return;
      }
    });
    worker.once('exit', (code, signal) => onExit(slot, worker, code, signal));
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return;
    slot.worker = null;
    slot.listening = false;
    if (shuttingDown || !started) {
      if (!started && startFailure === null) startFailure = { message: `worker ${slot.id} exited with ${signal ?? `code ${code}`} while starting`, exitCode: 1 };
      onStartProgress();
      if (alive().length === 0) onAllGone();
      return;
    }
    const now = Date.now();
    while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift();
    const pid = worker.process.pid;
    if (restarts.length >= MAX_RESTARTS_PER_MINUTE) {
      out.event('worker-exit', { worker: slot.id, pid, code, signal, restart: false });
      out.error(`worker ${slot.id} (pid ${pid}) exited with ${signal ?? `code ${code}`}; ${restarts.length} restarts within a minute: not restarting it`);
      if (alive().length === 0) shutdown(ALL_WORKERS_GONE);
      return;
    }
    const delayMs = Math.min(RESTART_BASE_DELAY_MS * 2 ** restarts.length, RESTART_MAX_DELAY_MS);
    restarts.push(now);
    out.event('worker-exit', { worker: slot.id, pid, code, signal, restart: true, delayMs });
    out.warn(`worker ${slot.id} (pid ${pid}) exited with ${signal ?? `code ${code}`}; restarting it in ${delayMs} ms`);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (!shuttingDown) fork(slot, true);
    }, delayMs);
  };

  // In place before the first fork: a signal while the workers start stops them too.
  const { done, shutdown } = untilShutdown(async () => {
    shuttingDown = true;
    if (started) out.info('shutting down');
    onStartProgress();
    await stopWorkers(slots, () => new Promise<void>((r) => (onAllGone = r)));
  });
  for (const slot of slots) fork(slot, false);
  await new Promise<void>((resolve) => {
    onStartProgress = () => {
      if (shuttingDown || startFailure !== null || slots.every((s) => s.listening)) resolve();
    };
  });
  if (startFailure !== null || shuttingDown) {
    shutdown('start-failed');
    const why = await done;
    if (startFailure === null) {
      out.event('shutdown', { signal: why, counters: emptyServerCounters() });
      return;
    }
    const failure: { message: string; exitCode: number } = startFailure;
    throw failure.exitCode === EXIT_USAGE ? new UsageError(failure.message) : new Error(failure.message);
  }
  started = true;

  const reload = async (): Promise<void> => {
    let plan: ReloadPlan;
    try {
      plan = await planReload(state);
    } catch (err) {
      reportReloadFailed(out, reloadError(err));
      return;
    }
    // Workers started from now on (restarts) get the new state too.
    state = plan.next;
    const seq = ++reloadSeq;
    const targets = alive().filter((s) => s.listening);
    const failures: string[] = [];
    let acked = 0;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, RELOAD_ACK_TIMEOUT_MS);
      const check = (): void => {
        if (acked + failures.length < targets.length) return;
        clearTimeout(timer);
        resolve();
      };
      reloadAcks.set(seq, (id, failure) => {
        if (failure === null) acked++;
        else failures.push(`worker ${id}: ${failure}`);
        check();
      });
      const msg: ToWorker = { type: 'reload', state: plan.next, tlsChanged: plan.tlsChanged, seq };
      for (const s of targets) s.worker?.send(msg);
      check();
    });
    reloadAcks.delete(seq);
    if (failures.length > 0) reportReloadFailed(out, failures.join('; '), { workers: acked });
    else reportReload(out, plan, { workers: acked });
  };

  const stopReload = onReloadSignal(reload);
  // The access log is written by every worker: a logrotate SIGUSR1 to the primary reaches them all.
  const reopenLogs = (): void => {
    for (const slot of alive()) slot.worker?.process.kill('SIGUSR1');
  };
  process.on('SIGUSR1', reopenLogs);
  const metrics = await startClusterMetrics(state.values, out, () => (shuttingDown ? 'shutting down' : alive().some((x) => x.listening) ? null : 'no worker listening'));
  const pids = slots.map((s) => s.worker?.process.pid ?? 0);
  const address = firstAddress ?? { address: host, port, family: net.isIPv6(host) ? 'IPv6' : 'IPv4' };
  renderServeListening(out, { ...listeningOf(settings, address), workers: { count, pids } });
  metrics.announce();
  const why = await done;
  stopReload();
  process.off('SIGUSR1', reopenLogs);
  await metrics.close();
  const total = emptyServerCounters();
  for (const s of slots) if (s.counters) addCounters(total, s.counters);
  out.event('shutdown', { signal: why, counters: total, workers: slots.map((s) => ({ worker: s.id, counters: s.counters })) });
  if (why === ALL_WORKERS_GONE) throw new Error(`every worker has exited (more than ${MAX_RESTARTS_PER_MINUTE} restarts within a minute)`);
}

/** The reason of a shutdown because no worker is left. */
const ALL_WORKERS_GONE = 'workers-exited';

/** Tells every worker to shut down and waits for them, killing the ones that take longer than allowed. */
async function stopWorkers(slots: Slot[], allGone: () => Promise<void>): Promise<void> {
  for (const s of slots) {
    if (s.restartTimer !== null) clearTimeout(s.restartTimer);
    s.restartTimer = null;
  }
  const live = slots.filter((s) => s.worker !== null);
  if (live.length === 0) return;
  const gone = allGone();
  const bye: ToWorker = { type: 'shutdown' };
  for (const s of live) {
    try {
      s.worker!.send(bye);
    } catch {
      s.worker!.process.kill('SIGKILL');
    }
  }
  const timer = setTimeout(() => {
    for (const s of slots) s.worker?.process.kill('SIGKILL');
  }, WORKER_CLOSE_TIMEOUT_MS);
  await gone;
  clearTimeout(timer);
}

/** Output of a worker: every event carries `worker`, every log line starts with `wN`. */
class WorkerOutput extends Output {
  private readonly id: number;

  constructor(opts: ConstructorParameters<typeof Output>[0], id: number) {
    super(opts);
    this.id = id;
  }

  override event(name: string, fields: Record<string, unknown>): void {
    super.event(name, { worker: this.id, ...fields });
  }

  override info(msg: string): void {
    super.info(`w${this.id} ${msg}`);
  }

  override debug(msg: string): void {
    super.debug(`w${this.id} ${msg}`);
  }

  override warn(msg: string): void {
    super.warn(`w${this.id} ${msg}`);
  }

  override error(msg: string): void {
    super.error(`w${this.id} ${msg}`);
  }
}

function send(m: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(m, undefined, {}, () => resolve());
  });
}

/** Runs one worker: waits for its start message, serves, applies reloads, and closes when the primary says so. */
export async function runServeWorker(): Promise<void> {
  // The primary decides when workers stop and reload: a Ctrl-C reaches the whole process group, and a worker that
  // left on its own would be restarted.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => {});
  const start = await new Promise<Extract<ToWorker, { type: 'start' }>>((resolve) => {
    const onMessage = (m: ToWorker): void => {
      if (m.type !== 'start') return;
      process.off('message', onMessage);
      resolve(m);
    };
    process.on('message', onMessage);
    void send({ type: 'ready' });
  });
  const args = start.state.values;
  setupColor(colorLevel({ noColor: !args.color, json: args.json }));
  const out = new WorkerOutput({ json: args.json, verbosity: args.quiet ? 0 : args.verbose ? 2 : 1 }, start.id);
  let server: TunnelServer;
  let closeKeylog: () => void = () => {};
  let closeObservability: () => Promise<void> = async () => {};
  try {
    const settings = await buildServeSettings(start.state);
    const keylog = settings.tls ? openKeylog(args) : undefined;
    if (keylog) closeKeylog = () => keylog.close();
    const tls = settings.tls && keylog ? { ...settings.tls, onKeylog: keylog.onKeylog } : settings.tls;
    server = new TunnelServer({ ...settings.server, port: start.port, ...(tls ? { tls } : {}) });
    attachServerOutput(server, out);
    const observed = await startServeWorkerObservability(args, server, out, serveSecrets(args));
    closeObservability = () => observed.close();
    const address = await server.listen();
    await send({ type: 'listening', address });
  } catch (err) {
    const { code, message } = describeError(err);
    await send({ type: 'start-failed', message, exitCode: code });
    process.exit(code);
  }
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await server.close();
      closeKeylog();
      await closeObservability();
      await send({ type: 'counters', counters: server.counters });
      if (process.connected) process.disconnect();
      // A target socket or DNS query still winding down must not keep a worker the primary waits for.
      process.exit(0);
    })());
  process.on('message', (m: ToWorker) => {
    if (m.type === 'shutdown') void close();
    else if (m.type === 'reload') {
      buildServeSettings(m.state).then(
        (settings) => {
          try {
            server.update(serverUpdate(settings, m.tlsChanged));
            void send({ type: 'reloaded', seq: m.seq });
          } catch (err) {
            void send({ type: 'reload-failed', seq: m.seq, message: reloadError(err) });
          }
        },
        (err: unknown) => void send({ type: 'reload-failed', seq: m.seq, message: reloadError(err) }),
      );
    }
  });
  // Without the primary nobody would stop this worker: it leaves with it.
  process.once('disconnect', () => void close());
}
