import { ErrorCodes, UdpTunnelError } from './errors.js';

/** RFC 9298 §3: the default URI template path for CONNECT-UDP. */
export const DEFAULT_URI_TEMPLATE = '/.well-known/masque/udp/{target_host}/{target_port}/';

// RFC 6570 §3.2.1: simple string expansion encodes everything outside the unreserved set.
function encodeUnreserved(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const EXPR_RE = /\{([+#./;?&]?)([A-Za-z0-9_.,%]+)\}/g;

/**
 * Validates a CONNECT-UDP URI template (RFC 9298 §2): both target_host and target_port must appear, only in the path
 * or query. Accepts a bare path (`/masque{?target_host,target_port}`) or an absolute URL; returns the path-and-query part.
 */
export function parseUriTemplate(template: string): string {
  let pathPart = template;
  const m = /^https?:\/\/[^/]*(\/.*)$/i.exec(template);
  if (m) pathPart = m[1]!;
  if (!pathPart.startsWith('/')) {
    throw new UdpTunnelError(ErrorCodes.INVALID_TEMPLATE, `URI template must be a path or http(s) URL: '${template}'`, { template });
  }
  const names = new Set<string>();
  for (const mm of pathPart.matchAll(EXPR_RE)) {
    const op = mm[1]!;
    if (op === '#') throw new UdpTunnelError(ErrorCodes.INVALID_TEMPLATE, 'URI template variables may only appear in path or query (RFC 9298 §2)', { template });
    for (const v of mm[2]!.split(',')) names.add(v);
  }
  if (!names.has('target_host') || !names.has('target_port')) {
    throw new UdpTunnelError(ErrorCodes.INVALID_TEMPLATE, `URI template must contain target_host and target_port (RFC 9298 §2): '${template}'`, { template });
  }
  return pathPart;
}

/** Expands an RFC 6570 (level <= 3) template with the given variables; IPv6 colons become %3A exactly once. */
export function expandUriTemplate(template: string, vars: Record<string, string>): string {
  return template.replace(EXPR_RE, (_all, op: string, list: string) => {
    const names = list.split(',');
    const defined = names.filter((n) => vars[n] !== undefined);
    const enc = op === '+' ? (s: string) => encodeURI(s) : encodeUnreserved;
    switch (op) {
      case '?':
      case '&':
        if (defined.length === 0) return '';
        return op + defined.map((n) => `${n}=${enc(vars[n]!)}`).join('&');
      case '/':
        return defined.map((n) => `/${enc(vars[n]!)}`).join('');
      case '.':
        return defined.map((n) => `.${enc(vars[n]!)}`).join('');
      case ';':
        return defined.map((n) => `;${n}=${enc(vars[n]!)}`).join('');
      default:
        return defined.map((n) => enc(vars[n]!)).join(',');
    }
  });
}

/** A compiled template that extracts variables from a request path (the proxy side). */
export interface TemplateMatcher {
  /** Returns the raw (still percent-encoded) variables, or null when the path does not match the template. */
  match(pathAndQuery: string): Record<string, string> | null;
}

/** Compiles a template for matching incoming request targets: path expressions and a query expression. */
export function compileTemplateMatcher(template: string): TemplateMatcher {
  const pathPart = parseUriTemplate(template);
  const qIndex = pathPart.search(/\{[?&]/);
  const pathTemplate = qIndex >= 0 ? pathPart.slice(0, qIndex) : pathPart;
  const queryNames: string[] = [];
  if (qIndex >= 0) {
    for (const mm of pathPart.slice(qIndex).matchAll(EXPR_RE)) queryNames.push(...mm[2]!.split(','));
  }
  const pathNames: string[] = [];
  let re = '^';
  let last = 0;
  for (const mm of pathTemplate.matchAll(EXPR_RE)) {
    re += escapeRe(pathTemplate.slice(last, mm.index));
    const op = mm[1]!;
    const prefix = op === '/' ? '/' : op === '.' ? '\\.' : '';
    for (const n of mm[2]!.split(',')) {
      pathNames.push(n);
      re += `${prefix}([^/?#]*)`;
    }
    last = mm.index! + mm[0].length;
  }
  re += escapeRe(pathTemplate.slice(last));
  const pathRe = new RegExp(`${re}$`);
  return {
    match(pathAndQuery: string) {
      const q = pathAndQuery.indexOf('?');
      const path = q >= 0 ? pathAndQuery.slice(0, q) : pathAndQuery;
      const query = q >= 0 ? pathAndQuery.slice(q + 1) : '';
      const m = pathRe.exec(path);
      if (!m) return null;
      const out: Record<string, string> = {};
      pathNames.forEach((n, i) => {
        out[n] = m[i + 1]!;
      });
      if (queryNames.length > 0) {
        for (const pair of query.split('&')) {
          const eq = pair.indexOf('=');
          if (eq < 0) continue;
          const k = pair.slice(0, eq);
          if (queryNames.includes(k)) {
            if (out[k] !== undefined) return null; // a repeated variable is ambiguous
            out[k] = pair.slice(eq + 1);
          }
        }
      }
      return out;
    },
  };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
