import { MIN_TOKEN_LENGTH } from '../tunnel/auth.js';
import type { PolicySummary } from '../tunnel/policy.js';
import type { ListenExposure } from '../tunnel/server-config.js';

// serve's startup warnings and refusals in CLI words: the library reports the facts, these name the flags.

/** The warning for a listener beyond loopback without authentication or without TLS; null when there is none. */
export function exposureWarning(listenAddress: string, exposure: ListenExposure | null): string | null {
  if (exposure === 'unauthenticated') {
    return (
      `listening on ${listenAddress} WITHOUT AUTHENTICATION: anyone who can reach this port may relay UDP to every target ` +
      'the policy allows. Add --token, --token-file or --basic (with TLS), or listen on 127.0.0.1.'
    );
  }
  if (exposure === 'cleartext-credentials') {
    return `listening on ${listenAddress} without TLS: credentials cross the network in cleartext. Add --cert/--key or --self-signed.`;
  }
  return null;
}

/** The usage error for a listener beyond loopback without credentials, which the library refuses to start. */
export function unauthenticatedListenError(host: string): string {
  return (
    `refusing to listen on ${host} without authentication: anyone who can reach it could relay UDP through this host. ` +
    'Add credentials with --token, --token-file or --basic (with --cert/--key or --self-signed for TLS), ' +
    'listen on 127.0.0.1 or ::1, or pass --no-auth to serve an open proxy on purpose.'
  );
}

/** The warning for bearer tokens shorter than MIN_TOKEN_LENGTH (never the tokens themselves); null when none are. */
export function shortTokenWarning(shortTokens: number): string | null {
  if (shortTokens === 0) return null;
  const which = shortTokens === 1 ? '1 bearer token is' : `${shortTokens} bearer tokens are`;
  return `${which} shorter than ${MIN_TOKEN_LENGTH} characters and easy to guess; use long random tokens (e.g. openssl rand -base64 32).`;
}

/**
 * The warning when --allow rules are given and none opens loopback: any --allow replaces the loopback-only default,
 * so loopback targets are refused from now on. Two lines (human output fits 100 columns); null when there is no
 * --allow or one lies inside loopback.
 */
export function loopbackWarning(policy: PolicySummary): string | null {
  if (policy.default !== 'deny' || policy.loopbackAllowRules.length > 0) return null;
  return (
    'any --allow replaces the loopback-only default: loopback targets are refused now\n' +
    'keep them with --allow 127.0.0.0/8,::1 (or narrower: --allow 127.0.0.1/32:53)'
  );
}
