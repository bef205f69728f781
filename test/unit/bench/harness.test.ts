import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { BENCH_DEFAULTS, normalizeBenchOptions } from '../../../src/bench/harness.js';
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
  ];
  for (const [what, opts] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => normalizeBenchOptions({ toolVersion: '1', ...opts }),
        (e: unknown) => isUdpTunnelError(e, 'UT_ERR_INVALID_OPTION') || isUdpTunnelError(e, 'UT_ERR_INVALID_ADDRESS'),
      );
    });
  }
});
