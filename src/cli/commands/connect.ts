import { readFileSync } from 'node:fs';
import { parseHostPort } from '../../tunnel/address.js';
import { TunnelClient } from '../../tunnel/client.js';
import {
  buildTransport,
  describeProxy,
  parseHeaderFlags,
  redactProxyUrl,
  type ClientMode,
  type HttpVersionChoice,
  type ProxyConfig,
} from '../../tunnel/client-config.js';
import { parsePins } from '../../tunnel/transport/proxy-socket.js';
import { UsageError } from '../errors.js';
import { makeOutput } from '../common-options.js';
import { startInspectTap } from '../inspect-tap.js';
import { openKeylog } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import { startConnectObservability } from '../observability.js';
import { proxyOrigin, proxyUrlSecrets } from '../access-log.js';
import { attachClientOutput, renderConnectListening } from '../render/connect-events.js';
import { runTunnelCheck, startProxyProbe } from '../proxy-check.js';
import { isGiven, type ResolvedOptions } from '../options/resolve.js';
import type { ConnectOptions } from '../schemas/connect.js';

/** The combinations connect refuses: each names both flags, so a flag is never silently ignored. */
function checkCombinations(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): void {
  const given = (name: string): boolean => isGiven(r, name);
  if (o.proxy === undefined) throw new UsageError('--proxy URL is required (or UDP_TUNNEL_PROXY, or proxy: in the --config file)');
  if (o.mode === 'connect-udp' && o.target === undefined) throw new UsageError('--target HOST:PORT is required in connect-udp mode');
  if (o.mode === 'post') {
    if (given('target')) throw new UsageError('--target does not apply with --mode post: the proxy maps --post-path to its target; drop --target');
    if (given('template')) throw new UsageError('--template does not apply with --mode post: drop --template');
    if (o.http !== '2') throw new UsageError('--mode post runs over HTTP/2 only; drop --http 1.1');
  } else if (given('post-path')) {
    throw new UsageError('--post-path applies only to --mode post');
  }
  if (!o.buffer) {
    for (const f of ['max-buffered-datagrams', 'max-buffered-bytes']) if (given(f)) throw new UsageError(`--${f} has no effect with --no-buffer`);
  }
  if (o['max-connect-attempts'] === 1) {
    for (const f of ['backoff-base', 'backoff-max']) {
      if (given(f)) throw new UsageError(`--${f} has no effect with --max-connect-attempts 1 (no retries); raise --max-connect-attempts`);
    }
  }
  if (o['backoff-max'] !== undefined && o['backoff-max'] < o['backoff-base']) throw new UsageError('--backoff-max must be at least --backoff-base');
  if (Boolean(o.cert) !== Boolean(o.key)) throw new UsageError('--cert and --key go together');
  const https = /^https:/i.test(o.proxy);
  const tlsFlags = ['ca', 'servername', 'cert', 'pin', 'insecure'].filter((f) => given(f));
  if (given('keylog') && r.sources['keylog'] !== 'env') tlsFlags.push('keylog');
  if (tlsFlags.length > 0 && !https) throw new UsageError(`--${tlsFlags.join(', --')} need${tlsFlags.length === 1 ? 's' : ''} an https:// proxy URL`);
}

/** `udp-tunnel connect`: local UDP port -> proxy -> target. */
export async function runConnect(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): Promise<void> {
  checkCombinations(o, r);
  const args = o as ConnectOptions & { proxy: string };
  const out = makeOutput(args);
  const local = parseHostPort(args.local, { allowPortZero: true, what: '--local' });
  const target = args.target ? parseHostPort(args.target, { what: '--target' }) : undefined;
  const baseMs = args['backoff-base'];
  const keylog = /^https:/i.test(args.proxy) ? openKeylog(args) : undefined;
  const tls = {
    ...(keylog ? { onKeylog: keylog.onKeylog } : {}),
    insecure: args.insecure,
    ...(args.ca ? { ca: readFileSync(args.ca) } : {}),
    ...(args.servername ? { servername: args.servername } : {}),
    ...(args.pin.length ? { pins: parsePins(args.pin) } : {}),
    ...(args.cert && args.key ? { cert: readFileSync(args.cert), key: readFileSync(args.key) } : {}),
  };
  const token = args.token;
  const config: ProxyConfig = {
    proxy: args.proxy,
    ...(target ? { target } : {}),
    mode: args.mode,
    http: args.http,
    postPath: args['post-path'],
    ...(token ? { token } : {}),
    ...(isGiven(r, 'template') ? { template: args.template } : {}),
    headers: parseHeaderFlags(args.header),
    tls,
    connectTimeoutMs: args['connect-timeout'],
  };
  if (args.check) {
    try {
      await runTunnelCheck(config, out);
    } finally {
      keylog?.close();
    }
    return;
  }
  const transport = buildTransport(config);
  const client = new TunnelClient({
    host: local.host,
    port: local.port,
    transport,
    idleTimeoutMs: args['idle-timeout'],
    buffer: { enabled: args.buffer, maxDatagrams: args['max-buffered-datagrams'], maxBytes: args['max-buffered-bytes'] },
    maxConnectAttempts: args['max-connect-attempts'],
    backoff: { baseMs, maxMs: args['backoff-max'] ?? baseMs * 10 },
    maxDatagram: args['max-datagram'],
    maxSessions: args['max-sessions'],
    maxUdpSendQueue: args['max-udp-send-queue'],
  });
  attachClientOutput(client, out, { target: args.mode === 'post' ? `POST ${args['post-path']}` : args.target! });
  const tap = await startInspectTap(args, out, 'connect');
  // Last before listening: from here on its listener must be closed on every way out.
  const observe = await startConnectObservability(args, client, out, [...(token ? [token] : []), ...proxyUrlSecrets(args.proxy)], {
    config,
    startupProbe: args['proxy-check'],
    proxy: proxyOrigin(args.proxy),
    target: args.mode === 'post' ? null : args.target!,
    mode: args.mode,
    transport: transport.name,
  });
  const addr = await client.start().catch(async (err: unknown) => {
    await observe.close();
    throw err;
  });
  observe.listening();
  renderConnectListening(out, {
    address: addr,
    proxy: redactProxyUrl(args.proxy),
    description: describeProxy(config),
    mode: args.mode,
    ...(args.mode === 'post' ? { postPath: args['post-path'] } : { target: args.target! }),
    transport: transport.name,
  });
  observe.announce();
  const probe = args['proxy-check'] ? startProxyProbe(config, out, (r) => observe.probeResult(r)) : undefined;
  const { done } = untilShutdown(async () => {
    out.info('shutting down');
    observe.stopping();
    await probe?.stop();
    await client.close();
    await observe.close();
    keylog?.close();
  });
  const why = await done;
  await tap?.stop();
  out.event('shutdown', { signal: why, counters: client.counters });
  out.debug(`counters ${JSON.stringify(client.counters)}`);
}
