import { readFileSync } from 'node:fs';
import { parseHostPort } from '../tunnel/address.js';
import type { BoundContextEvent } from '../tunnel/bound-tunnel.js';
import { parseHeaderFlags, redactProxyUrl, type ProxyConfig } from '../tunnel/client-config.js';
import { UdpTunnelError } from '../tunnel/errors.js';
import { Exposer, type ExposedEvent, type PeerCloseEvent, type PeerOpenEvent } from '../tunnel/expose.js';
import { buildProxiesTransport, splitProxyList } from '../tunnel/proxy-list.js';
import { parsePins } from '../tunnel/transport/proxy-socket.js';
import { color } from './color.js';
import { makeOutput } from './common-options.js';
import { UsageError, flagMessage } from './errors.js';
import { startInspectTap } from './inspect-tap.js';
import { openKeylog } from './keylog.js';
import { untilShutdown } from './lifecycle.js';
import { isGiven, type ResolvedOptions } from './options/resolve.js';
import type { Output } from './output.js';
import { attachFailoverOutput, wrap } from './render/connect-events.js';
import type { ConnectOptions } from './schemas/connect.js';

/**
 * The connect flags --expose refuses, and why: each would be ignored (or means a forward, not a reverse tunnel).
 * --idle-timeout, --max-sessions, --max-connect-attempts, the backoff, TLS and limit flags apply to it.
 */
const NOT_WITH_EXPOSE: ReadonlyArray<[string, string]> = [
  ['local', 'the local service is the one --expose names'],
  ['target', 'remote peers come to the public address; --expose names the local service'],
  ['post-path', 'bound tunnels are CONNECT-UDP only'],
  ['check', 'it opens a tunnel to one --target'],
  ['proxy-check', 'opening the bound tunnel checks the proxy'],
  ['buffer', 'datagrams are not buffered for a bound tunnel'],
  ['max-buffered-datagrams', 'datagrams are not buffered for a bound tunnel'],
  ['max-buffered-bytes', 'datagrams are not buffered for a bound tunnel'],
  ['metrics', 'it is not available for the reverse tunnel yet'],
  ['access-log', 'it is not available for the reverse tunnel yet'],
  ['access-log-format', 'it is not available for the reverse tunnel yet'],
];

/** Refuses flags that make no sense with --expose, naming both. Called by connect's own checks. */
export function checkExposeCombinations(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): void {
  if (isGiven(r, 'forward') || r.lists?.['forwards'] !== undefined) {
    throw new UsageError(`--expose does not combine with ${isGiven(r, 'forward') ? '-L/--forward' : 'forwards: in the config file'}: a forward sends local traffic out, --expose brings remote traffic in`);
  }
  if (o.mode === 'post') throw new UsageError('--expose needs CONNECT-UDP (bound tunnels are draft-ietf-masque-connect-udp-listen); drop --mode post');
  for (const [flag, why] of NOT_WITH_EXPOSE) {
    if (isGiven(r, flag)) throw new UsageError(`--${flag} does not apply with --expose: ${why}; drop --${flag}`);
  }
}

/** Columns a log line may use after its time prefix, so human output fits 100 columns. */
const LINE_WIDTH = 90;

/** Logs `text` (plain, no colour) cut at spaces into lines that fit, continuation lines indented. */
function logWrapped(log: (line: string) => void, text: string, width = LINE_WIDTH): void {
  wrap(text, width).forEach((line, i) => log(i === 0 ? line : `  ${line}`));
}

/** Renders an Exposer's events as NDJSON or human log lines. */
function attachExposerOutput(exposer: Exposer, out: Output, proxies: string[]): void {
  const c = color();
  const info = (line: string): void => out.info(line);
  exposer.on('exposed', (e: ExposedEvent) => {
    out.event('exposed', { public: e.public, local: e.local, id: e.id, reopened: e.reopened, ...(e.proxy !== undefined ? { proxy: e.proxy } : {}), proxies });
    const line = `exposed ${e.local} at ${e.public.join(' and ')}${e.reopened ? ' (new binding)' : ''}`;
    if (line.length <= LINE_WIDTH) out.info(`exposed ${c.bold(e.local)} at ${c.bold(e.public.join(' and '))}${e.reopened ? ' (new binding)' : ''}`);
    else logWrapped(info, line);
  });
  exposer.on('peer-open', (e: PeerOpenEvent) => {
    out.event('peer-open', { ...e });
    out.info(`${c.cyan(e.peer)} new peer, local source port ${e.localPort ?? '-'}`);
  });
  exposer.on('peer-close', (e: PeerCloseEvent) => {
    out.event('peer-close', { ...e });
    logWrapped(
      info,
      `${e.peer} closed (${e.reason}) after ${(e.durationMs / 1000).toFixed(1)}s: ` +
        `${e.rxDatagrams} dgrams/${e.rxBytes} B in, ${e.txDatagrams} dgrams/${e.txBytes} B back`,
    );
  });
  exposer.on('context', (e: BoundContextEvent & { tunnel: string }) => {
    out.event('context', { ...e });
    const target = e.target === null ? 'uncompressed' : `${e.target.ipVersion === 6 ? `[${e.target.address}]` : e.target.address}:${e.target.port}`;
    out.debug(`${e.tunnel} context ${e.id} (${target}) ${e.event} by ${e.by}${e.refused ? ' (refused)' : ''}`);
  });
  exposer.on('tunnel-lost', (e: { id: string; reason: string; error?: UdpTunnelError; proxy?: string }) => {
    const message = e.error ? flagMessage(e.error) : undefined;
    out.event('tunnel-lost', { id: e.id, reason: e.reason, ...(e.error ? { code: e.error.code, message } : {}), ...(e.proxy ? { proxy: e.proxy } : {}) });
    logWrapped((l) => out.warn(l), `bound tunnel lost (${e.reason}${message ? `: ${message}` : ''}); asking for a new binding`, LINE_WIDTH - 'warning: '.length);
  });
  exposer.on('connect-error', (e: { error: UdpTunnelError; attempt: number; willRetry: boolean }) => {
    const message = flagMessage(e.error);
    const status = e.error.details['status'];
    out.event('connect-error', { code: e.error.code, message, attempt: e.attempt, willRetry: e.willRetry, ...(typeof status === 'number' ? { status } : {}) });
    if (e.willRetry) logWrapped(info, `attempt ${e.attempt} failed: ${message}; retrying`);
  });
}

/** `udp-tunnel connect --expose HOST:PORT`: a local UDP service reachable at the proxy's public address. */
export async function runExpose(o: ConnectOptions, r: ResolvedOptions<ConnectOptions>): Promise<void> {
  checkExposeCombinations(o, r);
  const local = parseHostPort(o.expose!, { what: '--expose' });
  const out = makeOutput(o);
  const proxies = splitProxyList(o.proxy);
  const keylog = proxies.some((p) => /^https:/i.test(p)) ? openKeylog(o) : undefined;
  const token = o.token;
  const config: Omit<ProxyConfig, 'proxy'> = {
    mode: 'connect-udp',
    http: o.http,
    ...(token ? { token } : {}),
    ...(isGiven(r, 'template') ? { template: o.template } : {}),
    headers: parseHeaderFlags(o.header),
    tls: {
      ...(keylog ? { onKeylog: keylog.onKeylog } : {}),
      insecure: o.insecure,
      ...(o.ca ? { ca: readFileSync(o.ca) } : {}),
      ...(o.servername ? { servername: o.servername } : {}),
      ...(o.pin.length ? { pins: parsePins(o.pin) } : {}),
      ...(o.cert && o.key ? { cert: readFileSync(o.cert), key: readFileSync(o.key) } : {}),
    },
    connectTimeoutMs: o['connect-timeout'],
  };
  const transport = buildProxiesTransport(proxies, config, { strategy: o['proxy-strategy'] });
  if (proxies.length > 1) attachFailoverOutput(transport, out);
  const exposer = new Exposer({
    transport,
    local,
    idleTimeoutMs: o['idle-timeout'],
    maxPeers: o['max-sessions'],
    maxConnectAttempts: o['max-connect-attempts'],
    backoff: { baseMs: o['backoff-base'], maxMs: o['backoff-max'] ?? o['backoff-base'] * 10 },
    maxDatagram: o['max-datagram'],
    maxUdpSendQueue: o['max-udp-send-queue'],
  });
  attachExposerOutput(exposer, out, proxies.map(redactProxyUrl));
  const tap = await startInspectTap(o, out, 'connect');
  // Signals are taken from before start(): `exposed` is printed during it, and a script may stop connect at once.
  let stopping = false;
  let failure: Error | undefined;
  const { done, shutdown } = untilShutdown(async () => {
    stopping = true;
    out.info('shutting down');
    await exposer.close();
    keylog?.close();
  });
  try {
    await exposer.start();
  } catch (err) {
    if (!stopping) {
      await exposer.close();
      await tap?.stop();
      keylog?.close();
      throw err;
    }
  }
  // The exposer gives up by itself only when a lost tunnel cannot be reopened (a refusal); then connect ends too.
  exposer.once('close', (e: { reason: string; error?: Error }) => {
    if (e.reason !== 'failed') return;
    failure = e.error;
    shutdown('failed');
  });
  const why = await done;
  await tap?.stop();
  out.event('shutdown', { signal: why, counters: exposer.counters, tunnel: exposer.tunnelCounters(), ...(proxies.length > 1 ? { proxies: transport.proxies } : {}) });
  out.debug(`counters ${JSON.stringify(exposer.counters)} tunnel ${JSON.stringify(exposer.tunnelCounters())}`);
  if (failure) throw failure;
}
