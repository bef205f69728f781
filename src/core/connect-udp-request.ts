import { isIP } from 'node:net';
import { isValidHost, parsePort } from './address.js';
import type { ProxyErrorType } from './proxy-status.js';
import type { TemplateMatcher } from './uri-template.js';

/** The parts of an incoming request that decide whether it is a CONNECT-UDP request. */
export interface IncomingTunnelRequest {
  /** 1.1 or 2. */
  httpVersion: 1 | 2;
  method: string;
  /** `:protocol` (HTTP/2) or the Upgrade token (HTTP/1.1). */
  protocol: string | undefined;
  path: string | undefined;
  authority: string | undefined;
  scheme?: string | undefined;
  /** Raw Capsule-Protocol header value(s). */
  capsuleProtocol: string | string[] | undefined;
}

/** Result of validating a request: the target, or the status and Proxy-Status error to answer with. */
export type RequestVerdict =
  | { ok: true; host: string; port: number }
  | { ok: false; status: number; error: ProxyErrorType; details: string; allow?: string };

/**
 * Parses a Capsule-Protocol header (RFC 9297 §3.4): a structured-field boolean; `?1` is true; `?0`, absent,
 * non-boolean or more than one field value means not in use. Parameters are ignored.
 */
export function capsuleProtocolEnabled(value: string | string[] | undefined): boolean {
  if (value === undefined) return false;
  if (Array.isArray(value)) {
    if (value.length !== 1) return false;
    value = value[0]!;
  }
  const item = value.trim().split(';')[0]!.trim();
  return item === '?1';
}

/**
 * Validates a CONNECT-UDP request (RFC 9298 §3) in one linear pass and returns the decoded target,
 * or the refusal status. Strict about requests; the target policy is applied later, to resolved addresses.
 */
export function validateConnectUdpRequest(req: IncomingTunnelRequest, matcher: TemplateMatcher): RequestVerdict {
  const refuse = (status: number, error: ProxyErrorType, details: string, allow?: string): RequestVerdict =>
    allow === undefined ? { ok: false, status, error, details } : { ok: false, status, error, details, allow };
  if (req.httpVersion === 2) {
    // RFC 9298 §3.4 / RFC 8441 §4: extended CONNECT with :protocol connect-udp.
    if (req.method !== 'CONNECT') return refuse(405, 'http_request_error', `method ${req.method} not allowed`, 'CONNECT');
    if (req.protocol === undefined) return refuse(501, 'http_request_error', 'CONNECT without :protocol (plain TCP CONNECT) is not supported');
    if (req.protocol !== 'connect-udp') return refuse(501, 'http_request_error', `unsupported :protocol ${req.protocol}`);
    if (!req.scheme || !req.path || !req.authority) return refuse(400, 'http_request_error', 'missing :scheme, :path or :authority');
  } else {
    // RFC 9298 §3.2: GET with Upgrade: connect-udp.
    if (req.method !== 'GET') return refuse(405, 'http_request_error', `method ${req.method} not allowed`, 'GET');
    if (req.protocol?.toLowerCase() !== 'connect-udp') return refuse(400, 'http_request_error', 'missing Upgrade: connect-udp');
    if (!req.path || !req.authority) return refuse(400, 'http_request_error', 'missing request target or Host');
  }
  const vars = matcher.match(req.path);
  if (vars === null) return refuse(404, 'http_request_error', 'path does not match the URI template');
  const rawHost = vars['target_host'];
  const rawPort = vars['target_port'];
  if (rawHost === undefined || rawPort === undefined) return refuse(400, 'http_request_error', 'target_host or target_port missing');
  let host: string;
  let portText: string;
  try {
    // RFC 9298 §2: the proxy percent-decodes the template variables.
    host = decodeURIComponent(rawHost);
    portText = decodeURIComponent(rawPort);
  } catch {
    return refuse(400, 'http_request_error', 'bad percent-encoding in target');
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.includes('%')) return refuse(400, 'http_request_error', 'IPv6 zone identifiers are not allowed (RFC 9298 §2)');
  if (host === '' || !isValidHost(host)) return refuse(400, 'http_request_error', 'invalid target_host');
  if (isIP(host) === 0 && host.includes(':')) return refuse(400, 'http_request_error', 'invalid target_host');
  // RFC 9298 §2: target_port is digits only, 1..65535.
  const port = parsePort(portText);
  if (port < 0) return refuse(400, 'http_request_error', 'invalid target_port');
  return { ok: true, host, port };
}
