import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { TunnelClient, type ClientSessionStats } from '../../../src/tunnel/client.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer, type ServerSessionStats } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, waitUntil, type UdpPeer } from '../../helpers/net.js';
import { openHandles } from '../../helpers/tunnel.js';

// A mixed load through connect and serve: every datagram a local peer sends is either delivered back to it (the
// target answers each request once) or counted by exactly one drop counter on one side, per session and in total.
// The sizes are picked around the limits: serve's maxDatagram is 65520, IPv4 carries at most 65507, and the two
// clients allow 65515 (IPv4 peer) and 65522 (IPv6 peer).

const SERVER_MAX = 65520;
const TAG_LENGTH = 8;
/** Burst sent while the tunnel is being set up, beyond the client's 8-datagram buffer. */
const BURST = 40;
const BUFFER_DATAGRAMS = 8;
const ROUNDS = 3;

/** A request: [reply size (u32)][8-byte tag], padded to `size` bytes. The target answers with `replySize` bytes starting with the tag. */
function request(size: number, replySize: number, tag: string): Buffer {
  const b = Buffer.alloc(Math.max(size, 4 + TAG_LENGTH), 0x5a);
  b.writeUInt32BE(replySize, 0);
  b.write(tag.padEnd(TAG_LENGTH, '.'), 4, 'latin1');
  return b;
}

/** A target that answers each request with one datagram of the size it asks for. */
interface Responder {
  port: number;
  received: number;
  close(): Promise<void>;
}

function startResponder(host: string): Promise<Responder> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const r: Responder = { port: 0, received: 0, close: () => new Promise<void>((done) => socket.close(() => done())) };
  socket.on('message', (msg, rinfo) => {
    r.received++;
    const reply = Buffer.alloc(msg.readUInt32BE(0), 0xa5);
    msg.copy(reply, 0, 4, 4 + Math.min(TAG_LENGTH, reply.length));
    socket.send(reply, rinfo.port, rinfo.address);
  });
  return new Promise((resolve) => {
    socket.bind(0, host, () => {
      r.port = (socket.address() as AddressInfo).port;
      resolve(r);
    });
  });
}

/** Where a probe is dropped for its size: on the way to the target or back, by connect or serve; or nowhere. */
type DropAt = 'none' | 'connect-forward' | 'serve-forward' | 'serve-return' | 'connect-return';

/** One kind of probe: the request's size, the reply size it asks for, and where the size limit drops it. */
interface Probe {
  size: number;
  reply: number;
  dropAt: DropAt;
}

/** One local peer's session: where it listens and sends, and what it sends besides the burst and the fences. */
interface Lane {
  name: string;
  localHost: string;
  targetHost: string;
  clientMax: number;
  probes: Probe[];
}

const LANES: Lane[] = [
  {
    name: 'IPv4 peer -> IPv6 target',
    localHost: '127.0.0.1',
    targetHost: '::1',
    clientMax: 65515,
    probes: [
      { size: 200, reply: 200, dropAt: 'none' },
      // Within both maxDatagrams, too big for the IPv4 local peer: connect drops it before the send.
      { size: 50, reply: 65510, dropAt: 'connect-return' },
      { size: 50, reply: 65518, dropAt: 'connect-return' },
      { size: 50, reply: 65524, dropAt: 'serve-return' },
    ],
  },
  {
    name: 'IPv6 peer -> IPv4 target',
    localHost: '::1',
    targetHost: '127.0.0.1',
    clientMax: 65522,
    probes: [
      { size: 200, reply: 200, dropAt: 'none' },
      // Within both maxDatagrams, too big for the IPv4 target: serve drops it before the send.
      { size: 65510, reply: 32, dropAt: 'serve-forward' },
      { size: 65525, reply: 32, dropAt: 'connect-forward' },
      { size: 65521, reply: 32, dropAt: 'serve-forward' },
    ],
  },
];

/** How many probes of a lane the size limit drops at `at`. */
function expected(lane: Lane, at: DropAt): number {
  return ROUNDS * lane.probes.filter((p) => p.dropAt === at).length;
}

function clientDrops(s: ClientSessionStats): number {
  const d = s.drops;
  return d.oversize + d.notReady + d.bufferOverflow + d.backpressure + d.unsent + d.replyFailed + d.sendQueue + d.contextId;
}

function serverDrops(s: ServerSessionStats): number {
  return s.dropBackpressure + s.dropContextId + s.dropOversize + s.dropUdpSend + s.dropSendQueue;
}

describe('tunnel: every datagram is delivered or counted once (connect and serve)', () => {
  it('a mixed load: sent = delivered + every drop counter, per session and in total', async () => {
    const handles = openHandles();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), maxDatagram: SERVER_MAX });
    const serverCloses: ServerSessionStats[] = [];
    server.on('session-close', (s: ServerSessionStats) => serverCloses.push(s));
    const proxy = `http://127.0.0.1:${(await server.listen()).port}`;
    const runs: { lane: Lane; client: TunnelClient; peer: UdpPeer; responder: Responder; sent: number; closes: ClientSessionStats[] }[] = [];
    try {
      for (const lane of LANES) {
        const responder = await startResponder(lane.targetHost);
        const client = new TunnelClient({
          host: lane.localHost,
          port: 0,
          transport: buildTransport({ proxy, target: { host: lane.targetHost, port: responder.port } }),
          maxDatagram: lane.clientMax,
          buffer: { enabled: true, maxDatagrams: BUFFER_DATAGRAMS, maxBytes: 16384 },
        });
        const closes: ClientSessionStats[] = [];
        client.on('session-close', (s: ClientSessionStats) => closes.push(s));
        const localPort = (await client.start()).port;
        const peer = await openUdpPeer(lane.localHost);
        const run = { lane, client, peer, responder, sent: 0, closes };
        runs.push(run);
        const send = (b: Buffer): Promise<void> => {
          run.sent++;
          return peer.send(b, localPort, lane.localHost);
        };
        let fences = 0;
        /** Sends a small request and waits for its answer: everything sent before it has been delivered or dropped. */
        const fence = async (): Promise<void> => {
          const tag = `F${fences++}`.padEnd(TAG_LENGTH, '.');
          await send(request(16, 16, tag));
          await waitUntil(() => peer.messages.some((m) => m.toString('latin1', 0, TAG_LENGTH) === tag), 10_000, `the answer to ${tag} (${lane.name})`);
        };

        const ready = new Promise((resolve) => client.once('session-ready', resolve));
        // All sent in this turn, so they all wait in the local socket before connect reads the first: the tunnel
        // cannot be ready before the buffer overflows.
        await Promise.all(Array.from({ length: BURST }, (_, i) => send(request(100, 64, `B${i}`))));
        await ready;
        await fence();
        for (const probe of lane.probes) {
          for (let i = 0; i < ROUNDS; i++) {
            await send(request(probe.size, probe.reply, 'P'));
            await fence();
          }
        }
      }

      for (const run of runs) await run.client.close();
      await waitUntil(() => serverCloses.length === runs.length, 10_000, 'serve to close every session');

      let totalSent = 0;
      let totalDelivered = 0;
      let totalClientDrops = 0;
      let sessionOnlyServerDrops = 0;
      for (const { lane, client, peer, responder, sent, closes } of runs) {
        assert.equal(closes.length, 1, `${lane.name}: one session`);
        const c = closes[0]!;
        const s = serverCloses.find((x) => x.resolved === lane.targetHost);
        assert.ok(s, `${lane.name}: serve session`);
        const delivered = peer.messages.length;
        const label = `${lane.name}: sent ${sent}, delivered ${delivered}, connect ${JSON.stringify(c.drops)}, serve oversize ${s.dropOversize} udpSend ${s.dropUdpSend}`;
        assert.equal(sent, delivered + clientDrops(c) + serverDrops(s), label);
        // The limits were hit, each where expected and counted under the size limit, not as a send error.
        assert.ok(c.drops.bufferOverflow > 0, `${label}: the buffer never overflowed`);
        assert.equal(c.drops.oversize, expected(lane, 'connect-forward') + expected(lane, 'connect-return'), label);
        assert.equal(s.dropOversize, expected(lane, 'serve-forward') + expected(lane, 'serve-return'), label);
        assert.equal(s.dropUdpSend, 0, label);
        assert.equal(c.drops.replyFailed, 0, label);
        // Stage by stage: connect read all; serve and the target took what connect passed on; back the same way.
        assert.equal(c.rxDatagrams, sent, label);
        assert.equal(s.rxDatagrams, sent - c.drops.bufferOverflow - expected(lane, 'connect-forward') - expected(lane, 'serve-forward'), label);
        assert.equal(responder.received, s.rxDatagrams, label);
        assert.equal(s.txDatagrams, responder.received - expected(lane, 'serve-return'), label);
        assert.equal(delivered, s.txDatagrams - expected(lane, 'connect-return'), label);
        assert.equal(c.txDatagrams, delivered, label);
        assert.equal(client.counters.datagrams_dropped, clientDrops(c), `${lane.name}: client-wide drops`);
        totalSent += sent;
        totalDelivered += delivered;
        totalClientDrops += client.counters.datagrams_dropped;
        sessionOnlyServerDrops += s.dropUdpSend + s.dropContextId;
      }
      const l = server.counters.limits;
      assert.equal(l.datagramSize, serverCloses.reduce((n, s) => n + s.dropOversize, 0));
      assert.equal(l.streamBuffer, serverCloses.reduce((n, s) => n + s.dropBackpressure, 0));
      assert.equal(l.udpSendQueue, serverCloses.reduce((n, s) => n + s.dropSendQueue, 0));
      assert.equal(totalSent, totalDelivered + totalClientDrops + l.datagramSize + l.streamBuffer + l.udpSendQueue + sessionOnlyServerDrops);
    } finally {
      for (const run of runs) {
        await run.client.close();
        await run.peer.close();
        await run.responder.close();
      }
      await server.close();
    }
    await waitUntil(() => openHandles().tcp <= handles.tcp && openHandles().udp <= handles.udp, 3000, 'handles released');
  });
});
