import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseInspectEvent } from '../../src/inspect/event-parse.js';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer } from '../../src/tunnel/server/tunnel-server.js';
import type { InspectEvent } from '../../src/inspect/events.js';
import { runCli, startCli, type CliProcess } from '../helpers/cli.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../helpers/net.js';
import { connectTcp } from '../helpers/tcp-peer.js';

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
    if (KINDS.has(String(v['event'])) && typeof v['tMs'] === 'number') out.push(parseInspectEvent(v));
  }
  return out;
}

function capsules(events: InspectEvent[], session: string): unknown[] {
  return events
    .filter((e) => e.event === 'capsule' && e.session === session)
    .map((e) => {
      const { tMs: _t, session: _s, ...rest } = e;
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
    const serve = startCli(['serve', '-l', '127.0.0.1:0', '--inspect', '--record', rec.serve], { env: { NO_COLOR: '1' } });
    procs.push(serve);
    await waitUntil(() => /serving CONNECT-UDP on http:\/\/127\.0\.0\.1:\d+/.test(serve.stderr()), 10_000, 'serve listening');
    const servePort = Number(/http:\/\/127\.0\.0\.1:(\d+)/.exec(serve.stderr())![1]);
    const relay = startCli(['inspect', '-l', '127.0.0.1:0', '-u', `http://127.0.0.1:${servePort}`, '--json', '--record', rec.relay]);
    procs.push(relay);
    const rl = await relay.waitForEvent('listening');
    assert.equal(rl['upstream'], `http://127.0.0.1:${servePort}`);
    // The start-up proxy check would be the relay's first connection (c1) and shift the session names asserted below.
    const connect = startCli(['connect', '-p', `http://127.0.0.1:${rl['port']}`, '-t', `127.0.0.1:${echo.port}`, '--json', '--inspect', '--record', rec.connect, '--no-proxy-check']);
    procs.push(connect);
    const cl = await connect.waitForEvent('listening');
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
    assert.match(serveOut, / s1 {3}-> CONNECT connect-udp \/\.well-known\/masque\/udp\/127\.0\.0\.1\/\d+\/ target 127\.0\.0\.1:\d+\s+capsule-protocol \?1/);
    assert.match(serveOut, / s1 {3}-> DATAGRAM len 6 ctx 0 payload 5  61 6c 70 68 61  \|alpha\|/);
    assert.match(serveOut, / s1 {3}<- DATAGRAM len 37 ctx 0 payload 36\s+61 20 64 61 74 61 67 72 61 6d 20 6c 6f 6e 67 65  \|a datagram longe\| \.\.\./);
    const row = serveOut.split('\n').find((l) => l.startsWith('│ s1'));
    assert.ok(row, serveOut);
    // The table takes the widest layout that fits 100 columns, which depends on the port's digits: read it by header.
    const cells = (line: string): string[] => line.split('│').map((c) => c.trim()).slice(1, -1);
    const head = serveOut.split('\n').find((l) => l.startsWith('│ session'));
    assert.ok(head, serveOut);
    const byName = Object.fromEntries(cells(head).map((h, i) => [h, cells(row)[i]]));
    assert.deepEqual([byName['session'], byName['request'], byName['status'], byName['errors']], ['s1', `127.0.0.1:${echo.port}`, '200', '0']);
    if ('dgrams -> / <-' in byName) assert.equal(byName['dgrams -> / <-'], '4 / 4');
    else assert.deepEqual([byName['dgrams ->'], byName['dgrams <-']], ['4', '4']);
    if ('bytes -> / <-' in byName) assert.equal(byName['bytes -> / <-'], '42 / 42');

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

describe('inspect relay with HTTP/1.1 clients, spawned', () => {
  it('relays connect --http 1.1 with --json events; --strict exits 1 after a malformed capsule from a raw client', async () => {
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const relay = startCli(['inspect', '-l', '127.0.0.1:0', '-u', `http://127.0.0.1:${s.port}`, '--json', '--strict']);
    procs.push(relay);
    try {
      const rl = await relay.waitForEvent('listening');
      assert.deepEqual(rl['protocols'], ['h2c', 'http/1.1']);
      // As above: no start-up proxy check, so the tunnel is the relay's connection c1.
      const connect = startCli(['connect', '--http', '1.1', '-p', `http://127.0.0.1:${rl['port']}`, '-t', `127.0.0.1:${echo.port}`, '--json', '--no-proxy-check']);
      procs.push(connect);
      const cl = await connect.waitForEvent('listening');
      const peer = await openUdpPeer();
      try {
        await peer.send('over h1', Number(cl['port']), '127.0.0.1');
        assert.equal((await peer.waitFor(1))[0]?.toString(), 'over h1');
      } finally {
        await peer.close();
      }
      assert.equal(await connect.stop(), 0);

      // A raw HTTP/1.1 client: after the 101, a DATAGRAM capsule too short for its context ID (RFC 9298 §5).
      const raw = await connectTcp('127.0.0.1', Number(rl['port']));
      raw.socket.write(`GET /.well-known/masque/udp/127.0.0.1/${echo.port}/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n`);
      await waitUntil(() => raw.received().toString('latin1').endsWith('\r\n\r\n'), 5000, '101 head');
      raw.socket.write(Buffer.from('0000', 'hex'));
      await raw.closed;
      await waitUntil(() => inspectEvents(relay.stdout()).filter((e) => e.event === 'close').length === 2, 5000, 'two closes');
      assert.equal(await relay.stop(), 1);
      assert.match(relay.stderr(), /1 decoding error seen \(--strict\)/);

      const events = inspectEvents(relay.stdout());
      const c1 = events.filter((e) => e.session === 'c1').map((e) => e.event);
      assert.deepEqual([c1[0], c1[1], ...c1.slice(-3)], ['request', 'response', 'end', 'end', 'close']);
      assert.deepEqual(
        events.filter((e) => e.session === 'c1' && e.event === 'capsule').map((e) => (e.event === 'capsule' ? [e.dir, e.payloadHex] : null)),
        [['->', Buffer.from('over h1').toString('hex')], ['<-', Buffer.from('over h1').toString('hex')]],
      );
      const err = events.find((e) => e.event === 'error');
      assert.deepEqual(err?.event === 'error' && [err.session, err.dir, err.offset, err.code, err.rfc], ['c2', '->', 0, 'UT_ERR_DATAGRAM_MALFORMED', 'RFC 9298 §5']);
    } finally {
      await server.close();
      await echo.close();
    }
  });
});
