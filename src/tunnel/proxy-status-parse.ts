/** One member of a Proxy-Status field (RFC 9209 §2): the intermediary that wrote it and its parameters. */
export interface ProxyStatusEntry {
  /** The intermediary's name (an sf-token or sf-string). */
  proxy: string;
  /** RFC 9209 §2.1.1 `error`: the error type (§2.3), e.g. `destination_ip_prohibited`. */
  error?: string;
  /** RFC 9209 §2.1.5 `details`: free text for humans. */
  details?: string;
  /** Every parameter as received (strings, numbers, booleans; byte sequences as their base64 text). */
  params: Record<string, string | number | boolean>;
}

/** A Proxy-Status field parsed, with the raw value kept for display. */
export interface ParsedProxyStatus {
  /** The field as received; several field lines joined with ", " (RFC 9110 §5.3). */
  raw: string;
  /** The members, first the intermediary nearest the origin (RFC 9209 §2); empty when the field does not parse. */
  entries: ProxyStatusEntry[];
  /** False when the value is not a valid sf-list (RFC 8941 §4.2: the whole field is then ignored). */
  valid: boolean;
}

type Bare = string | number | boolean;

// RFC 8941 §3.3.4: tchar, plus ':' and '/' inside a token.
const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/;
const KEY_FIRST = /[a-z*]/;
const KEY_CHAR = /[a-z0-9_\-.*]/;

/** A cursor over one field value; every method throws on a syntax error (caught by parseProxyStatus). */
class Cursor {
  i = 0;
  constructor(readonly s: string) {}

  get done(): boolean {
    return this.i >= this.s.length;
  }

  peek(): string {
    return this.s[this.i] ?? '';
  }

  skip(chars: string): void {
    while (!this.done && chars.includes(this.peek())) this.i++;
  }

  // RFC 8941 §4.2.3.1
  bareItem(): Bare {
    const c = this.peek();
    if (c === '"') return this.string();
    if (c === '?') {
      const v = this.s[this.i + 1];
      if (v !== '0' && v !== '1') throw new Error('bad boolean');
      this.i += 2;
      return v === '1';
    }
    if (c === ':') {
      const end = this.s.indexOf(':', this.i + 1);
      if (end < 0) throw new Error('unterminated byte sequence');
      const text = this.s.slice(this.i + 1, end);
      if (!/^[A-Za-z0-9+/=]*$/.test(text)) throw new Error('bad byte sequence');
      this.i = end + 1;
      return text;
    }
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (/[A-Za-z*]/.test(c)) {
      const start = this.i;
      this.i++;
      while (!this.done && TOKEN_CHAR.test(this.peek())) this.i++;
      return this.s.slice(start, this.i);
    }
    throw new Error(`unexpected '${c}'`);
  }

  // RFC 8941 §4.2.5: printable ASCII, only \" and \\ escaped.
  private string(): string {
    let out = '';
    this.i++;
    while (!this.done) {
      const c = this.s[this.i++]!;
      if (c === '\\') {
        const n = this.s[this.i++];
        if (n !== '"' && n !== '\\') throw new Error('bad escape');
        out += n;
      } else if (c === '"') {
        return out;
      } else if (c < ' ' || c > '~') {
        throw new Error('non-printable character in string');
      } else {
        out += c;
      }
    }
    throw new Error('unterminated string');
  }

  // RFC 8941 §4.2.4: at most 15 digits (12 before a decimal point).
  private number(): number {
    const m = /^-?(\d{1,12}\.\d{1,3}|\d{1,15})(?![\d.])/.exec(this.s.slice(this.i));
    if (m === null) throw new Error('bad number');
    this.i += m[0].length;
    return Number(m[0]);
  }

  // RFC 8941 §4.2.3.2
  params(): Record<string, Bare> {
    const out: Record<string, Bare> = {};
    while (this.peek() === ';') {
      this.i++;
      this.skip(' ');
      if (!KEY_FIRST.test(this.peek())) throw new Error('bad parameter key');
      const start = this.i;
      while (!this.done && KEY_CHAR.test(this.peek())) this.i++;
      const key = this.s.slice(start, this.i);
      let value: Bare = true;
      if (this.peek() === '=') {
        this.i++;
        value = this.bareItem();
      }
      out[key] = value;
    }
    return out;
  }
}

/**
 * Parses a Proxy-Status field (RFC 9209 §2: an sf-list, RFC 8941 §4.2.1, of intermediaries with parameters).
 * Returns undefined when there is no field; a value that is not a valid list comes back with `valid: false`.
 */
export function parseProxyStatus(value: string | string[] | undefined): ParsedProxyStatus | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value.join(', ') : value;
  const c = new Cursor(raw);
  const entries: ProxyStatusEntry[] = [];
  try {
    c.skip(' \t');
    while (!c.done) {
      // RFC 9209 §2: members are items, never inner lists.
      if (c.peek() === '(') throw new Error('inner list');
      const proxy = c.bareItem();
      const params = c.params();
      const entry: ProxyStatusEntry = { proxy: String(proxy), params };
      if (typeof params['error'] === 'string') entry.error = params['error'];
      if (typeof params['details'] === 'string') entry.details = params['details'];
      entries.push(entry);
      c.skip(' \t');
      if (c.done) break;
      if (c.peek() !== ',') throw new Error('expected a comma');
      c.i++;
      c.skip(' \t');
      if (c.done) throw new Error('trailing comma');
    }
  } catch {
    return { raw, entries: [], valid: false };
  }
  return { raw, entries, valid: true };
}
