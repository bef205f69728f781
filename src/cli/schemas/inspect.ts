import { DEFAULT_MAX_CAPSULE_LENGTH } from '../../tunnel/codec/capsule-decoder.js';
import { DEFAULT_PREVIEW_BYTES, RELAY_DEFAULTS } from '../../inspect/defaults.js';
import { showDuration, type CommandSchema, type OptionSpec, type OptionValues } from '../options/spec.js';
import { CONFIG_OPTIONS, OUTPUT_GROUP, OUTPUT_OPTIONS } from './common.js';

const SOURCES = 'Sources (pick one)';
const RELAY = 'Relay';
const DECODE = 'Decoding';

/** `udp-tunnel inspect`'s options. */
export const INSPECT_OPTIONS = [
  { name: 'listen', short: 'l', kind: 'string', value: 'HOST:PORT', group: SOURCES, describe: 'Relay: accept tunnel requests here (h2c/HTTP/1.1, TLS with --cert)' },
  { name: 'upstream', short: 'u', kind: 'string', value: 'URL', group: SOURCES, describe: 'Relay: forward every request to this proxy (http:// or https://)' },
  { name: 'raw', kind: 'string', value: 'FILE|-', group: SOURCES, describe: 'Decode a raw capsule byte stream (- = stdin)' },
  { name: 'hex', kind: 'boolean', group: SOURCES, describe: 'The raw input is hex text (xxd, hexdump -C, 0x..); alone it reads stdin' },
  { name: 'file', short: 'f', kind: 'string', value: 'FILE|-', group: SOURCES, describe: 'Replay an NDJSON recording (--record or --json output)' },
  { name: 'pcap', kind: 'string', value: 'FILE', group: SOURCES, describe: 'Decode cleartext CONNECT-UDP from a pcap/pcapng capture' },
  {
    name: 'direction',
    kind: 'choice',
    choices: ['request', 'response'],
    default: 'request',
    group: SOURCES,
    describe: 'With --raw: the stream is client->proxy (request) or proxy->client',
    advanced: true,
  },
  { name: 'realtime', kind: 'boolean', group: SOURCES, describe: 'With --file: replay at the recorded pace', advanced: true },
  { name: 'cert', kind: 'string', value: 'FILE', group: RELAY, describe: 'PEM certificate: serve TLS with ALPN h2 and http/1.1 (needs --key)' },
  { name: 'key', kind: 'string', value: 'FILE', group: RELAY, describe: 'PEM private key for --cert' },
  { name: 'upstream-ca', kind: 'string', value: 'FILE', group: RELAY, describe: 'PEM CA certificates to trust for an https:// upstream', advanced: true },
  { name: 'upstream-insecure', kind: 'boolean', group: RELAY, describe: 'Do not verify the upstream certificate (testing only)', advanced: true },
  { name: 'upstream-servername', kind: 'string', value: 'NAME', group: RELAY, describe: 'TLS server name of the upstream if not its host', advanced: true },
  { name: 'keylog', kind: 'string', value: 'FILE', env: 'SSLKEYLOGFILE', group: RELAY, describe: 'Append TLS secrets to FILE so Wireshark can decrypt a capture', advanced: true },
  {
    name: 'connect-timeout',
    kind: 'duration',
    min: 1,
    default: showDuration(RELAY_DEFAULTS.connectTimeoutMs),
    group: RELAY,
    describe: 'Wait this long for the upstream connection (and its SETTINGS)',
    advanced: true,
  },
  { name: 'max-connections', kind: 'int', value: 'N', min: 1, max: 1_000_000, default: RELAY_DEFAULTS.maxConnections, group: RELAY, describe: 'Client connections at once; more are closed and counted', advanced: true },
  {
    name: 'head-timeout',
    kind: 'duration',
    default: showDuration(RELAY_DEFAULTS.headTimeoutMs),
    group: RELAY,
    describe: 'Time for a TLS handshake and first request (0 = no limit)',
    advanced: true,
  },
  { name: 'bytes', kind: 'int', value: 'N', min: 0, max: 65535, default: DEFAULT_PREVIEW_BYTES, group: DECODE, describe: 'Payload bytes previewed per capsule (hex and ASCII)' },
  { name: 'full', kind: 'boolean', group: DECODE, describe: 'Show whole payloads (a hex dump under each capsule)' },
  { name: 'type', short: 't', kind: 'list', commas: true, value: 'TYPE', group: DECODE, describe: 'Only these capsule types: DATAGRAM, GREASE, UNKNOWN, LEGACY, 0x40' },
  { name: 'session', short: 's', kind: 'list', commas: true, value: 'ID', group: DECODE, describe: 'Only these session ids (repeatable, comma-separated)', advanced: true },
  { name: 'errors-only', kind: 'boolean', group: DECODE, describe: 'Show only decoding errors' },
  { name: 'strict', kind: 'boolean', group: DECODE, describe: 'Exit 1 if any malformed input was seen (for CI)' },
  { name: 'summary', kind: 'boolean', default: true, group: DECODE, describe: 'Print the per-session summary table at the end' },
  {
    name: 'max-capsule',
    kind: 'size',
    min: 1,
    max: 1024 * 1024 * 1024,
    default: DEFAULT_MAX_CAPSULE_LENGTH,
    group: DECODE,
    describe: 'A capsule declaring a longer value is reported as an error',
    advanced: true,
  },
  { name: 'all-streams', kind: 'boolean', group: DECODE, describe: 'Decode every request body as capsules (e.g. POST mode)', advanced: true },
  { name: 'record', kind: 'string', value: 'FILE', group: OUTPUT_GROUP, describe: 'Also write the events to FILE as an NDJSON recording' },
  { name: 'show-credentials', kind: 'boolean', group: OUTPUT_GROUP, describe: 'Keep Authorization values in output and recordings', advanced: true },
  ...OUTPUT_OPTIONS,
  ...CONFIG_OPTIONS,
] as const satisfies readonly OptionSpec[];

/** inspect's parsed options. */
export type InspectOptions = OptionValues<typeof INSPECT_OPTIONS>;

/** `udp-tunnel inspect`. */
export const INSPECT_SCHEMA: CommandSchema = {
  command: 'inspect',
  usage: 'inspect (--listen HOST:PORT --upstream URL | --raw FILE|- | --file FILE|- | --pcap FILE) [options]',
  summary: 'Decode capsule traffic (RFC 9297, RFC 9298): live as a relay between connect and a proxy, or from a raw or hex stream, a recording or a capture.',
  groups: [SOURCES, RELAY, DECODE, OUTPUT_GROUP],
  options: INSPECT_OPTIONS,
  examples: [
    { cmd: 'udp-tunnel inspect --listen 127.0.0.1:4434 --upstream http://127.0.0.1:4433', what: 'Relay: point connect at :4434, watch its traffic' },
    { cmd: "printf '00 05 00 68 69 21 21' | udp-tunnel inspect --hex", what: 'Decode hex text from stdin' },
    { cmd: 'udp-tunnel inspect --pcap lo.pcapng --json', what: 'Decode a tcpdump/tshark capture to NDJSON' },
    { cmd: 'udp-tunnel inspect --raw capture.bin --strict', what: 'Decode a raw capsule stream; exit 1 if malformed' },
    { cmd: 'udp-tunnel inspect --file session.ndjson --type DATAGRAM --bytes 64', what: 'Replay a recording' },
  ],
};
