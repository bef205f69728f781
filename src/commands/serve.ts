import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { formatHostPort, parseHostPort } from '../core/address.js';
import { parseDuration, parseSize } from '../core/duration.js';
import { TargetPolicy, isLoopback, parseRuleList, type PolicyRule } from '../core/policy.js';
import { TunnelServer, type ServerSessionStats } from '../core/server.js';
import { color } from '../cli/color.js';
import { makeOutput, withCommonOptions, type CommonArgs } from '../cli/common-options.js';
import { UsageError } from '../cli/errors.js';
import { startInspectTap, withInspectTapOptions, type InspectTapArgs } from '../cli/inspect-tap.js';
import { untilShutdown } from '../cli/lifecycle.js';
import type { Output } from '../cli/output.js';

interface ServeArgs extends CommonArgs, InspectTapArgs {
  listen: string;
  cert?: string;
  key?: string;
  template?: string;
  allow: string[];
  deny: string[];
  'idle-timeout': string;
  'max-sessions': number;
  'max-streams': number;
  'max-capsule': string;
  'max-stream-buffer': string;
  'dns-server': string[];
  'dns-timeout': string;
}

/** Builds the target policy from --deny and --allow (deny rules are checked first) and the listening address. */
export function buildPolicy(allow: string[], deny: string[], listenHost: string): TargetPolicy {
  const rules: PolicyRule[] = [];
  for (const d of deny) rules.push(...parseRuleList(d, 'deny'));
  for (const a of allow) rules.push(...parseRuleList(a, 'allow'));
  // RFC 9298 §7: the proxy's own addresses are refused by default. Loopback stays governed by the loopback rule,
  // otherwise the default (loopback-only) could never reach a local service.
  const own: string[] = [];
  if (listenHost === '0.0.0.0' || listenHost === '::') {
    for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (!i.internal) own.push(i.address);
  } else if (!isLoopback(listenHost) && /^[\d.:a-fA-F]+$/.test(listenHost)) {
    own.push(listenHost);
  }
  return new TargetPolicy({ rules, ownAddresses: own });
}

/** `udp-tunnel serve`: the proxy side. */
export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Run a CONNECT-UDP proxy (RFC 9298) over HTTP/2 that relays tunnels to UDP targets',
  builder: (y: Argv) =>
    withInspectTapOptions(withCommonOptions(y))
      .option('listen', { alias: 'l', type: 'string', default: '127.0.0.1:4433', describe: 'TCP HOST:PORT to listen on ([IPv6]:PORT; port 0 = any)' })
      .option('cert', { type: 'string', describe: 'PEM certificate: serve TLS with ALPN h2 (needs --key)' })
      .option('key', { type: 'string', describe: 'PEM private key for --cert' })
      .option('template', { type: 'string', describe: 'URI template path (default /.well-known/masque/udp/{target_host}/{target_port}/)' })
      .option('allow', { type: 'string', array: true, default: [], describe: 'Allow targets CIDR[:PORT|:LO-HI] (repeatable, comma-separated); default: loopback only' })
      .option('deny', { type: 'string', array: true, default: [], describe: 'Deny targets CIDR[:PORT|:LO-HI]; checked before --allow' })
      .option('idle-timeout', { type: 'string', default: '120s', describe: 'Close a session after no datagram either way for this long (0 = never)' })
      .option('max-sessions', { type: 'number', default: 10000, describe: 'Concurrent sessions on this server; more get 503' })
      .option('max-streams', { type: 'number', default: 100, describe: 'SETTINGS_MAX_CONCURRENT_STREAMS per connection' })
      .option('max-capsule', { type: 'string', default: '65552', describe: 'Largest capsule accepted; a longer one resets its stream' })
      .option('max-stream-buffer', { type: 'string', default: '256k', describe: 'Bytes queued toward a client before datagrams are dropped' })
      .option('dns-server', { type: 'string', array: true, default: [], describe: 'DNS server IP[:PORT] for target names (default: system resolver)' })
      .option('dns-timeout', { type: 'string', default: '5s', describe: 'Answer 504 when resolving a target takes longer' })
      .example('$0 serve --listen 127.0.0.1:4433', 'Cleartext HTTP/2 (h2c) proxy for loopback targets')
      .example('$0 serve -l [::]:443 --cert cert.pem --key key.pem --allow 10.0.0.0/8:53 --json', 'TLS proxy that may reach DNS servers in 10/8')
      .example('$0 serve -l 127.0.0.1:0 --json | head -1', 'Pick a free port and print it as JSON') as unknown as Argv<ServeArgs>,
  handler: async (args: ArgumentsCamelCase<ServeArgs>) => {
    const out = makeOutput(args);
    const listen = parseHostPort(args.listen, { allowPortZero: true, what: '--listen' });
    if (Boolean(args.cert) !== Boolean(args.key)) throw new UsageError('--cert and --key go together');
    const policy = buildPolicy(args.allow, args.deny, listen.host);
    const server = new TunnelServer({
      host: listen.host,
      port: listen.port,
      ...(args.cert && args.key ? { tls: { cert: readFileSync(args.cert), key: readFileSync(args.key) } } : {}),
      ...(args.template ? { template: args.template } : {}),
      policy,
      idleTimeoutMs: parseDuration(args['idle-timeout'], '--idle-timeout'),
      maxSessions: args['max-sessions'],
      maxStreamsPerConnection: args['max-streams'],
      maxCapsuleLength: parseSize(args['max-capsule'], '--max-capsule'),
      maxStreamBuffer: parseSize(args['max-stream-buffer'], '--max-stream-buffer'),
      ...(args['dns-server'].length ? { dnsServers: args['dns-server'] } : {}),
      dnsTimeoutMs: parseDuration(args['dns-timeout'], '--dns-timeout'),
    });
    attachServerOutput(server, out);
    const tap = await startInspectTap(args, out, 'serve');
    const addr = await server.listen();
    const proto = args.cert ? 'h2' : 'h2c';
    out.event('listening', { protocol: proto, address: addr.address, port: addr.port, family: addr.family, policy: policy.describe() });
    out.info(`serving CONNECT-UDP on ${color().bold(`${proto === 'h2' ? 'https' : 'http'}://${formatHostPort(addr.address, addr.port)}`)} (${proto})`);
    out.debug(`target policy: ${policy.describe().join('; ')}`);
    const { done } = untilShutdown(async () => {
      out.info('shutting down');
      await server.close();
    });
    const why = await done;
    await tap?.stop();
    out.event('shutdown', { signal: why, counters: server.counters });
  },
};

/** Renders server events as NDJSON or human log lines. */
export function attachServerOutput(server: TunnelServer, out: Output): void {
  const c = color();
  server.on('session-open', (e: { id: string; client: string; target: string; resolved: string }) => {
    out.event('session-open', e);
    out.info(`${c.magenta(e.id)} ${e.client} -> ${e.target}${e.resolved !== e.target.replace(/:\d+$/, '') ? ` (${e.resolved})` : ''}`);
  });
  server.on('session-close', (s: ServerSessionStats) => {
    out.event('session-close', { ...s });
    out.info(
      `${c.magenta(s.id)} closed (${s.closeReason}) after ${(s.durationMs / 1000).toFixed(1)}s: ` +
        `${s.rxDatagrams} dgrams/${s.rxBytes} B in, ${s.txDatagrams} dgrams/${s.txBytes} B out` +
        (s.dropBackpressure + s.dropContextId + s.dropUdpSend > 0
          ? c.yellow(`, dropped backpressure=${s.dropBackpressure} contextId=${s.dropContextId} udpSend=${s.dropUdpSend}`)
          : ''),
    );
  });
  server.on('refused', (e: { status: number; error: string; details: string }) => {
    out.event('refused', e);
    out.info(c.yellow(`refused ${e.status} ${e.error}: ${e.details}`));
  });
  server.on('error', (err: Error) => out.error(err.message));
}

