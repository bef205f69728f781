import type { AddressInfo } from 'node:net';
import { formatHostPort, type HostPort } from '../../tunnel/address.js';
import type { LocalResourceEvent } from '../../tunnel/local-resource.js';
import type { PolicySummary } from '../../tunnel/policy.js';
import type { RefusedEvent, ServerSessionStats, TunnelServer } from '../../tunnel/server/tunnel-server.js';
import { color } from '../color.js';
import { LogThrottle } from '../log-throttle.js';
import type { Output } from '../output.js';

/** Running short of descriptors fails every request until some free up: log it at most once per this interval. */
export const LOCAL_RESOURCE_LOG_INTERVAL_MS = 10_000;

/**
 * The log line of a refusal. A request refused on its way to a target names the target (and the address the policy
 * judged, for a name) and the rule that decided; the details sent to the client follow when no rule says it.
 */
export function refusedLine(e: RefusedEvent): string {
  const what = `refused ${e.status ?? e.reset ?? `connection (GOAWAY ${e.goaway})`} ${e.error} for ${e.client}`;
  if (e.target === undefined) return `${what}: ${e.details}`;
  const to = `${what} -> ${e.target}${e.resolved !== undefined ? ` (${e.resolved})` : ''}`;
  return e.rule !== undefined ? `${to}: ${e.rule}` : `${to}: ${e.details}`;
}

/** Renders server events as NDJSON or human log lines. */
export function attachServerOutput(server: TunnelServer, out: Output): void {
  const c = color();
  const localResource = new LogThrottle(LOCAL_RESOURCE_LOG_INTERVAL_MS);
  server.on('session-open', (e: { id: string; client: string; target: string; resolved: string; transport: string; bound?: string }) => {
    out.event('session-open', e);
    if (e.bound !== undefined) {
      const zero = e.target === '*' ? '' : `, context 0 -> ${e.target}`;
      out.info(`${c.magenta(e.id)} ${e.client} bound ${c.bold(e.bound)}${zero} [${e.transport}]`);
      return;
    }
    out.info(`${c.magenta(e.id)} ${e.client} -> ${e.target}${e.resolved !== e.target.replace(/:\d+$/, '') ? ` (${e.resolved})` : ''} [${e.transport}]`);
  });
  server.on('session-close', (s: ServerSessionStats) => {
    // Wall-clock instants are ISO 8601 in every event (`...At`), like `time`; the stats keep epoch ms.
    out.event('session-close', { ...s, openedAt: new Date(s.openedAt).toISOString() });
    const drops = s.dropBackpressure + s.dropContextId + s.dropUdpSend + s.dropSendQueue + s.dropOversize;
    out.info(
      `${c.magenta(s.id)} closed (${s.closeReason}) after ${(s.durationMs / 1000).toFixed(1)}s: ` +
        `${s.rxDatagrams} dgrams/${s.rxBytes} B in, ${s.txDatagrams} dgrams/${s.txBytes} B out` +
        (drops > 0
          ? c.yellow(`, dropped backpressure=${s.dropBackpressure} oversize=${s.dropOversize} contextId=${s.dropContextId} udpSend=${s.dropUdpSend} sendQueue=${s.dropSendQueue}`)
          : '') +
        (s.targetUnreachable > 0 ? c.yellow(`, target unreachable (ICMP) ${s.targetUnreachable} times`) : ''),
    );
  });
  server.on('refused', (e: RefusedEvent) => {
    out.event('refused', { ...e });
    out.info(c.yellow(refusedLine(e)));
  });
  server.on('local-resource-error', (e: LocalResourceEvent) => {
    const suppressed = localResource.take();
    if (suppressed === null) return;
    const total = server.counters.localResourceErrors;
    out.event('local-resource-error', { ...e, suppressed, total });
    const what = e.status === null ? 'a client connection was lost on accept' : `refused a request from ${e.client} with ${e.status}`;
    const since = suppressed > 0 ? `; ${suppressed} more since the last report` : '';
    out.warn(
      `out of local resources (${e.syscall} ${e.code}): ${what}${since} (${total} in all; ` +
        `further ones within ${LOCAL_RESOURCE_LOG_INTERVAL_MS / 1000} s are only counted)`,
    );
  });
  server.on('error', (err: Error) => out.error(err.message));
}

/** What serve reports once it listens. */
export interface ServeListening {
  address: AddressInfo;
  tls: boolean;
  /** Client certificates are required. */
  mtls: boolean;
  /** Accepted authentication schemes (empty: none required). */
  auth: readonly string[];
  postRoutes: ReadonlyMap<string, HostPort>;
  certificate?: { selfSigned: boolean; fingerprint256: string; pin: string };
  /** The target policy's rules, one line each (the JSON `policy` field). */
  policy: string[];
  /** The target policy as data, for the human startup lines. */
  policySummary: PolicySummary;
  warnings: string[];
  /** `serve --workers N`: the worker processes sharing the listener. */
  workers?: { count: number; pids: number[] };
  /** `serve --allow-bind`: where bound ports are taken. */
  bind?: { address: string; ports: string; public?: string };
}

/** Renders serve's `listening` event, its certificate pin, POST routes and warnings. */
export function renderServeListening(out: Output, l: ServeListening): void {
  const c = color();
  const scheme = l.tls ? 'https' : 'http';
  const protocols = l.tls ? ['h2', 'http/1.1'] : ['h2c', 'http/1.1'];
  const url = `${scheme}://${formatHostPort(l.address.address, l.address.port)}`;
  out.event('listening', {
    protocol: l.tls ? 'h2' : 'h2c',
    protocols,
    address: l.address.address,
    port: l.address.port,
    family: l.address.family,
    url,
    auth: l.auth,
    mtls: l.mtls,
    postRoutes: [...l.postRoutes.keys()],
    ...(l.certificate ? { tls: l.certificate } : {}),
    policy: l.policy,
    ...(l.workers ? { workers: l.workers.count, workerPids: l.workers.pids } : {}),
    ...(l.bind ? { bind: l.bind } : {}),
  });
  out.info(`serving CONNECT-UDP on ${c.bold(url)} (${protocols.join(', ')})`);
  // Up to 8 pids fit the line within 100 columns; the JSON event always lists them all.
  if (l.workers) out.info(`${l.workers.count} worker processes share the port${l.workers.pids.length <= 8 ? ` (pids ${l.workers.pids.join(', ')})` : ''}`);
  const cert = l.certificate;
  if (cert) {
    // The fingerprint alone is 95 columns: it goes on lines of its own, 16 bytes each, to stay within 100 columns.
    out.info(`${cert.selfSigned ? 'self-signed cert' : 'certificate'} pin (connect --pin) ${c.bold(cert.pin)}`);
    const bytes = cert.fingerprint256.split(':');
    for (let i = 0; i < bytes.length; i += 16) out.info(`${i === 0 ? 'SHA-256 fingerprint' : ' '.repeat(19)} ${bytes.slice(i, i + 16).join(':')}`);
  }
  for (const [path, t] of l.postRoutes) out.info(`POST ${path} -> ${formatHostPort(t.host, t.port)} (POST mode, not RFC 9298)`);
  if (l.bind) {
    const pub = l.bind.public !== undefined ? `, announced as ${l.bind.public}` : '';
    out.info(`bind: bound requests get a UDP port on ${l.bind.address} (ports ${l.bind.ports}${pub})`);
  }
  for (const line of policyLines(l.policySummary)) out.info(line);
  for (const warning of l.warnings) {
    // A warning may come in lines, each of which fits 100 columns; the JSON message is one sentence.
    for (const line of warning.split('\n')) out.warn(c.bold(line));
    out.event('warning', { message: warning.split('\n').join('; ') });
  }
  out.debug(`target policy: ${l.policy.join('; ')}`);
}

/** Columns a startup line may use after the time prefix (`   0.050 `), so human output fits 100 columns. */
const POLICY_LINE_WIDTH = 91;

/** serve's human startup lines about the target policy: deny rules, allow rules, the default, the guarded classes. */
export function policyLines(p: PolicySummary): string[] {
  const lines: string[] = [];
  const list = (label: string, items: string[]): void => {
    const chunks: string[] = [];
    let line = '';
    for (const item of items) {
      if (line !== '' && label.length + line.length + item.length + 3 > POLICY_LINE_WIDTH) {
        chunks.push(`${line},`);
        line = item;
      } else {
        line = line === '' ? item : `${line}, ${item}`;
      }
    }
    if (line !== '') chunks.push(line);
    chunks.forEach((chunk, i) => lines.push(`${i === 0 ? label : ' '.repeat(label.length)}${chunk}`));
  };
  list('policy: deny  ', p.deny);
  list('policy: allow ', p.allow);
  lines.push(
    p.default === 'loopback-only'
      ? 'policy: default: loopback targets only (127.0.0.0/8, ::1); everything else is refused'
      : 'policy: default: every target no allow rule matches is refused',
  );
  if (p.default === 'deny') list('policy: guarded: ', [...p.guarded, ...(p.ownAddresses.length > 0 ? ['own addresses'] : [])]);
  return lines;
}
