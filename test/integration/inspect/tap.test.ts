import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TunnelClient, type ClientSessionStats } from '../../../src/tunnel/client.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { tapChannel } from '../../../src/tunnel/diagnostics.js';
import { trimPreview } from '../../../src/inspect/event-transform.js';
import type { InspectEvent } from '../../../src/inspect/events.js';
import { RecordingWriter, readRecording, recordingHeader } from '../../../src/inspect/recording.js';
import { InspectRelay } from '../../../src/inspect/relay.js';
import { TapInspector } from '../../../src/inspect/tap.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer, type ServerSessionStats } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, startUdpEcho, waitUntil } from '../../helpers/net.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-tap-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function payload(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed * 11 + i * 3) & 0xff;
  return b;
}

/** Events of one session with the source-specific fields (time, session id) left out. */
function comparable(events: InspectEvent[], session: string, kind: InspectEvent['event']): unknown[] {
  return events
    .filter((e) => e.session === session && e.event === kind)
    .map((e) => {
      const { tMs: _t, session: _s, ...rest } = e;
      return rest;
    });
}

describe('tap, recording and relay see the same traffic', () => {
  it('connect -> relay -> serve: client tap, server tap, relay and the replayed recording agree capsule for capsule', async () => {
    const echo = await startUdpEcho();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const s = await server.listen();
    const relayEvents: InspectEvent[] = [];
    const relay = new InspectRelay({ host: '127.0.0.1', port: 0, upstream: `http://127.0.0.1:${s.port}`, onEvent: (ev) => relayEvents.push(ev) });
    const r = await relay.listen();
    const client = new TunnelClient({
      host: '127.0.0.1',
      port: 0,
      transport: buildTransport({ proxy: `http://127.0.0.1:${r.port}`, target: { host: '127.0.0.1', port: echo.port }, connectTimeoutMs: 5000 }),
    });
    const tapEvents: InspectEvent[] = [];
    const origin = Date.now();
    const path = join(dir, 'tap.ndjson');
    const writer = await RecordingWriter.open(path, recordingHeader('test', origin));
    const tap = new TapInspector({ onEvent: (ev) => tapEvents.push(ev) });
    const recTap = new TapInspector({ full: true, onEvent: (ev) => writer.write(ev) });
    tap.start(origin);
    recTap.start(origin);
    const closedClient: ClientSessionStats[] = [];
    const closedServer: ServerSessionStats[] = [];
    client.on('session-close', (st: ClientSessionStats) => closedClient.push(st));
    server.on('session-close', (st: ServerSessionStats) => closedServer.push(st));
    const local = await client.start();
    const peer = await openUdpPeer();
    const sent = [3, 0, 16, 17, 64, 900].map((n, i) => payload(n, i));
    try {
      for (let i = 0; i < sent.length; i++) {
        await peer.send(sent[i]!, local.port, '127.0.0.1');
        await peer.waitFor(i + 1);
      }
      assert.deepEqual(peer.messages.map((b) => b.toString('hex')), sent.map((b) => b.toString('hex')));
      await client.close();
      await waitUntil(() => closedServer.length === 1 && relayEvents.some((e) => e.event === 'close'), 3000, 'sessions closed');
    } finally {
      await peer.close();
      await client.close();
      await relay.close();
      await server.close();
      await echo.close();
      tap.stop();
      recTap.stop();
      await writer.close();
    }
    assert.equal(tapChannel.hasSubscribers, false, 'nothing listens once the taps stopped');
    assert.equal(closedClient.length, 1);

    // The client tap's session is c1, the server's s1, the relay's c1s1 (connection 1, stream 1).
    const relayCaps = comparable(relayEvents, 'c1s1', 'capsule');
    assert.equal(relayCaps.length, sent.length * 2);
    const sortedRelay = [...relayCaps].sort(byDirThenOffset);
    assert.deepEqual([...comparable(tapEvents, 'c1', 'capsule')].sort(byDirThenOffset), sortedRelay);
    assert.deepEqual([...comparable(tapEvents, 's1', 'capsule')].sort(byDirThenOffset), sortedRelay);
    const relayReq = comparable(relayEvents, 'c1s1', 'request');
    assert.equal(relayReq.length, 1);
    assert.deepEqual(comparable(tapEvents, 'c1', 'request'), relayReq);
    assert.deepEqual(comparable(tapEvents, 's1', 'request'), relayReq);
    for (const sess of ['c1', 's1']) {
      const res = tapEvents.filter((e) => e.session === sess && e.event === 'response');
      assert.deepEqual(res.map((e) => (e.event === 'response' ? [e.status, e.capsuleProtocol, e.proxyStatus] : null)), [[200, true, null]]);
    }
    assert.deepEqual(comparable(tapEvents, 'c1', 'response'), comparable(relayEvents, 'c1s1', 'response'));

    // The recording (whole payloads) replays to exactly the tap's events once cut to the same 16-byte preview.
    const replayed: InspectEvent[] = [];
    let header: unknown = null;
    for await (const item of readRecording(createReadStream(path))) {
      if (item.kind === 'header') header = item.header;
      else replayed.push(trimPreview(item.event, 16));
    }
    assert.deepEqual(header, recordingHeader('test', origin));
    assert.deepEqual(replayed, JSON.parse(JSON.stringify(tapEvents)));
    const full = (await collect(path)).filter((e) => e.event === 'capsule' && e.session === 'c1' && e.dir === '->');
    assert.deepEqual(full.map((e) => (e.event === 'capsule' ? e.payloadHex : null)), sent.map((p) => p.toString('hex')));
  });
});

function byDirThenOffset(a: unknown, b: unknown): number {
  const x = a as { dir: string; offset: number };
  const y = b as { dir: string; offset: number };
  return x.dir === y.dir ? x.offset - y.offset : x.dir < y.dir ? -1 : 1;
}

async function collect(path: string): Promise<InspectEvent[]> {
  const out: InspectEvent[] = [];
  for await (const item of readRecording(createReadStream(path))) if (item.kind === 'event') out.push(item.event);
  return out;
}

describe('the tap on every transport', () => {
  for (const combo of [
    { name: 'connect-udp over HTTP/1.1', mode: 'connect-udp' as const, http: '1.1' as const, request: ['1.1', 'GET', 'connect-udp'], status: 101 },
    { name: 'POST over HTTP/2', mode: 'post' as const, http: '2' as const, request: ['2', 'POST', null], status: 200 },
  ]) {
    it(`${combo.name}: client and server taps report the request line, the status and every capsule`, async () => {
      const echo = await startUdpEcho();
      const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), postRoutes: new Map([['/echo', { host: '127.0.0.1', port: echo.port }]]) });
      const s = await server.listen();
      const client = new TunnelClient({
        host: '127.0.0.1',
        port: 0,
        transport: buildTransport({
          proxy: `http://127.0.0.1:${s.port}`,
          mode: combo.mode,
          http: combo.http,
          postPath: '/echo',
          target: { host: '127.0.0.1', port: echo.port },
          connectTimeoutMs: 5000,
        }),
      });
      const events: InspectEvent[] = [];
      const tap = new TapInspector({ onEvent: (ev) => events.push(ev) });
      tap.start();
      const local = await client.start();
      const peer = await openUdpPeer();
      try {
        await peer.send('over the tap', local.port, '127.0.0.1');
        await peer.waitFor(1);
        await waitUntil(() => events.filter((e) => e.event === 'capsule').length === 4, 2000, 'four capsule events');
      } finally {
        await peer.close();
        await client.close();
        await server.close();
        await echo.close();
        tap.stop();
      }
      const path = combo.mode === 'post' ? '/echo' : `/.well-known/masque/udp/127.0.0.1/${echo.port}/`;
      for (const session of ['c1', 's1']) {
        const req = events.find((e) => e.session === session && e.event === 'request');
        assert.ok(req && req.event === 'request', `${session} request`);
        assert.deepEqual([req.http, req.method, req.protocol, req.path, req.capsuleProtocol], [...combo.request, path, true]);
        const res = events.find((e) => e.session === session && e.event === 'response');
        assert.equal(res?.event === 'response' && res.status, combo.status);
        const caps = events.filter((e) => e.session === session && e.event === 'capsule');
        assert.deepEqual(caps.map((c) => (c.event === 'capsule' ? [c.dir, c.payloadHex] : null)), [
          ['->', Buffer.from('over the tap').toString('hex')],
          ['<-', Buffer.from('over the tap').toString('hex')],
        ]);
      }
    });
  }
});
