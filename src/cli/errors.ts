import { ErrorCodes, UdpTunnelError, type ErrorCode } from '../tunnel/errors.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 usage error. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Thrown by command code for bad flags and values; maps to exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Codes that mean the command line was wrong (exit 2); every other code is a runtime failure (exit 1). */
const USAGE_CODES: ReadonlySet<ErrorCode> = new Set([ErrorCodes.INVALID_ADDRESS, ErrorCodes.INVALID_OPTION, ErrorCodes.INVALID_TEMPLATE, ErrorCodes.INVALID_INPUT]);

/** The exit code the CLI gives an error with this code; docs/errors.md lists it per code. */
export function exitCodeFor(code: ErrorCode): number {
  return USAGE_CODES.has(code) ? EXIT_USAGE : EXIT_FAILURE;
}

/**
 * Flags whose name does not follow from the library option name by the rule in flagFor, keyed by library name.
 * Nested options are dotted, as core errors name them; `name: false` stands for a boolean turned off.
 */
export const OPTION_FLAGS: Readonly<Record<string, string>> = {
  headers: '-H',
  'tls.ca': '--ca',
  'tls.cert': '--cert',
  'tls.key': '--key',
  'tls.insecure': '--insecure',
  'tls.servername': '--servername',
  'tls.pins': '--pin',
  'upstreamTls.ca': '--upstream-ca',
  'upstreamTls.insecure': '--upstream-insecure',
  'upstreamTls.servername': '--upstream-servername',
  'buffer.enabled': '--buffer',
  'buffer.maxDatagrams': '--max-buffered-datagrams',
  'buffer.maxBytes': '--max-buffered-bytes',
  'backoff.baseMs': '--backoff-base',
  'backoff.maxMs': '--backoff-max',
  postRoutes: '--post-route',
  maxCapsuleLength: '--max-capsule',
  maxStreamsPerConnection: '--max-streams',
  authFailureRefillPerSecond: '--auth-failure-rate',
  dnsServers: '--dns-server',
  previewBytes: '--bytes',
  caFile: '--ca',
  nodeOptions: '--node-option',
  churnPerSecond: '--churn',
  reportIntervalMs: '--interval',
  // A boolean turned off is its --no- flag.
  'direct: false': '--no-direct',
};

/**
 * The CLI flag for a library option name: OPTION_FLAGS, else `--` and the name in kebab-case without a trailing
 * `Ms` (`maxDatagram` -> `--max-datagram`, `idleTimeoutMs` -> `--idle-timeout`). A name that already is a flag,
 * and a dotted name without an entry, come back unchanged.
 */
export function flagFor(option: string): string {
  const listed = OPTION_FLAGS[option];
  if (listed !== undefined) return listed;
  if (option.startsWith('-') || !/^[a-z][A-Za-z0-9]*$/.test(option)) return option;
  return `--${option.replace(/Ms$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Replaces the first standalone mention of `option` in `message` with its flag (not inside a word, URL or path). */
function mentionToFlag(message: string, option: string): string {
  const flag = flagFor(option);
  if (flag === option) return message;
  const re = new RegExp(`(?<![\\w.\\-/])${escapeRegExp(option)}(?![\\w\\-]|\\.\\w|://)`);
  return message.replace(re, flag);
}

/**
 * An error's message as the CLI shows it: the library option names it carries in `details.option` and
 * `details.related` become flags (`maxDatagram must be 0..65527` -> `--max-datagram must be 0..65527`).
 */
export function flagMessage(err: UdpTunnelError): string {
  const d = err.details;
  const names: string[] = [];
  if (typeof d['option'] === 'string') names.push(d['option']);
  const related = d['related'];
  if (Array.isArray(related)) for (const r of related) if (typeof r === 'string') names.push(r);
  let message = err.message;
  for (const name of new Set(names)) message = mentionToFlag(message, name);
  return message;
}

/** Text from the library that names options (a hint, say) as the CLI shows it: each named option becomes its flag. */
export function flagText(text: string, options: readonly string[]): string {
  let out = text;
  for (const name of new Set(options)) out = mentionToFlag(out, name);
  return out;
}

/**
 * Command code may rethrow a core message as a UsageError (serve does for options TunnelServer refuses); a camelCase
 * option name it starts with becomes its flag, as flagMessage would have done.
 */
function usageMessage(message: string): string {
  const m = /^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+(?=[\s:])/.exec(message);
  return m === null ? message : flagFor(m[0]) + message.slice(m[0].length);
}

/** The one place that maps an error to an exit code and a one-line message. */
export function describeError(err: unknown): { code: number; message: string } {
  if (err instanceof UsageError) return { code: EXIT_USAGE, message: usageMessage(err.message) };
  if (err instanceof UdpTunnelError) return { code: exitCodeFor(err.code), message: `${flagMessage(err)} [${err.code}]` };
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && typeof e.code === 'string') {
    if (e.code === 'EADDRINUSE') return { code: EXIT_FAILURE, message: `address already in use: ${e.message}` };
    if (e.code === 'EACCES') return { code: EXIT_FAILURE, message: `permission denied: ${e.message}` };
    if (e.code === 'ENOENT') return { code: EXIT_FAILURE, message: `file not found: ${e.message}` };
    return { code: EXIT_FAILURE, message: `${e.message} [${e.code}]` };
  }
  return { code: EXIT_FAILURE, message: e?.message ?? String(err) };
}

/** The code a `--json` error event carries: UT_ERR_USAGE for a usage error, the error's own code, else UT_ERR_UNEXPECTED. */
export function errorCodeOf(err: unknown): string {
  if (err instanceof UsageError) return 'UT_ERR_USAGE';
  if (err instanceof UdpTunnelError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'UT_ERR_UNEXPECTED';
}
