import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { parseHostPort, type HostPort } from './address.js';
import { Authenticator, loadTokenFile } from './auth.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { TargetPolicy, isLoopback, parseRuleList, type PolicyRule } from './policy.js';

/**
 * Builds the target policy from deny and allow rule lists (every deny rule is checked before any allow rule) and the
 * listening address, whose own addresses are refused unless an allow rule names them (RFC 9298 §7).
 * `interfaceAddresses` overrides the host's interface list (for a wildcard listener) in tests.
 */
export function buildTargetPolicy(allow: readonly string[], deny: readonly string[], listenHost: string, interfaceAddresses?: readonly string[]): TargetPolicy {
  const rules: PolicyRule[] = [];
  for (const d of deny) rules.push(...parseRuleList(d, 'deny'));
  for (const a of allow) rules.push(...parseRuleList(a, 'allow'));
  // Loopback stays governed by the loopback default, otherwise the default could never reach a local service.
  const own: string[] = [];
  if (listenHost === '0.0.0.0' || listenHost === '::') {
    const list = interfaceAddresses ?? Object.values(networkInterfaces()).flatMap((l) => (l ?? []).filter((i) => !i.internal).map((i) => i.address));
    for (const addr of list) if (!isLoopback(addr)) own.push(addr);
  } else if (!isLoopback(listenHost) && /^[\d.:a-fA-F]+$/.test(listenHost)) {
    own.push(listenHost);
  }
  return new TargetPolicy({ rules, ownAddresses: own });
}

/** Parses `PATH=HOST:PORT` entries into the `postRoutes` map (path -> target). Throws INVALID_OPTION or INVALID_ADDRESS. */
export function parsePostRoutes(specs: readonly string[]): Map<string, HostPort> {
  const routes = new Map<string, HostPort>();
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const path = eq > 0 ? spec.slice(0, eq) : '';
    if (!path.startsWith('/') || /[\s\x00-\x1f\x7f]/.test(path)) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `postRoutes '${spec}': expected PATH=HOST:PORT with PATH starting with /`, {
        option: 'postRoutes',
        value: spec,
      });
    }
    if (routes.has(path)) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `postRoutes: path ${path} given twice`, { option: 'postRoutes', value: spec });
    routes.set(path, parseHostPort(spec.slice(eq + 1), { what: `postRoutes ${path} target`, option: 'postRoutes' }));
  }
  return routes;
}

/** Sources of proxy credentials for `serve`. */
export interface ServeAuthSources {
  tokens?: readonly string[];
  tokenFile?: string;
  /** The token from the environment, used only when neither `tokens` nor `tokenFile` names one. */
  envToken?: string;
  basic?: readonly string[];
}

/** Builds the authenticator; disabled when no source names any credential. Error messages never echo secrets. */
export function buildAuthenticator(src: ServeAuthSources): Authenticator {
  const tokens = [...(src.tokens ?? [])];
  if (src.tokenFile) tokens.push(...loadTokenFile(src.tokenFile));
  if (tokens.length === 0 && src.envToken) tokens.push(src.envToken);
  return new Authenticator({ tokens, basic: [...(src.basic ?? [])] });
}

/** What is exposed by a listener beyond loopback: anyone may relay (no authentication), or credentials cross in cleartext. */
export type ListenExposure = 'unauthenticated' | 'cleartext-credentials';

/**
 * Whether a listener on `listenAddress` is exposed (RFC 9298 §7: restrict use to authorized clients), or null when
 * it stays on loopback or has both authentication and TLS.
 */
export function listenExposure(listenAddress: string, authEnabled: boolean, tlsEnabled: boolean): ListenExposure | null {
  if (isLoopback(listenAddress)) return null;
  if (!authEnabled) return 'unauthenticated';
  if (!tlsEnabled) return 'cleartext-credentials';
  return null;
}

/** Resolves a host name to every address it stands for; `serve` passes the system resolver, tests a fake one. */
export type HostLookup = (host: string) => Promise<readonly string[]>;

const systemLookup: HostLookup = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/**
 * True when listening on `host` stays on loopback: an IP literal in 127.0.0.0/8 or ::1, or a name all of whose
 * addresses are. Wildcards (`0.0.0.0`, `::`), other addresses and names that do not resolve are not loopback.
 */
export async function isLoopbackListen(host: string, resolve: HostLookup = systemLookup): Promise<boolean> {
  if (isIP(host) !== 0) return isLoopback(host);
  let addresses: readonly string[];
  try {
    addresses = await resolve(host);
  } catch {
    return false;
  }
  return addresses.length > 0 && addresses.every((a) => isLoopback(a));
}

/**
 * True when a listener may not start: beyond loopback without credentials (RFC 9298 §7: restrict use to authorized
 * clients), unless an open proxy was asked for on purpose (`openOnPurpose`).
 */
export function refusesUnauthenticatedListen(loopback: boolean, authEnabled: boolean, openOnPurpose: boolean): boolean {
  return !(loopback || authEnabled || openOnPurpose);
}
