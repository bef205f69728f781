import { once } from 'node:events';
import dgram from 'node:dgram';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** A UDP echo server on loopback for tests. */
export interface UdpEcho {
  socket: dgram.Socket;
  port: number;
  host: string;
  received: number;
  /** The source port of every datagram received, in order. */
  sources: number[];
  close(): Promise<void>;
}

/** Starts a UDP echo server bound to `host` with port 0 (or `port`, to open a port a test closed before). */
export function startUdpEcho(host = '127.0.0.1', port = 0): Promise<UdpEcho> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const echo: UdpEcho = {
    socket,
    port: 0,
    host,
    received: 0,
    sources: [],
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
  socket.on('message', (msg, rinfo) => {
    echo.received++;
    echo.sources.push(rinfo.port);
    socket.send(msg, rinfo.port, rinfo.address);
  });
  return new Promise((resolve) => {
    socket.bind(port, host, () => {
      echo.port = (socket.address() as AddressInfo).port;
      resolve(echo);
    });
  });
}

/** A UDP client socket bound to port 0 that collects what it receives. */
export interface UdpPeer {
  socket: dgram.Socket;
  port: number;
  messages: Buffer[];
  send(buf: Buffer | string, port: number, host: string): Promise<void>;
  /** Resolves when `n` messages have arrived, or rejects after `ms`. */
  waitFor(n: number, ms?: number): Promise<Buffer[]>;
  close(): Promise<void>;
}

/** Opens a UDP peer on loopback, on port 0 (or `port`, to open a port a test closed before). */
export function openUdpPeer(host = '127.0.0.1', port = 0): Promise<UdpPeer> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const messages: Buffer[] = [];
  let waiters: { n: number; resolve: (m: Buffer[]) => void }[] = [];
  socket.on('message', (msg) => {
    messages.push(msg);
    waiters = waiters.filter((w) => {
      if (messages.length >= w.n) {
        w.resolve(messages);
        return false;
      }
      return true;
    });
  });
  const peer: UdpPeer = {
    socket,
    port: 0,
    messages,
    send: (buf, port, h) =>
      new Promise<void>((resolve, reject) => socket.send(typeof buf === 'string' ? Buffer.from(buf) : buf, port, h, (err) => (err ? reject(err) : resolve()))),
    waitFor: (n, ms = 5000) =>
      new Promise<Buffer[]>((resolve, reject) => {
        if (messages.length >= n) return resolve(messages);
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} messages (got ${messages.length})`)), ms);
        waiters.push({
          n,
          resolve: (m) => {
            clearTimeout(t);
            resolve(m);
          },
        });
      }),
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
  return new Promise((resolve) => {
    socket.bind(port, host, () => {
      peer.port = (socket.address() as AddressInfo).port;
      resolve(peer);
    });
  });
}

/** Waits until `cond()` is true, polling; rejects after `ms`. */
export async function waitUntil(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A connected pair of loopback TCP sockets (a: the connecting side, b: the accepted side). */
export async function tcpPair(host = '127.0.0.1'): Promise<{ a: net.Socket; b: net.Socket; close(): void }> {
  const server = net.createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const a = net.connect((server.address() as AddressInfo).port, host);
  await once(a, 'connect');
  const [b] = await accepted;
  return {
    a,
    b,
    close() {
      a.destroy();
      b.destroy();
      server.close();
    },
  };
}
