/** RFC 9209 §2.3 error types udp-tunnel reports in `Proxy-Status`. */
export type ProxyErrorType =
  | 'http_request_error'
  | 'http_request_denied'
  | 'destination_ip_prohibited'
  | 'destination_ip_unroutable'
  | 'destination_not_found'
  | 'dns_error'
  | 'dns_timeout'
  | 'connection_refused'
  | 'connection_limit_reached'
  | 'proxy_internal_error'
  | 'proxy_configuration_error'
  | 'connection_timeout'
  | 'connection_terminated'
  | 'tls_protocol_error'
  | 'tls_certificate_error'
  | 'http_protocol_error'
  | 'http_response_incomplete'
  | 'http_response_header_section_size';

/** The proxy name in our Proxy-Status entries (an sf-token, RFC 9209 §2). */
export const PROXY_STATUS_NAME = 'udp-tunnel';

/** Formats a Proxy-Status header value (RFC 9209 §2) with an error type and optional parameters. */
export function formatProxyStatus(error: ProxyErrorType, params: { rcode?: string; details?: string; name?: string } = {}): string {
  let out = `${params.name ?? PROXY_STATUS_NAME}; error=${error}`;
  if (params.rcode !== undefined) out += `; rcode=${sfString(params.rcode)}`;
  if (params.details !== undefined) out += `; details=${sfString(params.details)}`;
  return out;
}

// RFC 8941 §3.3.3: sf-string is DQUOTE-delimited printable ASCII with \" and \\ escaped.
function sfString(s: string): string {
  // Our own messages cite RFC sections with '§'; spell it out rather than lose it to '?'.
  const printable = s.replace(/§\s*/g, 'section ').replace(/[^\x20-\x7e]/g, '?');
  return `"${printable.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Parses the error type out of a Proxy-Status header value (first entry), for client-side messages. */
export function parseProxyStatusError(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const m = /;\s*error=([A-Za-z0-9_*.:%/-]+)/.exec(value);
  return m?.[1];
}

/** Longest Proxy-Status field value the client parses; a longer one is reported as malformed, never parsed. */
export const MAX_PROXY_STATUS_LENGTH = 4096;

/** Longest `details` text kept from a received Proxy-Status (longer text is cut and marked with "..."). */
export const MAX_PROXY_STATUS_DETAILS = 512;

/** A parameter value of a Proxy-Status member (RFC 8941 bare item; byte sequences are kept as their base64 text). */
export type SfBareItem = string | number | boolean;

/** One member of a received Proxy-Status list: the intermediary's name and its parameters (RFC 9209 §2). */
export interface ProxyStatusMember {
  /** The intermediary's name (an sf-token or sf-string). */
  proxy: string;
  /** Every parameter as received, keyed by its name. */
  params: Record<string, SfBareItem>;
}

/** Outcome of `parseProxyStatus`: the list's members, or why the field is not a valid list. */
export type ProxyStatusParse = { ok: true; members: ProxyStatusMember[] } | { ok: false; reason: string };

/** What a client reports about a received Proxy-Status: the member that names an error, or why none could be read. */
export interface ProxyStatusReport {
  /** The intermediary that reported it. */
  proxy?: string;
  /** RFC 9209 §2.1.1 `error`: the error type. */
  error?: string;
  /** RFC 9209 §2.1.5 `details`: free text from the intermediary (printable ASCII, cut to MAX_PROXY_STATUS_DETAILS). */
  details?: string;
  /** RFC 9209 §2.3.2 `rcode` of a dns_error. */
  rcode?: string;
  /** RFC 9209 §2.3.2 `info-code` (extended DNS error) of a dns_error. */
  infoCode?: number;
  /** RFC 9209 §2.1.2 `next-hop`. */
  nextHop?: string;
  /** RFC 9209 §2.1.4 `received-status`. */
  receivedStatus?: number;
  /** Members in the list (intermediaries that reported). */
  members: number;
  /** Why the field could not be read (RFC 8941 §4.2: a field that fails to parse is ignored as a whole). */
  malformed?: string;
}

class SfError extends Error {}

const KEY_RE = /[a-z*][a-z0-9_\-.*]*/y;
const NUMBER_RE = /-?[0-9]{1,15}(?:\.[0-9]{1,3})?/y;
const TOKEN_RE = /[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/y;

/** A bounded RFC 8941 §4.2 parser for a List of Items; throws SfError only, which parseProxyStatus catches. */
class SfListParser {
  private i = 0;
  constructor(private readonly s: string) {}

  parse(): ProxyStatusMember[] {
    const out: ProxyStatusMember[] = [];
    this.skip(' ');
    if (this.i >= this.s.length) return out;
    for (;;) {
      if (this.s[this.i] === '(') throw new SfError(`member ${out.length + 1} is an inner list, not an intermediary`);
      const name = this.bareItem();
      if (typeof name !== 'string' || this.lastKind === 'bytes') throw new SfError(`member ${out.length + 1} does not start with a name`);
      out.push({ proxy: name, params: this.parameters() });
      this.skip(' \t');
      if (this.i >= this.s.length) return out;
      if (this.s[this.i] !== ',') throw new SfError(`unexpected ${JSON.stringify(this.s[this.i])} at offset ${this.i}`);
      this.i++;
      this.skip(' \t');
      if (this.i >= this.s.length) throw new SfError('trailing comma');
    }
  }

  private lastKind: 'string' | 'token' | 'number' | 'boolean' | 'bytes' = 'token';

  private skip(chars: string): void {
    while (this.i < this.s.length && chars.includes(this.s[this.i]!)) this.i++;
  }

  private parameters(): Record<string, SfBareItem> {
    // Keys match [a-z*][a-z0-9_.*-]*, so none can be __proto__.
    const params: Record<string, SfBareItem> = {};
    while (this.s[this.i] === ';') {
      this.i++;
      this.skip(' ');
      const key = this.key();
      let value: SfBareItem = true;
      if (this.s[this.i] === '=') {
        this.i++;
        value = this.bareItem();
      }
      params[key] = value;
    }
    return params;
  }

  /** Matches `re` (sticky) at the cursor and moves past it; null when it does not match there. */
  private match(re: RegExp): string | null {
    re.lastIndex = this.i;
    const m = re.exec(this.s);
    if (m === null) return null;
    this.i += m[0].length;
    return m[0];
  }

  private key(): string {
    const k = this.match(KEY_RE);
    if (k === null) throw new SfError(`bad parameter name at offset ${this.i}`);
    return k;
  }

  private bareItem(): SfBareItem {
    const c = this.s[this.i];
    if (c === undefined) throw new SfError('value missing at end');
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (c === '?') return this.boolean();
    if (c === ':') return this.bytes();
    if (/[A-Za-z*]/.test(c)) return this.token();
    throw new SfError(`unexpected ${JSON.stringify(c)} at offset ${this.i}`);
  }

  // RFC 8941 §4.2.5: only \" and \\ are escapes; anything outside printable ASCII fails the field.
  private string(): string {
    this.lastKind = 'string';
    this.i++;
    let out = '';
    while (this.i < this.s.length) {
      const c = this.s[this.i++]!;
      if (c === '\\') {
        const next = this.s[this.i++];
        if (next !== '"' && next !== '\\') throw new SfError(`bad escape in string at offset ${this.i - 2}`);
        out += next;
      } else if (c === '"') {
        return out;
      } else if (c < ' ' || c > '~') {
        throw new SfError(`non-printable character in string at offset ${this.i - 1}`);
      } else {
        out += c;
      }
    }
    throw new SfError('unterminated string');
  }

  // RFC 8941 §4.2.4: at most 15 integer digits, or 12 + '.' + 3 for a decimal.
  private number(): number {
    this.lastKind = 'number';
    const at = this.i;
    const text = this.match(NUMBER_RE);
    if (text === null) throw new SfError(`bad number at offset ${at}`);
    const dot = text.indexOf('.');
    if (dot >= 0 && dot - (text.startsWith('-') ? 1 : 0) > 12) throw new SfError(`decimal too long at offset ${at}`);
    if (this.s[this.i] !== undefined && /[0-9.]/.test(this.s[this.i]!)) throw new SfError(`number too long at offset ${at}`);
    return Number(text);
  }

  private boolean(): boolean {
    this.lastKind = 'boolean';
    const v = this.s[this.i + 1];
    if (v !== '0' && v !== '1') throw new SfError(`bad boolean at offset ${this.i}`);
    this.i += 2;
    return v === '1';
  }

  private bytes(): string {
    this.lastKind = 'bytes';
    const end = this.s.indexOf(':', this.i + 1);
    if (end < 0) throw new SfError('unterminated byte sequence');
    const body = this.s.slice(this.i + 1, end);
    if (!/^[A-Za-z0-9+/=]*$/.test(body)) throw new SfError(`bad byte sequence at offset ${this.i}`);
    this.i = end + 1;
    return body;
  }

  // RFC 8941 §4.2.6: tchar plus ':' and '/'.
  private token(): string {
    this.lastKind = 'token';
    return this.match(TOKEN_RE) ?? '';
  }
}

/**
 * Parses a Proxy-Status field value (RFC 9209 §2: an RFC 8941 List of intermediaries with parameters). Repeated
 * field lines are joined with ", " first (RFC 9110 §5.3). Never throws: a value that is not a string, is longer
 * than MAX_PROXY_STATUS_LENGTH or breaks RFC 8941 comes back as `{ ok: false, reason }`.
 */
export function parseProxyStatus(value: unknown): ProxyStatusParse {
  const joined = Array.isArray(value) ? value.map(String).join(', ') : value;
  if (typeof joined !== 'string') return { ok: false, reason: 'not a text field' };
  if (joined.length > MAX_PROXY_STATUS_LENGTH) return { ok: false, reason: `${joined.length} bytes, over the ${MAX_PROXY_STATUS_LENGTH}-byte limit` };
  // RFC 8941 §4.2: leading and trailing spaces are discarded before parsing.
  const text = joined.replace(/^ +| +$/g, '');
  try {
    return { ok: true, members: new SfListParser(text).parse() };
  } catch (err) {
    if (err instanceof SfError) return { ok: false, reason: err.message };
    return { ok: false, reason: 'unreadable' };
  }
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/**
 * Reads what a client should report from a Proxy-Status field: the first member that names an error (RFC 9209 §2:
 * the first member is the intermediary closest to the origin, so the one that failed the request), else the first
 * member. Undefined when the response has no Proxy-Status; never throws.
 */
export function proxyStatusReport(value: unknown): ProxyStatusReport | undefined {
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) return undefined;
  const parsed = parseProxyStatus(value);
  if (!parsed.ok) return { members: 0, malformed: parsed.reason };
  const m = parsed.members.find((x) => typeof x.params['error'] === 'string') ?? parsed.members[0];
  if (m === undefined) return { members: 0 };
  const p = m.params;
  const str = (k: string): string | undefined => (typeof p[k] === 'string' ? (p[k] as string) : undefined);
  const int = (k: string): number | undefined => (typeof p[k] === 'number' && Number.isInteger(p[k]) ? (p[k] as number) : undefined);
  const report: ProxyStatusReport = { proxy: clip(m.proxy, 128), members: parsed.members.length };
  const error = str('error');
  if (error !== undefined) report.error = clip(error, 128);
  const details = str('details');
  if (details !== undefined) report.details = clip(details, MAX_PROXY_STATUS_DETAILS);
  const rcode = str('rcode');
  if (rcode !== undefined) report.rcode = clip(rcode, 64);
  const infoCode = int('info-code');
  if (infoCode !== undefined) report.infoCode = infoCode;
  const nextHop = str('next-hop');
  if (nextHop !== undefined) report.nextHop = clip(nextHop, 256);
  const receivedStatus = int('received-status');
  if (receivedStatus !== undefined) report.receivedStatus = receivedStatus;
  return report;
}
