import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseInspectEvent } from '../../src/inspect/event-parse.js';
import type { CapsuleEvent, ErrorEvent, InspectEvent } from '../../src/inspect/events.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-inspect-bind-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

function file(name: string, content: Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function events(stdout: string): InspectEvent[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l, i) => parseInspectEvent(JSON.parse(l), i + 1));
}

// Client-to-proxy capsules written out by hand (draft-ietf-masque-connect-udp-listen §3.1-§3.3):
const STREAM = h(
  [
    '11 08  02 04 7f000001 14e9', // COMPRESSION_ASSIGN ctx 2, IPv4 127.0.0.1 port 5353
    '11 02  04 00', //               COMPRESSION_ASSIGN ctx 4, uncompressed
    '12 01  03', //                  COMPRESSION_ACK ctx 3
    '13 01  02', //                  COMPRESSION_CLOSE ctx 2
  ].map((l) => l.replace(/\/\/.*/, '')).join(''),
);
// The client registering an odd ID, which only the proxy allocates.
const PARITY = Buffer.concat([STREAM, h('11 02 05 00')]);

describe('inspect --raw: CONNECT-UDP Bind capsules', () => {
  it('--json reports the fields of COMPRESSION_ASSIGN, ACK and CLOSE', async () => {
    const r = await runCli(['inspect', '--raw', file('bind.bin', STREAM), '--json', '--strict']);
    assert.equal(r.code, 0, r.stderr);
    const caps = events(r.stdout).filter((e): e is CapsuleEvent => e.event === 'capsule');
    assert.deepEqual(
      caps.map((c) => [c.offset, c.type, c.typeName, c.contextId, c.ipVersion, c.address, c.port]),
      [
        [0, 0x11, 'COMPRESSION_ASSIGN', 2, 4, '127.0.0.1', 5353],
        [10, 0x11, 'COMPRESSION_ASSIGN', 4, 0, null, null],
        [14, 0x12, 'COMPRESSION_ACK', 3, undefined, undefined, undefined],
        [17, 0x13, 'COMPRESSION_CLOSE', 2, undefined, undefined, undefined],
      ],
    );
  });

  it('prints them for people with their context and target', async () => {
    const r = await runCli(['inspect', '--raw', file('bind-h.bin', STREAM)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /COMPRESSION_ASSIGN len 8 ctx 2 127\.0\.0\.1:5353/);
    assert.match(r.stdout, /COMPRESSION_ASSIGN len 2 ctx 4 uncompressed/);
    assert.match(r.stdout, /COMPRESSION_CLOSE len 1 ctx 2/);
  });

  it('--strict fails on a context ID of the wrong parity; without --strict it is shown as a capsule', async () => {
    const p = file('parity.bin', PARITY);
    const bad = await runCli(['inspect', '--raw', p, '--json', '--strict']);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'udp-tunnel: 1 decoding error seen (--strict) [UT_ERR_INSPECT_MALFORMED]\n');
    const errs = events(bad.stdout).filter((e): e is ErrorEvent => e.event === 'error');
    assert.equal(errs.length, 1);
    assert.equal(errs[0]!.code, 'UT_ERR_BIND_MALFORMED');
    assert.equal(errs[0]!.offset, STREAM.length);
    assert.equal(errs[0]!.rfc, 'draft-ietf-masque-connect-udp-listen §3');
    assert.match(errs[0]!.reason, /client registered Context ID 5/);
    const lax = await runCli(['inspect', '--raw', p, '--json']);
    assert.equal(lax.code, 0, lax.stderr);
    assert.equal(events(lax.stdout).filter((e) => e.event === 'capsule').length, 5);
  });

  it('reports a malformed value (IP version 5) as a decoding error, --strict or not', async () => {
    const r = await runCli(['inspect', '--raw', file('v5.bin', h('11 08 02 05 7f000001 14e9')), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const errs = events(r.stdout).filter((e): e is ErrorEvent => e.event === 'error');
    assert.deepEqual(
      errs.map((e) => [e.code, e.offset, e.rfc]),
      [['UT_ERR_BIND_MALFORMED', 0, 'draft-ietf-masque-connect-udp-listen §3.1']],
    );
  });
});
