import type { AddressInfo } from 'node:net';
import { formatHostPort } from '../../tunnel/address.js';
import type { ClientSessionStats, TunnelClient } from '../../tunnel/client.js';
import type { ClientMode } from '../../tunnel/client-config.js';
import { UdpTunnelError } from '../../tunnel/errors.js';
import { color } from '../color.js';
import { flagMessage } from '../errors.js';
import type { Output } from '../output.js';

/** Renders client events as NDJSON or human log lines. */
export function attachClientOutput(client: TunnelClient, out: Output): void {
  const c = color();
  client.on('session-open', (e: { id: string; peer: string }) => {
    out.event('session-open', e);
    out.debug(`${c.cyan(e.id)} ${e.peer} new session`);
  });
  client.on('session-ready', (e: { id: string; peer: string; attempts: number; transport: string }) => {
    out.event('session-ready', e);
    out.info(`${c.cyan(e.id)} ${e.peer} tunnel ready${e.attempts > 1 ? ` after ${e.attempts} attempts` : ''}`);
  });
  client.on('connect-error', (e: { id: string; error: Error & { code?: string }; attempt: number; willRetry: boolean }) => {
    // Library messages name options by their library names; a CLI user reads flags.
    const message = e.error instanceof UdpTunnelError ? flagMessage(e.error) : e.error.message;
    out.event('connect-error', { id: e.id, code: e.error.code, message, attempt: e.attempt, willRetry: e.willRetry });
    if (out.json) return;
    if (e.willRetry) out.info(`${c.cyan(e.id)} attempt ${e.attempt} failed: ${message}; retrying`);
    else out.error(`${e.id}: ${message}`);
  });
  client.on('session-close', (s: ClientSessionStats) => {
    // Wall-clock instants are ISO 8601 in every event (`...At`), like `time`; the stats keep epoch ms.
    out.event('session-close', { ...s, openedAt: new Date(s.openedAt).toISOString() });
    const dropped = Object.entries(s.drops).filter(([, n]) => n > 0);
    out.info(
      `${c.cyan(s.id)} ${s.peer} closed (${s.closeReason}) after ${(s.durationMs / 1000).toFixed(1)}s: ` +
        `${s.rxDatagrams} dgrams/${s.rxBytes} B out, ${s.txDatagrams} dgrams/${s.txBytes} B back` +
        (dropped.length ? c.yellow(`, dropped ${dropped.map(([k, n]) => `${k}=${n}`).join(' ')}`) : ''),
    );
  });
  client.on('error', (err: Error) => out.error(err.message));
}

/** What connect reports once its local socket is bound. */
export interface ConnectListening {
  address: AddressInfo;
  /** The proxy URL with credentials redacted. */
  proxy: string;
  /** One line naming the proxy and the target or POST path. */
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
    protocol: 'udp',
    address: l.address.address,
    port: l.address.port,
    family: l.address.family,
    proxy: l.proxy,
    ...(l.mode === 'post' ? { postPath: l.postPath } : { target: l.target }),
    mode: l.mode,
    transport: l.transport,
  });
  out.info(`listening on udp ${color().bold(formatHostPort(l.address.address, l.address.port))} -> ${l.description} [${l.transport}]`);
  if (l.mode === 'post') out.info('POST mode is not RFC 9298: the proxy maps the path to its target');
}
