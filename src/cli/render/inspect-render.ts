import Table from 'cli-table3';
import type { ChalkInstance } from 'chalk';
import { redactCredentials, trimPreview } from '../../inspect/event-transform.js';
import type { CapsuleEvent, InspectEvent } from '../../inspect/events.js';
import { formatHostPort } from '../../tunnel/address.js';
import { parseProxyStatusError } from '../../tunnel/proxy-status.js';
import { displayWidth, firstThatFits, outputWidth, wrapWords } from './width.js';

/** Which events are printed (the summary and --strict still count every event of the selected sessions). */
export interface InspectFilters {
  /** Session ids to show (exact match); empty = all. */
  sessions: string[];
  /** Capsule types to show: a name prefix (DATAGRAM, GREASE, UNKNOWN, LEGACY) or a number (64, 0x40); empty = all. */
  types: string[];
  /** Print error events only. */
  errorsOnly: boolean;
}

/** Options of an InspectRenderer. */
export interface InspectRendererOptions {
  /** NDJSON events instead of human lines. */
  json: boolean;
  /** Varint widths, offsets and header fields on human lines. */
  verbose: boolean;
  /** Payload bytes shown per capsule (hex and ASCII); also cuts JSON previews. */
  bytes: number;
  /** Whole payloads (a hex dump under the capsule line). */
  full: boolean;
  filters: InspectFilters;
  /** Keep Authorization credentials in the output (default: replaced by `<redacted>`). */
  showCredentials?: boolean;
  /** Receives each output line (without newline). */
  write: (line: string) => void;
  chalk: ChalkInstance;
  /** Sessions kept for the summary table (default 10000); later ones are only counted. */
  maxSummarySessions?: number;
  /** Columns human lines and the summary may use (default: outputWidth() of stdout). */
  width?: number;
}

interface SessionSummary {
  id: string;
  first: number;
  last: number;
  request: string;
  status: string;
  datagrams: [number, number];
  bytes: [number, number];
  unknown: number;
  grease: number;
  errors: number;
  close: string | null;
  /** A request was seen: without a close the session is still open. */
  requested: boolean;
}

const DIR_INDEX = { '->': 0, '<-': 1 } as const;

/** Hex pairs separated by spaces and the ASCII column (printable 0x20..0x7e, others as '.'). */
export function hexAscii(hex: string): { hex: string; ascii: string } {
  const pairs: string[] = [];
  let ascii = '';
  for (let i = 0; i + 1 < hex.length; i += 2) {
    const pair = hex.slice(i, i + 2);
    pairs.push(pair);
    const b = parseInt(pair, 16);
    ascii += b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : '.';
  }
  return { hex: pairs.join(' '), ascii };
}

/** True when a capsule matches one --type value. */
export function capsuleTypeMatches(ev: CapsuleEvent, filter: string): boolean {
  const f = filter.trim();
  if (/^(?:0x[0-9a-f]+|[0-9]+)$/i.test(f)) return BigInt(f) === BigInt(ev.type);
  return ev.typeName.toUpperCase().startsWith(f.toUpperCase());
}

/**
 * Renders inspect events: human lines (relative time, per-session colour, direction arrow, request line, capsules
 * with hex+ASCII preview, red errors with offset and RFC rule) or NDJSON; applies the filters; keeps per-session
 * totals for the summary table printed on exit.
 */
export class InspectRenderer {
  /** Error events seen in the selected sessions (for --strict). */
  errors = 0;
  /** Events seen in the selected sessions. */
  events = 0;
  /** Sessions not kept for the summary because the table was full. */
  untrackedSessions = 0;
  private readonly opts: InspectRendererOptions;
  private readonly summaries = new Map<string, SessionSummary>();
  private readonly colours = new Map<string, (s: string) => string>();
  private readonly palette: Array<(s: string) => string>;
  private sessionWidth = 4;

  constructor(options: InspectRendererOptions) {
    this.opts = options;
    const c = options.chalk;
    this.palette = [c.cyan, c.magenta, c.green, c.blue, c.cyanBright, c.magentaBright, c.greenBright, c.blueBright, c.yellowBright];
  }

  /** Takes one event: counts it and prints it when it passes the filters. */
  handle(input: InspectEvent): void {
    const f = this.opts.filters;
    if (f.sessions.length > 0 && !f.sessions.includes(input.session)) return;
    this.events++;
    if (input.event === 'error') this.errors++;
    this.account(input);
    if (f.errorsOnly && input.event !== 'error') return;
    if (f.types.length > 0 && input.event === 'capsule' && !f.types.some((t) => capsuleTypeMatches(input, t))) return;
    let ev = this.opts.full ? input : trimPreview(input, this.opts.bytes);
    if (!this.opts.showCredentials) ev = redactCredentials(ev);
    if (this.opts.json) {
      this.opts.write(JSON.stringify(ev));
      return;
    }
    for (const line of this.format(ev)) this.opts.write(line);
  }

  /** The per-session summary table, or null when no session was seen; a narrower layout when the full one is too wide. */
  summaryTable(): string | null {
    if (this.summaries.size === 0) return null;
    const c = this.opts.chalk;
    const sessions = [...this.summaries.values()];
    const duration = (s: SessionSummary): string => `${((s.last - s.first) / 1000).toFixed(3)}s`;
    const close = (s: SessionSummary): string => s.close ?? (s.requested ? 'open' : '-');
    const errors = (s: SessionSummary): string => (s.errors > 0 ? c.red(String(s.errors)) : '0');
    const table = (head: string[], row: (s: SessionSummary) => string[]): string => {
      const t = new Table({ head: head.map((h) => c.bold(h)), style: { head: [], border: [] } });
      for (const s of sessions) t.push([this.colourOf(s.id)(s.id), ...row(s)]);
      return t.toString();
    };
    const pair = (a: number, b: number): string => `${a} / ${b}`;
    let out = firstThatFits(this.width, [
      () =>
        table(['session', 'request', 'status', 'dgrams ->', 'bytes ->', 'dgrams <-', 'bytes <-', 'unknown', 'GREASE', 'errors', 'duration', 'close'], (s) => [
          s.request,
          s.status,
          String(s.datagrams[0]),
          String(s.bytes[0]),
          String(s.datagrams[1]),
          String(s.bytes[1]),
          String(s.unknown),
          String(s.grease),
          errors(s),
          duration(s),
          close(s),
        ]),
      () =>
        table(['session', 'request', 'status', 'dgrams -> / <-', 'bytes -> / <-', 'other', 'errors', 'duration', 'close'], (s) => [
          s.request,
          s.status,
          pair(s.datagrams[0], s.datagrams[1]),
          pair(s.bytes[0], s.bytes[1]),
          String(s.unknown + s.grease),
          errors(s),
          duration(s),
          close(s),
        ]),
      () => table(['session', 'request', 'status', 'dgrams -> / <-', 'errors', 'close'], (s) => [s.request, s.status, pair(s.datagrams[0], s.datagrams[1]), errors(s), close(s)]),
      () =>
        sessions
          .flatMap((s) =>
            wrapWords(
              `${this.colourOf(s.id)(s.id)} ${s.request} status ${s.status}, dgrams ${pair(s.datagrams[0], s.datagrams[1])}, bytes ${pair(s.bytes[0], s.bytes[1])}, ` +
                `unknown ${s.unknown}, GREASE ${s.grease}, errors ${errors(s)}, ${duration(s)}, close ${close(s)}`,
              this.width,
            ),
          )
          .join('\n'),
    ]);
    if (this.untrackedSessions > 0) out += `\n${this.untrackedSessions} more sessions not shown (summary limit reached)`;
    return out;
  }

  /** Columns human output may use. */
  private get width(): number {
    return this.opts.width ?? outputWidth();
  }

  private account(ev: InspectEvent): void {
    let s = this.summaries.get(ev.session);
    if (s === undefined) {
      if (this.summaries.size >= (this.opts.maxSummarySessions ?? 10_000)) {
        if (ev.event === 'request') this.untrackedSessions++;
        return;
      }
      s = {
        id: ev.session,
        first: ev.tMs,
        last: ev.tMs,
        request: '-',
        status: '-',
        datagrams: [0, 0],
        bytes: [0, 0],
        unknown: 0,
        grease: 0,
        errors: 0,
        close: null,
        requested: false,
      };
      this.summaries.set(ev.session, s);
    }
    s.first = Math.min(s.first, ev.tMs);
    s.last = Math.max(s.last, ev.tMs);
    switch (ev.event) {
      case 'request':
        s.requested = true;
        s.request = ev.target ? `${ev.target.host.includes(':') ? `[${ev.target.host}]` : ev.target.host}:${ev.target.port}` : `${ev.method} ${ev.path ?? '-'}`.slice(0, 48);
        return;
      case 'response': {
        if (ev.status >= 100 && ev.status < 200 && ev.status !== 101) return;
        const kind = parseProxyStatusError(ev.proxyStatus ?? undefined);
        s.status = `${ev.status}${kind ? ` ${kind}` : ''}`;
        return;
      }
      case 'capsule': {
        const i = DIR_INDEX[ev.dir];
        if (ev.typeName === 'DATAGRAM') {
          s.datagrams[i]++;
          s.bytes[i] += ev.payloadLength ?? 0;
        } else if (ev.typeName.startsWith('GREASE')) {
          s.grease++;
        } else {
          s.unknown++;
        }
        return;
      }
      case 'error':
        s.errors++;
        return;
      case 'close':
        s.close = ev.detail ? `${ev.reason} (${ev.detail})` : ev.reason;
        return;
      default:
        return;
    }
  }

  private colourOf(session: string): (s: string) => string {
    let fn = this.colours.get(session);
    if (fn === undefined) {
      // Colours follow first appearance, so neighbouring sessions differ; the map is bounded like the summary.
      fn = this.palette[this.colours.size % this.palette.length]!;
      if (this.colours.size < (this.opts.maxSummarySessions ?? 10_000)) this.colours.set(session, fn);
    }
    return fn;
  }

  private prefix(ev: InspectEvent, arrow: string): string {
    const c = this.opts.chalk;
    this.sessionWidth = Math.max(this.sessionWidth, ev.session.length);
    const time = (ev.tMs / 1000).toFixed(3).padStart(8);
    return `${c.dim(time)} ${this.colourOf(ev.session)(ev.session.padEnd(this.sessionWidth))} ${arrow}`;
  }

  /** A human line wrapped at word boundaries to the width, continuation lines under the event's text. */
  private wrap(line: string): string[] {
    return wrapWords(line, this.width, this.indent());
  }

  private indent(): string {
    return ' '.repeat(8 + 1 + this.sessionWidth + 1 + 2 + 1);
  }

  private format(ev: InspectEvent): string[] {
    const c = this.opts.chalk;
    const v = this.opts.verbose;
    switch (ev.event) {
      case 'request': {
        const parts = [c.bold(ev.method || '-')];
        if (ev.protocol !== null) parts.push(ev.protocol);
        parts.push(ev.path ?? '-');
        if (ev.target) parts.push(`target ${ev.target.host.includes(':') ? `[${ev.target.host}]` : ev.target.host}:${ev.target.port}`);
        parts.push(ev.capsuleProtocol ? 'capsule-protocol ?1' : c.yellow('no capsule-protocol'));
        parts.push(c.dim(`(HTTP/${ev.http}${ev.authority !== null ? `, ${ev.authority}` : ''})`));
        const lines = this.wrap(`${this.prefix(ev, '->')} ${parts.join(' ')}`);
        if (v) for (const [n, val] of ev.headers) lines.push(...this.wrap(`${this.indent()}${c.dim(`${n}: ${val}`)}`));
        return lines;
      }
      case 'response': {
        const ok = (ev.status >= 200 && ev.status < 300) || ev.status === 101;
        const parts = [ok ? c.green(String(ev.status)) : c.red(String(ev.status))];
        if (ev.proxyStatus !== null) parts.push(`proxy-status: ${ev.proxyStatus}`);
        if (ev.capsuleProtocol) parts.push('capsule-protocol ?1');
        const lines = this.wrap(`${this.prefix(ev, '<-')} ${parts.join(' ')}`);
        if (v) for (const [n, val] of ev.headers) lines.push(...this.wrap(`${this.indent()}${c.dim(`${n}: ${val}`)}`));
        return lines;
      }
      case 'capsule':
        return this.formatCapsule(ev);
      case 'error': {
        const layer = ev.layer === 'capsule' ? '' : `${ev.layer} `;
        const rule = ev.rfc !== null ? ` (${ev.rfc})` : '';
        return this.wrap(`${this.prefix(ev, ev.dir)} ${c.red.bold(`${layer}ERROR at byte ${ev.offset}:`)} ${c.red(`${ev.reason}${rule}`)} ${c.dim(`[${ev.code}]`)}`);
      }
      case 'end': {
        const parts = [`end: ${ev.totalBytes} bytes, ${ev.capsules} capsule${ev.capsules === 1 ? '' : 's'}`];
        if (!ev.clean) parts.push('not clean');
        if (ev.ignoredBytes > 0) parts.push(`${ev.ignoredBytes} bytes not decoded`);
        return [`${this.prefix(ev, ev.dir)} ${c.dim(parts.join(', '))}`];
      }
      case 'close':
        return this.wrap(`${this.prefix(ev, '  ')} ${c.dim(`close ${ev.reason}${ev.detail !== null ? ` (${ev.detail})` : ''}`)}`);
      default:
        return [];
    }
  }

  private formatCapsule(ev: CapsuleEvent): string[] {
    const c = this.opts.chalk;
    const isDatagram = ev.payloadLength !== undefined;
    const name = ev.typeName === 'DATAGRAM' ? c.bold(ev.typeName) : c.yellow(ev.typeName);
    const parts = [name, `len ${ev.length}`];
    if (isDatagram) {
      parts.push(`ctx ${ev.contextId}`);
      if (ev.target !== undefined) parts.push(`${ev.target.compressed ? 'for' : 'addr'} ${formatHostPort(ev.target.address, ev.target.port)}`);
      parts.push(`payload ${ev.payloadLength}`);
    } else if (ev.contextId !== undefined) {
      // CONNECT-UDP Bind capsules: the context ID, and what COMPRESSION_ASSIGN registers.
      parts.push(`ctx ${ev.contextId}`);
      if (ev.ipVersion === 0) parts.push('uncompressed');
      else if (ev.address != null && ev.port != null) parts.push(formatHostPort(ev.address, ev.port));
    }
    if (ev.nonMinimal) parts.push(c.yellow('non-minimal'));
    if (this.opts.verbose) {
      const widths = [`type ${ev.typeWidth}B`, `len ${ev.lengthWidth}B`];
      if (ev.contextIdWidth !== undefined) widths.push(`ctx ${ev.contextIdWidth}B`);
      parts.push(c.dim(`@${ev.offset} [${widths.join(', ')}]`));
    }
    const hex = (isDatagram ? ev.payloadHex : ev.valueHex) ?? '';
    const more = ev.previewTruncated ? c.dim(' ...') : '';
    const head = `${this.prefix(ev, ev.dir)} ${parts.join(' ')}`;
    if (hex === '') return [head];
    if (!this.opts.full || hex.length <= 32) {
      const p = hexAscii(hex);
      const inline = `${head}  ${p.hex}  ${c.dim(`|${p.ascii}|`)}${more}`;
      if (displayWidth(inline) <= this.width) return [inline];
      // Too wide on one line: the preview goes under the capsule line, cut to the bytes that fit there.
      const room = Math.max(1, Math.floor((this.width - this.indent().length - 2 - 4 - 4) / 4));
      const shown = hexAscii(hex.slice(0, room * 2));
      const cut = room * 2 < hex.length || ev.previewTruncated ? c.dim(' ...') : '';
      return [head, `${this.indent()}${shown.hex}  ${c.dim(`|${shown.ascii}|`)}${cut}`];
    }
    // --full: the whole payload as a dump under the capsule line, 16 bytes per row.
    const lines = [head];
    for (let off = 0; off < hex.length; off += 32) {
      const p = hexAscii(hex.slice(off, off + 32));
      lines.push(`${this.indent()}${c.dim((off / 2).toString(16).padStart(4, '0'))}  ${p.hex.padEnd(47)}  ${c.dim(`|${p.ascii}|`)}`);
    }
    if (ev.previewTruncated) lines.push(`${this.indent()}${c.dim('...')}`);
    return lines;
  }
}
