import { formatHostPort, type HostPort } from './address.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { H2ConnectUdpTransport } from './transport/h2.js';
import type { ClientTlsOptions, Transport, TransportOptions } from './transport/types.js';
import { DEFAULT_URI_TEMPLATE, expandUriTemplate, parseUriTemplate } from './uri-template.js';

/** How the client reaches the proxy. */
export interface ProxyConfig {
  /** `http://host:port` (cleartext) or `https://host:port` (TLS). May itself be a URI template (RFC 9298 §2). */
  proxy: string;
  /** The UDP target; goes into the URI template. */
  target: HostPort;
  /** URI template path; default `/.well-known/masque/udp/{target_host}/{target_port}/`. */
  template?: string;
  /** Extra request headers as `[name, value]`. */
  headers?: [string, string][];
  tls?: ClientTlsOptions;
  connectTimeoutMs?: number;
}

// RFC 9113 §8.2.2 and §8.3: connection-specific and pseudo-header fields cannot be added by users;
// capsule-protocol and the framing headers are ours to set (RFC 9297 §3.2).
const FORBIDDEN_HEADERS = new Set([
  'host',
  'connection',
  'upgrade',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'content-length',
  'content-type',
  'capsule-protocol',
]);

/** Parses `Name: value` header flags; rejects pseudo-headers, Host and connection-specific fields. */
export function parseHeaderFlags(list: string[]): [string, string][] {
  return list.map((h) => {
    const i = h.indexOf(':', h.startsWith(':') ? 1 : 0);
    const name = (i > 0 ? h.slice(0, i) : '').trim().toLowerCase();
    const value = i > 0 ? h.slice(i + 1).trim() : '';
    if (!name || name.startsWith(':') || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `-H '${h}': expected 'Name: value' with a valid field name (no pseudo-headers)`);
    }
    if (FORBIDDEN_HEADERS.has(name)) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `-H '${h}': ${name} is managed by udp-tunnel and cannot be set`);
    if (/[\r\n\0]/.test(value)) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `-H '${h}': value contains CR, LF or NUL`);
    return [name, value];
  });
}

/** Splits the --proxy value into the origin and the URI template it implies. */
export function parseProxyUrl(proxy: string, template?: string): { url: URL; template: string } {
  let raw = proxy;
  let tmpl = template;
  if (proxy.includes('{')) {
    // The proxy URL is itself a URI template (RFC 9298 §2).
    const m = /^(https?:\/\/[^/]+)(\/.*)$/i.exec(proxy);
    if (!m) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--proxy '${proxy}': a template URL must start with http:// or https://`);
    raw = m[1]!;
    if (tmpl === undefined) tmpl = m[2]!;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--proxy '${proxy}' is not a URL (example: http://127.0.0.1:4433)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--proxy must use http:// (cleartext h2c) or https:// (TLS), not ${url.protocol}`);
  }
  if (!url.port) url.port = url.protocol === 'https:' ? '443' : '80';
  if (tmpl === undefined) tmpl = url.pathname !== '/' && url.pathname.includes('{') ? url.pathname : DEFAULT_URI_TEMPLATE;
  return { url, template: parseUriTemplate(tmpl) };
}

/** The request path for a target: the template expanded (IPv6 colons percent-encoded once, RFC 9298 §2). */
export function targetPath(template: string, target: HostPort): string {
  return expandUriTemplate(template, { target_host: target.host, target_port: String(target.port) });
}

/** Builds the transport for a CONNECT-UDP over HTTP/2 configuration. */
export function buildTransport(cfg: ProxyConfig): Transport {
  const { url, template } = parseProxyUrl(cfg.proxy, cfg.template);
  const opts: TransportOptions = {
    proxy: url,
    path: targetPath(template, cfg.target),
    headers: cfg.headers ?? [],
    tls: cfg.tls ?? {},
    connectTimeoutMs: cfg.connectTimeoutMs ?? 10_000,
  };
  return new H2ConnectUdpTransport(opts);
}

/** One-line description for logs. */
export function describeProxy(cfg: ProxyConfig): string {
  return `${cfg.proxy} -> ${formatHostPort(cfg.target.host, cfg.target.port)}`;
}
