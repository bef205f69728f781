import { Buffer } from 'node:buffer';
import net from 'node:net';

/** One end of a TCP connection in a test, with everything it received collected. */
export interface TcpPeer {
  socket: net.Socket;
  /** Bytes received so far. */
  received(): Buffer;
  /** Resolves with everything received once at least `n` bytes arrived; rejects after `ms`. */
  waitBytes(n: number, ms?: number): Promise<Buffer>;
  /** True once the other side's FIN arrived. */
  ended(): boolean;
  /** Resolves when the socket closed. */
  closed: Promise<void>;
}

function wrap(socket: net.Socket): TcpPeer {
  const chunks: Buffer[] = [];
  let total = 0;
  let gotEnd = false;
  let waiters: Array<() => void> = [];
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    total += c.length;
    wake();
  });
  socket.on('end', () => {
    gotEnd = true;
    wake();
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    received: () => Buffer.concat(chunks),
    ended: () => gotEnd,
    closed,
    waitBytes: (n, ms = 5000) =>
      new Promise<Buffer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} bytes (got ${total})`)), ms);
        const check = (): void => {
          if (total >= n) {
            clearTimeout(timer);
            resolve(Buffer.concat(chunks));
          } else {
            waiters.push(check);
          }
        };
        check();
      }),
  };
}

/** Connects to host:port (loopback in tests); a FIN from the far side ends ours too. */
export function connectTcp(host: string, port: number): Promise<TcpPeer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(wrap(socket));
    });
  });
}

/** A TCP server on loopback, port 0, whose accepted connections the test drives by hand. */
export interface TcpServer {
  port: number;
  /** Accepted connections, in order. */
  peers: TcpPeer[];
  /** Resolves with the n-th accepted connection (1-based). */
  waitPeer(n: number, ms?: number): Promise<TcpPeer>;
  close(): Promise<void>;
}

/** Starts a TCP server; `onPeer` runs for each accepted connection. */
export function startTcpServer(host = '127.0.0.1', onPeer: (peer: TcpPeer) => void = () => {}): Promise<TcpServer> {
  const peers: TcpPeer[] = [];
  let waiters: Array<() => void> = [];
  const server = net.createServer((socket) => {
    const peer = wrap(socket);
    peers.push(peer);
    onPeer(peer);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  return new Promise((resolve) => {
    server.listen(0, host, () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        peers,
        waitPeer: (n, ms = 5000) =>
          new Promise<TcpPeer>((res, rej) => {
            const timer = setTimeout(() => rej(new Error(`timed out waiting for connection ${n} (got ${peers.length})`)), ms);
            const check = (): void => {
              const p = peers[n - 1];
              if (p !== undefined) {
                clearTimeout(timer);
                res(p);
              } else {
                waiters.push(check);
              }
            };
            check();
          }),
        close: () =>
          new Promise<void>((res) => {
            for (const p of peers) p.socket.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}

/** Finds a loopback port with nothing listening on it (bound by the OS, then released). */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, host, () => resolve()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}
