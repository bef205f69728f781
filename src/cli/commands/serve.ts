import { readFileSync } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { parseHostPort } from '../../tunnel/address.js';
import { parseDuration, parseSize } from '../../tunnel/units.js';
import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import {
  buildAuthenticator,
  buildTargetPolicy,
  isLoopbackListen,
  listenExposure,
  parsePostRoutes,
  refusesUnauthenticatedListen,
} from '../../tunnel/server-config.js';
import { SERVER_DEFAULTS, TunnelServer, type ServerTlsOptions } from '../../tunnel/server/tunnel-server.js';
import { describeCertificate, generateCertificate } from '../../tunnel/tls-cert.js';
import { makeOutput, withCommonOptions, type CommonArgs } from '../common-options.js';
import { UsageError, flagMessage } from '../errors.js';
import { formatDuration, formatSize } from '../format-units.js';
import { startInspectTap, withInspectTapOptions, type InspectTapArgs } from '../inspect-tap.js';
import { openKeylog, withKeylogOption, type KeylogArgs } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import { attachServerOutput, renderServeListening } from '../render/serve-events.js';
import { exposureWarning, loopbackWarning, shortTokenWarning, unauthenticatedListenError } from '../serve-warnings.js';
import { COMMAND_SUMMARIES } from './summaries.js';

interface ServeArgs extends CommonArgs, InspectTapArgs, KeylogArgs {
  listen: string;
  cert?: string;
  key?: string;
  'self-signed': boolean;
  'client-ca'?: string;
  template?: string;
  allow: string[];
  deny: string[];
  'post-route': string[];
  token: string[];
  'token-file'?: string;
  basic: string[];
  auth: boolean;
  'idle-timeout': string;
  'max-sessions': number;
  'max-sessions-per-connection'?: number;
  'max-streams': number;
  'max-sessions-per-client': number;
  'max-auth-failures-per-connection': number;
  'auth-failure-burst': number;
  'auth-failure-rate': number;
  'max-auth-failure-entries': number;
  'max-capsule': string;
  'max-datagram': number;
  'max-stream-buffer': string;
  'max-udp-send-queue': number;
  'header-timeout': string;
  'connection-idle-timeout': string;
  'max-connections': number;
  'max-header-size': string;
  'dns-server': string[];
  'dns-timeout': string;
}

function nonNegative(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${what} must be a number of at least 0`);
  return n;
}

function positive(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${what} must be a whole number of at least 1`);
  return n;
}

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
export const serveCommand: CommandModule<object, ServeArgs> = {
  ...COMMAND_SUMMARIES.serve,
  builder: (y: Argv) =>
    withKeylogOption(withInspectTapOptions(withCommonOptions(y)))
      .option('listen', { alias: 'l', type: 'string', default: '127.0.0.1:4433', describe: 'TCP HOST:PORT to listen on ([IPv6]:PORT; port 0 = any)' })
      .option('cert', { type: 'string', describe: 'PEM certificate: serve TLS, ALPN h2 and http/1.1 (needs --key)' })
      .option('key', { type: 'string', describe: 'PEM private key for --cert' })
      .option('self-signed', { type: 'boolean', default: false, describe: 'Serve TLS with an ephemeral self-signed certificate (local use); prints its pin for connect --pin' })
      .option('client-ca', { type: 'string', describe: 'PEM CA bundle: require client certificates it signed (mTLS); needs TLS' })
      .option('template', { type: 'string', describe: `URI template path (default ${SERVER_DEFAULTS.template})` })
      .option('allow', { type: 'string', array: true, default: [], describe: 'Allow targets CIDR[:PORT|:LO-HI] (repeatable, comma-separated); default: loopback only' })
      .option('deny', { type: 'string', array: true, default: [], describe: 'Deny targets CIDR[:PORT|:LO-HI]; every deny is checked before any allow' })
      .option('post-route', { type: 'string', array: true, default: [], describe: 'POST mode (not RFC 9298): map a request PATH=HOST:PORT (repeatable); same target policy' })
      .option('token', { type: 'string', array: true, default: [], describe: 'Require Authorization/Proxy-Authorization: Bearer TOKEN (repeatable; also UDP_TUNNEL_TOKEN)' })
      .option('token-file', { type: 'string', describe: 'File of accepted bearer tokens, one per line (# comments)' })
      .option('basic', { type: 'string', array: true, default: [], describe: 'Accept Basic credentials USER:PASS (repeatable)' })
      .option('auth', {
        type: 'boolean',
        default: true,
        describe: 'Use --no-auth to listen beyond loopback without credentials on purpose (an open proxy); refused otherwise',
      })
      .option('max-auth-failures-per-connection', { type: 'number', default: SERVER_DEFAULTS.maxAuthFailuresPerConnection, describe: 'Failed authentications after which an HTTP/2 connection gets GOAWAY' })
      .option('auth-failure-burst', { type: 'number', default: SERVER_DEFAULTS.authFailureBurst, describe: 'Failed authentications a client address may have in a burst; then 429 until its budget refills' })
      .option('auth-failure-rate', { type: 'number', default: SERVER_DEFAULTS.authFailureRefillPerSecond, describe: 'Failed authentications forgiven per second and client address' })
      .option('max-auth-failure-entries', { type: 'number', default: SERVER_DEFAULTS.maxAuthFailureEntries, describe: 'Client addresses whose failed authentications are remembered; the oldest is forgotten first' })
      .option('idle-timeout', { type: 'string', default: formatDuration(SERVER_DEFAULTS.idleTimeoutMs), describe: 'Close a session after no datagram either way for this long (0 = never)' })
      .option('max-sessions', { type: 'number', default: SERVER_DEFAULTS.maxSessions, describe: 'Tunnels on this server at once; more get 503' })
      .option('max-sessions-per-connection', { type: 'number', describe: 'Tunnels one HTTP/2 connection may hold; more are refused with REFUSED_STREAM (default: --max-streams)' })
      .option('max-streams', { type: 'number', default: SERVER_DEFAULTS.maxStreamsPerConnection, describe: 'Streams open at once per HTTP/2 connection; more are refused with REFUSED_STREAM' })
      .option('max-sessions-per-client', { type: 'number', default: SERVER_DEFAULTS.maxSessionsPerClient, describe: 'Tunnels one client address may hold across its connections; more get 503' })
      .option('max-capsule', { type: 'string', default: formatSize(SERVER_DEFAULTS.maxCapsuleLength), describe: 'Largest capsule accepted; a longer one aborts its stream' })
      .option('max-datagram', { type: 'number', default: SERVER_DEFAULTS.maxDatagram, describe: 'Largest UDP payload relayed either way; larger ones are dropped and counted' })
      .option('max-stream-buffer', { type: 'string', default: formatSize(SERVER_DEFAULTS.maxStreamBuffer), describe: 'Bytes queued toward a client before datagrams are dropped; also the HTTP/2 stream window' })
      .option('max-udp-send-queue', { type: 'number', default: SERVER_DEFAULTS.maxUdpSendQueue, describe: 'Datagrams a session may have queued toward its target (kernel buffer full) before more are dropped' })
      .option('header-timeout', { type: 'string', default: formatDuration(SERVER_DEFAULTS.headerTimeoutMs), describe: 'Time a connection has for its TLS handshake and first request head (and an HTTP/2 peer to acknowledge SETTINGS)' })
      .option('connection-idle-timeout', {
        type: 'string',
        default: formatDuration(SERVER_DEFAULTS.connectionIdleTimeoutMs),
        describe: 'Close an HTTP/2 connection (GOAWAY, NO_ERROR) after it had no open stream for this long (0 = never)',
      })
      .option('max-connections', { type: 'number', default: SERVER_DEFAULTS.maxConnections, describe: 'Client TCP connections open at once; further ones are closed on accept' })
      .option('max-header-size', { type: 'string', default: formatSize(SERVER_DEFAULTS.maxHeaderSize), describe: 'Largest HTTP/1.1 request head and HTTP/2 header list (431 beyond); also SETTINGS_MAX_HEADER_LIST_SIZE' })
      .option('dns-server', { type: 'string', array: true, default: [], describe: 'DNS server IP[:PORT] for target names (default: system resolver)' })
      .option('dns-timeout', { type: 'string', default: formatDuration(SERVER_DEFAULTS.dnsTimeoutMs), describe: 'Answer 504 when resolving a target takes longer' })
      .example('$0 serve --listen 127.0.0.1:4433', 'Cleartext proxy (h2c and HTTP/1.1) for loopback targets')
      .example('$0 serve -l [::]:443 --cert cert.pem --key key.pem --token-file tokens.txt --allow 10.0.0.0/8:53', 'TLS proxy with tokens that may reach DNS servers in 10/8')
      .example('$0 serve --self-signed --post-route /dns=127.0.0.1:53 --json', 'Ephemeral TLS certificate and a POST route')
      .example('$0 serve -l 127.0.0.1:0 --json | head -1', 'Pick a free port and print it as JSON') as unknown as Argv<ServeArgs>,
  handler: async (args: ArgumentsCamelCase<ServeArgs>) => {
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
      ...(process.env['UDP_TUNNEL_TOKEN'] ? { envToken: process.env['UDP_TUNNEL_TOKEN'] } : {}),
      basic: args.basic,
    });
    if (!args.auth && auth.enabled) throw new UsageError('--no-auth contradicts the credentials given (--token, --token-file, --basic or UDP_TUNNEL_TOKEN)');
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
    if (args.keylog !== undefined && !tls) throw new UsageError('--keylog needs TLS: add --cert/--key or --self-signed');
    const keylog = tls ? openKeylog(args) : undefined;
    if (tls && keylog) tls.onKeylog = keylog.onKeylog;
    const server = usageOnBadOption(() => new TunnelServer({
      host: listen.host,
      port: listen.port,
      ...(tls ? { tls } : {}),
      ...(args.template ? { template: args.template } : {}),
      policy,
      authenticator: auth,
      postRoutes,
      idleTimeoutMs: parseDuration(args['idle-timeout'], '--idle-timeout'),
      maxSessions: positive(args['max-sessions'], '--max-sessions'),
      ...(args['max-sessions-per-connection'] !== undefined
        ? { maxSessionsPerConnection: positive(args['max-sessions-per-connection'], '--max-sessions-per-connection') }
        : {}),
      maxStreamsPerConnection: positive(args['max-streams'], '--max-streams'),
      maxSessionsPerClient: positive(args['max-sessions-per-client'], '--max-sessions-per-client'),
      maxAuthFailuresPerConnection: positive(args['max-auth-failures-per-connection'], '--max-auth-failures-per-connection'),
      authFailureBurst: positive(args['auth-failure-burst'], '--auth-failure-burst'),
      authFailureRefillPerSecond: nonNegative(args['auth-failure-rate'], '--auth-failure-rate'),
      maxAuthFailureEntries: positive(args['max-auth-failure-entries'], '--max-auth-failure-entries'),
      maxCapsuleLength: parseSize(args['max-capsule'], '--max-capsule'),
      maxDatagram: args['max-datagram'],
      maxStreamBuffer: parseSize(args['max-stream-buffer'], '--max-stream-buffer'),
      maxUdpSendQueue: positive(args['max-udp-send-queue'], '--max-udp-send-queue'),
      headerTimeoutMs: parseDuration(args['header-timeout'], '--header-timeout'),
      connectionIdleTimeoutMs: parseDuration(args['connection-idle-timeout'], '--connection-idle-timeout'),
      maxConnections: positive(args['max-connections'], '--max-connections'),
      maxHeaderSize: parseSize(args['max-header-size'], '--max-header-size'),
      ...(args['dns-server'].length ? { dnsServers: args['dns-server'] } : {}),
      dnsTimeoutMs: parseDuration(args['dns-timeout'], '--dns-timeout'),
    }));
    attachServerOutput(server, out);
    const tap = await startInspectTap(args, out, 'serve');
    const addr = await server.listen();
    // Before 'listening' is printed: a signal sent by whoever reads that line must find the handler in place.
    const { done } = untilShutdown(async () => {
      out.info('shutting down');
      await server.close();
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
    const why = await done;
    await tap?.stop();
    out.event('shutdown', { signal: why, counters: server.counters });
  },
};
