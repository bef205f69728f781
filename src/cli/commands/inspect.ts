import { createReadStream, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatHostPort, parseHostPort } from '../../tunnel/address.js';
import { BindSession } from '../../inspect/bind-view.js';
import { CapsuleView } from '../../inspect/capsule-view.js';
import type { Direction } from '../../inspect/events.js';
import { MAX_HEX_TEXT_LENGTH, looksLikeHexText, parseHexText } from '../../inspect/hex.js';
import { streamCapture } from '../../inspect/pcap-decode.js';
import { readRecording } from '../../inspect/recording.js';
import { InspectRelay, RELAY_DEFAULTS } from '../../inspect/relay.js';
import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import { color } from '../color.js';
import { makeOutput } from '../common-options.js';
import { UsageError } from '../errors.js';
import { InspectView, type InspectViewSettings } from '../render/inspect-view.js';
import { openKeylog } from '../keylog.js';
import { untilShutdown } from '../lifecycle.js';
import type { Output } from '../output.js';
import { isGiven, type ResolvedOptions } from '../options/resolve.js';
import type { InspectOptions } from '../schemas/inspect.js';

/** Decoder settings shared by every source. */
interface DecodeSettings {
  bindRules: boolean;
  previewBytes: number;
  full: boolean;
  maxCapsuleLength: number;
  capsuleStreams: 'auto' | 'all';
}

/** `udp-tunnel inspect`: decode capsule traffic from a relay, a raw/hex stream, a recording or a capture. */
export async function runInspect(args: InspectOptions, r: ResolvedOptions<InspectOptions>): Promise<void> {
  const out = makeOutput(args);
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
  const given = (name: string): boolean => isGiven(r, name) && r.sources[name] !== 'env';
  if (given('direction') && args.raw === undefined) throw new UsageError('--direction goes with --raw (other sources know the direction)');
  if (args.listen === undefined) {
    const relayOnly = ['cert', 'key', 'upstream-ca', 'upstream-insecure', 'upstream-servername', 'keylog', 'connect-timeout', 'max-connections', 'head-timeout'].find(given);
    if (relayOnly !== undefined) throw new UsageError(`--${relayOnly} goes with --listen (the relay)`);
  }
  if (args.file !== undefined) {
    // A recording holds decoded events: there is nothing left to decode.
    const decodeOnly = ['max-capsule', 'all-streams'].find(given);
    if (decodeOnly !== undefined) throw new UsageError(`--${decodeOnly} has no effect with --file (a recording is already decoded)`);
  }
  const decode: DecodeSettings = {
    bindRules: args.strict,
    previewBytes: args.bytes,
    full: args.full,
    maxCapsuleLength: args['max-capsule'],
    capsuleStreams: args['all-streams'] ? 'all' : 'auto',
  };
  const settings: InspectViewSettings = {
    json: args.json,
    verbose: args.verbose,
    bytes: args.bytes,
    full: args.full,
    filters: { sessions: args.session, types: args.type, errorsOnly: args['errors-only'] },
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
}

async function runRelay(args: InspectOptions, out: Output, settings: InspectViewSettings, decode: DecodeSettings): Promise<void> {
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
    connectTimeoutMs: args['connect-timeout'],
    maxConnections: args['max-connections'],
    headTimeoutMs: args['head-timeout'],
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

async function runRaw(src: string, args: InspectOptions, out: Output, settings: InspectViewSettings, decode: DecodeSettings): Promise<void> {
  const view = await InspectView.create(settings, out, 'raw', { live: false, startedAtMs: Date.now() });
  const dir: Direction = args.direction === 'response' ? '<-' : '->';
  const cv = new CapsuleView({
    session: 'raw',
    dir,
    previewBytes: decode.previewBytes,
    full: decode.full || view.recording,
    maxCapsuleLength: decode.maxCapsuleLength,
    // One direction only: no request to say the session is bound, no other side to match ACKs against.
    bind: new BindSession({ enabled: false, rules: decode.bindRules, bothDirections: false }),
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
