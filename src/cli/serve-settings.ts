import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP, type AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import { parseHostPort, type HostPort } from '../tunnel/address.js';
import type { Authenticator } from '../tunnel/auth.js';
import { loadTokenFile } from '../tunnel/auth.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import type { TargetPolicy } from '../tunnel/policy.js';
import { buildAuthenticator, buildTargetPolicy, isLoopbackListen, listenExposure, parsePostRoutes, refusesUnauthenticatedListen } from '../tunnel/server-config.js';
import type { ServerTlsOptions, TunnelServerOptions } from '../tunnel/server/tunnel-server.js';
import { describeCertificate, generateCertificate } from '../tunnel/tls-cert.js';
import { UsageError, flagMessage } from './errors.js';
import { isGiven, type ResolvedOptions } from './options/resolve.js';
import type { ServeOptions } from './schemas/serve.js';
import type { ServeListening } from './render/serve-events.js';
import { exposureWarning, loopbackWarning, shortTokenWarning, unauthenticatedListenError } from './serve-warnings.js';

// serve's settings are made in two steps: what files contribute is read once into plain data (ServeMaterial), and
// the server's options are built from the option values and that data without touching a file. A reload reads
// again and builds again; in cluster mode the primary reads and checks, and the workers build from the same data,
// so every worker runs with exactly what the primary checked.

/** What serve's files contribute (token file, certificate, key, client CA), or a generated certificate. */
export interface ServeMaterial {
  /** The tokens of --token-file (the --token values are options, not material). */
  fileTokens: string[];
  /** PEM text; absent for a cleartext listener. */
  tls?: { cert: string; key: string; ca?: string; selfSigned: boolean };
}

/** What a running serve is made from: the option values, where they came from, and the material. */
export interface ServeState {
  values: ServeOptions;
  sources: ResolvedOptions<ServeOptions>['sources'];
  configFile?: string;
  material: ServeMaterial;
}

/** serve's options built from a ServeState. */
export interface ServeSettings {
  listen: HostPort;
  policy: TargetPolicy;
  postRoutes: Map<string, HostPort>;
  auth: Authenticator;
  /** Without onKeylog: a process that serves TLS attaches its own key log. */
  tls?: ServerTlsOptions;
  certInfo?: { selfSigned: boolean; fingerprint256: string; pin: string };
  /** Every TunnelServer option but `tls`. */
  server: Omit<TunnelServerOptions, 'tls'>;
}

/** The ResolvedOptions a state stands for (the positionals of serve are always empty). */
export function resolvedOf(state: ServeState): ResolvedOptions<ServeOptions> {
  return { values: state.values, sources: state.sources, positionals: [], ...(state.configFile !== undefined ? { configFile: state.configFile } : {}) };
}

/** A ServeState from resolved options and material. */
export function stateOf(r: ResolvedOptions<ServeOptions>, material: ServeMaterial): ServeState {
  return { values: r.values, sources: r.sources, ...(r.configFile !== undefined ? { configFile: r.configFile } : {}), material };
}

/** Runs a build step: a library option it refuses is a bad flag, reported as such. */
export function usageOnBadOption<T>(build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION) throw new UsageError(flagMessage(err));
    throw err;
  }
}

/** The TLS flags that go together or exclude each other; checked before any file is read. */
function checkTlsFlags(args: ServeOptions): void {
  parseHostPort(args.listen, { allowPortZero: true, what: '--listen' });
  if (Boolean(args.cert) !== Boolean(args.key)) throw new UsageError('--cert and --key go together');
  if (args.cert && args['self-signed']) throw new UsageError('--self-signed and --cert exclude each other');
  if (args['client-ca'] && !args.cert && !args['self-signed']) throw new UsageError('--client-ca needs TLS: add --cert/--key or --self-signed');
}

function readPem(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`${flag} ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

/**
 * Reads the files the options name. `previous` is the material running now: a self-signed certificate is generated
 * only when there is none yet, so a reload keeps presenting the same one.
 */
export async function readServeMaterial(args: ServeOptions, previous?: ServeMaterial): Promise<ServeMaterial> {
  checkTlsFlags(args);
  const fileTokens = args['token-file'] ? usageOnBadOption(() => loadTokenFile(args['token-file']!)) : [];
  if (args['self-signed'] && !args.cert) {
    if (previous?.tls?.selfSigned) return { fileTokens, tls: previous.tls };
    const host = parseHostPort(args.listen, { allowPortZero: true, what: '--listen' }).host;
    const hosts = ['localhost', '127.0.0.1', '::1'];
    if (!hosts.includes(host) && host !== '0.0.0.0' && host !== '::') hosts.push(host);
    const gen = await generateCertificate({ altNames: hosts });
    return { fileTokens, tls: { cert: gen.cert, key: gen.key, selfSigned: true, ...(args['client-ca'] ? { ca: readPem('--client-ca', args['client-ca']) } : {}) } };
  }
  if (args.cert && args.key) {
    const tls = { cert: readPem('--cert', args.cert), key: readPem('--key', args.key), selfSigned: false };
    return { fileTokens, tls: args['client-ca'] ? { ...tls, ca: readPem('--client-ca', args['client-ca']) } : tls };
  }
  return { fileTokens };
}

/** Checks the combinations of serve's options and builds its settings; throws UsageError naming the flags. */
export async function buildServeSettings(state: ServeState): Promise<ServeSettings> {
  const args = state.values;
  const r = resolvedOf(state);
  const listen = parseHostPort(args.listen, { allowPortZero: true, what: '--listen' });
  checkTlsFlags(args);
  const policy = usageOnBadOption(() => buildTargetPolicy(args.allow, args.deny, listen.host));
  const postRoutes = usageOnBadOption(() => parsePostRoutes(args['post-route']));
  const auth = usageOnBadOption(() => buildAuthenticator({ tokens: [...args.token, ...state.material.fileTokens], basic: args.basic }));
  if (!args.auth && auth.enabled) throw new UsageError('--no-auth contradicts the credentials given (--token, --token-file, --basic or UDP_TUNNEL_TOKEN)');
  if (!auth.enabled) {
    const ignored = ['max-auth-failures-per-connection', 'auth-failure-burst', 'auth-failure-rate', 'max-auth-failure-entries'].find((f) => isGiven(r, f));
    if (ignored !== undefined) throw new UsageError(`--${ignored} has no effect without credentials (--token, --token-file or --basic)`);
  }
  if (refusesUnauthenticatedListen(await isLoopbackListen(listen.host), auth.enabled, !args.auth)) throw new UsageError(unauthenticatedListenError(listen.host));
  const m = state.material.tls;
  let tls: ServerTlsOptions | undefined;
  let certInfo: ServeSettings['certInfo'];
  if (m) {
    tls = { cert: m.cert, key: m.key, ...(m.ca !== undefined ? { ca: m.ca } : {}) };
    try {
      // The listener would only find out on its first handshake (or a reload on its swap): check the pair now.
      createSecureContext(tls);
    } catch (err) {
      throw new UsageError(`${m.selfSigned ? '--self-signed' : '--cert/--key'}${m.ca !== undefined ? ' or --client-ca' : ''}: ${(err as Error).message}`);
    }
    certInfo = { selfSigned: m.selfSigned, ...describeCertificate(m.cert) };
  }
  if (isGiven(r, 'keylog') && r.sources['keylog'] !== 'env' && !tls) throw new UsageError('--keylog needs TLS: add --cert/--key or --self-signed');
  const bind = bindSettings(args, r);
  const server: ServeSettings['server'] = {
    host: listen.host,
    port: listen.port,
    ...(isGiven(r, 'template') ? { template: args.template } : {}),
    policy,
    authenticator: auth,
    postRoutes,
    idleTimeoutMs: args['idle-timeout'],
    maxSessions: args['max-sessions'],
    // By default a connection may hold as many tunnels as it may open streams (stated here so that a reload that
    // changes --max-streams moves it too).
    maxSessionsPerConnection: args['max-sessions-per-connection'] ?? args['max-streams'],
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
    ...bind,
  };
  return { listen, policy, postRoutes, auth, ...(tls ? { tls } : {}), ...(certInfo ? { certInfo } : {}), server };
}

/** A digest that tells whether secret material changed without keeping or showing it. */
export function digestOf(...parts: readonly (string | undefined)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p === undefined ? '-' : `${p.length}:${p}`}\n`);
  return h.digest('hex');
}

/** What serve's `listening` event reports for `settings` bound to `addr`. */
export function listeningOf(settings: ServeSettings, addr: AddressInfo): ServeListening {
  const { tls, auth, policy } = settings;
  return {
    address: addr,
    tls: Boolean(tls),
    mtls: Boolean(tls?.ca),
    auth: auth.enabled ? auth.schemes : [],
    postRoutes: settings.postRoutes,
    ...(settings.certInfo ? { certificate: settings.certInfo } : {}),
    policy: policy.describe(),
    policySummary: policy.summary(),
    ...(settings.server.allowBind ? { bind: bindOf(settings.server, addr) } : {}),
    warnings: [
      exposureWarning(addr.address, listenExposure(addr.address, auth.enabled, Boolean(tls))),
      shortTokenWarning(auth.shortTokens),
      loopbackWarning(policy.summary()),
    ].filter((w) => w !== null),
  };
}

const BIND_FLAGS = ['bind-address', 'bind-ports', 'public-address', 'max-bind-contexts', 'max-bind-responses', 'max-bound-ports', 'max-bound-ports-per-client'] as const;

/** The bound-UDP options; refuses them without --allow-bind, where they would do nothing. */
function bindSettings(args: ServeOptions, r: ResolvedOptions<ServeOptions>): Partial<TunnelServerOptions> {
  if (!args['allow-bind']) {
    const ignored = BIND_FLAGS.find((f) => isGiven(r, f));
    if (ignored !== undefined) throw new UsageError(`--${ignored} has no effect without --allow-bind`);
    return {};
  }
  const ip = (flag: 'bind-address' | 'public-address'): string | undefined => {
    const v = args[flag];
    if (v === undefined) return undefined;
    const bare = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v;
    if (isIP(bare) === 0) throw new UsageError(`--${flag} must be an IP address, got '${v}'`);
    return bare;
  };
  const bindAddress = ip('bind-address');
  const publicAddress = ip('public-address');
  let bindPorts: { from: number; to: number } | undefined;
  const spec = args['bind-ports'];
  if (spec !== undefined) {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(spec);
    const from = m ? Number(m[1]) : NaN;
    const to = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || from < 1 || to > 65535 || from > to) throw new UsageError(`--bind-ports takes FROM-TO with 1 <= FROM <= TO <= 65535, got '${spec}'`);
    bindPorts = { from, to };
  }
  return {
    allowBind: true,
    ...(bindAddress !== undefined ? { bindAddress } : {}),
    ...(publicAddress !== undefined ? { publicAddress } : {}),
    ...(bindPorts !== undefined ? { bindPorts } : {}),
    maxBindContexts: args['max-bind-contexts'],
    maxBindResponses: args['max-bind-responses'],
    maxBoundPorts: args['max-bound-ports'],
    maxBoundPortsPerClient: args['max-bound-ports-per-client'],
  };
}

/** serve's `listening` report of where bound ports come from. */
function bindOf(server: TunnelServerOptions, addr: AddressInfo): NonNullable<ServeListening['bind']> {
  const address = server.bindAddress ?? (isIP(addr.address) !== 0 ? addr.address : '0.0.0.0');
  const r = server.bindPorts;
  return { address, ports: r === undefined ? 'any free' : r.from === r.to ? String(r.from) : `${r.from}-${r.to}`, ...(server.publicAddress !== undefined ? { public: server.publicAddress } : {}) };
}
