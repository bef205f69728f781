import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { RecordingWriter, readRecording, recordingHeader } from '../../../src/inspect/recording.js';
import type { RecordingItem } from '../../../src/inspect/recording.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-rec-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const EVENTS: InspectEvent[] = [
  {
    event: 'capsule', tMs: 1.5, session: 's1', dir: '->', offset: 0, type: 0, typeName: 'DATAGRAM', length: 3, typeWidth: 1, lengthWidth: 1,
    nonMinimal: false, contextId: 0, contextIdWidth: 1, payloadLength: 2, payloadHex: 'abcd', previewTruncated: false,
  },
  { event: 'end', tMs: 2, session: 's1', dir: '->', clean: true, totalBytes: 5, capsules: 1, ignoredBytes: 0 },
  { event: 'close', tMs: 3, session: 's1', reason: 'local', detail: 'idle-timeout' },
];

async function readAll(chunks: Array<string | Buffer>, maxLineBytes?: number): Promise<RecordingItem[]> {
  const items: RecordingItem[] = [];
  async function* gen(): AsyncGenerator<string | Buffer> {
    yield* chunks;
  }
  for await (const item of readRecording(gen(), maxLineBytes === undefined ? {} : { maxLineBytes })) items.push(item);
  return items;
}

async function rejects(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isUdpTunnelError(err), String(err));
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('inspect/recording: recordings', () => {
  it('writes a header line and one event per line, and reads them back unchanged', async () => {
    const path = join(dir, 'a.ndjson');
    const w = await RecordingWriter.open(path, recordingHeader('serve', Date.UTC(2025, 0, 2, 3, 4, 5)));
    for (const ev of EVENTS) assert.equal(w.write(ev), true);
    await w.close();
    assert.equal(w.written, 3);
    assert.equal(w.dropped, 0);
    const text = readFileSync(path, 'utf8');
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, 4);
    assert.deepEqual(JSON.parse(lines[0]!), {
      recording: 'udp-tunnel-inspect',
      version: 1,
      schema: 2,
      source: 'serve',
      startedAt: '2025-01-02T03:04:05.000Z',
    });
    // Chunks split in the middle of lines and of a multi-byte character still parse.
    const bytes = Buffer.from(text.replace('idle-timeout', 'idle-timeout \u00e9'), 'utf8');
    const split = bytes.indexOf(0xc3) + 1;
    const items = await readAll([bytes.subarray(0, 7), bytes.subarray(7, split), bytes.subarray(split)]);
    assert.equal(items[0]!.kind, 'header');
    assert.deepEqual(
      items.slice(1).map((i) => (i.kind === 'event' ? i.event : null)),
      [EVENTS[0], EVENTS[1], { ...EVENTS[2], detail: 'idle-timeout \u00e9' }],
    );
    assert.deepEqual(items.slice(1).map((i) => (i.kind === 'event' ? i.line : 0)), [2, 3, 4]);
  });

  it('reads plain --json output without a header, skipping blank lines and a missing final newline', async () => {
    const items = await readAll([`${JSON.stringify(EVENTS[0])}\n\n${JSON.stringify(EVENTS[1])}`]);
    assert.deepEqual(items, [
      { kind: 'event', event: EVENTS[0], line: 1 },
      { kind: 'event', event: EVENTS[1], line: 3 },
    ]);
  });

  it('reads a schema 1 recording, whose events carry the time as t, as events with tMs', async () => {
    const header = { recording: 'udp-tunnel-inspect', version: 1, schema: 1, source: 'serve', startedAt: '2025-01-02T03:04:05.000Z' };
    const old = EVENTS.map((e) => {
      const { tMs, ...rest } = e;
      return JSON.stringify({ ...rest, t: tMs });
    });
    const items = await readAll([`${JSON.stringify(header)}\n${old.join('\n')}\n`]);
    assert.deepEqual(
      items.slice(1).map((i) => (i.kind === 'event' ? i.event : null)),
      EVENTS,
    );
  });

  it('names the line of invalid JSON, an invalid event, a late header and an unknown version', async () => {
    await rejects(readAll([`${JSON.stringify(EVENTS[0])}\n{nope\n`]), 'UT_ERR_INVALID_INPUT', /^recording line 2: not valid JSON/);
    await rejects(readAll(['{"event":"capsule","t":0,"session":"s"}\n']), 'UT_ERR_INVALID_INPUT', /line 1: capsule field 'dir'/);
    await rejects(
      readAll([`${JSON.stringify(EVENTS[0])}\n${JSON.stringify(recordingHeader('x', 0))}\n`]),
      'UT_ERR_INVALID_INPUT',
      /^recording line 2: a recording header may only be the first line/,
    );
    await rejects(
      readAll([`${JSON.stringify({ ...recordingHeader('x', 0), version: 2 })}\n`]),
      'UT_ERR_INVALID_INPUT',
      /^recording line 1: recording version 2 is not supported/,
    );
  });

  it('refuses a line over the length limit, whether or not its newline arrived', async () => {
    const long = JSON.stringify(EVENTS[0]);
    await rejects(readAll([`${long}\n`], long.length - 1), 'UT_ERR_INVALID_INPUT', /^recording line 1: line longer than/);
    await rejects(readAll([long.slice(0, 20), long.slice(20)], long.length - 1), 'UT_ERR_INVALID_INPUT', /^recording line 1: line longer than/);
    assert.equal((await readAll([`${long}\n`], long.length)).length, 1);
  });

  it('drops and counts events while more than maxBufferedBytes wait to be written', async () => {
    const path = join(dir, 'b.ndjson');
    // The header alone fills a zero-byte queue, so every event is dropped until the file catches up.
    const w = await RecordingWriter.open(path, recordingHeader('connect', 0), { maxBufferedBytes: 0 });
    assert.ok(w.bufferedBytes > 0);
    assert.equal(w.write(EVENTS[0]!), false);
    assert.equal(w.write(EVENTS[1]!), false);
    await w.close();
    assert.equal(w.dropped, 2);
    assert.equal(w.written, 0);
    assert.equal(w.write(EVENTS[2]!), false);
    assert.equal(w.dropped, 3);
    assert.equal(readFileSync(path, 'utf8').trimEnd().split('\n').length, 1);
  });

  it('rejects a file that cannot be created', async () => {
    await assert.rejects(RecordingWriter.open(join(dir, 'missing', 'x.ndjson'), recordingHeader('serve', 0)), { code: 'ENOENT' });
  });
});
