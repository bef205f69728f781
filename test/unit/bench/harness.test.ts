import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { BENCH_DEFAULTS, boundTunnelWarnings, normalizeBenchOptions } from '../../../src/bench/harness.js';
import { compressedShare } from '../../../src/bench/report.js';
import type { ComponentReport } from '../../../src/bench/report.js';
import type { BenchOptions } from '../../../src/bench/harness.js';
import { parseFailIf } from '../../../src/bench/stats.js';

describe('bench/harness: normalizeBenchOptions', () => {
  it('fills the documented defaults', () => {
    const n = normalizeBenchOptions({ toolVersion: '1' });
    assert.deepEqual(n.params, {
      size: 64,
      sessions: 1,
      load: { kind: 'inflight', inflight: 32 },
      durationMs: 2000,
      warmupMs: 1000,
      drainMs: 500,
      timeoutMs: 1000,
      runs: 3,
      tls: false,
      mode: 'connect-udp',
      postPath: null,
      isolation: 'process',
      host: '127.0.0.1',
      proxy: null,
      target: null,
      direct: true,
      idleSessions: 1000,
    });
    assert.equal(BENCH_DEFAULTS.runs, 3);
  });

  it('records the post path only for a mode whose request carries one', () => {
    assert.equal(normalizeBenchOptions({ toolVersion: '1', mode: 'post' }).params.postPath, '/bench');
    assert.equal(normalizeBenchOptions({ toolVersion: '1', mode: 'post', postPath: '/x' }).params.postPath, '/x');
    assert.equal(normalizeBenchOptions({ toolVersion: '1', mode: 'connect-udp-h1' }).params.postPath, null);
  });

  const bad: [string, Partial<BenchOptions>][] = [
    ['runs 0', { runs: 0 }],
    ['runs 1.5', { runs: 1.5 }],
    ['idle sessions -1', { idleSessions: -1 }],
    ['a host name', { host: 'localhost' }],
    ['an unknown mode', { mode: 'carrier-pigeon' }],
    ['an unknown isolation', { isolation: 'thread' as 'worker' }],
    ['a proxy without a target', { proxy: 'http://127.0.0.1:1' }],
    ['a target without a proxy', { target: '127.0.0.1:7' }],
    ['a bad target', { proxy: 'http://127.0.0.1:1', target: '127.0.0.1' }],
    ['--tls with an external proxy', { proxy: 'http://127.0.0.1:1', target: '127.0.0.1:7', tls: true }],
    ['bare-relay with an external proxy', { mode: 'bare-relay', proxy: 'http://127.0.0.1:1', target: '127.0.0.1:7' }],
    ['a ratio condition without the direct path', { direct: false, failIf: { spec: 'ratio<1', conditions: parseFailIf('ratio<1') } }],
    ['a size below the probe header', { size: 31 }],
    ['both a zero rate', { load: { kind: 'rate', rate: 0 } }],
    ['a sampling period under 10 ms', { sampleIntervalMs: 5 }],
    ['a post path with a CONNECT-UDP mode', { mode: 'connect-udp', postPath: '/bench' }],
    ['a post path without a leading slash', { mode: 'post', postPath: 'bench' }],
    ['a post path with =', { mode: 'post', postPath: '/a=b' }],
    ['bind with an external proxy', { mode: 'bind', proxy: 'http://127.0.0.1:1', target: '127.0.0.1:7' }],
    ['bind-uncompressed with process isolation', { mode: 'bind-uncompressed', isolation: 'process' }],
  ];
  it('takes bind with either isolation, bind-uncompressed with worker isolation', () => {
    for (const isolation of ['process', 'worker'] as const) assert.equal(normalizeBenchOptions({ toolVersion: '1', mode: 'bind', isolation }).params.mode, 'bind');
    assert.equal(normalizeBenchOptions({ toolVersion: '1', mode: 'bind-uncompressed', isolation: 'worker' }).params.isolation, 'worker');
  });

  for (const [what, opts] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => normalizeBenchOptions({ toolVersion: '1', ...opts }),
        (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION') || isUdpTunnelError(e, 'UT_ERR_INVALID_ADDRESS'),
      );
    });
  }
});

describe('bench/harness: a bound tunnel\'s compressed share', () => {
  const connect = (tunnel: unknown): ComponentReport => ({
    role: 'connect',
    isolation: 'process',
    pid: 1,
    address: '127.0.0.1',
    port: 4000,
    rssStartBytes: null,
    rssEndBytes: null,
    counters: { peersTotal: 2, tunnel },
    drops: {},
    exitCode: 0,
  });
  const all = { rxDatagrams: 1000, rxCompressed: 995, txDatagrams: 1000, txCompressed: 1000 };

  it('compressedShare reads both directions from connect\'s final counters, null where nothing was carried', () => {
    assert.deepEqual(compressedShare(connect(all)), { rx: 0.995, tx: 1 });
    assert.deepEqual(compressedShare(connect({ rxDatagrams: 0, rxCompressed: 0, txDatagrams: 4, txCompressed: 1 })), { rx: null, tx: 0.25 });
    assert.equal(compressedShare(connect(undefined)), null);
    assert.equal(compressedShare(undefined), null);
  });

  it('warns in bind mode when under 99% went compressed, in either direction, and not at or above it', () => {
    assert.deepEqual(boundTunnelWarnings('bind', [connect(all)]), []);
    const low = boundTunnelWarnings('bind', [connect({ ...all, txCompressed: 500 })]);
    assert.deepEqual(low.map((w) => w.code), ['BIND_UNCOMPRESSED']);
    assert.match(low[0]!.message, /only 50\.0% of the bound tunnel's datagrams used compressed contexts/);
    assert.deepEqual(boundTunnelWarnings('bind', [connect({ ...all, rxCompressed: 980 })]).map((w) => w.code), ['BIND_UNCOMPRESSED']);
  });

  it('warns in bind mode when connect lost its bound tunnel (the load went on to the first public address)', () => {
    const lostOnce = connect(all);
    lostOnce.counters = { ...lostOnce.counters, tunnelsLost: 1 };
    const w = boundTunnelWarnings('bind', [lostOnce]);
    assert.deepEqual(w.map((x) => x.code), ['BIND_TUNNEL_LOST']);
    assert.match(w[0]!.message, /lost its bound tunnel 1 time and opened a new binding/);
    lostOnce.counters = { ...lostOnce.counters, tunnelsLost: 0 };
    assert.deepEqual(boundTunnelWarnings('bind', [lostOnce]), []);
  });

  it('does not warn where no compression was asked for, or without a bound tunnel', () => {
    const none = connect({ rxDatagrams: 1000, rxCompressed: 0, txDatagrams: 1000, txCompressed: 0 });
    assert.deepEqual(boundTunnelWarnings('bind-uncompressed', [none]), []);
    assert.deepEqual(boundTunnelWarnings('connect-udp', [none]), []);
    assert.deepEqual(boundTunnelWarnings('bind', []), []);
  });
});
