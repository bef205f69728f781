import { isIP } from 'node:net';
import { isValidHost, parsePort, type HostPort } from '../address.js';
import type { ProxyErrorType } from '../proxy-status.js';
import type { TemplateMatcher } from '../uri-template.js';

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
  /** HTTP/1.1: how many Host fields arrived (RFC 9112 §3.2: exactly one). */
  hostCount?: number;
  /** HTTP/1.1: whether the Connection field lists `upgrade` (RFC 9110 §7.8). */
  connectionUpgrade?: boolean;
  /** Content-Length or Transfer-Encoding present: not allowed with the capsule protocol (RFC 9297 §3.2). */
  framingHeaders?: boolean;
}

/** Which kind of tunnel a valid request asks for. */
export type TunnelMode = 'connect-udp' | 'post';

/** POST mode routes: request path -> fixed target (the request itself names no target). */
export type PostRoutes = ReadonlyMap<string, HostPort>;

/** Result of validating a request: the target, or the status and Proxy-Status error to answer with. */
export type RequestVerdict =
  | { ok: true; host: string; port: number; mode: TunnelMode; wildcard?: true }
  | { ok: false; status: number; error: ProxyErrorType; details: string; allow?: string };

/**
 * Validates a tunnel request in one linear pass and returns the decoded target, or the refusal status:
 * CONNECT-UDP over HTTP/2 (RFC 9298 §3.4) or HTTP/1.1 (RFC 9298 §3.2), or a POST to a configured route
 * (Envoy `use_post`; not RFC 9298). Strict about requests; the target policy is applied later, to resolved addresses.
 */
export function validateConnectUdpRequest(req: IncomingTunnelRequest, matcher: TemplateMatcher, postRoutes: PostRoutes = new Map()): RequestVerdict {
  const refuse = (status: number, error: ProxyErrorType, details: string, allow?: string): RequestVerdict =>
    allow === undefined ? { ok: false, status, error, details } : { ok: false, status, error, details, allow };
  const allowed = postRoutes.size > 0 ? (req.httpVersion === 2 ? 'CONNECT, POST' : 'GET') : req.httpVersion === 2 ? 'CONNECT' : 'GET';
  if (req.httpVersion === 2) {
    if (req.method === 'POST' && req.protocol === undefined) {
      if (postRoutes.size === 0) return refuse(405, 'http_request_error', 'POST mode is not enabled on this proxy', allowed);
      if (!req.path) return refuse(400, 'http_request_error', 'missing :path');
      // RFC 9297 §3.2: capsule-protocol bodies carry no Content-Length.
      if (req.framingHeaders) return refuse(400, 'http_request_error', 'content-length is not allowed on a capsule stream');
      const route = postRoutes.get(req.path);
      if (route === undefined) return refuse(404, 'http_request_error', 'no POST route for this path');
      return { ok: true, host: route.host, port: route.port, mode: 'post' };
    }
    // RFC 9298 §3.4 / RFC 8441 §4: extended CONNECT with :protocol connect-udp.
    if (req.method !== 'CONNECT') return refuse(405, 'http_request_error', `method ${req.method} not allowed`, allowed);
    if (req.protocol === undefined) return refuse(501, 'http_request_error', 'CONNECT without :protocol (plain TCP CONNECT) is not supported');
    if (req.protocol !== 'connect-udp') return refuse(501, 'http_request_error', `unsupported :protocol ${req.protocol}`);
    if (!req.scheme || !req.path || !req.authority) return refuse(400, 'http_request_error', 'missing :scheme, :path or :authority');
  } else {
    // RFC 9298 §3.2: GET with Upgrade: connect-udp; POST mode is HTTP/2 only.
    if (req.method === 'POST' && req.path !== undefined && postRoutes.has(req.path)) {
      return refuse(400, 'http_request_error', 'POST mode needs HTTP/2');
    }
    if (req.method !== 'GET') return refuse(405, 'http_request_error', `method ${req.method} not allowed`, allowed);
    // RFC 9112 §3.2: a request with no Host or more than one Host gets 400.
    if (req.hostCount !== undefined && req.hostCount !== 1) return refuse(400, 'http_request_error', `expected one Host field, got ${req.hostCount}`);
    if (req.protocol?.toLowerCase() !== 'connect-udp') return refuse(400, 'http_request_error', 'missing Upgrade: connect-udp');
    if (req.connectionUpgrade === false) return refuse(400, 'http_request_error', 'missing Connection: Upgrade');
    if (!req.path || !req.authority) return refuse(400, 'http_request_error', 'missing request target or Host');
  }
  // RFC 9297 §3.2: the capsule protocol cannot be used with Content-Length or Transfer-Encoding.
  if (req.framingHeaders) return refuse(400, 'http_request_error', 'content-length or transfer-encoding is not allowed on a capsule stream');
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
  // Bind draft §3: `*` for both variables asks for bound UDP proxying without a target; only one of them is malformed.
  if (host === '*' || portText === '*') {
    if (host === '*' && portText === '*') return { ok: true, host: '*', port: 0, mode: 'connect-udp', wildcard: true };
    return refuse(400, 'http_request_error', 'target_host and target_port must both be * or neither (draft-ietf-masque-connect-udp-listen §3)');
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const percent = host.indexOf('%');
  if (percent >= 0) return refuse(400, 'http_request_error', percentInHost(host, percent));
  if (host === '' || !isValidHost(host)) return refuse(400, 'http_request_error', 'invalid target_host');
  if (isIP(host) === 0 && host.includes(':')) return refuse(400, 'http_request_error', 'invalid target_host');
  // RFC 9298 §2: target_port is digits only, 1..65535.
  const port = parsePort(portText);
  if (port < 0) return refuse(400, 'http_request_error', 'invalid target_port');
  return { ok: true, host, port, mode: 'connect-udp' };
}

/**
 * Says why a decoded target host that still holds '%' is refused. RFC 9298 §2 forbids zone identifiers, and the
 * proxy decodes exactly once, so a '%' followed by two hex digits means the client encoded the host twice
 * (e.g. `%253A` for ':', a known client bug) rather than naming a zone.
 */
function percentInHost(host: string, percent: number): string {
  if (isIP(host.slice(0, percent)) === 6) return 'IPv6 zone identifiers are not allowed in target_host';
  if (/%[0-9A-Fa-f]{2}/.test(host)) return "target_host is percent-encoded twice: it still holds '%XX' after decoding; encode it once";
  return "'%' is not allowed in target_host after decoding";
}
