import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseInspectEvent } from '../../src/core/inspect/event-parse.js';
import type { InspectEvent } from '../../src/core/inspect/events.js';
import { runCli, startCli, type CliProcess } from '../helpers/inspect-cli.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../helpers/net.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-inspect-relay-'));
const procs: CliProcess[] = [];
after(async () => {
  for (const p of procs) await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

const KINDS = new Set(['request', 'response', 'capsule', 'error', 'end', 'close']);

/** The inspect events among a command's NDJSON stdout (connect and serve also print their own events). */
function inspectEvents(stdout: string): InspectEvent[] {
  const out: InspectEvent[] = [];
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const v = JSON.parse(line) as Record<string, unknown>;
    if (KINDS.has(String(v['event'])) && typeof v['t'] === 'number') out.push(parseInspectEvent(v));
  }
  return out;
}

function capsules(events: InspectEvent[], session: string): unknown[] {
  return events
    .filter((e) => e.event === 'capsule' && e.session === session)
    .map((e) => {
      const { t: _t, session: _s, ...rest } = e;
      return rest;
    })
    .sort((a, b) => {
      const x = a as { dir: string; offset: number };
      const y = b as { dir: string; offset: number };
      return x.dir === y.dir ? x.offset - y.offset : x.dir < y.dir ? -1 : 1;
    });
}

describe('connect --inspect -> inspect relay -> serve --inspect, all spawned', () => {
  it('relays every datagram; relay, both taps and their recordings report the same capsules', async () => {
    const echo = await startUdpEcho();
    const rec = { serve: join(dir, 'serve.ndjson'), relay: join(dir, 'relay.ndjson'), connect: join(dir, 'connect.ndjson') };
    const serve = startCli(['serve', '-l', '127.0.0.1:0', '--inspect', '--record', rec.serve], { NO_COLOR: '1' });
    procs.push(serve);
    await waitUntil(() => /serving CONNECT-UDP on http:\/\/127\.0\.0\.1:\d+/.test(serve.stderr()), 10_000, 'serve listening');
    const servePort = Number(/http:\/\/127\.0\.0\.1:(\d+)/.exec(serve.stderr())![1]);
    const relay = startCli(['inspect', '-l', '127.0.0.1:0', '-u', `http://127.0.0.1:${servePort}`, '--json', '--record', rec.relay]);
    procs.push(relay);
    const rl = await relay.waitEvent('listening');
    assert.equal(rl['upstream'], `http://127.0.0.1:${servePort}`);
    const connect = startCli(['connect', '-p', `http://127.0.0.1:${rl['port']}`, '-t', `127.0.0.1:${echo.port}`, '--json', '--inspect', '--record', rec.connect]);
    procs.push(connect);
    const cl = await connect.waitEvent('listening');
    const peer = await openUdpPeer();
    const sent = ['alpha', '', 'a datagram longer than sixteen bytes', 'z'].map((s) => Buffer.from(s));
    try {
      for (let i = 0; i < sent.length; i++) {
        await peer.send(sent[i]!, Number(cl['port']), '127.0.0.1');
        await peer.waitFor(i + 1);
      }
      assert.deepEqual(peer.messages.map((b) => b.toString()), sent.map((b) => b.toString()));
    } finally {
      await peer.close();
    }
    assert.equal(await connect.stop(), 0);
    await waitUntil(() => inspectEvents(relay.stdout()).some((e) => e.event === 'close'), 5000, 'relay close event');
    assert.equal(await relay.stop(), 0);
    assert.equal(await serve.stop(), 0);
    await echo.close();

    const relayEvents = inspectEvents(relay.stdout());
    const connectEvents = inspectEvents(connect.stdout());
    const expected = capsules(relayEvents, 'c1s1');
    assert.equal(expected.length, sent.length * 2);
    assert.deepEqual(capsules(connectEvents, 'c1'), expected);
    const req = relayEvents.find((e) => e.event === 'request');
    assert.deepEqual(req?.event === 'request' && req.target, { host: '127.0.0.1', port: echo.port });

    // serve printed human lines (NO_COLOR: plain text) and its summary table on shutdown.
    const serveOut = serve.stdout();
    assert.doesNotMatch(serveOut, /\x1b\[/);
    assert.match(serveOut, / s1 {3}-> CONNECT connect-udp \/\.well-known\/masque\/udp\/127\.0\.0\.1\/\d+\/ target 127\.0\.0\.1:\d+ capsule-protocol \?1/);
    assert.match(serveOut, / s1 {3}-> DATAGRAM len 6 ctx 0 payload 5  61 6c 70 68 61  \|alpha\|/);
    assert.match(serveOut, / s1 {3}<- DATAGRAM len 37 ctx 0 payload 36  61 20 64 61 74 61 67 72 61 6d 20 6c 6f 6e 67 65  \|a datagram longe\| \.\.\./);
    const row = serveOut.split('\n').find((l) => l.startsWith('│ s1'));
    assert.ok(row, serveOut);
    assert.deepEqual(row.split('│').map((c) => c.trim()).slice(1, 10), ['s1', `127.0.0.1:${echo.port}`, '200', '4', '42', '4', '42', '0', '0']);

    // Each recording replays to the events its process saw; serve's matches the relay capsule for capsule.
    const replay = async (path: string): Promise<InspectEvent[]> => {
      const r = await runCli(['inspect', '--file', path, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return inspectEvents(r.stdout);
    };
    assert.deepEqual(await replay(rec.connect), connectEvents);
    assert.deepEqual(await replay(rec.relay), relayEvents);
    assert.deepEqual(capsules(await replay(rec.serve), 's1'), expected);
  });
});
