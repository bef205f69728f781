import { closeSync, createWriteStream, openSync, type WriteStream } from 'node:fs';
import type { ClientSessionStats, TunnelClient } from '../tunnel/client.js';
import type { RefusedEvent, ServerSessionStats, TunnelServer } from '../tunnel/server/tunnel-server.js';
import { UdpTunnelError, type RefusalDetails } from '../tunnel/errors.js';
import { UsageError } from './errors.js';
import { closest } from './options/spec.js';

/** One access log entry: a session at its end (serve also logs each refused request). JSON keys are snake_case. */
export interface AccessLogRecord {
  /** When the session opened and closed (ISO 8601), and how long it lasted. */
  start_time: string;
  end_time: string;
  duration_ms: number;
  command: 'serve' | 'connect';
  /** The session id (`s1`, `c1`); null for a refused request. */
  session: string | null;
  /** serve: the HTTP client's address; connect: the local UDP peer. */
  client: string;
  /** The target as requested, HOST:PORT; null when unknown (connect in POST mode, some refusals). */
  target: string | null;
  /** serve: the address the target resolved to and the relay used; null on connect (the proxy resolves). */
  resolved: string | null;
  /** connect: the proxy origin (never its credentials); null on serve. */
  proxy: string | null;
  /** `1.1` or `2`; null when unknown. */
  http_version: '1.1' | '2' | null;
  /** `connect-udp` or `post`; null for a refusal made before the request was read. */
  mode: 'connect-udp' | 'connect-udp-bind' | 'post' | null;
  /** The answer to the tunnel request: 101 or 2xx, a refusal's status; null when none was sent or received. */
  status: number | null;
  /** The Proxy-Status error type of a refusal (RFC 9209 §2.3); null otherwise. */
  proxy_status: string | null;
  /** Datagrams and payload bytes from the client (rx) and to the client (tx). */
  rx_datagrams: number;
  rx_bytes: number;
  tx_datagrams: number;
  tx_bytes: number;
  /** Datagrams dropped, in all and by kind. */
  dropped: number;
  drops: Record<string, number>;
  /** connect: tunnel attempts made for the session; null on serve. */
  connect_attempts: number | null;
  close_reason: string;
}

/** The `%FIELD%` names of `--access-log-format`, with what each prints. `%%` prints a percent sign. */
export const ACCESS_LOG_FIELDS = {
  START_TIME: 'when the session opened (ISO 8601)',
  END_TIME: 'when it closed (ISO 8601)',
  DURATION_MS: 'its duration in milliseconds',
  COMMAND: '`serve` or `connect`',
  SESSION: 'the session id (`-` for a refused request)',
  CLIENT: "serve: the HTTP client's address; connect: the local UDP peer",
  TARGET: 'the target as requested, HOST:PORT',
  RESOLVED: "serve: the target's address the relay used",
  PROXY: 'connect: the proxy origin, without credentials',
  HTTP_VERSION: '`1.1` or `2`',
  MODE: '`connect-udp`, `connect-udp-bind` (serve: a bound tunnel) or `post`',
  STATUS: 'the status answered (101, 200, 403, ...)',
  PROXY_STATUS: 'the Proxy-Status error type of a refusal',
  RX_DATAGRAMS: 'datagrams from the client',
  RX_BYTES: 'payload bytes from the client',
  TX_DATAGRAMS: 'datagrams to the client',
  TX_BYTES: 'payload bytes to the client',
  DROPPED: 'datagrams dropped, all kinds',
  DROPS: 'drops by kind, `kind=N` joined by commas (only kinds that happened)',
  CONNECT_ATTEMPTS: 'connect: tunnel attempts for the session',
  CLOSE_REASON: 'why the session ended',
} as const;

/** A field name of the text format. */
export type AccessLogField = keyof typeof ACCESS_LOG_FIELDS;

/** Bytes the log may hold unwritten (a slow or stuck disk); lines beyond are dropped and counted. */
export const ACCESS_LOG_MAX_PENDING_BYTES = 1024 * 1024;

/** After a write error (a full disk), the file is reopened for the first line after this long; lines before are dropped. */
export const ACCESS_LOG_RETRY_MS = 5_000;

/** Secrets shorter than this are not searched for in lines (see AccessLogOptions.secrets). */
export const ACCESS_LOG_MIN_SECRET_LENGTH = 6;

/** Control characters would split a text line or fool a terminal; they are shown as `?`. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, '?');
}

function textValue(r: AccessLogRecord, field: AccessLogField): string {
  if (field === 'DROPS') {
    const parts = Object.entries(r.drops)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k}=${n}`);
    return parts.length > 0 ? parts.join(',') : '-';
  }
  const v = r[field.toLowerCase() as Exclude<keyof AccessLogRecord, 'drops'>];
  return v === null || v === '' ? '-' : printable(String(v));
}

/**
 * Compiles a `--access-log-format` string: `%FIELD%` is replaced by the field (`-` when it has no value), `%%` by `%`.
 * Throws a UsageError naming an unknown field or a stray `%`.
 */
export function compileAccessLogFormat(format: string): (r: AccessLogRecord) => string {
  const names = Object.keys(ACCESS_LOG_FIELDS) as AccessLogField[];
  const parts: (string | AccessLogField)[] = [];
  const fields = new Set<string>();
  const re = /%([A-Za-z0-9_]*)%/g;
  let last = 0;
  for (const m of format.matchAll(re)) {
    const literal = format.slice(last, m.index);
    if (literal.includes('%')) throw new UsageError(`--access-log-format: a lone % before '${m[0]}'; write %% for a percent sign`);
    parts.push(literal);
    const name = m[1]!;
    if (name === '') parts.push('%');
    else if ((names as string[]).includes(name)) {
      parts.push(name as AccessLogField);
      fields.add(name);
    } else {
      const near = closest(name.toUpperCase(), names);
      throw new UsageError(`--access-log-format: unknown field %${name}%${near ? `; did you mean %${near}%?` : ''} (fields: ${names.join(', ')})`);
    }
    last = m.index + m[0].length;
  }
  const tail = format.slice(last);
  if (tail.includes('%')) throw new UsageError(`--access-log-format: a lone % in '${tail}'; write %% for a percent sign`);
  parts.push(tail);
  if (fields.size === 0) throw new UsageError('--access-log-format names no %FIELD%');
  return (r) => {
    let out = '';
    for (let i = 0; i < parts.length; i++) out += i % 2 === 0 ? (parts[i] as string) : parts[i] === '%' ? '%' : textValue(r, parts[i] as AccessLogField);
    return out;
  };
}

/** Where the access log goes and how it is written. */
export interface AccessLogOptions {
  /** A file (appended to, created with mode 0640) or `-` for stdout. */
  path: string;
  /** The text format; JSON lines without it. */
  format?: string | undefined;
  /**
   * Credentials that must never appear in a line (tokens, passwords): replaced by `<redacted>` wherever they occur.
   * No field carries request headers or URL userinfo; this also covers text a peer echoes (e.g. refusal details).
   */
  secrets?: readonly string[];
  /** Told when the file cannot be reopened or a write fails (once per failure, not per line). */
  onProblem?: (message: string) => void;
}

/**
 * An access log: one line per record, written without blocking the relay. Lines wait in the stream's buffer, at
 * most ACCESS_LOG_MAX_PENDING_BYTES; beyond that, or while the file cannot be written (a full disk), lines are
 * dropped and counted. SIGUSR1 reopens the file by name, so logrotate can move it away first.
 */
export class AccessLog {
  /** Lines the file or stdout took, and lines dropped. */
  readonly counts = { written: 0, dropped: 0 };
  private readonly path: string;
  private readonly render: (r: AccessLogRecord) => string;
  private readonly secrets: string[];
  private readonly onProblem: (message: string) => void;
  private stream: WriteStream | null = null;
  private brokenAt: number | null = null;
  private closed = false;
  private readonly onSignal = (): void => this.reopen();

  /** Opens the log; a file that cannot be opened is a UsageError naming it. */
  constructor(opts: AccessLogOptions) {
    this.path = opts.path;
    this.render = opts.format !== undefined ? compileAccessLogFormat(opts.format) : (r) => JSON.stringify(r);
    // A secret this short would match ordinary text; no field carries request headers in the first place.
    this.secrets = (opts.secrets ?? []).filter((s) => s.length >= ACCESS_LOG_MIN_SECRET_LENGTH);
    this.onProblem = opts.onProblem ?? (() => {});
    if (this.path !== '-') {
      try {
        this.stream = this.open();
      } catch (err) {
        throw new UsageError(`--access-log ${this.path}: ${(err as Error).message}`);
      }
      process.on('SIGUSR1', this.onSignal);
    }
  }

  /** Writes one record; never throws and never waits. */
  write(record: AccessLogRecord): void {
    if (this.closed) return;
    let line = `${this.render(record)}\n`;
    for (const s of this.secrets) line = line.split(s).join('<redacted>');
    if (this.path === '-') {
      process.stdout.write(line);
      this.counts.written++;
      return;
    }
    if (this.stream === null && this.brokenAt !== null && Date.now() - this.brokenAt >= ACCESS_LOG_RETRY_MS) this.reopen();
    const stream = this.stream;
    if (stream === null || stream.destroyed || stream.writableLength + line.length > ACCESS_LOG_MAX_PENDING_BYTES) {
      this.counts.dropped++;
      return;
    }
    stream.write(line, (err) => {
      if (err) this.counts.dropped++;
      else this.counts.written++;
    });
  }

  /** Opens the file again by name (after logrotate renamed it); the old one is closed once its lines are written. */
  reopen(): void {
    if (this.closed || this.path === '-') return;
    let next: WriteStream;
    try {
      next = this.open();
    } catch (err) {
      this.onProblem(`access log ${this.path} could not be reopened: ${(err as Error).message}`);
      return;
    }
    this.stream?.end();
    this.stream = next;
    this.brokenAt = null;
  }

  /** Writes what is pending and closes the file; stops listening for SIGUSR1. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    process.off('SIGUSR1', this.onSignal);
    const stream = this.stream;
    this.stream = null;
    if (stream === null || stream.destroyed) return;
    await new Promise<void>((resolve) => {
      stream.once('close', resolve);
      stream.end();
    });
  }

  private open(): WriteStream {
    const fd = openSync(this.path, 'a', 0o640);
    let stream: WriteStream;
    try {
      stream = createWriteStream('', { fd, autoClose: true });
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // The stream is destroyed: its pending lines fail (and are counted by their callbacks); new ones are dropped
      // until the file is reopened, by SIGUSR1 or after ACCESS_LOG_RETRY_MS.
      if (this.stream !== stream) return;
      this.stream = null;
      this.brokenAt = Date.now();
      this.onProblem(`access log ${this.path}: ${err.code ?? err.message}; lines are dropped and counted until it can be written again`);
    });
    return stream;
  }
}

/** A proxy URL's origin, without userinfo: what connect's records and metrics name the proxy by. */
export function proxyOrigin(proxy: string): string {
  try {
    return new URL(proxy).origin;
  } catch {
    return proxy.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1');
  }
}

/** The userinfo secrets of a proxy URL (the password as written and decoded), to keep them out of every line. */
export function proxyUrlSecrets(proxy: string): string[] {
  try {
    const u = new URL(proxy);
    if (u.password === '') return [];
    return [...new Set([u.password, decodeURIComponent(u.password)])];
  } catch {
    return [];
  }
}

const SERVER_TRANSPORT_HTTP: Record<string, '1.1' | '2'> = { h1: '1.1', h2: '2', post: '2' };

/** The access log record of a session serve relayed. */
export function serveSessionRecord(s: ServerSessionStats, now = Date.now()): AccessLogRecord {
  const http = SERVER_TRANSPORT_HTTP[s.transport] ?? null;
  const drops = { oversize: s.dropOversize, backpressure: s.dropBackpressure, context_id: s.dropContextId, udp_send: s.dropUdpSend, send_queue: s.dropSendQueue };
  return {
    start_time: new Date(s.openedAt).toISOString(),
    end_time: new Date(now).toISOString(),
    duration_ms: s.durationMs,
    command: 'serve',
    session: s.id,
    client: s.client,
    target: s.target,
    resolved: s.resolved,
    proxy: null,
    http_version: http,
    mode: s.transport === 'post' ? 'post' : s.bound !== undefined ? 'connect-udp-bind' : 'connect-udp',
    // RFC 9298 §3.2: an HTTP/1.1 tunnel is accepted with 101, HTTP/2 (and POST) with 200.
    status: s.transport === 'h1' ? 101 : 200,
    proxy_status: null,
    rx_datagrams: s.rxDatagrams,
    rx_bytes: s.rxBytes,
    tx_datagrams: s.txDatagrams,
    tx_bytes: s.txBytes,
    dropped: Object.values(drops).reduce((a, b) => a + b, 0),
    drops,
    connect_attempts: null,
    close_reason: s.closeReason,
  };
}

/** The access log record of a request serve refused. */
export function serveRefusalRecord(e: RefusedEvent, now = Date.now()): AccessLogRecord {
  const at = new Date(now).toISOString();
  const how = e.reset !== undefined ? `reset ${e.reset}` : e.goaway !== undefined ? `goaway ${e.goaway}` : 'refused';
  return {
    start_time: at,
    end_time: at,
    duration_ms: 0,
    command: 'serve',
    session: null,
    client: e.client,
    target: e.target ?? null,
    resolved: e.resolved ?? null,
    proxy: null,
    http_version: e.httpVersion === 2 ? '2' : '1.1',
    mode: null,
    status: e.status,
    proxy_status: e.error,
    rx_datagrams: 0,
    rx_bytes: 0,
    tx_datagrams: 0,
    tx_bytes: 0,
    dropped: 0,
    drops: {},
    connect_attempts: null,
    close_reason: `${how}: ${e.details}`,
  };
}

/** What connect's records say about every session: its proxy, target and transport. */
export interface ConnectLogContext {
  /** The proxy origin, without credentials. */
  proxy: string;
  /** The target (connect-udp mode); null in POST mode, where the proxy maps the path. */
  target: string | null;
  mode: 'connect-udp' | 'post';
  /** The transport's name: `h1`, `h2` or `post`. */
  transport: string;
}

/** The access log record of a connect session; `proxyStatus` is the error type of its last refusal. */
export function connectSessionRecord(s: ClientSessionStats, ctx: ConnectLogContext, proxyStatus: string | null, now = Date.now()): AccessLogRecord {
  const drops: Record<string, number> = {};
  for (const [k, n] of Object.entries(s.drops)) drops[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = n;
  return {
    start_time: new Date(s.openedAt).toISOString(),
    end_time: new Date(now).toISOString(),
    duration_ms: s.durationMs,
    command: 'connect',
    session: s.id,
    client: s.peer,
    target: ctx.target,
    resolved: null,
    proxy: ctx.proxy,
    http_version: SERVER_TRANSPORT_HTTP[ctx.transport] ?? null,
    mode: ctx.mode,
    status: s.status,
    proxy_status: proxyStatus,
    rx_datagrams: s.rxDatagrams,
    rx_bytes: s.rxBytes,
    tx_datagrams: s.txDatagrams,
    tx_bytes: s.txBytes,
    dropped: Object.values(drops).reduce((a, b) => a + b, 0),
    drops,
    connect_attempts: s.connectAttempts,
    close_reason: s.closeReason,
  };
}

/** Logs every session serve relays, and every request it refuses. */
export function attachServeAccessLog(server: TunnelServer, log: AccessLog): void {
  server.on('session-close', (s: ServerSessionStats) => log.write(serveSessionRecord(s)));
  server.on('refused', (e: RefusedEvent) => log.write(serveRefusalRecord(e)));
}

/** Logs every connect session at its end, with the Proxy-Status error type of its last failed attempt. */
export function attachConnectAccessLog(client: TunnelClient, log: AccessLog, ctx: ConnectLogContext): void {
  // Held only from a failed attempt to the session's close, so bounded by the open sessions.
  const lastError = new Map<string, string>();
  client.on('connect-error', (e: { id: string; error: Error }) => {
    const ps = e.error instanceof UdpTunnelError ? (e.error.details as Partial<RefusalDetails>).proxyStatus?.error : undefined;
    if (ps !== undefined) lastError.set(e.id, ps);
    else lastError.delete(e.id);
  });
  client.on('session-ready', (e: { id: string }) => lastError.delete(e.id));
  client.on('session-close', (s: ClientSessionStats) => {
    const ps = lastError.get(s.id) ?? null;
    lastError.delete(s.id);
    log.write(connectSessionRecord(s, ctx, ps));
  });
}
