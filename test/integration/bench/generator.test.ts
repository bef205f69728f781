import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { startEchoServer } from '../../../src/bench/echo-server.js';
import { SEND_QUEUE_LIMIT, failIfMetrics, normalizeLoadOptions, runLoad, runLoadInWorker } from '../../../src/bench/generator.js';
import { FAIL_METRICS, evaluateFailIf, parseFailIf } from '../../../src/bench/stats.js';
import type { LoadOptions, LoadProgress, LoadResult } from '../../../src/bench/load-types.js';
import type { LatencySummary } from '../../../src/bench/stats.js';

const HOSTS = ['127.0.0.1', '::1'] as const;
const RUNNERS = [
  ['runLoad', runLoad],
  ['runLoadInWorker', runLoadInWorker],
] as const;

/** UDP handles still open, after giving closed ones up to 5 s to finish closing (they do in a later loop turn). */
async function udpHandles(): Promise<number> {
  const count = (): number => process.getActiveResourcesInfo().filter((r) => r.toUpperCase() === 'UDPWRAP').length;
  for (const end = Date.now() + 5000; count() > 0 && Date.now() < end; ) await new Promise((resolve) => setTimeout(resolve, 10));
  return count();
}

function assertOrdered(l: LatencySummary): void {
  if (l.count === 0) return;
  assert.ok(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max, JSON.stringify(l));
  assert.ok(l.min <= l.mean && l.mean <= l.max);
}

/** Checks every invariant that holds whatever the network did. */
function assertConsistent(r: LoadResult, host: string, sessions: number): void {
  assert.ok(r.received <= r.sent, `received ${r.received} > sent ${r.sent}`);
  assert.equal(r.received + r.lost, r.sent);
  assert.equal(r.lossRatio, r.sent > 0 ? r.lost / r.sent : 0);
  assert.equal(r.perSession.length, sessions);
  const sum = (k: 'sent' | 'received' | 'lost' | 'outOfOrder' | 'duplicates' | 'tooOld' | 'timedOut'): number =>
    r.perSession.reduce((acc, s) => acc + s[k], 0);
  for (const k of ['sent', 'received', 'lost', 'outOfOrder', 'duplicates', 'tooOld', 'timedOut'] as const) assert.equal(sum(k), r[k], k);
  assert.equal(new Set(r.perSession.map((s) => s.flowId)).size, sessions);
  assert.equal(new Set(r.perSession.map((s) => s.localPort)).size, sessions);
  for (const s of r.perSession) {
    assert.equal(s.localAddress, host);
    assert.equal(s.received + s.lost, s.sent);
    assert.ok(s.jitterUs >= 0 && Number.isFinite(s.jitterUs));
  }
  // Duplicates carry no latency sample: one sample per first arrival.
  assert.equal(r.latencyUs.count, r.received);
  assert.equal(r.serviceLatencyUs.count, r.received);
  assertOrdered(r.latencyUs);
  assertOrdered(r.serviceLatencyUs);
  assert.ok(r.elapsedMs > 0);
  const seconds = r.elapsedMs / 1000;
  assert.equal(r.throughputDps, r.received / seconds);
  assert.equal(r.throughputMbps, (r.throughputDps * r.size * 8) / 1e6);
  assert.equal(r.sendRateDps, r.sent / seconds);
  assert.ok(r.jitterUs >= 0 && Number.isFinite(r.jitterUs));
  assert.ok(r.totalMs >= r.elapsedMs);
  assert.ok(r.socketBuffers.recv > 0 && r.socketBuffers.send > 0);
}

for (const host of HOSTS) {
  for (const [name, run] of RUNNERS) {
    describe(`${name} against an echo on ${host}`, () => {
      it('open loop: measures the scheduled window and reports consistent counts', async () => {
        const echo = await startEchoServer({ host });
        const progress: LoadProgress[] = [];
        let r: LoadResult;
        try {
          r = await run({
            target: { host, port: echo.address().port },
            size: 100,
            sessions: 2,
            mode: { kind: 'rate', rate: 200 },
            durationMs: 300,
            warmupMs: 50,
            drainMs: 300,
            progressIntervalMs: 100,
            onProgress: (p) => progress.push(p),
          });
        } finally {
          await echo.close();
        }
        assertConsistent(r, host, 2);
        assert.deepEqual(r.target, { address: host, family: host === '::1' ? 6 : 4, port: echo.address().port });
        assert.deepEqual(r.mode, { kind: 'rate', rate: 200 });
        assert.equal(r.aborted, false);
        assert.ok(r.received > 0);
        // 200/s for 300 ms after a 50 ms warmup: probes 10..69 of the schedule are measured.
        assert.equal(r.sent + r.unsent, 60);
        assert.equal(r.elapsedMs, 300);
        assert.deepEqual(
          r.perSession.map((s) => s.sent + 0),
          r.perSession.map(() => r.sent / 2),
        );
        assert.equal(r.invalid, 0);
        assert.equal(r.sendErrors, 0);
        assert.equal(r.socketErrors, 0);
        assert.equal(r.lastError, null);
        // Latency counts from the due time, which is never after the actual send.
        assert.ok(r.latencyUs.min >= r.serviceLatencyUs.min);
        assert.ok(r.latencyUs.mean >= r.serviceLatencyUs.mean);
        assert.ok(r.latencyUs.max >= r.serviceLatencyUs.max);
        assert.ok(echo.datagrams >= r.received);
        assert.ok(progress.length >= 1);
        for (const p of progress) {
          assert.ok(['warmup', 'measure', 'drain'].includes(p.phase));
          assert.ok(p.received <= p.sent && p.sent <= 60);
        }
        // Every --fail-if metric is available from a result (ratio only when supplied).
        const metrics = failIfMetrics(r, 0.75);
        assert.deepEqual(Object.keys(metrics).sort(), [...FAIL_METRICS].sort());
        assert.deepEqual(
          [metrics['p99.9'], metrics['loss'], metrics['throughput'], metrics['ratio']],
          [r.latencyUs.p999, r.lossRatio, r.throughputDps, 0.75],
        );
        assert.equal('ratio' in failIfMetrics(r), false);
        assert.deepEqual(evaluateFailIf(parseFailIf('ratio<0.8,ratio>0.8'), metrics), [{ condition: 'ratio<0.8', actual: 0.75 }]);
        assert.equal(await udpHandles(), 0);
      });

      it('closed loop: keeps a window in flight and times from the actual send', async () => {
        const echo = await startEchoServer({ host });
        let r: LoadResult;
        try {
          r = await run({ target: { host, port: echo.address().port }, size: 64, sessions: 1, mode: { kind: 'inflight', inflight: 1 }, durationMs: 100 });
        } finally {
          await echo.close();
        }
        assertConsistent(r, host, 1);
        assert.ok(r.received > 0);
        assert.equal(r.elapsedMs, 100);
        assert.deepEqual(r.latencyUs, r.serviceLatencyUs);
        assert.equal(r.unsent, 0);
        assert.equal(r.invalid, 0);
        assert.equal(await udpHandles(), 0);
      });
    });
  }
}

/** A UDP socket that receives and never answers, optionally replying with a callback instead. */
async function startPeer(host: string, onMessage?: (sock: Socket, msg: Buffer, rinfo: RemoteInfo) => void): Promise<Socket> {
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sock.bind(0, host);
  await once(sock, 'listening');
  if (onMessage) sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => onMessage(sock, msg, rinfo));
  return sock;
}

const closeSocket = (s: Socket): Promise<void> => new Promise((resolve) => s.close(() => resolve()));

describe('runLoad against misbehaving peers', () => {
  it('closed loop: a peer that never answers makes every probe time out instead of stalling the window', async () => {
    let seen = 0;
    const hole = await startPeer('127.0.0.1', () => seen++);
    let r: LoadResult;
    try {
      r = await runLoad({
        target: { host: '127.0.0.1', port: hole.address().port },
        size: 40,
        sessions: 1,
        mode: { kind: 'inflight', inflight: 2 },
        durationMs: 150,
        drainMs: 400,
        timeoutMs: 20,
      });
    } finally {
      await closeSocket(hole);
    }
    assertConsistentNoTraffic(r);
    assert.ok(r.sent > 2, `sent ${r.sent}: the window must refill after timeouts`);
    assert.equal(r.timedOut, r.sent);
    assert.ok(seen <= r.sent);
  });

  it('ignores junk and duplicate replies', async () => {
    const junk = Buffer.from('not a probe at all, not even close to one');
    const peer = await startPeer('127.0.0.1', (sock, msg, rinfo) => {
      sock.send(junk, rinfo.port, rinfo.address);
      sock.send(msg, rinfo.port, rinfo.address);
      sock.send(msg, rinfo.port, rinfo.address);
    });
    let r: LoadResult;
    try {
      r = await runLoad({
        target: { host: '127.0.0.1', port: peer.address().port },
        size: 48,
        sessions: 1,
        mode: { kind: 'rate', rate: 100 },
        durationMs: 200,
        drainMs: 300,
      });
    } finally {
      await closeSocket(peer);
    }
    assertConsistent(r, '127.0.0.1', 1);
    assert.ok(r.received >= 2, `received ${r.received}`);
    assert.ok(r.invalid >= 1);
    assert.ok(r.duplicates >= 1 && r.duplicates <= r.received);
  });
});

describe('send queue limit', () => {
  it('skips and counts probes while the socket queue is full, never rewriting a queued buffer', async () => {
    const echo = await startEchoServer({ host: '127.0.0.1' });
    let r: LoadResult;
    try {
      const opts: LoadOptions = {
        target: { host: '127.0.0.1', port: echo.address().port },
        size: 64,
        sessions: 1,
        mode: { kind: 'rate', rate: 1_000_000 },
        durationMs: 20,
      };
      // --test-udp-no-try-send makes every send wait in the socket's queue, as when the kernel buffer is full,
      // so one timer tick's batch overruns the queue limit.
      const worker = new Worker(new URL('../../helpers/run-load-worker.js', import.meta.url), {
        execArgv: ['--test-udp-no-try-send'],
        workerData: opts,
      });
      const exited = once(worker, 'exit');
      [r] = (await once(worker, 'message')) as [LoadResult];
      await exited;
    } finally {
      await echo.close();
    }
    assertConsistent(r, '127.0.0.1', 1);
    assert.equal(SEND_QUEUE_LIMIT, 32);
    // 1,000,000/s for 20 ms: 20,000 probes due, every one either sent or counted as unsent.
    assert.equal(r.sent + r.unsent, 20_000);
    assert.ok(r.unsent > 0, 'the queue limit was never hit');
    assert.ok(r.sent >= 32);
    // A buffer rewritten while still queued would go out carrying a later probe: duplicates and bogus losses.
    assert.equal(r.duplicates, 0);
    assert.equal(r.invalid, 0);
    assert.equal(r.sendErrors, 0);
  });
});

function assertConsistentNoTraffic(r: LoadResult): void {
  assertConsistent(r, '127.0.0.1', 1);
  assert.equal(r.received, 0);
  assert.equal(r.lost, r.sent);
  assert.equal(r.lossRatio, 1);
  assert.equal(r.latencyUs.count, 0);
  assert.equal(r.jitterUs, 0);
}

describe('stopping a run with an AbortSignal', () => {
  for (const [name, run] of RUNNERS) {
    it(`${name} stops sending, drains and reports aborted`, async () => {
      const echo = await startEchoServer({ host: '127.0.0.1' });
      const ac = new AbortController();
      let r: LoadResult;
      try {
        r = await run({
          target: { host: '127.0.0.1', port: echo.address().port },
          size: 32,
          sessions: 1,
          mode: { kind: 'rate', rate: 100 },
          durationMs: 60_000,
          onProgress: () => ac.abort(),
          progressIntervalMs: 50,
          signal: ac.signal,
        });
      } finally {
        await echo.close();
      }
      assert.equal(r.aborted, true);
      assert.ok(r.elapsedMs < 60_000);
      assert.ok(r.received <= r.sent && r.received + r.lost === r.sent);
    });
  }

  for (const [name, run] of RUNNERS) {
    it(`${name}: a signal aborted before the start sends nothing`, async () => {
      const echo = await startEchoServer({ host: '127.0.0.1' });
      try {
        const r = await run({
          target: { host: '127.0.0.1', port: echo.address().port },
          size: 32,
          sessions: 1,
          mode: { kind: 'rate', rate: 100 },
          durationMs: 60_000,
          signal: AbortSignal.abort(),
        });
        assert.equal(r.aborted, true);
        assert.equal(r.sent, 0);
        assert.equal(r.elapsedMs, 0);
        assert.equal(r.throughputDps, 0);
        assert.equal(echo.datagrams, 0);
      } finally {
        await echo.close();
      }
    });
  }
});

describe('load options', () => {
  const base: LoadOptions = { target: { host: '127.0.0.1', port: 9 }, size: 64, sessions: 1, mode: { kind: 'rate', rate: 10 }, durationMs: 100 };

  it('fills defaults', () => {
    const n = normalizeLoadOptions(base);
    assert.equal(n.warmupMs, 0);
    assert.equal(n.drainMs, 500);
    assert.equal(n.timeoutMs, 1000);
    assert.equal(n.socketBufferBytes, 4 * 1024 * 1024);
    assert.equal(n.progressIntervalMs, 1000);
    assert.equal(n.sendQueueLimit, 32);
  });

  it('lowers the send queue limit to keep probe buffers within budget, down to one queued send', () => {
    // 128 MiB / (1024 * 65507) = 2 buffers per session: one queued send at most.
    assert.equal(normalizeLoadOptions({ ...base, sessions: 1024, size: 65507 }).sendQueueLimit, 1);
    // 128 MiB / (64 * 65507) = 32 buffers: 31 queued sends.
    assert.equal(normalizeLoadOptions({ ...base, sessions: 64, size: 65507 }).sendQueueLimit, 31);
    assert.equal(normalizeLoadOptions({ ...base, sessions: 8, mode: { kind: 'inflight', inflight: 32768 } }).mode.kind, 'inflight');
  });

  const bad: [string, Partial<LoadOptions>][] = [
    ['target.host', { target: { host: '', port: 9 } }],
    ['target.port', { target: { host: '127.0.0.1', port: 0 } }],
    ['target.port', { target: { host: '127.0.0.1', port: 65536 } }],
    ['size', { size: 31 }],
    ['size', { size: 65508 }],
    ['sessions', { sessions: 0 }],
    ['sessions', { sessions: 4097 }],
    ['sessions', { sessions: 1.5 }],
    ['rate', { mode: { kind: 'rate', rate: 0 } }],
    ['rate', { mode: { kind: 'rate', rate: Number.POSITIVE_INFINITY } }],
    ['inflight', { mode: { kind: 'inflight', inflight: 0 } }],
    ['inflight', { mode: { kind: 'inflight', inflight: 65537 } }],
    ['inflight', { sessions: 8, mode: { kind: 'inflight', inflight: 32769 } }],
    ['sessions', { sessions: 1025, size: 65507 }],
    ['mode', { mode: { kind: 'burst' } as unknown as LoadOptions['mode'] }],
    ['durationMs', { durationMs: 0 }],
    ['durationMs', { durationMs: Number.NaN }],
    ['warmupMs', { warmupMs: -1 }],
    ['drainMs', { drainMs: -1 }],
    ['timeoutMs', { timeoutMs: 0 }],
    ['socketBufferBytes', { socketBufferBytes: 0 }],
    ['progressIntervalMs', { progressIntervalMs: 1 }],
  ];
  for (const [option, patch] of bad) {
    it(`rejects a bad ${option} (${JSON.stringify(patch)})`, async () => {
      const opts = { ...base, ...patch };
      const check = (err: unknown): boolean => isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION') && err.details['option'] === option;
      assert.throws(() => normalizeLoadOptions(opts), check);
      await assert.rejects(runLoad(opts), check);
      await assert.rejects(runLoadInWorker(opts), check);
    });
  }

  it('a failure inside the worker comes back with its code', async () => {
    await assert.rejects(runLoadInWorker({ ...base, localHost: '::1' }), (err: unknown) => isUdpTunnelError(err, 'UT_ERR_IO'));
  });
});
