import { Duplex } from 'node:stream';

/** Two in-memory Duplex ends: what one writes, the other reads, in order. For unit tests of stream framing. */
export interface StreamPair {
  a: Duplex;
  b: Duplex;
  /** Destroys both ends. */
  close(): void;
}

/** Connects two Duplex streams back to back, without a socket; ending one ends the other's readable side. */
export function streamPair(): StreamPair {
  const ends: Duplex[] = [];
  const end = (peer: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        peer().push(chunk);
        callback();
      },
      final(callback) {
        peer().push(null);
        callback();
      },
    });
  ends.push(end(() => ends[1]!), end(() => ends[0]!));
  const [a, b] = ends as [Duplex, Duplex];
  return {
    a,
    b,
    close() {
      a.destroy();
      b.destroy();
    },
  };
}
