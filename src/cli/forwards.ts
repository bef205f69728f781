import { isIP } from 'node:net';
import { formatHostPort, isValidHost, parsePort, type HostPort } from '../tunnel/address.js';
import type { ForwardConfig } from '../tunnel/forward-group.js';
import type { ClientMode } from '../tunnel/client-config.js';
import { parseHeaderFlags } from '../tunnel/client-config.js';
import { UsageError } from './errors.js';

/** The local address `-L PORT:HOST:PORT` listens on when it names no BIND. */
export const DEFAULT_FORWARD_BIND = '127.0.0.1';

/** One `-L [BIND:]PORT:HOST:PORT`: a local UDP address and the target its peers reach. */
export interface ForwardSpec {
  local: HostPort;
  target: HostPort;
}

/** Splits on colons outside brackets; a bracketed part keeps its brackets. Null when brackets do not pair up. */
function splitColons(text: string): string[] | null {
  const parts: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of text) {
    if (ch === '[') {
      if (depth > 0 || cur !== '') return null;
      depth = 1;
    } else if (ch === ']') {
      if (depth === 0) return null;
      depth = 0;
    } else if (ch === ':' && depth === 0) {
      parts.push(cur);
      cur = '';
      continue;
    } else if (depth === 0 && cur.endsWith(']')) {
      return null;
    }
    cur += ch;
  }
  if (depth > 0) return null;
  parts.push(cur);
  return parts;
}

/**
 * Parses `-L [BIND:]PORT:HOST:PORT` (ssh's and wstunnel's shape): BIND defaults to 127.0.0.1, IPv6 goes in brackets,
 * the local port may be 0 (any). Throws UsageError naming the flag and what is wrong.
 */
export function parseForwardSpec(text: string, flag = '-L'): ForwardSpec {
  const fail = (why: string): never => {
    throw new UsageError(`${flag} '${text}': ${why} (expected [BIND:]PORT:HOST:PORT, e.g. 5353:127.0.0.1:53)`);
  };
  const parts = splitColons(text.trim());
  if (parts === null) return fail('brackets do not pair up: write IPv6 addresses as [2001:db8::1]');
  if (parts.length > 4) return fail('IPv6 addresses must be written in brackets');
  if (parts.length < 3) return fail('missing parts');
  const [bindText, localPort, hostText, targetPort] = parts.length === 4 ? parts : [DEFAULT_FORWARD_BIND, ...parts];
  const host = (what: string, t: string): string => {
    if (t === '') return fail(`empty ${what}${what === 'BIND' ? ' (write 0.0.0.0 or [::] to listen on every interface)' : ''}`);
    const bracketed = t.startsWith('[');
    const h = bracketed ? t.slice(1, -1) : t;
    if (h.includes('%')) return fail(`${what} '${t}': zone identifiers are not supported`);
    if (bracketed && isIP(h) !== 6) return fail(`${what} '${t}': not an IPv6 address inside [ ]`);
    if (!bracketed && isIP(h) === 6) return fail(`${what} '${t}': write IPv6 addresses in brackets`);
    if (!isValidHost(h)) return fail(`${what} '${t}' is not a valid address or host name`);
    return h;
  };
  const port = (what: string, t: string, allowZero: boolean): number => {
    const p = parsePort(t, allowZero);
    if (p < 0) return fail(`${what} '${t}' must be ${allowZero ? '0' : '1'}..65535${allowZero ? ' (0 = any)' : ''}`);
    return p;
  };
  return {
    local: { host: host('BIND', bindText!), port: port('local port', localPort!, true) },
    target: { host: host('HOST', hostText!), port: port('target port', targetPort!, false) },
  };
}

/** The canonical text of a forward: `BIND:PORT:HOST:PORT`, IPv6 in brackets (parseForwardSpec reads it back). */
export function formatForwardSpec(f: ForwardSpec): string {
  return `${formatHostPort(f.local.host, f.local.port)}:${formatHostPort(f.target.host, f.target.port)}`;
}

/** The per-forward keys of connect's `forwards:` config list, read as the options of the same name. */
export const FORWARD_KEYS = ['local', 'target', 'header', 'idle-timeout', 'buffer', 'max-buffered-datagrams', 'max-buffered-bytes', 'mode', 'post-path'] as const;

/** The connect options a forward inherits unless it sets its own. */
export interface ForwardDefaults {
  mode: ClientMode;
  'post-path': string;
  'idle-timeout': number;
  buffer: boolean;
  'max-buffered-datagrams': number;
  'max-buffered-bytes': number;
}

/** A forward ready for the library, with what the output says about it. */
export interface ResolvedForward {
  config: ForwardConfig;
  mode: ClientMode;
  /** The target as `HOST:PORT` (connect-udp), else undefined. */
  target?: string;
  postPath?: string;
}

function readHostPort(text: string, what: string, allowZero: boolean): HostPort {
  // `local: 5353` alone means the default bind address, as in -L.
  const withHost = /^\d+$/.test(text) ? `${DEFAULT_FORWARD_BIND}:${text}` : text;
  const parts = splitColons(withHost);
  const fail = (why: string): never => {
    throw new UsageError(`${what} '${text}': ${why}`);
  };
  if (parts === null || parts.length !== 2) return fail(parts !== null && parts.length > 2 ? 'IPv6 addresses must be written in brackets, e.g. [::1]:5353' : 'expected HOST:PORT');
  const [h, p] = parts as [string, string];
  const bracketed = h.startsWith('[');
  const host = bracketed ? h.slice(1, -1) : h;
  if (host.includes('%')) fail('zone identifiers are not supported');
  if (bracketed && isIP(host) !== 6) fail('not an IPv6 address inside [ ]');
  if (host === '' || !isValidHost(host)) fail('bad host');
  const port = parsePort(p, allowZero);
  if (port < 0) fail(`port must be ${allowZero ? '0' : '1'}..65535`);
  return { host, port };
}

/**
 * One entry of the config file's `forwards:` list (already read by the option schema) as a forward; forward `i` is
 * named in messages as `forwards[i]`. Unset keys inherit connect's options.
 */
export function forwardFromEntry(entry: Readonly<Record<string, unknown>>, i: number, d: ForwardDefaults, file: string): ResolvedForward {
  const at = `--config ${file}: forwards[${i}]`;
  const given = (k: string): boolean => entry[k] !== undefined;
  const mode = (entry['mode'] as ClientMode | undefined) ?? d.mode;
  if (mode === 'post' && given('target')) throw new UsageError(`${at}: target does not apply with mode post (the proxy maps post-path to its target); drop target`);
  if (mode !== 'post' && given('post-path')) throw new UsageError(`${at}: post-path applies only to mode post`);
  if (mode !== 'post' && !given('target')) throw new UsageError(`${at}: target HOST:PORT is required in connect-udp mode`);
  const buffer = (entry['buffer'] as boolean | undefined) ?? d.buffer;
  if (!buffer) {
    for (const k of ['max-buffered-datagrams', 'max-buffered-bytes']) if (given(k)) throw new UsageError(`${at}: ${k} has no effect with buffer: false`);
  }
  const local = readHostPort(String(entry['local']), `${at}: local`, true);
  const targetText = given('target') ? String(entry['target']) : undefined;
  const target = targetText !== undefined ? readHostPort(targetText, `${at}: target`, false) : undefined;
  let headers: [string, string][] | undefined;
  if (given('header')) {
    try {
      headers = parseHeaderFlags(entry['header'] as string[]);
    } catch (err) {
      throw new UsageError(`${at}: header: ${(err as Error).message.replace(/^headers /, '')}`);
    }
  }
  const postPath = (entry['post-path'] as string | undefined) ?? d['post-path'];
  return {
    config: {
      host: local.host,
      port: local.port,
      ...(target ? { target } : {}),
      mode,
      ...(mode === 'post' ? { postPath } : {}),
      ...(headers ? { headers } : {}),
      idleTimeoutMs: (entry['idle-timeout'] as number | undefined) ?? d['idle-timeout'],
      buffer: {
        enabled: buffer,
        maxDatagrams: (entry['max-buffered-datagrams'] as number | undefined) ?? d['max-buffered-datagrams'],
        maxBytes: (entry['max-buffered-bytes'] as number | undefined) ?? d['max-buffered-bytes'],
      },
    },
    mode,
    ...(target ? { target: formatHostPort(target.host, target.port) } : { postPath }),
  };
}

/** A `-L` forward (connect-udp, every other setting from connect's options). */
export function forwardFromSpec(spec: ForwardSpec, d: ForwardDefaults): ResolvedForward {
  return {
    config: {
      host: spec.local.host,
      port: spec.local.port,
      target: spec.target,
      mode: 'connect-udp',
      idleTimeoutMs: d['idle-timeout'],
      buffer: { enabled: d.buffer, maxDatagrams: d['max-buffered-datagrams'], maxBytes: d['max-buffered-bytes'] },
    },
    mode: 'connect-udp',
    target: formatHostPort(spec.target.host, spec.target.port),
  };
}
