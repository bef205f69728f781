import { readFileSync } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { parseHostPort } from '../../tunnel/address.js';
import { CLIENT_DEFAULTS, TunnelClient } from '../../tunnel/client.js';
import {
  PROXY_CONFIG_DEFAULTS,
  buildTransport,
  describeProxy,
  parseHeaderFlags,
  redactProxyUrl,
  type ClientMode,
  type HttpVersionChoice,
  type ProxyConfig,
} from '../../tunnel/client-config.js';
import { parsePins } from '../../tunnel/transport/proxy-socket.js';
import { UsageError } from '../errors.js';
import { parseDuration } from '../../tunnel/units.js';
import { withCommonOptions, makeOutput, type CommonArgs } from '../common-options.js';
import { formatDuration } from '../format-units.js';
import { startInspectTap, withInspectTapOptions, type InspectTapArgs } from '../inspect-tap.js';
import { openKeylog, withKeylogOption, type KeylogArgs } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import { attachClientOutput, renderConnectListening } from '../render/connect-events.js';
import { runTunnelCheck, startProxyProbe } from '../proxy-check.js';
import { COMMAND_SUMMARIES } from './summaries.js';

interface ConnectArgs extends CommonArgs, InspectTapArgs, KeylogArgs {
  local: string;
  proxy: string;
  target?: string;
  http: HttpVersionChoice;
  mode: ClientMode;
  'post-path': string;
  token?: string;
  template?: string;
  header: string[];
  'idle-timeout': string;
  buffer: boolean;
  'max-buffered-datagrams': number;
  'max-buffered-bytes': number;
  'max-connect-attempts': number;
  'backoff-base': string;
  'backoff-max'?: string;
  'max-datagram': number;
  'max-sessions': number;
  'max-udp-send-queue': number;
  'connect-timeout': string;
  insecure: boolean;
  ca?: string;
  servername?: string;
  pin: string[];
  cert?: string;
  key?: string;
  check: boolean;
  'proxy-check': boolean;
}

/** `udp-tunnel connect`: local UDP port -> proxy -> target. */
export const connectCommand: CommandModule<object, ConnectArgs> = {
  ...COMMAND_SUMMARIES.connect,
  builder: (y: Argv) =>
    withKeylogOption(withInspectTapOptions(withCommonOptions(y)))
      .option('local', { alias: 'l', type: 'string', default: '127.0.0.1:0', describe: 'Local UDP HOST:PORT to listen on ([IPv6]:PORT; port 0 = any)' })
      .option('proxy', {
        alias: 'p',
        type: 'string',
        demandOption: true,
        describe: 'Proxy URL: http://HOST:PORT (cleartext) or https://HOST:PORT (TLS); may be a URI template; user:pass@ is sent as Basic',
      })
      .option('target', { alias: 't', type: 'string', describe: 'UDP target HOST:PORT the proxy should reach (connect-udp mode)' })
      .option('http', { type: 'string', choices: ['2', '1.1'], default: PROXY_CONFIG_DEFAULTS.http, describe: 'connect-udp over HTTP/2 extended CONNECT, or HTTP/1.1 Upgrade (one connection per session)' })
      .option('mode', {
        type: 'string',
        choices: ['connect-udp', 'post'],
        default: PROXY_CONFIG_DEFAULTS.mode,
        describe: 'connect-udp (RFC 9298), or post: HTTP/2 POST whose bodies carry DATAGRAM capsules; NOT RFC 9298, the proxy maps the path to a target',
      })
      .option('post-path', { type: 'string', default: PROXY_CONFIG_DEFAULTS.postPath, describe: 'With --mode post: the request path (the proxy maps it to its target)' })
      .option('token', { type: 'string', describe: 'Bearer token for the proxy (default: UDP_TUNNEL_TOKEN); never logged' })
      .option('template', { type: 'string', describe: `URI template path (default ${PROXY_CONFIG_DEFAULTS.template})` })
      .option('header', { alias: 'H', type: 'string', array: true, default: [], describe: "Extra request header 'Name: value' (repeatable)" })
      .option('idle-timeout', { type: 'string', default: formatDuration(CLIENT_DEFAULTS.idleTimeoutMs), describe: 'End a session after no datagram either way for this long (0 = never)' })
      .option('buffer', { type: 'boolean', default: CLIENT_DEFAULTS.buffer.enabled, describe: 'Hold datagrams that arrive before the tunnel is ready; --no-buffer drops them (Envoy default)' })
      .option('max-buffered-datagrams', { type: 'number', default: CLIENT_DEFAULTS.buffer.maxDatagrams, describe: 'With --buffer: datagrams held per session' })
      .option('max-buffered-bytes', { type: 'number', default: CLIENT_DEFAULTS.buffer.maxBytes, describe: 'With --buffer: bytes held per session' })
      .option('max-connect-attempts', { type: 'number', default: CLIENT_DEFAULTS.maxConnectAttempts, describe: 'Attempts to set up each tunnel' })
      .option('backoff-base', { type: 'string', default: formatDuration(CLIENT_DEFAULTS.backoff.baseMs), describe: 'First retry delay (exponential, jittered)' })
      .option('backoff-max', { type: 'string', describe: 'Longest retry delay (default 10 x --backoff-base)' })
      .option('max-datagram', { type: 'number', default: CLIENT_DEFAULTS.maxDatagram, describe: 'Larger datagrams are dropped and counted, never truncated' })
      .option('max-sessions', { type: 'number', default: CLIENT_DEFAULTS.maxSessions, describe: 'Concurrent local peers; more are dropped and counted' })
      .option('max-udp-send-queue', { type: 'number', default: CLIENT_DEFAULTS.maxUdpSendQueue, describe: 'Datagrams the local socket may have queued (kernel buffer full) before replies to local peers are dropped' })
      .option('connect-timeout', { type: 'string', default: formatDuration(PROXY_CONFIG_DEFAULTS.connectTimeoutMs), describe: 'Give up on one tunnel attempt after this long' })
      .option('insecure', { type: 'boolean', default: false, describe: 'Do not verify the proxy certificate at all (testing only)' })
      .option('ca', { type: 'string', describe: 'PEM file of CA certificates to trust for the proxy' })
      .option('servername', { type: 'string', describe: 'TLS server name (SNI and verification) if not the proxy host' })
      .option('pin', {
        type: 'string',
        array: true,
        default: [],
        describe: "Trust a proxy whose certificate's public key (SPKI) hashes to sha256/BASE64 (repeatable); without --ca the pin replaces CA checks",
      })
      .option('cert', { type: 'string', describe: 'PEM client certificate for mTLS (needs --key)' })
      .option('key', { type: 'string', describe: 'PEM private key for --cert' })
      .option('check', { type: 'boolean', default: false, describe: 'Open one tunnel to --target, report status, Proxy-Status, time and headers, and exit (0 = tunnel established)' })
      .option('proxy-check', { type: 'boolean', default: true, describe: 'Check the proxy (TLS, HTTP/2 SETTINGS) once after listening; --no-proxy-check skips it' })
      .example('$0 connect --local 127.0.0.1:5353 --proxy http://127.0.0.1:4433 --target 127.0.0.1:53', 'Tunnel DNS via a local h2c proxy')
      .example('$0 connect -l [::1]:0 -p https://proxy.example:443 -t [2001:db8::53]:53 --ca ca.pem --buffer --json', 'TLS proxy, IPv6 target, NDJSON events')
      .example("$0 connect -p http://127.0.0.1:4433 -t 127.0.0.1:9000 -H 'x-tenant: blue' --max-connect-attempts 3", 'Extra header and retries')
      .example('$0 connect -p http://127.0.0.1:4433 -t 127.0.0.1:53 --http 1.1', 'CONNECT-UDP over HTTP/1.1 Upgrade')
      .example('$0 connect -p https://127.0.0.1:4433 --pin sha256/AbC... --mode post --post-path /dns', 'POST mode (not RFC 9298) to a self-signed proxy')
      .example('UDP_TUNNEL_TOKEN=s3cret $0 connect -p https://proxy.example -t 10.0.0.53:53', 'Bearer token from the environment') as unknown as Argv<ConnectArgs>,
  handler: async (args: ArgumentsCamelCase<ConnectArgs>) => {
    const out = makeOutput(args);
    const local = parseHostPort(args.local, { allowPortZero: true, what: '--local' });
    if (args.mode === 'connect-udp' && !args.target) throw new UsageError('--target HOST:PORT is required in connect-udp mode');
    if (args.mode === 'post' && args.http !== '2') throw new UsageError('--mode post runs over HTTP/2 only; drop --http 1.1');
    if (Boolean(args.cert) !== Boolean(args.key)) throw new UsageError('--cert and --key go together');
    const tlsFlags = ['ca', 'servername', 'cert'].filter((f) => args[f as 'ca' | 'servername' | 'cert'] !== undefined);
    if (args.pin.length > 0) tlsFlags.push('pin');
    if (args.insecure) tlsFlags.push('insecure');
    if (tlsFlags.length > 0 && !/^https:/i.test(args.proxy)) {
      throw new UsageError(`--${tlsFlags.join(', --')} need an https:// proxy URL`);
    }
    const target = args.target ? parseHostPort(args.target, { what: '--target' }) : undefined;
    const baseMs = parseDuration(args['backoff-base'], '--backoff-base', 'ms');
    if (args.keylog !== undefined && !/^https:/i.test(args.proxy)) throw new UsageError('--keylog needs an https:// proxy URL');
    const keylog = /^https:/i.test(args.proxy) ? openKeylog(args) : undefined;
    const tls = {
      ...(keylog ? { onKeylog: keylog.onKeylog } : {}),
      insecure: args.insecure,
      ...(args.ca ? { ca: readFileSync(args.ca) } : {}),
      ...(args.servername ? { servername: args.servername } : {}),
      ...(args.pin.length ? { pins: parsePins(args.pin) } : {}),
      ...(args.cert && args.key ? { cert: readFileSync(args.cert), key: readFileSync(args.key) } : {}),
    };
    const token = args.token ?? process.env['UDP_TUNNEL_TOKEN'];
    const config: ProxyConfig = {
      proxy: args.proxy,
      ...(target ? { target } : {}),
      mode: args.mode,
      http: args.http,
      postPath: args['post-path'],
      ...(token ? { token } : {}),
      ...(args.template ? { template: args.template } : {}),
      headers: parseHeaderFlags(args.header),
      tls,
      connectTimeoutMs: parseDuration(args['connect-timeout'], '--connect-timeout'),
    };
    if (args.check) {
      try {
        await runTunnelCheck(config, out);
      } finally {
        keylog?.close();
      }
      return;
    }
    const transport = buildTransport(config);
    const client = new TunnelClient({
      host: local.host,
      port: local.port,
      transport,
      idleTimeoutMs: parseDuration(args['idle-timeout'], '--idle-timeout'),
      buffer: { enabled: args.buffer, maxDatagrams: args['max-buffered-datagrams'], maxBytes: args['max-buffered-bytes'] },
      maxConnectAttempts: args['max-connect-attempts'],
      backoff: { baseMs, maxMs: args['backoff-max'] ? parseDuration(args['backoff-max'], '--backoff-max', 'ms') : baseMs * 10 },
      maxDatagram: args['max-datagram'],
      maxSessions: args['max-sessions'],
      maxUdpSendQueue: args['max-udp-send-queue'],
    });
    attachClientOutput(client, out);
    const tap = await startInspectTap(args, out, 'connect');
    const addr = await client.start();
    renderConnectListening(out, {
      address: addr,
      proxy: redactProxyUrl(args.proxy),
      description: describeProxy(config),
      mode: args.mode,
      ...(args.mode === 'post' ? { postPath: args['post-path'] } : { target: args.target! }),
      transport: transport.name,
    });
    const probe = args['proxy-check'] ? startProxyProbe(config, out) : undefined;
    const { done } = untilShutdown(async () => {
      out.info('shutting down');
      await probe?.stop();
      await client.close();
      keylog?.close();
    });
    const why = await done;
    await tap?.stop();
    out.event('shutdown', { signal: why, counters: client.counters });
    out.debug(`counters ${JSON.stringify(client.counters)}`);
  },
};
