import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ErrorCodes, UdpTunnelError } from './errors.js';

/** Credentials the proxy accepts; no credentials at all = authentication disabled. */
export interface AuthOptions {
  /** Bearer tokens (RFC 6750 §2.1 token68 syntax). */
  tokens?: string[];
  /** Basic credentials as "user:pass" (RFC 7617 §2); the user part may not contain ':'. */
  basic?: string[];
}

/** Outcome of `Authenticator.check`; `user` is set for Basic credentials. Never carries a secret. */
export type AuthResult = { ok: true; user?: string } | { ok: false; reason: 'missing' | 'invalid' };

/** Authentication schemes udp-tunnel speaks. */
export type AuthScheme = 'Bearer' | 'Basic';

/**
 * Request headers: a header object (`req.headersDistinct`, an HTTP/2 header object) or a flat raw list
 * `[name, value, name, value, ...]` (`req.rawHeaders`, the HTTP/2 `'stream'` event's raw headers).
 */
export type AuthHeaders = Record<string, string | string[] | undefined> | readonly string[];

/** Realm announced in challenges. */
export const AUTH_REALM = 'udp-tunnel';

/** Longest credentials (the part after the scheme) examined; longer ones are rejected before any hashing. */
export const MAX_CREDENTIAL_LENGTH = 4096;

/** Bearer tokens shorter than this are easy to guess; `serve` warns about them. */
export const MIN_TOKEN_LENGTH = 16;

/** Largest token file `loadTokenFile` reads. */
export const MAX_TOKEN_FILE_BYTES = 1024 * 1024;

// RFC 9110 §11.2: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;
// RFC 9110 §5.6.2: tchar, for the auth-scheme.
const SCHEME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BASE64 = /^[A-Za-z0-9+/]+(={0,2})$/;
// RFC 7617 §2: user-id and password must not contain control characters.
const CONTROL = /[\u0000-\u001f\u007f]/;

interface Credential {
  digest: Buffer;
  user?: string;
}

function sha256(data: string | Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function invalidOption(message: string): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, message);
}

function checkToken(token: unknown, where: string): string {
  if (typeof token !== 'string' || !TOKEN68.test(token)) {
    throw invalidOption(`${where}: a bearer token must be token68 characters (A-Z a-z 0-9 - . _ ~ + / then '=')`);
  }
  if (token.length > MAX_CREDENTIAL_LENGTH) {
    throw invalidOption(`${where}: a bearer token may be at most ${MAX_CREDENTIAL_LENGTH} characters`);
  }
  return token;
}

function checkUserPass(user: string, pass: string, where: string): void {
  if (user === '') throw invalidOption(`${where}: the user name is empty`);
  if (user.includes(':')) throw invalidOption(`${where}: the user name may not contain ':' (RFC 7617 §2)`);
  if (CONTROL.test(user) || CONTROL.test(pass)) {
    throw invalidOption(`${where}: user name and password may not contain control characters (RFC 7617 §2)`);
  }
}

/** Strict base64 (RFC 4648 §4, padding optional); null when `text` is not base64. */
function decodeBase64(text: string): Buffer | null {
  const m = BASE64.exec(text);
  if (m === null) return null;
  const pad = m[1]!.length;
  const body = text.length - pad;
  if (body % 4 === 1 || (pad > 0 && text.length % 4 !== 0)) return null;
  return Buffer.from(text, 'base64');
}

/** Digest comparison against every entry, with no early exit, so timing does not reveal which entry is close. */
function findMatch(presented: Buffer, entries: readonly Credential[]): Credential | undefined {
  const digest = sha256(presented);
  let found: Credential | undefined;
  for (const entry of entries) {
    const equal = timingSafeEqual(digest, entry.digest);
    found = equal && found === undefined ? entry : found;
  }
  return found;
}

function isCredentialHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return lower === 'authorization' || lower === 'proxy-authorization';
}

function collectCredentialValues(headers: AuthHeaders): string[] {
  const values: string[] = [];
  if (Array.isArray(headers)) {
    const raw = headers as readonly string[];
    for (let i = 0; i + 1 < raw.length; i += 2) if (isCredentialHeader(String(raw[i]))) values.push(String(raw[i + 1]));
    return values;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  for (const key of Object.keys(record)) {
    if (!isCredentialHeader(key)) continue;
    const value = record[key];
    if (value === undefined) continue;
    if (Array.isArray(value)) values.push(...value);
    else values.push(value);
  }
  return values;
}

/** Builds a challenge answer: HTTP/1.1 gets 407 + Proxy-Authenticate, HTTP/2 gets 401 + WWW-Authenticate. */
export function challenge(
  httpVersion: 1 | 2,
  schemes: readonly AuthScheme[] = ['Bearer', 'Basic'],
): { status: 401 | 407; headers: Record<string, string> } {
  // RFC 9110 §11.6.1: several challenges may share one field, comma-separated. RFC 6750 §3 / RFC 7617 §2.1 params.
  const value = schemes
    .map((s) => (s === 'Basic' ? `Basic realm="${AUTH_REALM}", charset="UTF-8"` : `Bearer realm="${AUTH_REALM}"`))
    .join(', ');
  // RFC 9110 §15.5.8: a 407 MUST carry Proxy-Authenticate (§11.7.1); §15.5.2: a 401 MUST carry WWW-Authenticate
  // (§11.6.1). Over HTTP/2 the extended CONNECT names the proxy's own URI template, so the proxy is the origin.
  if (httpVersion === 1) return { status: 407, headers: { 'proxy-authenticate': value } };
  return { status: 401, headers: { 'www-authenticate': value } };
}

/** Checks Bearer and Basic credentials from `Authorization` or `Proxy-Authorization` in constant time. */
export class Authenticator {
  /** False when no credentials are configured: every request passes. */
  readonly enabled: boolean;
  /** Configured bearer tokens shorter than MIN_TOKEN_LENGTH characters. */
  readonly shortTokens: number;
  readonly #tokens: Credential[];
  readonly #basic: Credential[];

  /** Throws INVALID_OPTION for a malformed token or "user:pass" entry, without echoing it. */
  constructor(options: AuthOptions = {}) {
    this.#tokens = (options.tokens ?? []).map((t, i) => ({ digest: sha256(checkToken(t, `token #${i + 1}`)) }));
    this.#basic = (options.basic ?? []).map((entry, i) => {
      const where = `basic credential #${i + 1}`;
      if (typeof entry !== 'string') throw invalidOption(`${where}: expected "user:pass"`);
      const colon = entry.indexOf(':');
      if (colon < 0) throw invalidOption(`${where}: expected "user:pass"`);
      const user = entry.slice(0, colon);
      checkUserPass(user, entry.slice(colon + 1), where);
      const bytes = Buffer.from(entry, 'utf8');
      if (Math.ceil(bytes.length / 3) * 4 > MAX_CREDENTIAL_LENGTH) {
        throw invalidOption(`${where}: longer than ${MAX_CREDENTIAL_LENGTH} characters once base64-encoded`);
      }
      return { digest: sha256(bytes), user };
    });
    this.enabled = this.#tokens.length + this.#basic.length > 0;
    this.shortTokens = (options.tokens ?? []).filter((t) => t.length < MIN_TOKEN_LENGTH).length;
  }

  /** Schemes the configured credentials use, for `challenge`. */
  get schemes(): AuthScheme[] {
    const out: AuthScheme[] = [];
    if (this.#tokens.length > 0) out.push('Bearer');
    if (this.#basic.length > 0) out.push('Basic');
    return out;
  }

  /** Challenge advertising only the configured schemes. */
  challenge(httpVersion: 1 | 2): { status: 401 | 407; headers: Record<string, string> } {
    return challenge(httpVersion, this.enabled ? this.schemes : undefined);
  }

  /**
   * Verifies the request's single credential header value. Pass raw headers or `req.headersDistinct`: Node's
   * `req.headers` (and the HTTP/2 header object) silently keep only the first `Authorization`, hiding a duplicate.
   */
  check(headers: AuthHeaders): AuthResult {
    if (!this.enabled) return { ok: true };
    const values = collectCredentialValues(headers);
    if (values.length === 0) return { ok: false, reason: 'missing' };
    // Two credentials (even in different fields) are ambiguous: refuse rather than pick one.
    if (values.length > 1) return { ok: false, reason: 'invalid' };
    const value = values[0]!.trim();
    const space = value.search(/[ \t]/);
    if (space < 0) return { ok: false, reason: 'invalid' };
    const scheme = value.slice(0, space);
    const credentials = value.slice(space).trimStart();
    if (credentials.length > MAX_CREDENTIAL_LENGTH) return { ok: false, reason: 'invalid' };
    if (!SCHEME.test(scheme) || !TOKEN68.test(credentials)) return { ok: false, reason: 'invalid' };
    // RFC 9110 §11.1: the auth-scheme is case-insensitive.
    switch (scheme.toLowerCase()) {
      case 'bearer': {
        const match = findMatch(Buffer.from(credentials, 'utf8'), this.#tokens);
        return match === undefined ? { ok: false, reason: 'invalid' } : { ok: true };
      }
      case 'basic': {
        const decoded = decodeBase64(credentials);
        if (decoded === null) return { ok: false, reason: 'invalid' };
        const match = findMatch(decoded, this.#basic);
        return match === undefined ? { ok: false, reason: 'invalid' } : { ok: true, user: match.user! };
      }
      default:
        return { ok: false, reason: 'invalid' };
    }
  }
}

/**
 * Reads bearer tokens, one per line; blank lines and lines starting with '#' are skipped.
 * Throws INVALID_OPTION for an unreadable, oversized or empty file, or a malformed token (by line number only).
 */
export function loadTokenFile(path: string): string[] {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > MAX_TOKEN_FILE_BYTES) throw invalidOption(`token file ${path} is larger than ${MAX_TOKEN_FILE_BYTES} bytes`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof UdpTunnelError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `cannot read token file ${path}: ${code}`, { path }, {
      cause: err,
    });
  }
  const tokens: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    tokens.push(checkToken(line, `token file ${path} line ${i + 1}`));
  });
  if (tokens.length === 0) throw invalidOption(`token file ${path} holds no tokens`);
  return tokens;
}

/** `Basic` header value for a user and password (RFC 7617 §2, UTF-8); throws INVALID_OPTION for an unusable user. */
export function basicCredentials(user: string, pass: string): string {
  checkUserPass(user, pass, 'basic credentials');
  return `Basic ${Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')}`;
}

/** `Basic` header value from a proxy URL's userinfo (percent-decoded), or undefined when it has none. */
export function parseProxyUrlCredentials(url: URL): string | undefined {
  if (url.username === '' && url.password === '') return undefined;
  let user: string;
  let pass: string;
  try {
    user = decodeURIComponent(url.username);
    pass = decodeURIComponent(url.password);
  } catch (err) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'proxy URL credentials are not valid percent-encoding', {}, {
      cause: err,
    });
  }
  return basicCredentials(user, pass);
}
