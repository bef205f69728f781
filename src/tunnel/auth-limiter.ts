import { ErrorCodes, UdpTunnelError } from './errors.js';

/** Options of an AuthFailureLimiter. */
export interface AuthFailureLimiterOptions {
  /** Failed authentications an address may have in a burst before it is refused outright. */
  burst: number;
  /** Failed authentications forgiven per second (the bucket's refill rate). */
  refillPerSecond: number;
  /** Addresses tracked at once; past this the entry touched longest ago is evicted. */
  maxEntries: number;
  /** Clock in milliseconds, for tests. */
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per client address that only failed authentications drain: each failure takes one token, time puts
 * them back, and an address with an empty bucket is refused before its credentials are examined. The table is
 * bounded: the least recently touched address is evicted first (and counted), and full buckets are dropped, since
 * a full bucket is the same as none.
 */
export class AuthFailureLimiter {
  /** Entries evicted because the table was full. */
  evictions = 0;
  private readonly buckets = new Map<string, Bucket>();
  private readonly opts: Required<AuthFailureLimiterOptions>;

  /** Throws UT_ERR_INVALID_OPTION for a burst or table size below 1 or a negative refill rate. */
  constructor(options: AuthFailureLimiterOptions) {
    this.opts = { now: () => Date.now(), ...options };
    const { burst, refillPerSecond, maxEntries } = this.opts;
    if (!Number.isInteger(burst) || burst < 1) throw invalid('authFailureBurst must be a whole number of at least 1', 'authFailureBurst', burst);
    if (!Number.isFinite(refillPerSecond) || refillPerSecond < 0) {
      throw invalid('authFailureRefillPerSecond must be a number of at least 0', 'authFailureRefillPerSecond', refillPerSecond);
    }
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw invalid('maxAuthFailureEntries must be a whole number of at least 1', 'maxAuthFailureEntries', maxEntries);
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.buckets.size;
  }

  /** Milliseconds until `address` may try again: 0 when its bucket has a token. */
  retryAfterMs(address: string): number {
    const b = this.refill(address);
    if (b === undefined || b.tokens >= 1) return 0;
    const rate = this.opts.refillPerSecond;
    return rate > 0 ? Math.ceil(((1 - b.tokens) / rate) * 1000) : Number.POSITIVE_INFINITY;
  }

  /** Takes one token from `address` for a failed authentication. */
  fail(address: string): void {
    const b = this.refill(address) ?? { tokens: this.opts.burst, at: this.opts.now() };
    b.tokens = Math.max(0, b.tokens - 1);
    // Re-inserting moves the address to the young end of the Map's insertion order.
    this.buckets.delete(address);
    this.buckets.set(address, b);
    while (this.buckets.size > this.opts.maxEntries) {
      const oldest = this.buckets.keys().next().value as string;
      this.buckets.delete(oldest);
      this.evictions++;
    }
  }

  /** Brings a bucket up to date; drops it once full again. */
  private refill(address: string): Bucket | undefined {
    const b = this.buckets.get(address);
    if (b === undefined) return undefined;
    const now = this.opts.now();
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.refillPerSecond);
    b.at = now;
    if (b.tokens >= this.opts.burst) {
      this.buckets.delete(address);
      return undefined;
    }
    return b;
  }
}

function invalid(message: string, option: string, value: unknown): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `${message}, got ${String(value)}`, { option, value });
}
