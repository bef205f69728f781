import { readFileSync } from 'node:fs';
import { parseHostPort } from '../../tunnel/address.js';
import { describeProxy, parseHeaderFlags, redactProxyUrl, type ProxyConfig } from '../../tunnel/client-config.js';
import { ForwardGroup, mergeHeaders } from '../../tunnel/forward-group.js';
import { buildProxiesTransport, splitProxyList } from '../../tunnel/proxy-list.js';
import type { FailoverTransport } from '../../tunnel/transport/failover.js';
import { parsePins } from '../../tunnel/transport/proxy-socket.js';
import { UsageError } from '../errors.js';
import { forwardFromEntry, forwardFromSpec, parseForwardSpec, type ForwardDefaults, type ResolvedForward } from '../forwards.js';
import { makeOutput } from '../common-options.js';
import { checkExposeCombinations, runExpose } from '../expose.js';
import { startInspectTap } from '../inspect-tap.js';
import { openKeylog } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import { startConnectObservability } from '../observability.js';
import { proxyOrigin, proxyUrlSecrets } from '../access-log.js';
import { attachClientOutput, attachFailoverOutput, renderConnectListening } from '../render/connect-events.js';
import { runTunnelCheck, startProxyProbe } from '../proxy-check.js';
import { isGiven, type ResolvedOptions } from '../options/resolve.js';
import type { ConnectOptions } from '../schemas/connect.js';

/** The combinations connect refuses: each names both flags, so a flag is never silently ignored. */
function checkCombinations(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): void {
  const given = (name: string): boolean => isGiven(r, name);
  if (o.proxy.length === 0) throw new UsageError('--proxy URL is required (or UDP_TUNNEL_PROXY, or proxy: in the --config file)');
  const proxies = splitProxyList(o.proxy);
  if (proxies.length === 1 && given('proxy-strategy')) throw new UsageError('--proxy-strategy needs two or more --proxy URLs');
  // --expose reopens lost tunnels with the backoff, so it applies even with --max-connect-attempts 1.
  const expose = o.expose !== undefined;
  if (expose) checkExposeCombinations(o, r);
  const forwards = expose ? null : forwardsGiven(r);
  if (forwards !== null) {
    for (const f of ['local', 'target']) if (given(f)) throw new UsageError(`--${f} does not apply with ${forwards}: each forward names its own local port and target; drop --${f}`);
    if (forwards === '-L' && o.mode === 'post') throw new UsageError('-L names a target, which --mode post does not use: list POST forwards in the config file\'s forwards: (mode: post)');
    if (forwards === '-L' && given('post-path')) throw new UsageError('--post-path does not apply with -L (CONNECT-UDP forwards)');
  } else if (!expose && o.mode === 'connect-udp' && o.target === undefined) {
    throw new UsageError('--target HOST:PORT is required in connect-udp mode');
  }
  if (forwards === null && o.mode === 'post' && !expose) {
    if (given('target')) throw new UsageError('--target does not apply with --mode post: the proxy maps --post-path to its target; drop --target');
    if (given('template')) throw new UsageError('--template does not apply with --mode post: drop --template');
    if (o.http !== '2') throw new UsageError('--mode post runs over HTTP/2 only; drop --http 1.1');
  } else if (given('post-path')) {
    throw new UsageError('--post-path applies only to --mode post');
  }
  if (!o.buffer) {
    for (const f of ['max-buffered-datagrams', 'max-buffered-bytes']) if (given(f)) throw new UsageError(`--${f} has no effect with --no-buffer`);
  }
  if (o['max-connect-attempts'] === 1 && !expose) {
    for (const f of ['backoff-base', 'backoff-max']) {
      if (given(f)) throw new UsageError(`--${f} has no effect with --max-connect-attempts 1 (no retries); raise --max-connect-attempts`);
    }
  }
  if (o['backoff-max'] !== undefined && o['backoff-max'] < o['backoff-base']) throw new UsageError('--backoff-max must be at least --backoff-base');
  if (Boolean(o.cert) !== Boolean(o.key)) throw new UsageError('--cert and --key go together');
  // One TLS configuration applies to every proxy, so with TLS flags all of them must be https://.
  const cleartext = proxies.find((p) => !/^https:/i.test(p));
  const tlsFlags = ['ca', 'servername', 'cert', 'pin', 'insecure'].filter((f) => given(f));
  if (given('keylog') && r.sources['keylog'] !== 'env') tlsFlags.push('keylog');
  if (tlsFlags.length > 0 && cleartext !== undefined) {
    const which = proxies.length === 1 ? 'an https:// proxy URL' : `every --proxy to be https:// (not ${redactProxyUrl(cleartext)})`;
    throw new UsageError(`--${tlsFlags.join(', --')} need${tlsFlags.length === 1 ? 's' : ''} ${which}`);
  }
}

/**
 * Which way forwards were given, if any: `-L` (flag or `forward:` key) or the config file's `forwards:` list. A flag
 * beats the config file, so -L on the command line replaces the file's forwards.
 */
function forwardsGiven(r: ResolvedOptions<ConnectOptions>): '-L' | 'forwards: in the config file' | null {
  const fromFlag = r.sources['forward'] === 'flag';
  const list = r.lists?.['forwards'];
  if (isGiven(r, 'forward') && list !== undefined && !fromFlag) throw new UsageError(`--config ${r.configFile}: give forward or forwards, not both`);
  if (isGiven(r, 'forward')) return '-L';
  return list !== undefined ? 'forwards: in the config file' : null;
}

/** The forwards connect runs: the -L specs, the config file's forwards:, or the one of --local and --target. */
function resolveForwards(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): ResolvedForward[] {
  const d: ForwardDefaults = {
    mode: o.mode,
    'post-path': o['post-path'],
    'idle-timeout': o['idle-timeout'],
    buffer: o.buffer,
    'max-buffered-datagrams': o['max-buffered-datagrams'],
    'max-buffered-bytes': o['max-buffered-bytes'],
  };
  const how = forwardsGiven(r);
  if (how === '-L') return o.forward.map((text) => forwardFromSpec(parseForwardSpec(text, r.sources['forward'] === 'config' ? `--config ${r.configFile}: forward` : '-L'), d));
  if (how !== null) return r.lists!['forwards']!.map((e, i) => forwardFromEntry(e, i, d, r.configFile!));
  const local = parseHostPort(o.local, { allowPortZero: true, what: '--local' });
  const target = o.target ? parseHostPort(o.target, { what: '--target' }) : undefined;
  return [
    {
      config: {
        host: local.host,
        port: local.port,
        ...(target ? { target } : {}),
        idleTimeoutMs: o['idle-timeout'],
        buffer: { enabled: o.buffer, maxDatagrams: o['max-buffered-datagrams'], maxBytes: o['max-buffered-bytes'] },
      },
      mode: o.mode,
      ...(o.mode === 'post' ? { postPath: o['post-path'] } : { target: o.target! }),
    },
  ];
}

/** `udp-tunnel connect`: local UDP ports -> proxy -> targets. */
export async function runConnect(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): Promise<void> {
  checkCombinations(o, r);
  if (o.expose !== undefined) return runExpose(o, r);
  const args = o;
  const proxies = splitProxyList(args.proxy);
  const out = makeOutput(args);
  const forwards = resolveForwards(args, r);
  const target = forwards.length === 1 ? forwards[0]!.config.target : undefined;
  const baseMs = args['backoff-base'];
  const keylog = proxies.some((p) => /^https:/i.test(p)) ? openKeylog(args) : undefined;
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
    proxy: proxies[0]!,
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
      // Each forward's tunnel is checked in turn; the first failure is reported once all have run.
      let failure: unknown;
      for (const f of forwards) {
        const one: ProxyConfig = {
          ...config,
          mode: f.mode,
          ...(f.config.target ? { target: f.config.target } : {}),
          ...(f.postPath !== undefined ? { postPath: f.postPath } : {}),
          ...(f.config.headers ? { headers: mergeHeaders(config.headers ?? [], f.config.headers) } : {}),
        };
        try {
          await runTunnelCheck(one, out, proxies);
        } catch (err) {
          failure ??= err;
        }
      }
      if (failure !== undefined) throw failure;
    } finally {
      keylog?.close();
    }
    return;
  }
  // One transport per mode over every proxy (failover or round-robin), shared by the forwards of that mode.
  const failovers: FailoverTransport[] = [];
  const group = new ForwardGroup({
    proxy: config,
    forwards: forwards.map((f) => f.config),
    transportFor: (cfg) => {
      const t = buildProxiesTransport(proxies, cfg, { strategy: args['proxy-strategy'] });
      failovers.push(t);
      if (proxies.length > 1) attachFailoverOutput(t, out);
      return t;
    },
    client: {
      maxConnectAttempts: args['max-connect-attempts'],
      backoff: { baseMs, maxMs: args['backoff-max'] ?? baseMs * 10 },
      maxDatagram: args['max-datagram'],
      maxSessions: args['max-sessions'],
      maxUdpSendQueue: args['max-udp-send-queue'],
    },
  });
  group.clients.forEach((client, i) => {
    const f = forwards[i]!;
    attachClientOutput(client, out, { target: f.mode === 'post' ? `POST ${f.postPath}` : f.target!, forward: i });
  });
  const tap = await startInspectTap(args, out, 'connect');
  // Last before listening: from here on its listener must be closed on every way out.
  const observe = await startConnectObservability(
    args,
    group.clients.map((client, i) => {
      const f = forwards[i]!;
      return { client, log: { proxy: proxyOrigin(proxies[0]!), target: f.mode === 'post' ? null : f.target!, mode: f.mode, transport: group.transportOf(i).name } };
    }),
    out,
    [...(token ? [token] : []), ...proxies.flatMap((p) => proxyUrlSecrets(p))],
    { config, startupProbe: args['proxy-check'], proxy: proxyOrigin(proxies[0]!), proxies: () => failovers.flatMap((t) => t.proxies) },
  );
  const addrs = await group.start().catch(async (err: unknown) => {
    await observe.close();
    throw err;
  });
  observe.listening();
  addrs.forEach((address, i) => {
    const f = forwards[i]!;
    const one: ProxyConfig = { ...config, mode: f.mode, ...(f.config.target ? { target: f.config.target } : {}), ...(f.postPath ? { postPath: f.postPath } : {}) };
    renderConnectListening(out, {
      forward: i,
      address,
      proxy: redactProxyUrl(proxies[0]!),
      proxies: proxies.map(redactProxyUrl),
      ...(proxies.length > 1 ? { strategy: args['proxy-strategy'] } : {}),
      // Several proxies are listed on lines of their own, so the line stays within 100 columns.
      description: proxies.length === 1 ? describeProxy(one) : `${proxies.length} proxies${describeProxy({ ...one, proxy: '' })}`,
      mode: f.mode,
      ...(f.mode === 'post' ? { postPath: f.postPath! } : { target: f.target! }),
      transport: group.transportOf(i).name,
    });
  });
  observe.announce();
  // Readiness follows the first proxy's verdict (the one sessions try first under failover).
  const probe = args['proxy-check'] ? startProxyProbe(config, out, proxies, (r, proxy) => proxy === proxies[0] && observe.probeResult(r)) : undefined;
  const { done } = untilShutdown(async () => {
    out.info('shutting down');
    observe.stopping();
    await probe?.stop();
    await group.close();
    await observe.close();
    keylog?.close();
  });
  const why = await done;
  await tap?.stop();
  const perForward = forwards.length > 1 ? { forwards: group.clients.map((c) => c.counters) } : {};
  const perProxy = failovers.length === 1 ? failovers[0]!.proxies : failovers.flatMap((t) => t.proxies);
  out.event('shutdown', { signal: why, counters: group.counters, ...perForward, proxies: perProxy });
  out.debug(`counters ${JSON.stringify(group.counters)}`);
}
