import { parentPort, workerData } from 'node:worker_threads';
import { TunnelClient } from '../tunnel/client.js';
import { buildSharedTransport, buildTransport } from '../tunnel/client-config.js';
import { isUdpTunnelError } from '../tunnel/errors.js';
import { Exposer } from '../tunnel/expose.js';
import { TargetPolicy } from '../tunnel/policy.js';
import { TunnelServer } from '../tunnel/server/tunnel-server.js';
import { RelayBack, RelayFront } from './bare-relay.js';
import { benchEntry, benchMode, benchModeKind } from './modes.js';
import { BENCH_MAX_SESSIONS_PER_CLIENT, addExposerDrops, addSessionDrops, componentContext, exposedAddress } from './tunnel-launcher.js';
import { resolveUdpHost } from './resolve-host.js';
import type { TunnelWorkerRequest, TunnelWorkerToParent } from './tunnel-launcher.js';

// Entry point of a serve or connect (or, in bare-relay mode, a relay-back or relay-front) started with worker isolation: the tunnel gets an event loop of its own, apart
// from the load generator's. Messages: parent 'stop' -> close and report counters, then the thread ends.
const port = parentPort;
if (port === null) throw new Error('tunnel-worker must run in a worker thread');

const req = workerData as TunnelWorkerRequest;
const post = (msg: TunnelWorkerToParent): void => port.postMessage(msg);

try {
  const mode = benchMode(req.mode);
  const ctx = componentContext(req);
  const drops: Record<string, number> = {};
  const onSessionClose = (stats: object): void => addSessionDrops(drops, stats as Record<string, unknown>);
  let close: () => Promise<Record<string, unknown>>;
  const bare = benchModeKind(mode) === 'bare-relay';
  if (bare && req.role === 'serve') {
    const target = ctx.target;
    const relay = new RelayBack({
      host: req.host,
      port: 0,
      target: { host: (await resolveUdpHost(target.host)).address, port: target.port },
      ...(req.tls ? { tls: { cert: req.tls.cert, key: req.tls.key } } : {}),
    });
    relay.on('session-close', onSessionClose);
    const a = await relay.listen();
    close = async () => {
      await relay.close();
      return { ...relay.counters };
    };
    post({ type: 'listening', address: { address: a.address, port: a.port, family: a.family } });
  } else if (bare) {
    const back = new URL(req.proxy ?? '');
    const front = new RelayFront({
      host: req.host,
      port: 0,
      back: { host: (await resolveUdpHost(back.hostname)).address, port: Number(back.port) },
      ...(req.tls ? { tls: { ca: req.tls.cert } } : {}),
    });
    front.on('error', () => {});
    front.on('session-close', onSessionClose);
    const a = await front.start();
    close = async () => {
      await front.close();
      return { ...front.counters };
    };
    post({ type: 'listening', address: { address: a.address, port: a.port, family: a.family } });
  } else if (req.role === 'serve') {
    const server = new TunnelServer({
      host: req.host,
      port: 0,
      // Default policy: loopback targets only, which is where the bench's echo lives (RFC 9298 §7).
      policy: new TargetPolicy(),
      maxSessionsPerClient: BENCH_MAX_SESSIONS_PER_CLIENT,
      ...(req.tls ? { tls: { cert: req.tls.cert, key: req.tls.key } } : {}),
      ...mode.serverOptions(ctx),
    });
    server.on('session-close', onSessionClose);
    const a = await server.listen();
    close = async () => {
      await server.close();
      return { ...server.counters };
    };
    post({ type: 'listening', address: { address: a.address, port: a.port, family: a.family } });
  } else if (benchEntry(mode) === 'expose') {
    // connect --expose's library counterpart: the echo is the local service, reached through one bound tunnel.
    const transport = buildSharedTransport({
      proxy: req.proxy ?? '',
      tls: { ...(req.tls ? { ca: req.tls.cert } : {}), ...(req.insecure ? { insecure: true } : {}) },
      ...mode.proxyConfig(ctx),
    });
    const exposer = new Exposer({ transport, local: ctx.target, ...mode.exposerOptions });
    exposer.on('error', () => {});
    const exposed = await exposer.start();
    const a = exposedAddress(exposed.public, req.host);
    if (a === null) throw new Error(`the bound tunnel lists no public address (${exposed.public.join(', ')})`);
    close = async () => {
      await exposer.close();
      const counters = { ...exposer.counters, tunnel: exposer.tunnelCounters() };
      addExposerDrops(drops, counters);
      return counters;
    };
    post({ type: 'listening', address: a });
  } else {
    const transport = buildTransport({
      proxy: req.proxy ?? '',
      target: ctx.target,
      tls: { ...(req.tls ? { ca: req.tls.cert } : {}), ...(req.insecure ? { insecure: true } : {}) },
      ...mode.proxyConfig(ctx),
    });
    const client = new TunnelClient({ host: req.host, port: 0, transport });
    client.on('error', () => {});
    client.on('session-close', onSessionClose);
    const a = await client.start();
    close = async () => {
      await client.close();
      return { ...client.counters };
    };
    post({ type: 'listening', address: { address: a.address, port: a.port, family: a.family } });
  }
  const onMessage = (msg: unknown): void => {
    if ((msg as { type?: unknown } | null)?.type !== 'stop') return;
    port.off('message', onMessage);
    void close().then((counters) => post({ type: 'stopped', counters, drops }));
  };
  port.on('message', onMessage);
} catch (err) {
  post({ type: 'error', message: (err as Error).message, code: isUdpTunnelError(err) ? err.code : null });
}
