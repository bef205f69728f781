import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';

const EMPTY = -1;

/**
 * Fixed-capacity map from sequence number to send time for a closed-loop window: open addressing with linear
 * probing and backward-shift deletion, so inserts and removes allocate nothing and leave no tombstones.
 */
export class OutstandingTable {
  /** Entries the table accepts; insert beyond it throws. */
  readonly capacity: number;
  /** Entries currently held. */
  size = 0;
  private readonly keys: Float64Array;
  private readonly times: Float64Array;
  private readonly mask: number;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 20) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `outstanding table capacity must be 1..${1 << 20}, got ${String(capacity)}`, {
        option: 'capacity',
        value: capacity,
      });
    }
    this.capacity = capacity;
    // At most half full keeps probe chains short.
    let slots = 16;
    while (slots < capacity * 2) slots *= 2;
    this.mask = slots - 1;
    this.keys = new Float64Array(slots).fill(EMPTY);
    this.times = new Float64Array(slots);
  }

  /** Adds `seq` (not already present) with its send time. */
  insert(seq: number, timeUs: number): void {
    if (this.size >= this.capacity) {
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `outstanding table full (${this.capacity})`, { capacity: this.capacity });
    }
    let i = seq & this.mask;
    while (this.keys[i] !== EMPTY) i = (i + 1) & this.mask;
    this.keys[i] = seq;
    this.times[i] = timeUs;
    this.size++;
  }

  /** True when `seq` is held. */
  has(seq: number): boolean {
    return this.find(seq) >= 0;
  }

  /** Removes `seq`; false when it was not held (already answered, timed out, or never sent). */
  remove(seq: number): boolean {
    let i = this.find(seq);
    if (i < 0) return false;
    const mask = this.mask;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const k = this.keys[j]!;
      if (k === EMPTY) break;
      const home = k & mask;
      // The entry at j may move into the hole at i only if its home slot does not lie cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        this.keys[i] = k;
        this.times[i] = this.times[j]!;
        i = j;
      }
    }
    this.keys[i] = EMPTY;
    this.size--;
    return true;
  }

  /** Appends to `out` (cleared first) every seq whose time is <= deadlineUs; returns how many. Does not remove them. */
  collectExpired(deadlineUs: number, out: number[]): number {
    out.length = 0;
    if (this.size === 0) return 0;
    for (let i = 0; i <= this.mask; i++) {
      const k = this.keys[i]!;
      if (k !== EMPTY && this.times[i]! <= deadlineUs) out.push(k);
    }
    return out.length;
  }

  private find(seq: number): number {
    let i = seq & this.mask;
    for (;;) {
      const k = this.keys[i]!;
      if (k === seq) return i;
      if (k === EMPTY) return -1;
      i = (i + 1) & this.mask;
    }
  }
}
