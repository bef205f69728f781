import { isIP } from 'node:net';
import { ErrorCodes, UdpTunnelError } from './errors.js';

/** A host (IP literal or DNS name, IPv6 without brackets) and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/** Options of parseHostPort. */
export interface ParseHostPortOptions {
  /** Accept port 0 (for listeners: let the OS choose). */
  allowPortZero?: boolean;
  /** What the value is, for error messages (e.g. "target"; the CLI passes its flag, e.g. "--local"). */
  what?: string;
  /** The library option the value belongs to, for `details.option` (the CLI shows its flag in the message). */
  option?: string;
}

const PORT_RE = /^\d{1,5}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(?:\.(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?))*\.?$/;

/** Parses a port made of digits only, 1..65535 (or 0 when allowed); returns -1 when invalid. */
export function parsePort(text: string, allowZero = false): number {
  if (!PORT_RE.test(text)) return -1;
  const port = Number(text);
  if (port > 65535 || (port === 0 && !allowZero)) return -1;
  return port;
}

/** True for an IP literal or a syntactically valid DNS name. */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME_RE.test(host);
}

/** Parses `HOST:PORT`, `[IPv6]:PORT`. Throws UT_ERR_INVALID_ADDRESS with a message naming the input. */
export function parseHostPort(spec: string, options: ParseHostPortOptions = {}): HostPort {
  const what = options.what ?? 'address';
  const fail = (why: string): never => {
    throw new UdpTunnelError(ErrorCodes.INVALID_ADDRESS, `invalid ${what} '${spec}': ${why}`, options.option === undefined ? { spec } : { spec, option: options.option });
  };
  let host: string;
  let portText: string;
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']');
    if (close < 0) fail('missing ]');
    host = spec.slice(1, close);
    if (spec[close + 1] !== ':') fail('expected [IPv6]:PORT');
    portText = spec.slice(close + 2);
    if (isIP(host) !== 6) fail('not an IPv6 address inside [ ]');
  } else {
    const colon = spec.lastIndexOf(':');
    if (colon < 0) fail('expected HOST:PORT');
    host = spec.slice(0, colon);
    portText = spec.slice(colon + 1);
    if (host.includes(':')) fail('IPv6 addresses must be written in brackets, e.g. [::1]:5353');
  }
  if (host.includes('%')) fail('zone identifiers are not supported');
  if (host === '' || !isValidHost(host)) fail('bad host');
  const port = parsePort(portText, options.allowPortZero ?? false);
  if (port < 0) fail(`port must be ${options.allowPortZero ? '0' : '1'}..65535`);
  return { host, port };
}

/** Formats host and port, bracketing IPv6 literals. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Why `text` does not parse as an http(s) URL, in words a user can act on: a port out of range or a missing host,
 * else a generic "not a URL". For messages only; callers parse with `new URL` themselves.
 */
export function describeBadUrl(text: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/]*@)?(\[[^\]]*\]|[^/:?#]*)(?::([^/?#]*))?/i.exec(text);
  if (m === null) {
    return /^[^:/]+:\d+$|^\[[^\]]*\]:\d+$/.test(text) ? `has no scheme: write http://${text} (cleartext) or https://${text} (TLS)` : 'is not a URL (example: http://127.0.0.1:4433)';
  }
  if (m[1] === '') return 'has no host (example: http://127.0.0.1:4433)';
  const port = m[2];
  if (port !== undefined && port !== '') {
    if (!/^\d+$/.test(port)) return `has a port that is not a number: '${port}'`;
    if (Number(port) > 65535) return `has port ${port}, out of range (1..65535)`;
  }
  return 'is not a URL (example: http://127.0.0.1:4433)';
}
