import { MAX_UDP_PAYLOAD } from '../../tunnel/codec/datagram.js';
import { CLIENT_DEFAULTS, FAILOVER_DEFAULTS, PROXY_CONFIG_DEFAULTS } from '../../tunnel/defaults.js';
import { showDuration, type CommandSchema, type OptionSpec, type OptionValues } from '../options/spec.js';
import { CONFIG_OPTIONS, OBSERVE_GROUP, OBSERVE_OPTIONS, OUTPUT_GROUP, OUTPUT_OPTIONS, TAP_OPTIONS } from './common.js';

const LISTEN = 'Where to listen';
const PROXY = 'The proxy';
const TUNNEL = 'The tunnel';
const TLS = 'TLS to the proxy';
const LIMITS = 'Limits';

/** `udp-tunnel connect`'s options. */
export const CONNECT_OPTIONS = [
  { name: 'local', short: 'l', kind: 'string', value: 'HOST:PORT', default: '127.0.0.1:0', group: LISTEN, describe: 'Local UDP address ([IPv6]:PORT; port 0 = any)' },
  {
    name: 'forward',
    short: 'L',
    kind: 'list',
    value: 'PORT:HOST:PORT',
    group: LISTEN,
    describe: 'Forward local [BIND:]PORT to HOST:PORT (repeatable)',
    details:
      'The full form is [BIND:]PORT:HOST:PORT. Instead of --local/--target: each -L listens on its own port (BIND defaults to 127.0.0.1, IPv6 in brackets, port 0 = any) ' +
      'and all share one connection pool to the proxy. Per-forward settings go in the config file\'s forwards: list (docs/forwards.md).',
  },
  {
    name: 'expose',
    kind: 'string',
    value: 'HOST:PORT',
    group: LISTEN,
    describe: 'Reverse tunnel: give the local UDP service HOST:PORT a public address',
    details:
      'Asks the proxy to bind a public UDP port (CONNECT-UDP Bind, draft-ietf-masque-connect-udp-listen; serve needs --allow-bind) ' +
      'and relays what remote peers send there to HOST:PORT, each peer from its own local port. Instead of --local/-L/--target. ' +
      '--idle-timeout forgets idle peers, --max-sessions caps them; a lost tunnel is reopened with backoff (docs/expose.md).',
  },
  {
    name: 'proxy',
    short: 'p',
    kind: 'list',
    value: 'URL',
    env: 'UDP_TUNNEL_PROXY',
    group: PROXY,
    describe: 'Proxy URL: http://HOST:PORT (h2c) or https://HOST:PORT (TLS)',
    details:
      'May be a URI template (RFC 9298 §2); user:pass@ in the URL is sent as Basic credentials. Required. Repeat it ' +
      '(or give a comma-separated list, also in UDP_TUNNEL_PROXY) for failover: see docs/failover.md.',
  },
  { name: 'target', short: 't', kind: 'string', value: 'HOST:PORT', group: PROXY, describe: 'UDP target the proxy should reach (connect-udp mode)' },
  {
    name: 'mode',
    kind: 'choice',
    choices: ['connect-udp', 'post'],
    default: PROXY_CONFIG_DEFAULTS.mode,
    group: PROXY,
    describe: 'connect-udp (RFC 9298) or post (not RFC 9298)',
    details: 'post sends an HTTP/2 POST whose bodies carry DATAGRAM capsules; the proxy maps --post-path to its target.',
  },
  {
    name: 'http',
    kind: 'choice',
    choices: ['2', '1.1'],
    default: PROXY_CONFIG_DEFAULTS.http,
    group: PROXY,
    describe: 'HTTP/2 extended CONNECT or HTTP/1.1 Upgrade',
  },
  { name: 'token', kind: 'string', value: 'TOKEN', env: 'UDP_TUNNEL_TOKEN', secret: true, group: PROXY, describe: 'Bearer token for the proxy; never logged' },
  { name: 'header', short: 'H', kind: 'list', value: "'NAME: VALUE'", group: PROXY, describe: 'Extra request header (repeatable)' },
  { name: 'post-path', kind: 'string', value: 'PATH', default: PROXY_CONFIG_DEFAULTS.postPath, group: PROXY, describe: 'With --mode post: the request path', advanced: true },
  { name: 'template', kind: 'string', value: 'PATH', default: PROXY_CONFIG_DEFAULTS.template, group: PROXY, describe: 'URI template path of the CONNECT-UDP request', advanced: true },
  {
    name: 'proxy-strategy',
    kind: 'choice',
    choices: ['failover', 'round-robin'],
    default: FAILOVER_DEFAULTS.strategy,
    group: PROXY,
    describe: 'With several --proxy: first healthy in order, or take turns',
    details: 'A proxy that fails to connect is skipped for a backoff period either way (docs/failover.md).',
    advanced: true,
  },
  {
    name: 'idle-timeout',
    kind: 'duration',
    default: showDuration(CLIENT_DEFAULTS.idleTimeoutMs),
    group: TUNNEL,
    describe: 'End a session idle this long (0 = never)',
    details: 'With --expose: forget a remote peer idle this long (its local socket and compressed context are closed).',
  },
  {
    name: 'buffer',
    kind: 'boolean',
    default: CLIENT_DEFAULTS.buffer.enabled,
    group: TUNNEL,
    describe: 'Hold datagrams that arrive before the tunnel is ready',
    details: '--no-buffer drops them instead (Envoy\'s default).',
  },
  { name: 'max-connect-attempts', kind: 'int', value: 'N', min: 1, max: 100, default: CLIENT_DEFAULTS.maxConnectAttempts, group: TUNNEL, describe: 'Attempts to set up each tunnel' },
  {
    name: 'connect-timeout',
    kind: 'duration',
    min: 1,
    default: showDuration(PROXY_CONFIG_DEFAULTS.connectTimeoutMs),
    group: TUNNEL,
    describe: 'Give up on one tunnel attempt after this long',
    advanced: true,
  },
  {
    name: 'backoff-base',
    kind: 'duration',
    unit: 'ms',
    min: 1,
    default: showDuration(CLIENT_DEFAULTS.backoff.baseMs),
    group: TUNNEL,
    describe: 'First retry delay (exponential, jittered; a bare number is ms)',
    advanced: true,
  },
  { name: 'backoff-max', kind: 'duration', unit: 'ms', min: 1, group: TUNNEL, describe: 'Longest retry delay (default 10 x --backoff-base)', advanced: true },
  { name: 'ca', kind: 'string', value: 'FILE', group: TLS, describe: 'PEM CA certificates to trust for the proxy' },
  {
    name: 'pin',
    kind: 'list',
    value: 'sha256/BASE64',
    group: TLS,
    describe: "Trust a proxy whose key (SPKI) has this hash (repeatable)",
    details: 'Without --ca the pin replaces the CA checks (for self-signed proxies: serve --self-signed prints its pin).',
  },
  { name: 'insecure', kind: 'boolean', group: TLS, describe: 'Do not verify the proxy certificate at all (testing only)' },
  { name: 'servername', kind: 'string', value: 'NAME', group: TLS, describe: 'TLS server name (SNI and verification) if not the proxy host', advanced: true },
  { name: 'cert', kind: 'string', value: 'FILE', group: TLS, describe: 'PEM client certificate for mTLS (needs --key)', advanced: true },
  { name: 'key', kind: 'string', value: 'FILE', group: TLS, describe: 'PEM private key for --cert', advanced: true },
  {
    name: 'keylog',
    kind: 'string',
    value: 'FILE',
    env: 'SSLKEYLOGFILE',
    group: TLS,
    describe: 'Append TLS secrets to FILE so Wireshark can decrypt a capture',
    advanced: true,
  },
  { name: 'max-sessions', kind: 'int', value: 'N', min: 1, max: 1_000_000, default: CLIENT_DEFAULTS.maxSessions, group: LIMITS, describe: 'Local peers at once; more are dropped and counted', details: 'With --expose: remote peers at once.' },
  {
    name: 'max-datagram',
    kind: 'size',
    min: 1,
    max: MAX_UDP_PAYLOAD,
    default: CLIENT_DEFAULTS.maxDatagram,
    group: LIMITS,
    describe: 'Larger datagrams are dropped and counted, never truncated',
    advanced: true,
  },
  {
    name: 'max-buffered-datagrams',
    kind: 'int',
    value: 'N',
    min: 1,
    max: 1_000_000,
    default: CLIENT_DEFAULTS.buffer.maxDatagrams,
    group: LIMITS,
    describe: 'Datagrams held per session while its tunnel is not ready',
    advanced: true,
  },
  {
    name: 'max-buffered-bytes',
    kind: 'size',
    min: 1,
    max: 64 * 1024 * 1024,
    default: CLIENT_DEFAULTS.buffer.maxBytes,
    group: LIMITS,
    describe: 'Bytes held per session while its tunnel is not ready',
    advanced: true,
  },
  {
    name: 'max-udp-send-queue',
    kind: 'int',
    value: 'N',
    min: 1,
    max: 1_000_000,
    default: CLIENT_DEFAULTS.maxUdpSendQueue,
    group: LIMITS,
    describe: 'Replies queued on the local socket (kernel buffer full) before drops',
    advanced: true,
  },
  {
    name: 'check',
    kind: 'boolean',
    group: TUNNEL,
    describe: 'Open one tunnel to --target, report what happened, exit 0/1',
    details: 'Prints the status, Proxy-Status, time to 2xx and the response headers; exit 0 when the tunnel was established.',
    flagOnly: true,
  },
  {
    name: 'proxy-check',
    kind: 'boolean',
    default: true,
    group: TUNNEL,
    describe: 'Check the proxy (TLS, HTTP/2 SETTINGS) once after listening',
    advanced: true,
  },
  ...OBSERVE_OPTIONS,
  ...OUTPUT_OPTIONS,
  ...TAP_OPTIONS,
  ...CONFIG_OPTIONS,
] as const satisfies readonly OptionSpec[];

/** connect's parsed options. */
export type ConnectOptions = OptionValues<typeof CONNECT_OPTIONS>;

/** `udp-tunnel connect`. */
export const CONNECT_SCHEMA: CommandSchema = {
  command: 'connect',
  usage: 'connect --proxy URL --target HOST:PORT [options]',
  summary: 'Listen on a local UDP port and forward each local peer through an HTTP proxy: CONNECT-UDP (RFC 9298) over HTTP/2 or HTTP/1.1, or a POST stream.',
  groups: [LISTEN, PROXY, TUNNEL, TLS, LIMITS, OBSERVE_GROUP, OUTPUT_GROUP],
  options: CONNECT_OPTIONS,
  configLists: [
    {
      name: 'forwards',
      describe: 'Forwards, each with its own settings (instead of local/target/forward)',
      keys: ['local', 'target', 'header', 'idle-timeout', 'buffer', 'max-buffered-datagrams', 'max-buffered-bytes', 'mode', 'post-path'],
      required: ['local'],
    },
  ],
  examples: [
    { cmd: 'udp-tunnel connect -l 127.0.0.1:5353 -p http://127.0.0.1:4433 -t 127.0.0.1:53', what: 'Tunnel DNS through a local h2c proxy' },
    { cmd: 'udp-tunnel connect -p https://127.0.0.1:4433 --pin sha256/AbC... -t 127.0.0.1:53', what: 'TLS proxy with a self-signed certificate' },
    { cmd: 'UDP_TUNNEL_TOKEN=s3cret udp-tunnel connect --config connect.yaml', what: 'Options from a file, token from the environment' },
    { cmd: 'udp-tunnel connect -p http://127.0.0.1:4433 -t 127.0.0.1:53 --http 1.1', what: 'CONNECT-UDP over HTTP/1.1 Upgrade' },
    { cmd: "udp-tunnel connect -p http://127.0.0.1:4433 -t 127.0.0.1:9000 -H 'x-tenant: blue'", what: 'An extra request header' },
    { cmd: 'udp-tunnel connect -p http://127.0.0.1:4433 --mode post --post-path /dns', what: 'POST mode (not RFC 9298)' },
    { cmd: 'udp-tunnel connect -p http://127.0.0.1:4433 -L 5353:127.0.0.1:53 -L 5354:127.0.0.1:54', what: 'Two forwards over one connection' },
    { cmd: 'udp-tunnel connect -p http://127.0.0.1:4433 -p http://127.0.0.1:4434 -t 127.0.0.1:53', what: 'Two proxies: the second takes over when the first is down' },
  ],
};
