import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { CapsuleDecoder } from '../../../src/tunnel/codec/capsule-decoder.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { DatagramChannel } from '../../../src/tunnel/datagram-channel.js';
import { CONTEXT_ID_UDP, parseConnectUdpDatagram } from '../../../src/tunnel/codec/datagram.js';
import { InspectRelay } from '../../../src/inspect/relay.js';
import { UdpTunnelError } from '../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { H2_PREFACE, TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';
import { h1Request } from '../../helpers/tunnel.js';

/** Splits `bytes` at the given cut points (sorted, deduplicated). */
function chunk(bytes: Uint8Array, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(Buffer.from(bytes.subarray(last, p)));
    last = p;
  }
  out.push(Buffer.from(bytes.subarray(last)));
  return out;
}

// Bytes that look like capsules often enough to reach deep states: small types, DATAGRAM, varint prefixes.
const capsuleish = fc.array(
  fc.oneof(
    fc.uint8Array({ maxLength: 24 }),
    fc.constantFrom(Uint8Array.of(0x00, 0x01, 0x00), Uint8Array.of(0x00, 0x00), Uint8Array.of(0x17, 0x02, 1, 2), Uint8Array.of(0x40, 0x00, 0x03, 0x00, 0x61, 0x62)),
    fc.constantFrom(Uint8Array.of(0xc0), Uint8Array.of(0x80, 0xff), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)),
  ),
  { maxLength: 12 },
).map((parts) => Buffer.concat(parts.map((p) => Buffer.from(p))));

/** What decoding `bytes` in one piece yields, up to the first error: the reference for any chunking of them. */
function decodeWhole(bytes: Buffer, maxCapsuleLength: number): { payloads: string[]; otherContext: number; skipped: number; malformed: boolean } {
  const payloads: string[] = [];
  let otherContext = 0;
  let skipped = 0;
  const decoder = new CapsuleDecoder(
    (c) => {
      if (c.value === null) {
        skipped++;
        return;
      }
      const d = parseConnectUdpDatagram(c.value);
      if (d.contextId === CONTEXT_ID_UDP) payloads.push(d.payload.toString('hex'));
      else otherContext++;
    },
    { maxCapsuleLength },
  );
  try {
    decoder.push(bytes);
    decoder.end();
    return { payloads, otherContext, skipped, malformed: false };
  } catch {
    return { payloads, otherContext, skipped, malformed: true };
  }
}

describe('tunnel/codec and datagram-channel: capsule decoder and channel under random input', () => {
  it('the decoder either decodes or throws a UdpTunnelError, for any bytes and any chunking', () => {
    fc.assert(
      fc.property(capsuleish, fc.array(fc.nat(), { maxLength: 6 }), fc.integer({ min: 0, max: 64 }), (bytes, cuts, max) => {
        const decoder = new CapsuleDecoder(() => {}, { maxCapsuleLength: max });
        try {
          for (const c of chunk(bytes, cuts)) decoder.push(c);
          decoder.end();
        } catch (err) {
          assert.ok(err instanceof UdpTunnelError, `unexpected ${String(err)}`);
          assert.match(err.code, /^UT_ERR_/);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('a DatagramChannel never throws on random capsule streams, reports malformed ones once, and delivers what one-piece decoding finds', () => {
    fc.assert(
      fc.property(capsuleish, fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
        const stream = new PassThrough();
        let malformed = 0;
        const delivered: string[] = [];
        const channel = new DatagramChannel(stream, {
          session: 'fuzz',
          role: 'server',
          maxCapsuleLength: 32,
          maxWriteBuffer: 1024,
          onDatagram: (p) => delivered.push(p.toString('hex')),
          onMalformed: (err) => {
            assert.ok(err instanceof UdpTunnelError);
            malformed++;
          },
        });
        // Drive the channel's listeners directly: synchronous, so the property stays deterministic.
        for (const c of chunk(bytes, cuts)) stream.emit('data', c);
        stream.emit('end');
        assert.ok(malformed <= 1);
        // Chunk boundaries carry no meaning: the channel sees exactly what decoding the bytes in one piece sees.
        const whole = decodeWhole(bytes, 32);
        assert.equal(malformed, whole.malformed ? 1 : 0);
        assert.deepEqual(delivered, whole.payloads);
        assert.equal(channel.counters.rxDatagrams, whole.payloads.length);
        assert.equal(channel.counters.rxBytes, whole.payloads.reduce((n, h) => n + h.length / 2, 0));
        assert.equal(channel.counters.dropContextId, whole.otherContext);
        assert.equal(channel.counters.skippedCapsules, whole.skipped);
      }),
      { numRuns: 300 },
    );
  });
});

describe('tunnel/server: live server under random byte streams', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  let port: number;
  const targetPath = (): string => `/.well-known/masque/udp/127.0.0.1/${echo.port}/`;

  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 300, maxCapsuleLength: 256 });
    port = (await server.listen()).port;
  });

  after(async () => {
    await server.close();
    await echo.close();
  });

  /** Sends bytes on a fresh connection, half-closes, and waits until the server has closed its side. */
  const blast = (bytes: Buffer): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      const timer = setTimeout(() => s.destroy(), 2000);
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
      s.resume();
      s.once('connect', () => s.end(bytes));
    });

  it('random bytes, after an h2 preface, and after an accepted HTTP/1.1 upgrade never crash it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('raw', 'h2', 'h1-tunnel'), fc.uint8Array({ maxLength: 300 }), capsuleish, async (kind, noise, capsules) => {
        let prefix: Buffer;
        if (kind === 'h2') prefix = H2_PREFACE;
        else if (kind === 'h1-tunnel') prefix = Buffer.from(h1Request(targetPath()));
        else prefix = Buffer.alloc(0);
        await blast(Buffer.concat([prefix, kind === 'h1-tunnel' ? capsules : Buffer.from(noise)]));
      }),
      { numRuns: 60 },
    );
    // fast-check may shrink after a failure, so at least the 60 runs reached the server.
    assert.ok(server.counters.connections >= 60, `only ${server.counters.connections} connections`);
    assert.ok(server.counters.connectionsH1 > 0 && server.counters.connectionsH2 > 0);
    await waitUntil(() => server.openConnections === 0 && server.activeSessions === 0, 3000, 'every fuzz connection closed');
  });

  it('still relays for a good client afterwards', async () => {
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: echo.port } }) });
    const local = await client.start();
    const peer = await openUdpPeer();
    try {
      await peer.send('after fuzz', local.port, '127.0.0.1');
      assert.equal((await peer.waitFor(1))[0]!.toString(), 'after fuzz');
    } finally {
      await peer.close();
      await client.close();
    }
    await waitUntil(() => server.openConnections === 0, 3000, 'client connection closed');
  });
});

describe('inspect/relay: inspect relay under random byte streams', () => {
  let echo: UdpEcho;
  let server: TunnelServer;
  let relay: InspectRelay;
  let port: number;
  let events = 0;
  const targetPath = (): string => `/.well-known/masque/udp/127.0.0.1/${echo.port}/`;

  before(async () => {
    echo = await startUdpEcho();
    server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), headerTimeoutMs: 300 });
    const upstream = (await server.listen()).port;
    relay = new InspectRelay({ host: '127.0.0.1', port: 0, upstream: `http://127.0.0.1:${upstream}`, onEvent: () => events++, headTimeoutMs: 300 });
    relay.on('warning', () => {});
    port = (await relay.listen()).port;
  });

  after(async () => {
    await relay.close();
    await server.close();
    await echo.close();
  });

  const blast = (bytes: Buffer): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      const timer = setTimeout(() => s.destroy(), 2000);
      s.on('error', () => {});
      s.on('close', () => {
        clearTimeout(timer);
        resolve();
      });
      s.resume();
      s.once('connect', () => s.end(bytes));
    });

  it('random bytes, a cut or noisy HTTP/1.1 head, an h2 preface, and capsules after an upgrade never crash it', async () => {
    const head = h1Request(targetPath());
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('raw', 'h2', 'h1-cut', 'h1-tunnel'), fc.uint8Array({ maxLength: 300 }), capsuleish, fc.nat(), async (kind, noise, capsules, cut) => {
        let bytes: Buffer;
        if (kind === 'h2') bytes = Buffer.concat([H2_PREFACE, Buffer.from(noise)]);
        else if (kind === 'h1-cut') bytes = Buffer.concat([Buffer.from(head.slice(0, cut % head.length)), Buffer.from(noise), Buffer.from('\r\n\r\n')]);
        else if (kind === 'h1-tunnel') bytes = Buffer.concat([Buffer.from(head), capsules]);
        else bytes = Buffer.from(noise);
        await blast(bytes);
      }),
      { numRuns: 60 },
    );
    assert.ok(relay.counters.connections >= 60, `only ${relay.counters.connections} connections`);
    assert.ok(relay.counters.connectionsH1 > 0 && relay.counters.connectionsH2 > 0);
    assert.ok(events > 0, 'the relay decoded something');
  });

  it('still relays and decodes for a good HTTP/1.1 client afterwards', async () => {
    const before = events;
    const transport = buildTransport({ proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: echo.port }, http: '1.1' });
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport });
    const local = await client.start();
    const peer = await openUdpPeer();
    try {
      await peer.send('after fuzz', local.port, '127.0.0.1');
      assert.equal((await peer.waitFor(1))[0]!.toString(), 'after fuzz');
      assert.ok(events > before);
    } finally {
      await peer.close();
      await client.close();
    }
  });
});
