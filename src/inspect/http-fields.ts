import { isIPv6 } from 'node:net';
import type { HeaderList, HttpVersion, MasqueTarget, RequestEvent, ResponseEvent } from './events.js';

const TEMPLATE_PREFIX = '/.well-known/masque/udp/';

/** Converts Node's flat `rawHeaders` ([name, value, name, value, ...], HTTP/1.1 and HTTP/2 alike) to a HeaderList. */
export function headerListFromRaw(raw: readonly string[]): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/**
 * Converts a Node header object (IncomingHttpHeaders / OutgoingHttpHeaders) to a HeaderList: one pair per value,
 * in the object's key order; numbers (such as `:status`) become strings and undefined values are left out.
 */
export function headerListFromObject(headers: Readonly<Record<string, unknown>>): HeaderList {
  const out: HeaderList = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) for (const v of value) out.push([name, String(v)]);
    else out.push([name, String(value)]);
  }
  return out;
}

/** Values of every field named `name` (case-insensitive), in order. */
export function fieldValues(headers: HeaderList, name: string): string[] {
  const lower = name.toLowerCase();
  const out: string[] = [];
  for (const [n, v] of headers) if (n.toLowerCase() === lower) out.push(v);
  return out;
}

/** The only value of a field, or null when absent (several values are joined with ', ' as RFC 9110 §5.3 allows). */
function joinedField(headers: HeaderList, name: string): string | null {
  const values = fieldValues(headers, name);
  return values.length === 0 ? null : values.join(', ');
}

/**
 * Decodes the target of a path that matches the RFC 9298 default template `/.well-known/masque/udp/{host}/{port}/`
 * (a query string is ignored). The host is percent-decoded exactly once (RFC 9298 §2), so a double-encoded IPv6
 * host stays visibly encoded (`2001%3Adb8..`). Returns null for any other path, a bad port, or a bad escape.
 */
export function parseDefaultTemplateTarget(path: string | null): MasqueTarget | null {
  if (path === null || !path.startsWith(TEMPLATE_PREFIX)) return null;
  const q = path.indexOf('?');
  const rest = path.slice(TEMPLATE_PREFIX.length, q < 0 ? undefined : q);
  const m = /^([^/]+)\/([0-9]{1,5})\/$/.exec(rest);
  if (!m) return null;
  let host: string;
  try {
    host = decodeURIComponent(m[1]!);
  } catch {
    return null;
  }
  const port = Number(m[2]);
  if (host === '' || port < 1 || port > 65535) return null;
  // RFC 9298 §2: IPv6 literals appear without brackets; a bracketed form is tolerated for display.
  if (host.startsWith('[') && host.endsWith(']') && isIPv6(host.slice(1, -1))) host = host.slice(1, -1);
  return { host, port };
}

/**
 * RFC 9297 §3.4: `Capsule-Protocol` is a structured-field boolean; true only for `?1` (parameters ignored) sent once.
 * `?0`, absence, any other value, or several field lines mean the protocol is not in use.
 */
export function parseCapsuleProtocol(headers: HeaderList): boolean {
  const values = fieldValues(headers, 'capsule-protocol');
  if (values.length !== 1) return false;
  const v = values[0]!.trim();
  return /^\?1(?:;[a-z*][a-z0-9_.*-]*(?:=[^;,]*)?)*$/.test(v.replace(/\s*;\s*/g, ';'));
}

/** Fields of a request head, however it was carried: the request event's own fields, before the target is read. */
export type RequestHead = Pick<RequestEvent, 'http' | 'method' | 'protocol' | 'scheme' | 'authority' | 'path' | 'headers'>;

/** Builds a request event from HTTP/2 fields (pseudo-headers included). */
export function requestHeadFromHttp2(headers: HeaderList): RequestHead {
  const pseudo = (name: string): string | null => {
    for (const [n, v] of headers) if (n === name) return v;
    return null;
  };
  return {
    http: '2',
    method: pseudo(':method') ?? '',
    protocol: pseudo(':protocol'),
    scheme: pseudo(':scheme'),
    authority: pseudo(':authority'),
    path: pseudo(':path'),
    headers,
  };
}

/** Builds a request head from an HTTP/1.1 request line and fields; `Upgrade` supplies the protocol token. */
export function requestHeadFromHttp1(method: string, target: string, headers: HeaderList): RequestHead {
  return {
    http: '1.1',
    method,
    protocol: joinedField(headers, 'upgrade')?.trim() ?? null,
    scheme: null,
    authority: joinedField(headers, 'host'),
    path: target,
    headers,
  };
}

/** The request event of a session. */
export function requestEvent(session: string, t: number, head: RequestHead): RequestEvent {
  return {
    event: 'request',
    tMs: t,
    session,
    dir: '->',
    http: head.http,
    method: head.method,
    protocol: head.protocol,
    scheme: head.scheme,
    authority: head.authority,
    path: head.path,
    target: parseDefaultTemplateTarget(head.path),
    capsuleProtocol: parseCapsuleProtocol(head.headers),
    headers: head.headers,
  };
}

/** Parses a status code: three digits, else 0. */
export function parseStatus(text: string | null): number {
  return text !== null && /^[0-9]{3}$/.test(text) ? Number(text) : 0;
}

/** The response event of a session; `status` comes from `:status` (HTTP/2) or the status line (HTTP/1.1). */
export function responseEvent(session: string, t: number, http: HttpVersion, status: number, headers: HeaderList): ResponseEvent {
  return {
    event: 'response',
    tMs: t,
    session,
    dir: '<-',
    http,
    status,
    proxyStatus: joinedField(headers, 'proxy-status'),
    capsuleProtocol: parseCapsuleProtocol(headers),
    headers,
  };
}

/** RFC 9110 §15.2: a 1xx response other than 101 is interim; the final response follows it. */
export function isInterimStatus(status: number): boolean {
  return status >= 100 && status < 200 && status !== 101;
}

/**
 * Whether a final response status opens the tunnel: over HTTP/1.1 only 101 Switching Protocols (RFC 9298 §3.2; a 2xx
 * there is an ordinary response with a framed body), over HTTP/2 any 2xx (RFC 9298 §3.3, RFC 8441 §5).
 */
export function opensTunnel(http: HttpVersion, status: number): boolean {
  return http === '1.1' ? status === 101 : status >= 200 && status < 300;
}

/** The `:status` of an HTTP/2 response field list, parsed (0 if missing or malformed). */
export function http2Status(headers: HeaderList): number {
  for (const [n, v] of headers) if (n === ':status') return parseStatus(v);
  return 0;
}

/**
 * True when a request's body is a capsule stream: 'auto' decodes connect-udp requests (RFC 9298 §3 always uses the
 * capsule protocol) and requests with `Capsule-Protocol: ?1` (RFC 9297 §3.4); 'all' decodes every HTTP/2 request
 * body and every HTTP/1.1 Upgrade (e.g. POST mode without the header).
 */
export function isCapsuleRequest(head: RequestHead, capsuleProtocol: boolean, mode: 'auto' | 'all'): boolean {
  // An HTTP/1.1 body is a plain byte stream only after an Upgrade (RFC 9298 §3.2); other bodies need message
  // framing (Content-Length, chunked) that this decoder does not parse.
  if (head.http === '1.1' && head.protocol === null) return false;
  if (mode === 'all') return true;
  const tokens = (head.protocol ?? '').split(',').map((p) => p.trim().toLowerCase());
  return tokens.includes('connect-udp') || capsuleProtocol;
}
