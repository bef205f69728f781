import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AuthFailureLimiter } from '../../../src/tunnel/auth-limiter.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';

/** A limiter on a hand-driven clock. */
function limiter(burst: number, refillPerSecond: number, maxEntries = 100): { l: AuthFailureLimiter; advance: (ms: number) => void } {
  let now = 1_000_000;
  const l = new AuthFailureLimiter({ burst, refillPerSecond, maxEntries, now: () => now });
  return { l, advance: (ms) => (now += ms) };
}

describe('AuthFailureLimiter', () => {
  it('an address may fail `burst` times; then it must wait for the refill', () => {
    const { l, advance } = limiter(3, 2);
    for (let i = 0; i < 3; i++) {
      assert.equal(l.retryAfterMs('a'), 0, `failure ${i + 1} is allowed`);
      l.fail('a');
    }
    assert.equal(l.retryAfterMs('a'), 500, 'one token back at 2 per second');
    advance(250);
    assert.equal(l.retryAfterMs('a'), 250, 'half a token refilled');
    advance(250);
    assert.equal(l.retryAfterMs('a'), 0);
    l.fail('a');
    assert.equal(l.retryAfterMs('a'), 500);
  });

  it('addresses have separate buckets', () => {
    const { l } = limiter(1, 1);
    l.fail('a');
    assert.ok(l.retryAfterMs('a') > 0);
    assert.equal(l.retryAfterMs('b'), 0);
  });

  it('a bucket that has filled up again is dropped from the table', () => {
    const { l, advance } = limiter(2, 1);
    l.fail('a');
    assert.equal(l.size, 1);
    advance(1000);
    assert.equal(l.retryAfterMs('a'), 0);
    assert.equal(l.size, 0);
  });

  it('refill 0 never forgives: the wait is infinite', () => {
    const { l, advance } = limiter(1, 0);
    l.fail('a');
    advance(3_600_000);
    assert.equal(l.retryAfterMs('a'), Number.POSITIVE_INFINITY);
  });

  it('the table holds at most maxEntries addresses, evicting the one failed longest ago, and counts evictions', () => {
    const { l } = limiter(1, 0, 3);
    for (const a of ['a', 'b', 'c']) l.fail(a);
    l.fail('a'); // a is now the most recent
    l.fail('d');
    assert.equal(l.size, 3);
    assert.equal(l.evictions, 1);
    assert.equal(l.retryAfterMs('b'), 0, 'b was evicted');
    for (const a of ['a', 'c', 'd']) assert.ok(l.retryAfterMs(a) > 0, a);
    for (let i = 0; i < 1000; i++) l.fail(`x${i}`);
    assert.equal(l.size, 3);
    assert.equal(l.evictions, 1001);
  });

  it('rejects unusable options', () => {
    const bad = (o: object) => () => new AuthFailureLimiter({ burst: 1, refillPerSecond: 1, maxEntries: 1, ...o });
    const invalid = (e: unknown): boolean => e instanceof UdpTunnelError && e.code === ErrorCodes.INVALID_OPTION;
    for (const o of [{ burst: 0 }, { burst: 1.5 }, { refillPerSecond: -1 }, { refillPerSecond: Number.NaN }, { maxEntries: 0 }]) assert.throws(bad(o), invalid, JSON.stringify(o));
  });
});
