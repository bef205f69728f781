import { SERVER_DEFAULTS } from '../tunnel/defaults.js';
import type { TunnelServer, TunnelServerUpdate } from '../tunnel/server/tunnel-server.js';
import { describeError } from './errors.js';
import { reresolveConfig } from './options/resolve.js';
import type { Output } from './output.js';
import { SERVE_SCHEMA, type ServeOptions } from './schemas/serve.js';
import { buildServeSettings, digestOf, readServeMaterial, resolvedOf, type ServeSettings, type ServeState } from './serve-settings.js';

// SIGHUP re-reads the config file, the token file and the TLS files, builds new settings and hands them to the
// running server (TunnelServer#update): requests that come afterwards see them, sessions already open go on.

/**
 * Options whose new value a reload cannot apply: the listening socket, the process layout, the output, and what the
 * server fixes when it starts (connection timeouts, the HTTP/2 window, the failed-authentication table, DNS).
 * A reload keeps their running values and names them in `restartNeeded`.
 */
export const RESTART_OPTIONS: readonly (keyof ServeOptions)[] = [
  'listen',
  'workers',
  'self-signed',
  'keylog',
  'auth-failure-burst',
  'auth-failure-rate',
  'max-auth-failure-entries',
  'dns-server',
  'dns-timeout',
  'header-timeout',
  'connection-idle-timeout',
  'max-connections',
  'max-header-size',
  'max-stream-buffer',
  'bind-address',
  'bind-ports',
  'public-address',
  'json',
  'verbose',
  'quiet',
  'color',
  'inspect',
  'record',
];

/** A checked reload: the state to run from now on and what it changes. */
export interface ReloadPlan {
  next: ServeState;
  settings: ServeSettings;
  /** Options (and files) whose new values apply to new requests. */
  changed: string[];
  /** Options whose change was not applied (see RESTART_OPTIONS). */
  restartNeeded: string[];
  /** The certificate, key or client CA changed: new handshakes need the new context. */
  tlsChanged: boolean;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Reads everything again and checks it; throws (UsageError for a bad option or file) and changes nothing. */
export async function planReload(current: ServeState): Promise<ReloadPlan> {
  const r = await reresolveConfig(SERVE_SCHEMA, resolvedOf(current));
  const values = { ...r.values } as Record<string, unknown>;
  const sources = { ...r.sources };
  const was = current.values as unknown as Record<string, unknown>;
  const keep = (name: string): void => {
    values[name] = was[name];
    const s = current.sources[name];
    if (s === undefined) delete sources[name];
    else sources[name] = s;
  };
  const restartNeeded: string[] = RESTART_OPTIONS.filter((k) => !same(was[k], values[k]));
  for (const k of restartNeeded) keep(k);
  const tlsNow = Boolean(values['cert'] || values['self-signed']);
  if (Boolean(current.material.tls) !== tlsNow) {
    // Turning TLS on or off changes what the port speaks.
    for (const k of ['cert', 'key', 'client-ca']) if (!same(was[k], values[k])) restartNeeded.push(k);
    for (const k of ['cert', 'key', 'client-ca']) keep(k);
  } else if (tlsNow && Boolean(was['client-ca']) !== Boolean(values['client-ca'])) {
    restartNeeded.push('client-ca');
    keep('client-ca');
  }
  const nextValues = values as unknown as ServeOptions;
  const material = await readServeMaterial(nextValues, current.material);
  const next: ServeState = { values: nextValues, sources, ...(r.configFile !== undefined ? { configFile: r.configFile } : {}), material };
  const settings = await buildServeSettings(next);
  const changed = SERVE_SCHEMA.options.map((o) => o.name).filter((k) => !restartNeeded.includes(k) && !same(was[k], values[k]));
  const old = current.material;
  const note = (name: string, differs: boolean): void => {
    if (differs && !changed.includes(name)) changed.push(name);
  };
  note('token-file', digestOf(...old.fileTokens) !== digestOf(...material.fileTokens));
  note('cert', digestOf(old.tls?.cert) !== digestOf(material.tls?.cert));
  note('key', digestOf(old.tls?.key) !== digestOf(material.tls?.key));
  note('client-ca', digestOf(old.tls?.ca) !== digestOf(material.tls?.ca));
  const tlsChanged = Boolean(old.tls && material.tls) && digestOf(old.tls?.cert, old.tls?.key, old.tls?.ca) !== digestOf(material.tls?.cert, material.tls?.key, material.tls?.ca);
  return { next, settings, changed, restartNeeded, tlsChanged };
}

/** The TunnelServer#update that puts `settings` in place. */
export function serverUpdate(settings: ServeSettings, tlsChanged: boolean): TunnelServerUpdate {
  const s = settings.server;
  return {
    policy: s.policy,
    authenticator: s.authenticator!,
    postRoutes: settings.postRoutes,
    template: s.template ?? SERVER_DEFAULTS.template,
    idleTimeoutMs: s.idleTimeoutMs!,
    maxCapsuleLength: s.maxCapsuleLength!,
    maxDatagram: s.maxDatagram!,
    maxUdpSendQueue: s.maxUdpSendQueue!,
    maxSessions: s.maxSessions!,
    maxSessionsPerConnection: s.maxSessionsPerConnection!,
    maxStreamsPerConnection: s.maxStreamsPerConnection!,
    maxSessionsPerClient: s.maxSessionsPerClient!,
    maxAuthFailuresPerConnection: s.maxAuthFailuresPerConnection!,
    allowBind: s.allowBind ?? false,
    ...(s.allowBind ? { maxBindContexts: s.maxBindContexts!, maxBindResponses: s.maxBindResponses!, maxBoundPorts: s.maxBoundPorts!, maxBoundPortsPerClient: s.maxBoundPortsPerClient! } : {}),
    ...(tlsChanged && settings.tls ? { tls: settings.tls } : {}),
  };
}

/** Reports a reload that went through: a `reload` event, an info line, and a warning for what needs a restart. */
export function reportReload(out: Output, plan: Pick<ReloadPlan, 'changed' | 'restartNeeded' | 'settings'>, extra: Record<string, unknown> = {}): void {
  const cert = plan.changed.includes('cert') ? plan.settings.certInfo : undefined;
  out.event('reload', {
    changed: plan.changed,
    restartNeeded: plan.restartNeeded,
    auth: plan.settings.auth.enabled ? plan.settings.auth.schemes : [],
    policy: plan.settings.policy.describe(),
    ...(cert ? { tls: cert } : {}),
    ...extra,
  });
  out.info(plan.changed.length > 0 ? `reloaded: new requests use the new ${plan.changed.map((k) => `--${k}`).join(', ')}` : 'reloaded: nothing changed');
  if (cert) out.info(`new certificate pin (connect --pin) ${cert.pin}`);
  if (plan.restartNeeded.length > 0) {
    out.warn(`not applied until a restart: ${plan.restartNeeded.map((k) => `--${k}`).join(', ')} (the running values stay)`);
  }
}

/** Reports a refused reload: a `reload-failed` event and an error line; the running settings stay. */
export function reportReloadFailed(out: Output, message: string, extra: Record<string, unknown> = {}): void {
  out.event('reload-failed', { message, ...extra });
  out.error(`reload refused, the running settings stay: ${message}`);
}

/** The message of a reload failure, with library option names turned into flags. */
export function reloadError(err: unknown): string {
  return describeError(err).message;
}

/**
 * Reloads on SIGHUP, one reload at a time (a SIGHUP during a reload runs another one after it). `apply` puts a
 * checked plan in place; it is awaited before the next reload starts. Returns the function that stops listening.
 */
export function onReloadSignal(run: () => Promise<void>): () => void {
  let chain = Promise.resolve();
  const onHup = (): void => {
    chain = chain.then(run, run);
  };
  process.on('SIGHUP', onHup);
  return () => process.off('SIGHUP', onHup);
}

/** Reloads a single-process serve: plans, applies to `server`, reports. Returns the state to keep. */
export async function reloadServer(server: TunnelServer, current: ServeState, out: Output): Promise<ServeState> {
  let plan: ReloadPlan;
  try {
    plan = await planReload(current);
    server.update(serverUpdate(plan.settings, plan.tlsChanged));
  } catch (err) {
    reportReloadFailed(out, reloadError(err));
    return current;
  }
  reportReload(out, plan);
  return plan.next;
}
