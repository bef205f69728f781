import { formatHostPort } from './address.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';

// Header values may name facts of the session they open a tunnel for, written as Envoy's substitution formatters
// (`%DOWNSTREAM_LOCAL_PORT%`) so a configuration reads the same on both. `%%` is a literal percent sign.

/** The local side of one session: the local peer (remote) and the client's own socket (local). */
export interface DownstreamInfo {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** What a template may name; each expands to text for one session (empty when the session has no downstream). */
const NAMES: Readonly<Record<string, (session: string, d: DownstreamInfo | undefined) => string>> = {
  DOWNSTREAM_REMOTE_ADDRESS: (_s, d) => (d ? formatHostPort(d.remoteAddress, d.remotePort) : ''),
  DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: (_s, d) => d?.remoteAddress ?? '',
  DOWNSTREAM_REMOTE_PORT: (_s, d) => (d ? String(d.remotePort) : ''),
  DOWNSTREAM_LOCAL_ADDRESS: (_s, d) => (d ? formatHostPort(d.localAddress, d.localPort) : ''),
  DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: (_s, d) => d?.localAddress ?? '',
  DOWNSTREAM_LOCAL_PORT: (_s, d) => (d ? String(d.localPort) : ''),
  SESSION_ID: (s) => s,
};

/** The `%NAME%` substitutions header values may use. */
export const HEADER_TEMPLATE_NAMES: readonly string[] = Object.keys(NAMES);

/** A header value split into literal text and names to substitute. */
type Part = { text: string } | { name: string };

function badValue(name: string, value: string, why: string): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `headers '${name}: ${value}': ${why}`, { option: 'headers', value: `${name}: ${value}` });
}

/** Splits a value into parts; throws INVALID_OPTION (option `headers`) for an unknown name or a lone `%`. */
function compile(name: string, value: string): Part[] {
  const parts: Part[] = [];
  let text = '';
  let i = 0;
  while (i < value.length) {
    const pct = value.indexOf('%', i);
    if (pct < 0) {
      text += value.slice(i);
      break;
    }
    text += value.slice(i, pct);
    if (value[pct + 1] === '%') {
      text += '%';
      i = pct + 2;
      continue;
    }
    const end = value.indexOf('%', pct + 1);
    const key = end < 0 ? '' : value.slice(pct + 1, end);
    if (end < 0 || !/^[A-Z][A-Z0-9_]*$/.test(key)) {
      throw badValue(name, value, `a lone % at column ${pct + 1}: write %% for a percent sign, or %NAME% with NAME one of ${HEADER_TEMPLATE_NAMES.join(', ')}`);
    }
    if (NAMES[key] === undefined) throw badValue(name, value, `unknown %${key}%: use one of ${HEADER_TEMPLATE_NAMES.map((n) => `%${n}%`).join(', ')}`);
    if (text !== '') parts.push({ text });
    text = '';
    parts.push({ name: key });
    i = end + 1;
  }
  if (text !== '') parts.push({ text });
  return parts;
}

/** Throws INVALID_OPTION (option `headers`) when a header value names an unknown `%NAME%` or has a lone `%`. */
export function checkHeaderTemplates(headers: readonly (readonly [string, string])[]): void {
  for (const [name, value] of headers) if (value.includes('%')) compile(name, value);
}

/**
 * The headers with every `%NAME%` replaced for one session. Values without `%` come back as they are. An expanded
 * value that would carry CR, LF or NUL is refused (RFC 9110 §5.5), though no substitution produces one today.
 */
export function expandHeaderTemplates(headers: readonly [string, string][], session: string, downstream: DownstreamInfo | undefined): [string, string][] {
  return headers.map(([name, value]) => {
    if (!value.includes('%')) return [name, value];
    const out = compile(name, value)
      .map((p) => ('text' in p ? p.text : NAMES[p.name]!(session, downstream)))
      .join('');
    if (/[\r\n\0]/.test(out)) throw badValue(name, value, 'the expanded value contains CR, LF or NUL');
    return [name, out];
  });
}
