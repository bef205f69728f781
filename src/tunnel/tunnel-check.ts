import diagnosticsChannel from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { PROXY_CONFIG_DEFAULTS, buildTransport, clientAuthorization, parseProxyUrl, redactProxyUrl, targetPath, type ClientMode, type ProxyConfig } from './client-config.js';
import { TAP_CHANNEL_NAME, type TapMessage } from './diagnostics.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { explainFailure, type CheckProblem } from './failure-hint.js';
import { parseProxyStatus as parseProxyStatusList, type SfBareItem } from './proxy-status.js';

/** One member of a Proxy-Status field (RFC 9209 §2): the intermediary that wrote it and its parameters. */
export interface ProxyStatusEntry {
  /** The intermediary's name (an sf-token or sf-string). */
  proxy: string;
  /** RFC 9209 §2.1.1 `error`: the error type (§2.3), e.g. `destination_ip_prohibited`. */
  error?: string;
  /** RFC 9209 §2.1.5 `details`: free text for humans. */
  details?: string;
  /** Every parameter as received. */
  params: Record<string, SfBareItem>;
}

/** A Proxy-Status field as the check reports it, with the raw value kept for display. */
export interface ParsedProxyStatus {
  /** The field as received; several field lines joined with ", " (RFC 9110 §5.3). */
  raw: string;
  /** The members, first the intermediary nearest the origin (RFC 9209 §2); empty when the field does not parse. */
  entries: ProxyStatusEntry[];
  /** False when the value is not a valid sf-list (RFC 8941 §4.2: the whole field is then ignored). */
  valid: boolean;
}

/** Reads a Proxy-Status field for the check's report; undefined when the response has none. Never throws. */
export function proxyStatusEntries(value: string | string[] | undefined): ParsedProxyStatus | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value.join(', ') : value;
  const parsed = parseProxyStatusList(raw);
  if (!parsed.ok) return { raw, entries: [], valid: false };
  const entries = parsed.members.map((m) => {
    const e: ProxyStatusEntry = { proxy: m.proxy, params: m.params };
    if (typeof m.params['error'] === 'string') e.error = m.params['error'];
    if (typeof m.params['details'] === 'string') e.details = m.params['details'];
    return e;
  });
  return { raw, entries, valid: true };
}
import { probeProxy, type ProbeOptions, type ProxyProbeResult } from './proxy-probe.js';
import type { TunnelHandle } from './transport/types.js';

/** What checkTunnel found out. */
export interface TunnelCheckResult {
  /** The tunnel was established: a 2xx (HTTP/2) or 101 (HTTP/1.1) that keeps the stream open. */
  ok: boolean;
  /** The proxy URL as given, credentials redacted. */
  proxy: string;
  mode: ClientMode;
  /** The transport's name: `h2`, `h1` or `post`. */
  transport: string;
  /** What was asked for: the method and the request path (the expanded URI template, or the POST path). */
  request: { method: string; path: string };
  /** The probe that ran first; when it could not reach the proxy, no request was sent. */
  probe: ProxyProbeResult;
  /** The response status, when a response came. */
  status?: number;
  /** The response's Proxy-Status field, parsed (RFC 9209 §2). */
  proxyStatus?: ParsedProxyStatus;
  /** The response header fields as received (HTTP/2 with `:status`). */
  headers?: Record<string, string | string[]>;
  /** From the start of the request (connection setup included) to the response head. */
  responseMs?: number;
  /** The whole check, probe included. */
  elapsedMs: number;
  error?: UdpTunnelError;
  problem?: CheckProblem;
  /** What to try; names library options (see `hintOptions`). */
  hint?: string;
  hintOptions?: string[];
}

// Probe failures after which the same connection attempt by the transport would fail the same way.
const PROBE_IS_FINAL: ReadonlySet<CheckProblem> = new Set(['connection-refused', 'unreachable', 'scheme-mismatch', 'tls', 'timeout', 'aborted']);

function plainHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? [...v] : String(v);
  return out;
}

/**
 * Runs probeProxy, then opens one tunnel to the configured target with the real transport (CONNECT-UDP over HTTP/2 or
 * HTTP/1.1, or a POST), records the answer (status, Proxy-Status, headers, time to the response) and closes the
 * tunnel and its connections again. Resolves with a verdict; rejects only for an invalid `config`.
 */
export async function checkTunnel(config: ProxyConfig, opts: ProbeOptions = {}): Promise<TunnelCheckResult> {
  const started = performance.now();
  const transport = buildTransport(config);
  const { url, template } = parseProxyUrl(config.proxy, config.template);
  const sentCredentials = clientAuthorization(url, config.token) !== undefined;
  url.username = '';
  url.password = '';
  const mode = config.mode ?? PROXY_CONFIG_DEFAULTS.mode;
  const http = config.http ?? PROXY_CONFIG_DEFAULTS.http;
  const request =
    mode === 'post'
      ? { method: 'POST', path: config.postPath ?? PROXY_CONFIG_DEFAULTS.postPath }
      : { method: http === '2' ? 'CONNECT' : 'GET', path: targetPath(template, config.target!) };
  const result: TunnelCheckResult = {
    ok: false,
    proxy: redactProxyUrl(config.proxy),
    mode,
    transport: transport.name,
    request,
    probe: await probeProxy(config, opts),
    elapsedMs: 0,
  };
  const fail = (error: UdpTunnelError, problem: CheckProblem, hint: string, hintOptions: string[]): void => {
    Object.assign(result, { error, problem, hint, hintOptions });
  };
  const p = result.probe;
  if (!p.ok && p.error && p.problem && PROBE_IS_FINAL.has(p.problem)) {
    fail(p.error, p.problem, p.hint ?? '', p.hintOptions ?? []);
    await transport.close();
    result.elapsedMs = Math.round(performance.now() - started);
    return result;
  }
  // The transport reports its response on the tap channel (diagnostics.ts), refusals included; the check listens
  // there for its own session only.
  const session = `check-${randomUUID()}`;
  const requestStarted = performance.now();
  const onTap = (message: unknown): void => {
    const m = message as TapMessage;
    if (m.kind !== 'response' || m.session !== session) return;
    result.responseMs = Math.round(performance.now() - requestStarted);
    result.status = m.status;
    result.headers = plainHeaders(m.headers);
  };
  diagnosticsChannel.subscribe(TAP_CHANNEL_NAME, onTap);
  const controller = new AbortController();
  const onAbort = (): void => controller.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let handle: TunnelHandle | undefined;
  try {
    handle = await transport.open(session, controller.signal);
    result.ok = true;
    if (result.headers === undefined) result.headers = plainHeaders(handle.responseHeaders);
  } catch (err) {
    const error = err instanceof UdpTunnelError ? err : new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, String((err as Error)?.message ?? err), {}, { cause: err });
    const proxyStatus = result.headers ? proxyStatusEntries(result.headers['proxy-status']) : undefined;
    const why = explainFailure(error, url, sentCredentials, proxyStatus?.entries[0]?.error);
    fail(error, why.problem, why.hint, why.hintOptions);
  } finally {
    diagnosticsChannel.unsubscribe(TAP_CHANNEL_NAME, onTap);
    opts.signal?.removeEventListener('abort', onAbort);
    handle?.abort('close');
    await transport.close();
  }
  const proxyStatus = result.headers ? proxyStatusEntries(result.headers['proxy-status']) : undefined;
  if (proxyStatus) result.proxyStatus = proxyStatus;
  result.elapsedMs = Math.round(performance.now() - started);
  return result;
}
