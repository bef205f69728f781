import { describeBadUrl, formatHostPort, type HostPort } from './address.js';
import { parseProxyUrlCredentials } from './auth.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { checkHeaderTemplates } from './header-template.js';
import { H1ConnectUdpTransport } from './transport/h1.js';
import { H2ConnectUdpTransport, H2PostTransport } from './transport/h2.js';
import type { ClientTlsOptions, Transport, TransportOptions } from './transport/types.js';
import { DEFAULT_URI_TEMPLATE, expandUriTemplate, parseUriTemplate } from './uri-template.js';

import type { ClientMode, HttpVersionChoice } from './defaults.js';

export type { ClientMode, HttpVersionChoice } from './defaults.js';

/** How the client reaches the proxy. */
export interface ProxyConfig {
  /**
   * `http://host:port` (cleartext) or `https://host:port` (TLS). May itself be a URI template (RFC 9298 §2).
   * `user:pass@` userinfo is sent as Basic credentials.
   */
  proxy: string;
  /** The UDP target; goes into the URI template (CONNECT-UDP only; in POST mode the proxy's route decides). */
  target?: HostPort;
  /** Default `connect-udp`. */
  mode?: ClientMode;
  /** Default `2`. POST mode is HTTP/2 only. */
  http?: HttpVersionChoice;
  /** POST mode request path; default `/`. */
  postPath?: string;
  /** Bearer token; takes the place of URL credentials (giving both is an error). */
  token?: string;
  /** URI template path; default `/.well-known/masque/udp/{target_host}/{target_port}/`. */
  template?: string;
  /** Extra request headers as `[name, value]`. */
  headers?: [string, string][];
  tls?: ClientTlsOptions;
  connectTimeoutMs?: number;
}

/** ProxyConfig's defaults. */
export { PROXY_CONFIG_DEFAULTS } from './defaults.js';
import { PROXY_CONFIG_DEFAULTS } from './defaults.js';

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

/**
 * Parses `Name: value` strings into the `headers` option; rejects pseudo-headers, Host and connection-specific fields,
 * and values naming an unknown `%NAME%` header template.
 */
export function parseHeaderFlags(list: string[]): [string, string][] {
  return list.map((h) => {
    const bad = (why: string): UdpTunnelError => new UdpTunnelError(ErrorCodes.INVALID_OPTION, `headers '${h}': ${why}`, { option: 'headers', value: h });
    const i = h.indexOf(':', h.startsWith(':') ? 1 : 0);
    const name = (i > 0 ? h.slice(0, i) : '').trim().toLowerCase();
    const value = i > 0 ? h.slice(i + 1).trim() : '';
    if (!name || name.startsWith(':') || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw bad("expected 'Name: value' with a valid field name (no pseudo-headers)");
    }
    if (FORBIDDEN_HEADERS.has(name)) throw bad(`${name} is managed by udp-tunnel and cannot be set`);
    if (/[\r\n\0]/.test(value)) throw bad('value contains CR, LF or NUL');
    checkHeaderTemplates([[name, value]]);
    return [name, value];
  });
}

/** Splits the `proxy` option into the origin and the URI template it implies. */
export function parseProxyUrl(proxy: string, template?: string): { url: URL; template: string } {
  let raw = proxy;
  let tmpl = template;
  if (proxy.includes('{')) {
    // The proxy URL is itself a URI template (RFC 9298 §2).
    const m = /^(https?:\/\/[^/]+)(\/.*)$/i.exec(proxy);
    if (!m) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `proxy '${proxy}': a template URL must start with http:// or https://`, { option: 'proxy', value: proxy });
    raw = m[1]!;
    if (tmpl === undefined) tmpl = m[2]!;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `proxy '${proxy}' ${describeBadUrl(raw)}`, { option: 'proxy', value: proxy });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `proxy must use http:// (cleartext h2c) or https:// (TLS), not ${url.protocol}`, {
      option: 'proxy',
      value: proxy,
    });
  }
  if (!url.port) url.port = url.protocol === 'https:' ? '443' : '80';
  if (tmpl === undefined) tmpl = url.pathname !== '/' && url.pathname.includes('{') ? url.pathname : DEFAULT_URI_TEMPLATE;
  return { url, template: parseUriTemplate(tmpl) };
}

/** The request path for a target: the template expanded (IPv6 colons percent-encoded once, RFC 9298 §2). */
export function targetPath(template: string, target: HostPort): string {
  return expandUriTemplate(template, { target_host: target.host, target_port: String(target.port) });
}

/** The proxy URL with any password replaced, for logs and events (secrets never reach output). */
export function redactProxyUrl(proxy: string): string {
  return proxy.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_m, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}

/** The Authorization value for a token or for URL userinfo; throws INVALID_OPTION when both or a bad token is given. */
export function clientAuthorization(url: URL, token: string | undefined): string | undefined {
  const fromUrl = parseProxyUrlCredentials(url);
  if (token !== undefined && token !== '') {
    if (fromUrl !== undefined) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'give either token or user:pass@ in the proxy URL, not both', { option: 'token' });
    }
    // RFC 6750 §2.1: b64token syntax; this also keeps CR/LF out of the request head.
    if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'token must use token68 characters (A-Z a-z 0-9 - . _ ~ + / then =)', { option: 'token' });
    }
    return `Bearer ${token}`;
  }
  return fromUrl;
}

/** Throws INVALID_OPTION (option `postPath`) unless `path` starts with / and holds no spaces or control characters. */
export function checkPostPath(path: string): void {
  if (!path.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(path)) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `postPath '${path}' must start with / and contain no spaces or control characters`, {
      option: 'postPath',
      value: path,
    });
  }
}

/** Builds the transport for a configuration: HTTP/2 or HTTP/1.1 CONNECT-UDP, or HTTP/2 POST. */
export function buildTransport(cfg: ProxyConfig): Transport {
  if ((cfg.mode ?? PROXY_CONFIG_DEFAULTS.mode) !== 'post' && !cfg.target) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'connect-udp mode needs a target HOST:PORT', { option: 'target' });
  }
  return buildSharedTransport(cfg);
}

/**
 * Builds a transport that several forwards may share: `cfg.target` (optional here) and `cfg.postPath` are only the
 * defaults, as each open may name its own target, POST path and headers (TunnelRequest). This is the one place
 * transports are made, so every way of reaching a proxy goes through it.
 */
export function buildSharedTransport(cfg: ProxyConfig): Transport {
  const { url, template } = parseProxyUrl(cfg.proxy, cfg.template);
  const authorization = clientAuthorization(url, cfg.token);
  // The userinfo never goes on the wire as part of a URL (RFC 9110 §4.2.4).
  url.username = '';
  url.password = '';
  const mode = cfg.mode ?? PROXY_CONFIG_DEFAULTS.mode;
  const http = cfg.http ?? PROXY_CONFIG_DEFAULTS.http;
  const headers = cfg.headers ?? [];
  checkHeaderTemplates(headers);
  let path: string;
  if (mode === 'post') {
    if (http !== '2') {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `mode post runs over HTTP/2 only; drop http ${http}`, { option: 'http', value: http, related: ['mode'] });
    }
    path = cfg.postPath ?? PROXY_CONFIG_DEFAULTS.postPath;
    checkPostPath(path);
  } else {
    path = cfg.target ? targetPath(template, cfg.target) : '';
  }
  const opts: TransportOptions = {
    proxy: url,
    path,
    template,
    headers,
    tls: cfg.tls ?? {},
    connectTimeoutMs: cfg.connectTimeoutMs ?? PROXY_CONFIG_DEFAULTS.connectTimeoutMs,
    ...(authorization ? { authorization } : {}),
  };
  if (mode === 'post') return new H2PostTransport(opts);
  return http === '1.1' ? new H1ConnectUdpTransport(opts) : new H2ConnectUdpTransport(opts);
}

/** One-line description for logs (credentials redacted). */
export function describeProxy(cfg: ProxyConfig): string {
  const proxy = redactProxyUrl(cfg.proxy);
  if (cfg.mode === 'post') return `${proxy} POST ${cfg.postPath ?? PROXY_CONFIG_DEFAULTS.postPath}`;
  return cfg.target ? `${proxy} -> ${formatHostPort(cfg.target.host, cfg.target.port)}` : proxy;
}
