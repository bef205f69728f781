import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { Chalk } from 'chalk';
import { InspectRenderer, capsuleTypeMatches, hexAscii, type InspectRendererOptions } from '../../../../src/cli/render/inspect-render.js';
import { InspectView, type InspectViewSettings } from '../../../../src/cli/render/inspect-view.js';
import { Output } from '../../../../src/cli/output.js';
import type { CapsuleEvent, InspectEvent } from '../../../../src/inspect/events.js';

const plain = new Chalk({ level: 0 });

function renderer(options: Partial<InspectRendererOptions> = {}): { r: InspectRenderer; lines: string[] } {
  const lines: string[] = [];
  const r = new InspectRenderer({
    json: false,
    verbose: false,
    bytes: 16,
    full: false,
    filters: { sessions: [], types: [], errorsOnly: false },
    chalk: plain,
    // Wide enough that the content tests see every line whole; the width test below narrows it.
    width: 200,
    write: (l) => lines.push(l),
    ...options,
  });
  return { r, lines };
}

const REQUEST: InspectEvent = {
  event: 'request', tMs: 1500, session: 'c1s1', dir: '->', http: '2', method: 'CONNECT', protocol: 'connect-udp', scheme: 'https',
  authority: 'proxy:443', path: '/.well-known/masque/udp/2001%3Adb8%3A%3A1/53/', target: { host: '2001:db8::1', port: 53 }, capsuleProtocol: true,
  headers: [[':method', 'CONNECT'], ['authorization', 'Bearer secret-token']],
};
const REFUSED: InspectEvent = {
  event: 'response', tMs: 1502.25, session: 'c1s1', dir: '<-', http: '2', status: 403,
  proxyStatus: 'udp-tunnel; error=destination_ip_prohibited', capsuleProtocol: false, headers: [[':status', '403']],
};
const GREASE: CapsuleEvent = {
  event: 'capsule', tMs: 1503, session: 'c1s1', dir: '->', offset: 0, type: 0x40, typeName: 'GREASE 0x40', length: 0,
  typeWidth: 2, lengthWidth: 1, nonMinimal: false, valueHex: '', previewTruncated: false,
};

describe('hexAscii and capsuleTypeMatches', () => {
  it('pairs hex bytes and shows printable ASCII only', () => {
    assert.deepEqual(hexAscii('41007e7f20'), { hex: '41 00 7e 7f 20', ascii: 'A.~. ' });
    assert.deepEqual(hexAscii(''), { hex: '', ascii: '' });
  });

  it('matches names by prefix, case-insensitively, and numbers in decimal or hex', () => {
    assert.equal(capsuleTypeMatches(GREASE, 'grease'), true);
    assert.equal(capsuleTypeMatches(GREASE, '0x40'), true);
    assert.equal(capsuleTypeMatches(GREASE, '64'), true);
    assert.equal(capsuleTypeMatches(GREASE, '0x41'), false);
    assert.equal(capsuleTypeMatches(GREASE, 'DATAGRAM'), false);
    const big = { ...GREASE, type: '4611686018427387903', typeName: 'UNKNOWN 0x3fffffffffffffff' };
    assert.equal(capsuleTypeMatches(big, '0x3fffffffffffffff'), true);
  });
});

describe('InspectRenderer', () => {
  it('prints the request line with the decoded target, the refused status with Proxy-Status, and redacts credentials', () => {
    const { r, lines } = renderer({ verbose: true });
    r.handle(REQUEST);
    r.handle(REFUSED);
    r.handle(GREASE);
    r.handle({ event: 'close', tMs: 1504, session: 'c1s1', reason: 'refused', detail: 'status 403' });
    assert.deepEqual(lines, [
      '   1.500 c1s1 -> CONNECT connect-udp /.well-known/masque/udp/2001%3Adb8%3A%3A1/53/ target [2001:db8::1]:53 capsule-protocol ?1 (HTTP/2, proxy:443)',
      '                 :method: CONNECT',
      '                 authorization: Bearer <redacted>',
      '   1.502 c1s1 <- 403 proxy-status: udp-tunnel; error=destination_ip_prohibited',
      '                 :status: 403',
      '   1.503 c1s1 -> GREASE 0x40 len 0 @0 [type 2B, len 1B]',
      '   1.504 c1s1    close refused (status 403)',
    ]);
    const table = r.summaryTable()!;
    const row = table.split('\n').find((l) => l.startsWith('│ c1s1'))!;
    assert.deepEqual(row.split('│').map((c) => c.trim()).slice(1, -1), [
      'c1s1', '[2001:db8::1]:53', '403 destination_ip_prohibited', '0', '0', '0', '0', '0', '1', '0', '0.004s', 'refused (status 403)',
    ]);
  });

  it('--show-credentials keeps them; JSON output is one line per event', () => {
    const { r, lines } = renderer({ json: true, showCredentials: true });
    r.handle(REQUEST);
    assert.deepEqual(JSON.parse(lines[0]!), REQUEST);
    const red = renderer({ json: true });
    red.r.handle(REQUEST);
    assert.deepEqual((JSON.parse(red.lines[0]!) as { headers: unknown }).headers, [[':method', 'CONNECT'], ['authorization', 'Bearer <redacted>']]);
  });

  it('fits its width: long lines wrap under the event text, a preview moves below its capsule, the summary narrows', () => {
    const payload = Buffer.from('ABCDEFGHIJKLMNOP').toString('hex');
    const dgram: CapsuleEvent = {
      event: 'capsule', tMs: 1504, session: 'c1s1', dir: '->', offset: 2, type: 0, typeName: 'DATAGRAM', length: 17,
      typeWidth: 1, lengthWidth: 1, nonMinimal: false, contextId: 0, contextIdWidth: 1, payloadLength: 16, payloadHex: payload, previewTruncated: false,
    };
    const widths = (lines: string[]): number[] => lines.flatMap((l) => l.split('\n')).map((l) => [...l].length);
    for (const width of [80, 100]) {
      const { r, lines } = renderer({ width });
      for (const ev of [REQUEST, REFUSED, GREASE, dgram]) r.handle(ev);
      const table = r.summaryTable()!;
      assert.ok(Math.max(...widths([...lines, table])) <= width, `at ${width} columns:\n${[...lines, table].join('\n')}`);
      assert.match(lines[0]!, /^ {3}1\.500 c1s1 -> CONNECT connect-udp\b/);
      assert.match(lines[1]!, /^ {17}\S/, 'the continuation starts under the event text');
      const head = lines.findIndex((l) => l.includes('DATAGRAM len 17'));
      assert.match(lines[head + 1]!, /^ {17}41 42 43/, 'the preview sits under its capsule line');
      assert.match(table, /c1s1/);
    }
    const wide = renderer({ width: 200 });
    wide.r.handle(REQUEST);
    assert.match(wide.r.summaryTable()!, /dgrams -> .*bytes -> .*dgrams <- .*bytes <- .*unknown .*GREASE /, 'the widest layout when it fits');
  });

  it('keeps at most maxSummarySessions rows and says how many more there were', () => {
    const { r } = renderer({ maxSummarySessions: 1 });
    r.handle(REQUEST);
    r.handle({ ...REQUEST, session: 'c1s3' });
    r.handle({ ...REQUEST, session: 'c1s5' });
    assert.equal(r.untrackedSessions, 2);
    const table = r.summaryTable()!;
    assert.equal(table.split('\n').filter((l) => l.startsWith('│ c1s')).length, 1);
    assert.match(table, /\n2 more sessions not shown \(summary limit reached\)$/);
  });

  it('colours sessions differently and errors in red when colour is on', () => {
    const { r, lines } = renderer({ chalk: new Chalk({ level: 1 }) });
    r.handle(REQUEST);
    r.handle({ ...REQUEST, session: 'c1s3' });
    r.handle({ event: 'error', tMs: 0, session: 'c1s3', dir: '->', offset: 9, layer: 'capsule', code: 'UT_ERR_X', reason: 'bad', rfc: 'RFC 9297 §3.3' });
    const sessionColour = (line: string, id: string): string => /\x1b\[(\d+)m/.exec(line.slice(line.indexOf(id) - 6))![1]!;
    assert.notEqual(sessionColour(lines[0]!, 'c1s1'), sessionColour(lines[1]!, 'c1s3'));
    assert.match(lines[2]!, /\x1b\[31m.*ERROR at byte 9:/);
  });
});

describe('cli/inspect-session: InspectView output limit', () => {
  const settings: InspectViewSettings = {
    json: true,
    verbose: false,
    bytes: 16,
    full: false,
    filters: { sessions: [], types: [], errorsOnly: false },
    print: true,
    summary: true,
    strict: false,
    showCredentials: false,
  };

  it('a live view drops lines while its output is backed up past the limit, and counts them', async () => {
    // Nobody reads this stream, like a stalled pipe: what is written stays queued.
    const target = new PassThrough({ highWaterMark: 16 });
    const view = await InspectView.create(settings, new Output({ json: true, verbosity: 0 }), 'relay', { live: true, startedAtMs: 0, target, limit: 1000 });
    for (let i = 0; i < 50; i++) view.handle({ ...GREASE, offset: i });
    assert.ok(target.writableLength > 1000);
    const kept = Math.ceil(1001 / (JSON.stringify(GREASE).length + 1));
    assert.equal(view.droppedLines, 50 - kept);
    assert.equal(view.renderer.events, 50);
  });

  it('a replay view never drops: it waits for the output to drain', async () => {
    const target = new PassThrough({ highWaterMark: 16 });
    const view = await InspectView.create(settings, new Output({ json: true, verbosity: 0 }), 'file', { live: false, startedAtMs: 0, target, limit: 100 });
    for (let i = 0; i < 50; i++) view.handle({ ...GREASE, offset: i });
    assert.equal(view.droppedLines, 0);
    let drained = false;
    const wait = view.drain().then(() => (drained = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(drained, false);
    target.resume();
    await wait;
    assert.equal(drained, true);
  });
});
