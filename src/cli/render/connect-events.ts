import type { AddressInfo } from 'node:net';
import { formatHostPort } from '../../tunnel/address.js';
import type { ClientSessionStats, TunnelClient } from '../../tunnel/client.js';
import type { ClientMode } from '../../tunnel/client-config.js';
import type { FailoverTransport, ProxyDownEvent } from '../../tunnel/transport/failover.js';
import { ErrorCodes, UdpTunnelError, type RefusalDetails } from '../../tunnel/errors.js';
import { color } from '../color.js';
import { flagMessage } from '../errors.js';
import type { Output } from '../output.js';

/** What the client's output says about the tunnels it asks for. */
export interface ClientOutputOptions {
  /** The target as given (`HOST:PORT`), or `POST /path` in POST mode; refusal lines name it. */
  target?: string;
  /** The forward's index when connect runs several; every event then carries it as `forward`. */
  forward?: number;
}

/** Columns an error line may use after the time prefix and `error: `, so human output fits 100 columns. */
const ERROR_LINE_WIDTH = 84;

/** Cuts `text` into pieces of at most `width` columns, at spaces where it can. */
export function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > width) {
    const space = rest.lastIndexOf(' ', width);
    const cut = space > width / 2 ? space : width;
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut).replace(/^ /, '');
  }
  out.push(rest);
  return out;
}

/**
 * The log lines of a session whose tunnel the proxy refused: the status, the Proxy-Status error type and the details
 * the proxy gave (RFC 9209 §2), or why its Proxy-Status could not be read. Details that do not fit the line go on
 * indented lines of their own. Null for any other failure.
 */
export function refusalLines(id: string, peer: string, target: string | undefined, error: Error): string[] | null {
  if (!(error instanceof UdpTunnelError) || error.code !== ErrorCodes.TUNNEL_REFUSED) return null;
  const d = error.details as RefusalDetails;
  const ps = d.proxyStatus;
  let head = `${id} ${peer}: proxy refused ${target ?? 'the tunnel'}: HTTP ${d.status}`;
  if (ps?.malformed !== undefined) return [`${head} (unreadable Proxy-Status: ${ps.malformed})`];
  if (ps?.error !== undefined) head += ` ${ps.error}`;
  if (ps?.rcode !== undefined) head += ` rcode ${ps.rcode}`;
  if (ps?.details === undefined) return [head];
  const details = JSON.stringify(ps.details);
  if (head.length + 2 + details.length <= ERROR_LINE_WIDTH) return [`${head}: ${details}`];
  return [`${head}:`, ...wrap(details, ERROR_LINE_WIDTH - 2).map((l) => `  ${l}`)];
}

/** Renders client events as NDJSON or human log lines. */
export function attachClientOutput(client: TunnelClient, out: Output, options: ClientOutputOptions = {}): void {
  const c = color();
  const tag = options.forward !== undefined ? { forward: options.forward } : {};
  client.on('session-open', (e: { id: string; peer: string }) => {
    out.event('session-open', { ...e, ...tag });
    out.debug(`${c.cyan(e.id)} ${e.peer} new session`);
  });
  client.on('session-ready', (e: { id: string; peer: string; attempts: number; transport: string; reopened: boolean }) => {
    out.event('session-ready', { ...e, ...tag });
    const what = e.reopened ? 'tunnel reopened' : 'tunnel ready';
    out.info(`${c.cyan(e.id)} ${e.peer} ${what}${e.attempts > 1 ? ` after ${e.attempts} attempts` : ''}`);
  });
  client.on('tunnel-lost', (e: { id: string; peer: string; reason: string; proxy?: string }) => {
    out.event('tunnel-lost', { ...e, ...tag });
    out.info(`${c.cyan(e.id)} ${e.peer} tunnel lost (${e.reason}${e.proxy ? ` on ${e.proxy}` : ''}); the next datagram reopens it`);
  });
  client.on('connect-error', (e: { id: string; peer: string; error: Error & { code?: string }; attempt: number; willRetry: boolean }) => {
    // Library messages name options by their library names; a CLI user reads flags.
    const message = e.error instanceof UdpTunnelError ? flagMessage(e.error) : e.error.message;
    const refusal = e.error instanceof UdpTunnelError ? (e.error.details as Partial<RefusalDetails>) : {};
    out.event('connect-error', {
      ...tag,
      id: e.id,
      peer: e.peer,
      code: e.error.code,
      message,
      attempt: e.attempt,
      willRetry: e.willRetry,
      ...(typeof refusal.status === 'number' ? { status: refusal.status } : {}),
      ...(refusal.proxyStatus !== undefined ? { proxyStatus: refusal.proxyStatus } : {}),
    });
    if (out.json) return;
    if (e.willRetry) out.info(`${c.cyan(e.id)} attempt ${e.attempt} failed: ${message}; retrying`);
    else for (const line of refusalLines(e.id, e.peer, options.target, e.error) ?? [`${e.id}: ${message}`]) out.error(line);
  });
  client.on('session-close', (s: ClientSessionStats) => {
    // Wall-clock instants are ISO 8601 in every event (`...At`), like `time`; the stats keep epoch ms.
    out.event('session-close', { ...s, openedAt: new Date(s.openedAt).toISOString(), ...tag });
    const dropped = Object.entries(s.drops).filter(([, n]) => n > 0);
    // The connect-error line just said why the tunnel failed; say it once.
    const reason = s.closeReason.startsWith('connect-failed: ') ? 'connect-failed' : s.closeReason;
    out.info(
      `${c.cyan(s.id)} ${s.peer} closed (${reason}) after ${(s.durationMs / 1000).toFixed(1)}s: ` +
        `${s.rxDatagrams} dgrams/${s.rxBytes} B out, ${s.txDatagrams} dgrams/${s.txBytes} B back` +
        (dropped.length ? c.yellow(`, dropped ${dropped.map(([k, n]) => `${k}=${n}`).join(' ')}`) : ''),
    );
  });
  client.on('error', (err: Error) => out.error(err.message));
}

/** Renders a FailoverTransport's events (several proxies): a proxy marked down or back up, a session moved. */
export function attachFailoverOutput(transport: FailoverTransport, out: Output): void {
  const c = color();
  transport.on('proxy-down', (e: ProxyDownEvent) => {
    const message = e.error instanceof UdpTunnelError ? flagMessage(e.error) : e.error.message;
    const code = e.error instanceof UdpTunnelError ? e.error.code : undefined;
    out.event('proxy-down', { proxy: e.proxy, ...(code ? { code } : {}), message, failures: e.failures, retryInMs: e.retryInMs });
    out.warn(`proxy ${e.proxy} down, skipped for ${(e.retryInMs / 1000).toFixed(1)}s:`);
    for (const line of wrap(message, ERROR_LINE_WIDTH - 2)) out.warn(`  ${line}`);
  });
  transport.on('proxy-up', (e: { proxy: string }) => {
    out.event('proxy-up', { proxy: e.proxy });
    out.info(`proxy ${e.proxy} ${c.green('up')} again`);
  });
  transport.on('session-moved', (e: { session: string; from: string; to: string }) => {
    out.event('session-moved', e);
    out.info(`${c.cyan(e.session)} moved from ${e.from} to ${e.to}`);
  });
}

/** What connect reports once its local socket is bound. */
export interface ConnectListening {
  /** The forward's index when connect runs several. */
  forward?: number;
  address: AddressInfo;
  /** The (first) proxy URL with credentials redacted. */
  proxy: string;
  /** Every proxy URL, credentials redacted, in order. */
  proxies: string[];
  /** How sessions pick a proxy, when there are several. */
  strategy?: string;
  /** One line naming the proxy (or how many) and the target or POST path. */
  description: string;
  mode: ClientMode;
  /** The target as given (connect-udp mode). */
  target?: string;
  /** The request path (POST mode). */
  postPath?: string;
  /** The transport's name. */
  transport: string;
}

/** Renders connect's `listening` event and line. */
export function renderConnectListening(out: Output, l: ConnectListening): void {
  out.event('listening', {
    ...(l.forward !== undefined ? { forward: l.forward } : {}),
    protocol: 'udp',
    address: l.address.address,
    port: l.address.port,
    family: l.address.family,
    proxy: l.proxy,
    proxies: l.proxies,
    ...(l.strategy !== undefined ? { strategy: l.strategy } : {}),
    ...(l.mode === 'post' ? { postPath: l.postPath } : { target: l.target }),
    mode: l.mode,
    transport: l.transport,
  });
  const how = l.strategy !== undefined ? `${l.transport}, ${l.strategy}` : l.transport;
  out.info(`listening on udp ${color().bold(formatHostPort(l.address.address, l.address.port))} -> ${l.description} [${how}]`);
  if (l.proxies.length > 1) l.proxies.forEach((p, i) => out.info(`  proxy ${i + 1}: ${p}`));
  if (l.mode === 'post') out.info('POST mode is not RFC 9298: the proxy maps the path to its target');
}
