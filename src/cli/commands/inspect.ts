import { createReadStream, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { formatHostPort, parseHostPort } from '../../tunnel/address.js';
import { parseDuration, parseSize } from '../../tunnel/units.js';
import { CapsuleView, DEFAULT_PREVIEW_BYTES } from '../../inspect/capsule-view.js';
import { DEFAULT_MAX_CAPSULE_LENGTH } from '../../tunnel/codec/capsule-decoder.js';
import type { Direction } from '../../inspect/events.js';
import { MAX_HEX_TEXT_LENGTH, looksLikeHexText, parseHexText } from '../../inspect/hex.js';
import { streamCapture } from '../../inspect/pcap-decode.js';
import { readRecording } from '../../inspect/recording.js';
import { InspectRelay, RELAY_DEFAULTS } from '../../inspect/relay.js';
import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import { color } from '../color.js';
import { makeOutput, withCommonOptions, type CommonArgs } from '../common-options.js';
import { UsageError } from '../errors.js';
import { formatDuration, formatSize } from '../format-units.js';
import { InspectView, type InspectViewSettings } from '../render/inspect-view.js';
import { openKeylog, withKeylogOption, type KeylogArgs } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import type { Output } from '../output.js';
import { COMMAND_SUMMARIES } from './summaries.js';

interface InspectArgs extends CommonArgs, KeylogArgs {
  listen?: string;
  upstream?: string;
  raw?: string;
  hex: boolean;
  direction: string;
  file?: string;
  realtime: boolean;
  pcap?: string;
  cert?: string;
  key?: string;
  'upstream-ca'?: string;
  'upstream-insecure': boolean;
  'upstream-servername'?: string;
  'connect-timeout': string;
  'max-connections': number;
  'head-timeout': string;
  bytes: number;
  full: boolean;
  'max-capsule': string;
  'all-streams': boolean;
  session: string[];
  type: string[];
  'errors-only': boolean;
  strict: boolean;
  summary: boolean;
  record?: string;
  'show-credentials': boolean;
}

/** Decoder settings shared by every source. */
interface DecodeSettings {
  previewBytes: number;
  full: boolean;
  maxCapsuleLength: number;
  capsuleStreams: 'auto' | 'all';
}

/** Splits repeatable, comma-separated flag values. */
function listOf(values: string[]): string[] {
  return values.flatMap((v) => String(v).split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

/** `udp-tunnel inspect`: decode capsule traffic from a relay, a raw/hex stream, a recording or a capture. */
export const inspectCommand: CommandModule<object, InspectArgs> = {
  ...COMMAND_SUMMARIES.inspect,
  builder: (y: Argv) =>
    withKeylogOption(withCommonOptions(y))
      .usage('$0 inspect (--listen HOST:PORT --upstream URL | --raw FILE|- | --file FILE|- | --pcap FILE) [options]\n\nDecode capsule traffic (RFC 9297/9298) live as a relay, or from a raw/hex stream, a recording or a capture.')
      // yargs reads the lone '-' of `--raw -` / `--file -` as a positional: allow positionals, still refuse unknown options.
      .strict(false)
      .strictOptions(true)
      .option('listen', { alias: 'l', type: 'string', describe: 'Relay: accept tunnel requests on TCP HOST:PORT (h2c and HTTP/1.1 Upgrade, or TLS with --cert/--key)', group: 'Sources (pick one):' })
      .option('upstream', { alias: 'u', type: 'string', describe: 'Relay: forward every request to this proxy, http://HOST:PORT or https://HOST:PORT, in the HTTP version the client used', group: 'Sources (pick one):' })
      .option('raw', { type: 'string', describe: 'Decode a raw capsule byte stream from FILE (- = stdin)', group: 'Sources (pick one):' })
      .option('file', { alias: 'f', type: 'string', describe: 'Replay an NDJSON recording (--record, or --json output) from FILE (- = stdin)', group: 'Sources (pick one):' })
      .option('pcap', { type: 'string', describe: 'Decode cleartext CONNECT-UDP (HTTP/2 prior knowledge, HTTP/1.1 Upgrade) from a pcap/pcapng FILE', group: 'Sources (pick one):' })
      .option('hex', { type: 'boolean', default: false, describe: 'With --raw: the input is hex text (spaces, newlines, 0x prefixes, xxd or hexdump -C dumps)', group: 'Sources (pick one):' })
      .option('direction', { type: 'string', default: 'request', choices: ['request', 'response'], describe: 'With --raw: label the stream client->proxy (request) or proxy->client (response)', group: 'Sources (pick one):' })
      .option('realtime', { type: 'boolean', default: false, describe: 'With --file: replay at the recorded pace instead of at once', group: 'Sources (pick one):' })
      .option('cert', { type: 'string', describe: 'Relay: PEM certificate, serve TLS with ALPN h2 and http/1.1 (needs --key)', group: 'Relay:' })
      .option('key', { type: 'string', describe: 'Relay: PEM private key for --cert', group: 'Relay:' })
      .option('upstream-ca', { type: 'string', describe: 'Relay: PEM CA certificates to trust for an https:// upstream', group: 'Relay:' })
      .option('upstream-insecure', { type: 'boolean', default: false, describe: 'Relay: do not verify the upstream certificate (testing only)', group: 'Relay:' })
      .option('upstream-servername', { type: 'string', describe: 'Relay: TLS server name of the upstream if not its host', group: 'Relay:' })
      .option('connect-timeout', { type: 'string', default: formatDuration(RELAY_DEFAULTS.connectTimeoutMs), describe: 'Relay: wait this long for the upstream connection (and its HTTP/2 SETTINGS)', group: 'Relay:' })
      .option('max-connections', { type: 'number', default: RELAY_DEFAULTS.maxConnections, describe: 'Relay: client connections at once; more are closed and counted', group: 'Relay:' })
      .option('head-timeout', { type: 'string', default: formatDuration(RELAY_DEFAULTS.headTimeoutMs), describe: 'Relay: time a client connection has for its first complete request (0 = no limit)', group: 'Relay:' })
      .option('bytes', { type: 'number', default: DEFAULT_PREVIEW_BYTES, describe: 'Payload bytes previewed per capsule (hex and ASCII)', group: 'Decoding and output:' })
      .option('full', { type: 'boolean', default: false, describe: 'Show whole payloads (a hex dump under each capsule)', group: 'Decoding and output:' })
      .option('max-capsule', { type: 'string', default: formatSize(DEFAULT_MAX_CAPSULE_LENGTH), describe: 'A capsule declaring a longer value is reported as an error', group: 'Decoding and output:' })
      .option('all-streams', { type: 'boolean', default: false, describe: 'Decode every request body as capsules, not only connect-udp / Capsule-Protocol ones (e.g. POST mode)', group: 'Decoding and output:' })
      .option('session', { alias: 's', type: 'string', array: true, default: [], describe: 'Show only these session ids (repeatable, comma-separated)', group: 'Decoding and output:' })
      .option('type', { alias: 't', type: 'string', array: true, default: [], describe: 'Show only these capsule types: DATAGRAM, GREASE, UNKNOWN, LEGACY or a number such as 0x40', group: 'Decoding and output:' })
      .option('errors-only', { type: 'boolean', default: false, describe: 'Show only decoding errors', group: 'Decoding and output:' })
      .option('strict', { type: 'boolean', default: false, describe: 'Exit 1 if any malformed input (an error event) was seen, for CI', group: 'Decoding and output:' })
      .option('summary', { type: 'boolean', default: true, describe: 'Print the per-session summary table at the end (--no-summary to skip)', group: 'Decoding and output:' })
      .option('record', { type: 'string', describe: 'Also write the events to FILE as an NDJSON recording', group: 'Decoding and output:' })
      .option('show-credentials', { type: 'boolean', default: false, describe: 'Keep Authorization / Proxy-Authorization values in output and recordings', group: 'Decoding and output:' })
      .example('$0 inspect --listen 127.0.0.1:4434 --upstream http://127.0.0.1:4433', 'Relay: point connect at :4434 and watch its traffic to the proxy at :4433')
      .example('$0 inspect --raw capture.bin --strict', 'Decode a raw capsule stream; exit 1 if it is malformed')
      .example("printf '00 05 00 68 69 21 21' | $0 inspect --raw - --hex", 'Decode hex text from stdin')
      .example('$0 inspect --file session.ndjson --type DATAGRAM --bytes 64', 'Replay a recording made with connect/serve --record')
      .example('$0 inspect --pcap lo.pcapng --json', 'Decode a tcpdump/tshark capture to NDJSON events') as unknown as Argv<InspectArgs>,
  handler: async (args: ArgumentsCamelCase<InspectArgs>) => {
    const out = makeOutput(args);
    const extra = args._.slice(1).map(String);
    const bad = extra.find((a) => a !== '-');
    if (bad !== undefined || extra.length > 1) throw new UsageError(`unexpected argument '${bad ?? '-'}'`);
    // The option itself was left empty by yargs when '-' was split off.
    for (const k of ['raw', 'file'] as const) if (args[k] === '' && extra.length === 1) args[k] = '-';
    // --hex already says what the input is; with no source named, stdin is the one it can mean.
    if (args.hex && (['listen', 'raw', 'file', 'pcap'] as const).every((k) => args[k] === undefined)) args.raw = '-';
    const sources = (['listen', 'raw', 'file', 'pcap'] as const).filter((k) => args[k] !== undefined);
    if (sources.length !== 1) {
      throw new UsageError(
        sources.length === 0
          ? 'name a source: --listen HOST:PORT --upstream URL, --raw FILE, --file FILE or --pcap FILE'
          : `pick one source, not ${sources.map((s) => `--${s}`).join(' and ')}`,
      );
    }
    if (args.upstream !== undefined && args.listen === undefined) throw new UsageError('--upstream goes with --listen (the relay)');
    if (args.hex && args.raw === undefined) throw new UsageError('--hex goes with --raw');
    if (args.realtime && args.file === undefined) throw new UsageError('--realtime goes with --file');
    if (!Number.isSafeInteger(args.bytes) || args.bytes < 0) throw new UsageError(`--bytes must be a non-negative integer, got ${args.bytes}`);
    const decode: DecodeSettings = {
      previewBytes: args.bytes,
      full: args.full,
      maxCapsuleLength: parseSize(args['max-capsule'], '--max-capsule'),
      capsuleStreams: args['all-streams'] ? 'all' : 'auto',
    };
    const settings: InspectViewSettings = {
      json: args.json,
      verbose: args.verbose,
      bytes: args.bytes,
      full: args.full,
      filters: { sessions: listOf(args.session), types: listOf(args.type), errorsOnly: args['errors-only'] },
      print: true,
      summary: args.summary,
      strict: args.strict,
      showCredentials: args['show-credentials'],
      ...(args.record !== undefined ? { record: args.record } : {}),
    };
    if (args.listen !== undefined) return runRelay(args, out, settings, decode);
    if (args.raw !== undefined) return runRaw(args.raw, args, out, settings, decode);
    if (args.file !== undefined) return runFile(args.file, args.realtime, out, settings);
    return runPcap(args.pcap!, out, settings, decode);
  },
};

async function runRelay(args: InspectArgs, out: Output, settings: InspectViewSettings, decode: DecodeSettings): Promise<void> {
  if (args.upstream === undefined) throw new UsageError('the relay needs --upstream URL (the proxy to forward to)');
  if (Boolean(args.cert) !== Boolean(args.key)) throw new UsageError('--cert and --key go together');
  const listen = parseHostPort(args.listen!, { allowPortZero: true, what: '--listen' });
  const view = await InspectView.create(settings, out, 'relay', { live: true, startedAtMs: Date.now() });
  const anyTls = Boolean(args.cert) || /^https:/i.test(args.upstream);
  if (args.keylog !== undefined && !anyTls) throw new UsageError('--keylog needs TLS on one side: --cert/--key or an https:// --upstream');
  const keylog = anyTls ? openKeylog(args) : undefined;
  const relay = new InspectRelay({
    ...(keylog ? { onKeylog: keylog.onKeylog } : {}),
    host: listen.host,
    port: listen.port,
    upstream: args.upstream,
    ...(args.cert && args.key ? { tls: { cert: readFileSync(args.cert), key: readFileSync(args.key) } } : {}),
    upstreamTls: {
      insecure: args['upstream-insecure'],
      ...(args['upstream-ca'] ? { ca: readFileSync(args['upstream-ca']) } : {}),
      ...(args['upstream-servername'] ? { servername: args['upstream-servername'] } : {}),
    },
    connectTimeoutMs: parseDuration(args['connect-timeout'], '--connect-timeout'),
    maxConnections: args['max-connections'],
    headTimeoutMs: parseDuration(args['head-timeout'], '--head-timeout'),
    ...decode,
    // A recording keeps whole payloads; the printed view cuts them to --bytes itself.
    full: decode.full || view.recording,
    onEvent: (ev) => view.handle(ev),
  });
  relay.on('warning', (w: { message: string }) => out.warn(w.message));
  relay.on('error', (err: Error) => out.error(err.message));
  const addr = await relay.listen();
  const proto = args.cert ? 'h2' : 'h2c';
  // As serve: HTTP/2 and HTTP/1.1 on the one listener, told apart by the preface (cleartext) or ALPN (TLS).
  const protocols = [proto, 'http/1.1'];
  out.event('listening', { protocol: proto, protocols, address: addr.address, port: addr.port, family: addr.family, upstream: relay.upstream.origin });
  out.info(
    `relaying ${color().bold(`${proto === 'h2' ? 'https' : 'http'}://${formatHostPort(addr.address, addr.port)}`)} -> ${relay.upstream.origin} (${protocols.join(', ')}); Ctrl-C for the summary`,
  );
  const { done } = untilShutdown(async () => {
    await relay.close();
    keylog?.close();
  });
  await done;
  const s = relay.decoderStats;
  if (s.droppedSessions > 0) out.warn(`${s.droppedSessions} sessions relayed without decoding (decoder session limit)`);
  if (relay.counters.droppedConnections > 0) out.warn(`${relay.counters.droppedConnections} client connections refused (--max-connections)`);
  if (relay.counters.headTimeouts > 0) out.warn(`${relay.counters.headTimeouts} client connections closed without a complete first request (--head-timeout)`);
  if (relay.counters.headLimit > 0) out.warn(`${relay.counters.headLimit} HTTP/1.1 heads over the ${RELAY_DEFAULTS.maxHeadBytes}-byte limit refused`);
  out.debug(`relay counters ${JSON.stringify(relay.counters)}`);
  await view.finish();
}

/** Reads all of a file or stdin as text, refusing more than `limit` characters. */
async function readText(src: string, limit: number): Promise<string> {
  const input = src === '-' ? process.stdin : createReadStream(src);
  let text = '';
  for await (const chunk of input) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('latin1');
    if (text.length > limit) throw new UdpTunnelError(ErrorCodes.INVALID_INPUT, `hex input is over the ${limit}-character limit`);
  }
  return text;
}

async function runRaw(src: string, args: InspectArgs, out: Output, settings: InspectViewSettings, decode: DecodeSettings): Promise<void> {
  const view = await InspectView.create(settings, out, 'raw', { live: false, startedAtMs: Date.now() });
  const dir: Direction = args.direction === 'response' ? '<-' : '->';
  const cv = new CapsuleView({
    session: 'raw',
    dir,
    previewBytes: decode.previewBytes,
    full: decode.full || view.recording,
    maxCapsuleLength: decode.maxCapsuleLength,
  });
  const started = performance.now();
  // A file (and hex text, read whole) has no timing (t = 0); a live binary pipe on stdin gets the time each chunk arrived.
  const live = src === '-' && !args.hex;
  const now = (): number => (live ? Math.round((performance.now() - started) * 1000) / 1000 : 0);
  if (args.hex) {
    const bytes = parseHexText(await readText(src, MAX_HEX_TEXT_LENGTH));
    for (const ev of cv.push(bytes, 0)) view.handle(ev);
  } else {
    const input = src === '-' ? process.stdin : createReadStream(src);
    let first = true;
    for await (const chunk of input) {
      if (first && looksLikeHexText(chunk as Buffer)) out.warn('input looks like hex text; add --hex to decode it as hex');
      first = false;
      for (const ev of cv.push(chunk as Buffer, now())) view.handle(ev);
      await view.drain();
    }
  }
  for (const ev of cv.end(now())) view.handle(ev);
  await view.finish();
}

async function runFile(src: string, realtime: boolean, out: Output, settings: InspectViewSettings): Promise<void> {
  const view = await InspectView.create(settings, out, 'file', { live: false, startedAtMs: Date.now() });
  const input = src === '-' ? process.stdin : createReadStream(src);
  const started = performance.now();
  for await (const item of readRecording(input)) {
    if (item.kind === 'header') {
      out.info(`recording of ${item.header.source}, started ${item.header.startedAt}`);
      continue;
    }
    if (realtime) {
      const wait = item.event.tMs - (performance.now() - started);
      if (wait > 0) await sleep(wait);
    }
    view.handle(item.event);
    await view.drain();
  }
  await view.finish();
}

async function runPcap(path: string, out: Output, settings: InspectViewSettings, decode: DecodeSettings): Promise<void> {
  const buf = await readFile(path);
  const view = await InspectView.create(settings, out, 'pcap', { live: false, startedAtMs: Date.now() });
  const result = streamCapture(buf, (ev) => view.handle(ev), { ...decode, full: decode.full || view.recording });
  for (const w of result.warnings) out.warn(`${w.session !== null ? `${w.session}: ` : ''}${w.message} [${w.code}]`);
  const st = result.stats;
  if (st.http2Connections + st.http1Connections === 0) {
    out.warn(`no cleartext HTTP/2 or HTTP/1.1 connection found in ${st.packets} packets (${st.connections} TCP connections; TLS cannot be decoded)`);
  }
  out.debug(`capture ${result.format}: ${JSON.stringify(st)}`);
  await view.finish();
}
