import { availableParallelism } from 'node:os';
import { TunnelServer } from '../../tunnel/server/tunnel-server.js';
import { makeOutput } from '../common-options.js';
import { UsageError } from '../errors.js';
import { startInspectTap } from '../inspect-tap.js';
import { openKeylog } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import { serveSecrets, startServeObservability } from '../observability.js';
import { attachServerOutput, renderServeListening } from '../render/serve-events.js';
import { onReloadSignal, reloadServer } from '../serve-reload.js';
import { buildServeSettings, listeningOf, readServeMaterial, stateOf, usageOnBadOption } from '../serve-settings.js';
import type { ResolvedOptions } from '../options/resolve.js';
import type { ServeOptions } from '../schemas/serve.js';

/** Most worker processes `--workers` accepts. */
export const MAX_WORKERS = 256;

/** Reads `--workers`: a whole number 1..MAX_WORKERS, or `auto` for one per core. */
export function workerCount(text: string): number {
  if (text === 'auto') return availableParallelism();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_WORKERS)) throw new UsageError(`--workers: '${text}' is not a whole number 1..${MAX_WORKERS} or auto`);
  return n;
}

/** `udp-tunnel serve`: the proxy side. */
export async function runServe(args: ServeOptions, r: ResolvedOptions<ServeOptions>): Promise<void> {
  const out = makeOutput(args);
  const workers = workerCount(args.workers);
  if (workers > 1 && (args.inspect || args.record !== undefined)) {
    throw new UsageError(`--workers ${args.workers} and --${args.inspect ? 'inspect' : 'record'} exclude each other: the traffic view is per process`);
  }
  let state = stateOf(r, await readServeMaterial(args));
  const settings = await buildServeSettings(state);
  if (workers > 1) return (await import('../serve-cluster.js')).runServePrimary(state, settings, workers, out);
  const keylog = settings.tls ? openKeylog(args) : undefined;
  const tls = settings.tls && keylog ? { ...settings.tls, onKeylog: keylog.onKeylog } : settings.tls;
  const server = usageOnBadOption(() => new TunnelServer({ ...settings.server, ...(tls ? { tls } : {}) }));
  attachServerOutput(server, out);
  const tap = await startInspectTap(args, out, 'serve');
  // Last before listening: from here on its listener must be closed on every way out.
  const observe = await startServeObservability(args, server, out, serveSecrets(args));
  const addr = await server.listen().catch(async (err: unknown) => {
    await observe.close();
    throw err;
  });
  observe.listening();
  // Before 'listening' is printed: a signal sent by whoever reads that line must find the handler in place.
  const { done } = untilShutdown(async () => {
    out.info('shutting down');
    observe.stopping();
    await server.close();
    await observe.close();
    keylog?.close();
  });
  const stopReload = onReloadSignal(async () => {
    state = await reloadServer(server, state, out);
  });
  renderServeListening(out, listeningOf(settings, addr));
  observe.announce();
  const why = await done;
  stopReload();
  await tap?.stop();
  out.event('shutdown', { signal: why, counters: server.counters });
}
