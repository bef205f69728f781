import { readFileSync } from 'node:fs';
import { parseHostPort } from '../../tunnel/address.js';
import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import {
  buildAuthenticator,
  buildTargetPolicy,
  isLoopbackListen,
  listenExposure,
  parsePostRoutes,
  refusesUnauthenticatedListen,
} from '../../tunnel/server-config.js';
import { TunnelServer, type ServerTlsOptions } from '../../tunnel/server/tunnel-server.js';
import { describeCertificate, generateCertificate } from '../../tunnel/tls-cert.js';
import { makeOutput } from '../common-options.js';
import { UsageError, flagMessage } from '../errors.js';
import { startInspectTap } from '../inspect-tap.js';
import { openKeylog } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import { startServeObservability } from '../observability.js';
import { attachServerOutput, renderServeListening } from '../render/serve-events.js';
import { exposureWarning, loopbackWarning, shortTokenWarning, unauthenticatedListenError } from '../serve-warnings.js';
import { isGiven, type ResolvedOptions } from '../options/resolve.js';
import type { ServeOptions } from '../schemas/serve.js';

/** Builds a server from flag values: an option it refuses (e.g. --max-datagram) is a bad flag, reported as such. */
function usageOnBadOption<T>(build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION) throw new UsageError(flagMessage(err));
    throw err;
  }
}

/** `udp-tunnel serve`: the proxy side. */
export async function runServe(args: ServeOptions, r: ResolvedOptions<ServeOptions>): Promise<void> {
  const out = makeOutput(args);
  const listen = parseHostPort(args.listen, { allowPortZero: true, what: '--listen' });
  if (Boolean(args.cert) !== Boolean(args.key)) throw new UsageError('--cert and --key go together');
  if (args.cert && args['self-signed']) throw new UsageError('--self-signed and --cert exclude each other');
  if (args['client-ca'] && !args.cert && !args['self-signed']) throw new UsageError('--client-ca needs TLS: add --cert/--key or --self-signed');
  const policy = buildTargetPolicy(args.allow, args.deny, listen.host);
  const postRoutes = parsePostRoutes(args['post-route']);
  const auth = buildAuthenticator({
    tokens: args.token,
    ...(args['token-file'] ? { tokenFile: args['token-file'] } : {}),
    basic: args.basic,
  });
  if (!args.auth && auth.enabled) throw new UsageError('--no-auth contradicts the credentials given (--token, --token-file, --basic or UDP_TUNNEL_TOKEN)');
  if (!auth.enabled) {
    const ignored = ['max-auth-failures-per-connection', 'auth-failure-burst', 'auth-failure-rate', 'max-auth-failure-entries'].find((f) => isGiven(r, f));
    if (ignored !== undefined) throw new UsageError(`--${ignored} has no effect without credentials (--token, --token-file or --basic)`);
  }
  if (refusesUnauthenticatedListen(await isLoopbackListen(listen.host), auth.enabled, !args.auth)) throw new UsageError(unauthenticatedListenError(listen.host));
  let tls: ServerTlsOptions | undefined;
  let certInfo: { selfSigned: boolean; fingerprint256: string; pin: string } | undefined;
  if (args['self-signed']) {
    const hosts = ['localhost', '127.0.0.1', '::1'];
    if (!hosts.includes(listen.host) && listen.host !== '0.0.0.0' && listen.host !== '::') hosts.push(listen.host);
    const gen = await generateCertificate({ altNames: hosts });
    tls = { cert: gen.cert, key: gen.key };
    certInfo = { selfSigned: true, fingerprint256: gen.fingerprint256, pin: gen.pin };
  } else if (args.cert && args.key) {
    const cert = readFileSync(args.cert);
    tls = { cert, key: readFileSync(args.key) };
    certInfo = { selfSigned: false, ...describeCertificate(cert) };
  }
  if (tls && args['client-ca']) tls.ca = readFileSync(args['client-ca']);
  if (isGiven(r, 'keylog') && r.sources['keylog'] !== 'env' && !tls) throw new UsageError('--keylog needs TLS: add --cert/--key or --self-signed');
  const keylog = tls ? openKeylog(args) : undefined;
  if (tls && keylog) tls.onKeylog = keylog.onKeylog;
  const server = usageOnBadOption(() => new TunnelServer({
    host: listen.host,
    port: listen.port,
    ...(tls ? { tls } : {}),
    ...(isGiven(r, 'template') ? { template: args.template } : {}),
    policy,
    authenticator: auth,
    postRoutes,
    idleTimeoutMs: args['idle-timeout'],
    maxSessions: args['max-sessions'],
    ...(args['max-sessions-per-connection'] !== undefined
      ? { maxSessionsPerConnection: args['max-sessions-per-connection'] }
      : {}),
    maxStreamsPerConnection: args['max-streams'],
    maxSessionsPerClient: args['max-sessions-per-client'],
    maxAuthFailuresPerConnection: args['max-auth-failures-per-connection'],
    authFailureBurst: args['auth-failure-burst'],
    authFailureRefillPerSecond: args['auth-failure-rate'],
    maxAuthFailureEntries: args['max-auth-failure-entries'],
    maxCapsuleLength: args['max-capsule'],
    maxDatagram: args['max-datagram'],
    maxStreamBuffer: args['max-stream-buffer'],
    maxUdpSendQueue: args['max-udp-send-queue'],
    headerTimeoutMs: args['header-timeout'],
    connectionIdleTimeoutMs: args['connection-idle-timeout'],
    maxConnections: args['max-connections'],
    maxHeaderSize: args['max-header-size'],
    ...(args['dns-server'].length ? { dnsServers: args['dns-server'] } : {}),
    dnsTimeoutMs: args['dns-timeout'],
  }));
  attachServerOutput(server, out);
  const tap = await startInspectTap(args, out, 'serve');
  // Last before listening: from here on its listener must be closed on every way out.
  const observe = await startServeObservability(args, server, out, [...args.token, ...args.basic, ...args.basic.map((b) => b.slice(b.indexOf(':') + 1))]);
  const addr = await server.listen().catch(async (err: unknown) => {
    await observe.close();
    throw err;
  });
  observe.listening();
  // Before 'listening' is printed: a signal sent by whoever reads that line must find the handler in place.
  const { done } = untilShutdown(async () => {
    out.info('shutting down');
    observe.stopping();
    await server.close();
    await observe.close();
    keylog?.close();
  });
  renderServeListening(out, {
    address: addr,
    tls: Boolean(tls),
    mtls: Boolean(tls?.ca),
    auth: auth.enabled ? auth.schemes : [],
    postRoutes,
    ...(certInfo ? { certificate: certInfo } : {}),
    policy: policy.describe(),
    policySummary: policy.summary(),
    warnings: [
      exposureWarning(addr.address, listenExposure(addr.address, auth.enabled, Boolean(tls))),
      shortTokenWarning(auth.shortTokens),
      loopbackWarning(policy.summary()),
    ].filter((w) => w !== null),
  });
  observe.announce();
  const why = await done;
  await tap?.stop();
  out.event('shutdown', { signal: why, counters: server.counters });
}
