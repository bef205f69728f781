import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseInspectEvent } from '../../src/inspect/event-parse.js';
import type { InspectEvent } from '../../src/inspect/events.js';
import { decodeCapture } from '../../src/inspect/pcap-decode.js';
import { runCli } from '../helpers/cli.js';
import { END_HEADERS, END_STREAM, PREFACE, h2Frame, headerBlock, settingsFrame } from '../helpers/h2-writer.js';
import { ACK, FIN, TcpFlow, frame, ipPacket, linkTypeOf, writePcap } from '../helpers/pcap-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-inspect-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

const LONG = Buffer.from(Array.from({ length: 40 }, (_, i) => 0x41 + (i % 26)));
const CLEAN = Buffer.concat([
  h('00 05 00 70696e67'), // 0: DATAGRAM "ping"
  h('4040 02 abcd'), // 7: GREASE 0x40
  h('5234 01 ff'), // 12: UNKNOWN 0x1234
  h('00 4005 00 706f6e67'), // 16: DATAGRAM "pong", length varint non-minimal
  h('00 29 00'), // 24: DATAGRAM of 40 bytes
  LONG,
]);
const TRUNCATED = h('00 0a 00 6162'); // 67: declares 10 value bytes, 3 present
const STREAM = Buffer.concat([CLEAN, TRUNCATED]);

const base = { tMs: 0, session: 'raw', dir: '->' as const, typeWidth: 1, lengthWidth: 1, nonMinimal: false, previewTruncated: false };
function dgram(offset: number, length: number, payload: Buffer, extra: Record<string, unknown> = {}): InspectEvent {
  return {
    event: 'capsule', ...base, offset, type: 0, typeName: 'DATAGRAM', length,
    contextId: 0, contextIdWidth: 1, payloadLength: payload.length, payloadHex: payload.subarray(0, 16).toString('hex'),
    ...(payload.length > 16 ? { previewTruncated: true } : {}),
    ...extra,
  } as InspectEvent;
}
const EXPECTED: InspectEvent[] = [
  dgram(0, 5, Buffer.from('ping')),
  { event: 'capsule', ...base, offset: 7, type: 64, typeName: 'GREASE 0x40', length: 2, typeWidth: 2, valueHex: 'abcd' },
  { event: 'capsule', ...base, offset: 12, type: 0x1234, typeName: 'UNKNOWN 0x1234', length: 1, typeWidth: 2, valueHex: 'ff' },
  dgram(16, 5, Buffer.from('pong'), { lengthWidth: 2, nonMinimal: true }),
  dgram(24, 41, LONG),
  {
    event: 'error', tMs: 0, session: 'raw', dir: '->', offset: 67, layer: 'capsule', code: 'UT_ERR_CAPSULE_TRUNCATED',
    reason: 'stream ended inside the capsule at byte 67: 5 bytes of 12', rfc: 'RFC 9297 §3.3',
  },
  { event: 'end', tMs: 0, session: 'raw', dir: '->', clean: false, totalBytes: 72, capsules: 5, ignoredBytes: 5 },
];

function file(name: string, content: Buffer | string): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** Parses NDJSON stdout; every line must be a valid inspect event. */
function events(stdout: string): InspectEvent[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l, i) => parseInspectEvent(JSON.parse(l), i + 1));
}

function xxd(buf: Buffer): string {
  const lines: string[] = [];
  for (let off = 0; off < buf.length; off += 16) {
    const row = buf.subarray(off, off + 16);
    const groups: string[] = [];
    for (let i = 0; i < row.length; i += 2) groups.push(row.subarray(i, i + 2).toString('hex'));
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}: ${groups.join(' ').padEnd(39)}  ${ascii}`);
  }
  return `${lines.join('\n')}\n`;
}

const ANSI = /\x1b\[/;

describe('inspect --raw and --hex', () => {
  const raw = file('stream.bin', STREAM);

  it('--json prints one exact event per line, pinpointing the truncated capsule', async () => {
    const r = await runCli(['inspect', '--raw', raw, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(events(r.stdout), EXPECTED);
  });

  it('--strict exits 1 on malformed input and 0 on a clean stream', async () => {
    const bad = await runCli(['inspect', '--raw', raw, '--strict', '--json']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'udp-tunnel: 1 decoding error seen (--strict) [UT_ERR_INSPECT_MALFORMED]\n');
    const good = await runCli(['inspect', '--raw', file('clean.bin', CLEAN), '--strict', '--json']);
    assert.equal(good.code, 0, good.stderr);
    assert.equal(events(good.stdout).at(-1)?.event, 'end');
  });

  it('reads an xxd dump from stdin with --raw - --hex', async () => {
    const r = await runCli(['inspect', '--raw', '-', '--hex', '--json'], { input: xxd(STREAM) });
    assert.equal(r.code, 0, r.stderr);
    // Hex text is read whole, so like a file it has no timing (t = 0).
    assert.deepEqual(events(r.stdout), EXPECTED);
  });

  it('reads free-form hex text from a file and binary bytes from stdin', async () => {
    const hexFile = file('stream.hex', `# a comment\n${STREAM.toString('hex').replace(/(..)/g, '0x$1, ')}\n`);
    const a = await runCli(['inspect', '--raw', hexFile, '--hex', '--json']);
    assert.equal(a.code, 0, a.stderr);
    assert.deepEqual(events(a.stdout), EXPECTED);
    const b = await runCli(['inspect', '--raw', '-', '--json'], { input: STREAM });
    assert.deepEqual(events(b.stdout).map((e) => ({ ...e, tMs: 0 })), EXPECTED);
  });

  it('--hex without a source reads stdin', async () => {
    const r = await runCli(['inspect', '--hex', '--json'], { input: xxd(STREAM) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(events(r.stdout), EXPECTED);
  });

  it('hex text fed without --hex gets one warning with the hint; the exit code is what the bytes decode to', async () => {
    const text = `${STREAM.toString('hex').replace(/(..)/g, '$1 ')}\n`.repeat(4);
    const r = await runCli(['inspect', '--raw', '-', '--json'], { input: text });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.match(/input looks like hex text; add --hex/g)?.length, 1, r.stderr);
    const strict = await runCli(['inspect', '--raw', '-', '--json', '--strict'], { input: '0x00 0x05 0x00 0x68' });
    assert.equal(strict.code, 1, strict.stderr);
    assert.match(strict.stderr, /input looks like hex text; add --hex/);
    const binary = await runCli(['inspect', '--raw', '-', '--json'], { input: STREAM });
    assert.equal(binary.code, 0, binary.stderr);
    assert.doesNotMatch(binary.stderr, /looks like hex/);
  });

  it('--hex names the line of bad input (exit 2)', async () => {
    const r = await runCli(['inspect', '--raw', file('bad.hex', '00 05\n00 7g\n'), '--hex']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^udp-tunnel: hex input line 2: '7g' is not hexadecimal \[UT_ERR_INVALID_INPUT\]\n$/);
  });

  it('human output: capsule lines, red error with offset and RFC rule, summary table; NO_COLOR has no ANSI codes', async () => {
    const r = await runCli(['inspect', '--raw', raw], { env: { NO_COLOR: '1' } });
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, ANSI);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], '   0.000 raw  -> DATAGRAM len 5 ctx 0 payload 4  70 69 6e 67  |ping|');
    assert.equal(lines[1], '   0.000 raw  -> GREASE 0x40 len 2  ab cd  |..|');
    assert.equal(lines[2], '   0.000 raw  -> UNKNOWN 0x1234 len 1  ff  |.|');
    assert.equal(lines[3], '   0.000 raw  -> DATAGRAM len 5 ctx 0 payload 4 non-minimal  70 6f 6e 67  |pong|');
    // Piped output fits 100 columns: the 16-byte preview goes under its capsule line, the error wraps under its text.
    assert.equal(lines[4], '   0.000 raw  -> DATAGRAM len 41 ctx 0 payload 40');
    assert.equal(lines[5], '                 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP| ...');
    assert.equal(lines[6], '   0.000 raw  -> ERROR at byte 67: stream ended inside the capsule at byte 67: 5 bytes of 12 (RFC');
    assert.equal(lines[7], '                 9297 §3.3) [UT_ERR_CAPSULE_TRUNCATED]');
    assert.equal(lines[8], '   0.000 raw  -> end: 72 bytes, 5 capsules, not clean, 5 bytes not decoded');
    const row = lines.find((l) => l.startsWith('│ raw'));
    assert.ok(row, r.stdout);
    // The summary's 100-column layout: both directions in one column, unknown and GREASE counted together as other.
    assert.deepEqual(row.split('│').map((c) => c.trim()).slice(1, -1), ['raw', '-', '-', '3 / 0', '48 / 0', '2', '1', '0.000s', '-']);
  });

  it('FORCE_COLOR=1 colours the same output (so the NO_COLOR check can fail)', async () => {
    const r = await runCli(['inspect', '--raw', raw], { env: { FORCE_COLOR: '1' } });
    assert.match(r.stdout, ANSI);
    const plain = await runCli(['inspect', '--raw', raw, '--no-color'], { env: { FORCE_COLOR: '1' } });
    assert.doesNotMatch(plain.stdout, ANSI);
  });

  it('-v shows offsets and varint widths', async () => {
    const r = await runCli(['inspect', '--raw', raw, '-v', '--no-summary'], { env: { NO_COLOR: '1' } });
    // The preview follows on the line, or under it when the line would pass 100 columns.
    assert.match(r.stdout, /DATAGRAM len 5 ctx 0 payload 4 non-minimal @16 \[type 1B, len 2B, ctx 1B\]\s+70 6f 6e 67/);
    assert.match(r.stdout, /GREASE 0x40 len 2 @7 \[type 2B, len 1B\]/);
    assert.doesNotMatch(r.stdout, /│/);
  });

  it('--bytes N cuts previews; --full shows whole payloads as a dump', async () => {
    const four = events((await runCli(['inspect', '--raw', raw, '--json', '--bytes', '4'])).stdout);
    assert.deepEqual(four[4], { ...EXPECTED[4], payloadHex: LONG.subarray(0, 4).toString('hex'), previewTruncated: true });
    const full = events((await runCli(['inspect', '--raw', raw, '--json', '--full'])).stdout);
    assert.deepEqual(full[4], { ...EXPECTED[4], payloadHex: LONG.toString('hex'), previewTruncated: false });
    const human = await runCli(['inspect', '--raw', raw, '--full', '--no-summary'], { env: { NO_COLOR: '1' } });
    const lines = human.stdout.split('\n');
    const at = lines.findIndex((l) => l.includes('payload 40'));
    assert.equal(lines[at + 1]?.trim(), '0000  41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|');
    assert.equal(lines[at + 3]?.trim(), '0020  47 48 49 4a 4b 4c 4d 4e                          |GHIJKLMN|');
  });

  it('--max-capsule reports a longer capsule at its offset', async () => {
    const r = await runCli(['inspect', '--raw', raw, '--json', '--max-capsule', '10']);
    const err = events(r.stdout).find((e) => e.event === 'error');
    assert.deepEqual(err, {
      event: 'error', tMs: 0, session: 'raw', dir: '->', offset: 24, layer: 'capsule', code: 'UT_ERR_CAPSULE_TOO_LARGE',
      reason: 'capsule at byte 24 declares length 41, over the limit of 10 (--max-capsule)', rfc: null,
    });
  });

  it('--direction response labels the stream <-', async () => {
    const r = await runCli(['inspect', '--raw', raw, '--json', '--direction', 'response']);
    assert.deepEqual(events(r.stdout).map((e) => ('dir' in e ? e.dir : null)), EXPECTED.map(() => '<-'));
  });

  it('filters: --type by name and number, --errors-only, --session', async () => {
    const grease = events((await runCli(['inspect', '--raw', raw, '--json', '--type', 'GREASE'])).stdout);
    assert.deepEqual(grease, [EXPECTED[1], EXPECTED[5], EXPECTED[6]]);
    const num = events((await runCli(['inspect', '--raw', raw, '--json', '-t', '0x1234,64'])).stdout);
    assert.deepEqual(num, [EXPECTED[1], EXPECTED[2], EXPECTED[5], EXPECTED[6]]);
    const errs = events((await runCli(['inspect', '--raw', raw, '--json', '--errors-only'])).stdout);
    assert.deepEqual(errs, [EXPECTED[5]]);
    const none = await runCli(['inspect', '--raw', raw, '--session', 'c1s1', '--strict']);
    assert.equal(none.code, 0, 'errors of filtered-out sessions do not count for --strict');
    assert.equal(none.stdout, '');
  });
});

describe('inspect --raw: malformed streams are pinpointed to a byte offset and a rule (--strict exits 1)', () => {
  const big = Buffer.concat([h('00 8000fff9 00'), Buffer.alloc(65528, 0x61)]);
  for (const [name, bytes, offset, code, rfc, args] of [
    ['a stream ending inside a capsule header', h('00 05 00 70696e67  00'), 7, 'UT_ERR_CAPSULE_TRUNCATED', 'RFC 9297 §3.3', []],
    ['a DATAGRAM without a context ID', h('00 05 00 70696e67  00 00'), 7, 'UT_ERR_DATAGRAM_MALFORMED', 'RFC 9298 §5', []],
    ['a DATAGRAM whose context ID varint is cut short', h('00 01 40'), 0, 'UT_ERR_DATAGRAM_MALFORMED', 'RFC 9298 §5', []],
    ['a context-0 UDP payload over 65527 bytes', Buffer.concat([h('00 01 00'), big]), 3, 'UT_ERR_DATAGRAM_TOO_LARGE', 'RFC 9298 §5', []],
    ['a capsule longer than --max-capsule', h('4040 10 00'), 0, 'UT_ERR_CAPSULE_TOO_LARGE', null, ['--max-capsule', '15']],
  ] as const) {
    it(name, async () => {
      const r = await runCli(['inspect', '--raw', file(`bad-${offset}-${code}.bin`, bytes), '--json', '--strict', ...args]);
      assert.equal(r.code, 1, r.stderr);
      const errs = events(r.stdout).filter((e) => e.event === 'error');
      assert.deepEqual(errs.map((e) => (e.event === 'error' ? [e.offset, e.code, e.rfc] : null)), [[offset, code, rfc]]);
    });
  }
});

describe('inspect --record and --file', () => {
  it('a recording replays to the same events; --realtime keeps them too', async () => {
    const raw = file('r.bin', STREAM);
    const rec = join(dir, 'r.ndjson');
    const made = await runCli(['inspect', '--raw', raw, '--record', rec, '--json', '--bytes', '2']);
    assert.equal(made.code, 0, made.stderr);
    const lines = readFileSync(rec, 'utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(header), ['recording', 'version', 'schema', 'source', 'startedAt']);
    assert.deepEqual([header['recording'], header['version'], header['schema'], header['source']], ['udp-tunnel-inspect', 1, 2, 'raw']);
    // The recording keeps whole payloads even though the printed view was cut to 2 bytes.
    assert.equal((JSON.parse(lines[5]!) as { payloadHex: string }).payloadHex, LONG.toString('hex'));
    const replay = await runCli(['inspect', '--file', rec, '--json']);
    assert.equal(replay.code, 0, replay.stderr);
    assert.deepEqual(events(replay.stdout), EXPECTED);
    assert.match(replay.stderr, /recording of raw, started \d{4}-\d\d-\d\dT/);
    const paced = await runCli(['inspect', '--file', '-', '--realtime', '--json'], { input: readFileSync(rec) });
    assert.deepEqual(events(paced.stdout), EXPECTED);
  });

  it('names the bad line of a recording (exit 2)', async () => {
    const bad = file('bad.ndjson', `${JSON.stringify(EXPECTED[0])}\n{"event":"capsule","t":0}\n`);
    const r = await runCli(['inspect', '--file', bad]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "udp-tunnel: inspect event line 2: field 'session' must be a string [UT_ERR_INVALID_INPUT]\n");
  });
});

// ---- A synthesized capture: HTTP/2 extended CONNECT with one DATAGRAM each way ----

const T0 = 1_700_000_000_000_000_000n;
const REQ: Array<[string, string]> = [
  [':method', 'CONNECT'],
  [':protocol', 'connect-udp'],
  [':scheme', 'http'],
  [':authority', '127.0.0.1:4433'],
  [':path', '/.well-known/masque/udp/192.0.2.9/5353/'],
  ['capsule-protocol', '?1'],
];

function capture(): Buffer {
  const f = new TcpFlow('127.0.0.1', 50000, '127.0.0.1', 4433);
  const segs = [
    ...f.handshake(),
    f.client(Buffer.concat([PREFACE, settingsFrame([])])),
    f.server(Buffer.concat([settingsFrame([[0x8, 1]]), settingsFrame([], true)])),
    f.client(Buffer.concat([settingsFrame([], true), h2Frame(1, END_HEADERS, 1, headerBlock(REQ))])),
    f.server(h2Frame(1, END_HEADERS, 1, headerBlock([[':status', '200'], ['capsule-protocol', '?1']]))),
    f.client(h2Frame(0, 0, 1, h('00 03 00 6869'))),
    f.server(h2Frame(0, 0, 1, h('00 03 00 6869 4040 00'))),
    f.client(h2Frame(0, END_STREAM, 1, h('00 0a 00'))),
    f.server(h2Frame(0, END_STREAM, 1)),
    f.client('', ACK | FIN),
    f.server('', ACK | FIN),
  ];
  return writePcap(
    segs.map((s, i) => ({ tsNs: T0 + BigInt(i) * 1_000_000n, data: frame('ethernet', ipPacket(s)) })),
    { linkType: linkTypeOf('ethernet') },
  );
}

describe('inspect --pcap', () => {
  const buf = capture();
  const pcap = file('h2.pcap', buf);

  it('prints exactly the events the capture decoder produces, a truncated capsule included', async () => {
    const r = await runCli(['inspect', '--pcap', pcap, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const got = events(r.stdout);
    assert.deepEqual(got, JSON.parse(JSON.stringify(decodeCapture(buf).events)));
    assert.deepEqual(
      got.map((e) => `${e.event}${'dir' in e ? e.dir : ''}${e.event === 'capsule' ? ` ${e.typeName}` : ''}`),
      ['request->', 'response<-', 'capsule-> DATAGRAM', 'capsule<- DATAGRAM', 'capsule<- GREASE 0x40', 'error->', 'end->', 'end<-', 'close'],
    );
    const req = got[0]!;
    assert.deepEqual(req.event === 'request' && [req.session, req.tMs, req.target], ['c1s1', 5, { host: '192.0.2.9', port: 5353 }]);
    const err = got[5]!;
    assert.deepEqual(err.event === 'error' && [err.offset, err.rfc, err.code], [5, 'RFC 9297 §3.3', 'UT_ERR_CAPSULE_TRUNCATED']);
  });

  it('human output for a capture shows the request line with the decoded target and the status', async () => {
    const r = await runCli(['inspect', '--pcap', pcap, '--no-summary'], { env: { NO_COLOR: '1' } });
    const lines = r.stdout.split('\n');
    // Wrapped under the event text to fit 100 columns.
    assert.equal(lines[0], '   0.005 c1s1 -> CONNECT connect-udp /.well-known/masque/udp/192.0.2.9/5353/ target 192.0.2.9:5353');
    assert.equal(lines[1], '                 capsule-protocol ?1 (HTTP/2, 127.0.0.1:4433)');
    assert.equal(lines[2], '   0.006 c1s1 <- 200 capsule-protocol ?1');
  });

  it('a capture cut inside a record: the events before it, and a warning naming the byte (exit 0)', async () => {
    const cut = file('cut.pcap', buf.subarray(0, buf.length - 20));
    const r = await runCli(['inspect', '--pcap', cut, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: capture ends inside the record at byte \d+; that partial record is ignored \[UT_ERR_CAPTURE_TRUNCATED\]/);
    assert.equal(events(r.stdout)[0]?.event, 'request');
  });

  it('a capture cut inside its header is a clear error without a stack trace (exit 1)', async () => {
    const r = await runCli(['inspect', '--pcap', file('head.pcap', buf.subarray(0, 10))]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'udp-tunnel: capture file truncated at byte 0: pcap global header needs 24 bytes, file has 10 [UT_ERR_CAPTURE_TRUNCATED]\n');
    const missing = await runCli(['inspect', '--pcap', join(dir, 'nope.pcap')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^udp-tunnel: file not found: ENOENT/);
  });

  it('warns when a capture holds no cleartext HTTP connection', async () => {
    const empty = file('empty.pcap', writePcap([], { linkType: linkTypeOf('ethernet') }));
    const r = await runCli(['inspect', '--pcap', empty]);
    assert.equal(r.code, 0);
    assert.match(r.stderr, /warning: no cleartext HTTP\/2 or HTTP\/1\.1 connection found in 0 packets/);
  });
});

describe('inspect usage errors (exit 2)', () => {
  for (const [args, message] of [
    [['inspect'], 'name a source: --listen HOST:PORT --upstream URL, --raw FILE, --file FILE or --pcap FILE'],
    [['inspect', '--raw', 'a', '--pcap', 'b'], 'pick one source, not --raw and --pcap'],
    [['inspect', '--pcap', 'a', '--hex'], '--hex goes with --raw'],
    [['inspect', '--raw', 'a', '--bytes', '-1'], "--bytes: '-1' is out of range: it must be 0..65535"],
    [['inspect', '--listen', '127.0.0.1:0'], 'the relay needs --upstream URL (the proxy to forward to)'],
    [['inspect', '--raw', 'a', 'extra'], "unexpected argument 'extra'"],
    [['inspect', '--raw', 'a', '--bogus'], 'unknown option --bogus'],
    [['inspect', '--raw', 'a', '--fulll'], 'unknown option --fulll; did you mean --full?'],
  ] as const) {
    it(args.join(' '), async () => {
      const r = await runCli([...args]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `udp-tunnel: ${message}\nRun 'udp-tunnel inspect --help' for usage.\n`);
    });
  }
});
