import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { DEFAULT_SOCKET_BUFFER_BYTES, literalLookup, trySetSocketBuffers } from '../tunnel/udp-socket.js';
import { resolveUdpHost } from './resolve-host.js';

/** Options of startEchoServer. */
export interface EchoServerOptions {
  /** Address to bind (IPv4 or IPv6 literal, or a name resolved once). Default 127.0.0.1. */
  host?: string;
  /** Port to bind; 0 (default) picks a free one, read it back with address(). */
  port?: number;
  /** Receive/send socket buffer size to ask for; refusals are ignored. Default 4 MiB. */
  socketBufferBytes?: number;
  /** Replies that may wait in user space while the kernel send buffer is full; beyond it replies are dropped. Default 1024. */
  maxQueuedReplies?: number;
}

/** Default limit on replies queued in user space by an echo server. */
export const DEFAULT_MAX_QUEUED_REPLIES = 1024;

/** Bound address of an echo server. */
export interface EchoAddress {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

/** A running UDP echo server. */
export interface EchoServer {
  /** The bound address and port (still readable after close). */
  address(): EchoAddress;
  /** Datagrams received (each is echoed once unless dropped). */
  readonly datagrams: number;
  /** Payload bytes received. */
  readonly bytes: number;
  /** Datagrams not echoed because maxQueuedReplies replies were already waiting. */
  readonly dropped: number;
  /** Socket errors (failed echoes, receive errors); the server keeps running. */
  readonly errors: number;
  /** Stops the server; safe to call more than once. */
  close(): Promise<void>;
}

class UdpEchoServer implements EchoServer {
  datagrams = 0;
  bytes = 0;
  dropped = 0;
  errors = 0;
  private closed: Promise<void> | null = null;
  // Captured at bind time so it stays readable after close().
  private readonly bound: EchoAddress;

  constructor(
    private readonly socket: Socket,
    maxQueuedReplies: number,
  ) {
    const a = socket.address();
    this.bound = { address: a.address, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4', port: a.port };
    // One listener per server, not per datagram; the received buffer is fresh, so it is sent back as is.
    const onSent = (err: Error | null): void => {
      if (err) this.errors++;
    };
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      this.datagrams++;
      this.bytes += msg.length;
      // Each queued reply holds its datagram in memory: bound them when the kernel cannot take more.
      if (socket.getSendQueueCount() >= maxQueuedReplies) {
        this.dropped++;
        return;
      }
      socket.send(msg, rinfo.port, rinfo.address, onSent);
    });
    socket.on('error', () => {
      this.errors++;
    });
  }

  address(): EchoAddress {
    return { ...this.bound };
  }

  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.socket.close(() => resolve());
    });
    return this.closed;
  }
}

/** Starts a UDP echo server that sends every datagram back to its sender unchanged. */
export async function startEchoServer(options: EchoServerOptions = {}): Promise<EchoServer> {
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `echo server port must be 0..65535, got ${String(port)}`, { option: 'port', value: port });
  }
  const maxQueuedReplies = options.maxQueuedReplies ?? DEFAULT_MAX_QUEUED_REPLIES;
  if (!Number.isInteger(maxQueuedReplies) || maxQueuedReplies < 1 || maxQueuedReplies > 1 << 20) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `echo server maxQueuedReplies must be 1..${1 << 20}, got ${String(maxQueuedReplies)}`, {
      option: 'maxQueuedReplies',
      value: maxQueuedReplies,
    });
  }
  const { address, family } = await resolveUdpHost(options.host ?? '127.0.0.1');
  // Replies go to each sender's source address, always a literal: answering the lookup synchronously saves the
  // default dns.lookup check and a deferral to the next tick per echoed datagram.
  const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: literalLookup(family) });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      socket.close();
      reject(new UdpTunnelError(ErrorCodes.IO, `echo server cannot bind ${address}:${port}: ${err.message}`, { host: address, port }, { cause: err }));
    };
    socket.once('error', onError);
    socket.bind(port, address, () => {
      socket.off('error', onError);
      resolve();
    });
  });
  trySetSocketBuffers(socket, options.socketBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES);
  return new UdpEchoServer(socket, maxQueuedReplies);
}

/** Counters of an echo server, as a plain object. */
export interface EchoStats {
  datagrams: number;
  bytes: number;
  dropped: number;
  errors: number;
}

/** workerData of the echo worker. */
export interface EchoWorkerRequest {
  options: EchoServerOptions;
}

/** Messages the echo worker posts to its parent. */
export type EchoWorkerToParent =
  | { type: 'listening'; address: EchoAddress }
  | { type: 'stats'; stats: EchoStats }
  | { type: 'closed'; stats: EchoStats }
  | { type: 'error'; message: string };

/** An echo server running in a worker thread. */
export interface EchoWorker {
  /** The bound address and port. */
  readonly address: EchoAddress;
  /** Current counters. */
  stats(): Promise<EchoStats>;
  /** Stops the server and the thread; resolves with the final counters. Safe to call more than once. */
  close(): Promise<EchoStats>;
}

/**
 * Starts an echo server in a worker thread of its own, so a load generator or a tunnel in this process cannot delay
 * its replies (and it cannot delay theirs).
 */
export async function startEchoInWorker(options: EchoServerOptions = {}): Promise<EchoWorker> {
  const request: EchoWorkerRequest = { options };
  const worker = new Worker(new URL('./echo-worker.js', import.meta.url), { workerData: request });
  const waiters: { type: 'stats' | 'closed'; resolve: (s: EchoStats) => void }[] = [];
  let exited = false;
  let lastStats: EchoStats = { datagrams: 0, bytes: 0, dropped: 0, errors: 0 };
  const address = await new Promise<EchoAddress>((resolve, reject) => {
    const onMessage = (msg: EchoWorkerToParent): void => {
      if (msg.type === 'listening') resolve(msg.address);
      else if (msg.type === 'error') reject(new UdpTunnelError(ErrorCodes.IO, `echo server: ${msg.message}`));
    };
    worker.once('message', onMessage);
    worker.once('error', (err) => reject(new UdpTunnelError(ErrorCodes.IO, `echo worker failed: ${err.message}`, {}, { cause: err })));
    worker.once('exit', (code) => reject(new UdpTunnelError(ErrorCodes.IO, `echo worker exited with code ${code} before listening`)));
  });
  // By event name: a bare removeAllListeners() also removes the Worker's own newListener/removeListener hooks that
  // start its message port again when a 'message' listener is added, and no later message would arrive.
  for (const ev of ['message', 'error', 'exit'] as const) worker.removeAllListeners(ev);
  const settleAll = (): void => {
    for (const w of waiters.splice(0)) w.resolve(lastStats);
  };
  worker.on('message', (msg: EchoWorkerToParent) => {
    if (msg.type !== 'stats' && msg.type !== 'closed') return;
    lastStats = msg.stats;
    const i = waiters.findIndex((w) => w.type === msg.type);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(msg.stats);
  });
  worker.on('error', () => {});
  worker.on('exit', () => {
    exited = true;
    settleAll();
  });
  let closing: Promise<EchoStats> | null = null;
  return {
    address,
    stats() {
      if (exited || closing) return Promise.resolve(lastStats);
      return new Promise((resolve) => {
        waiters.push({ type: 'stats', resolve });
        worker.postMessage({ type: 'stats' });
      });
    },
    close() {
      closing ??= new Promise<EchoStats>((resolve) => {
        if (exited) return resolve(lastStats);
        waiters.push({ type: 'closed', resolve });
        worker.postMessage({ type: 'close' });
      }).then(async (s) => {
        // The thread ends by itself once its socket and port are closed; terminate covers a stuck one.
        const t = setTimeout(() => void worker.terminate(), 2000);
        if (!exited) await new Promise((r) => worker.once('exit', r));
        clearTimeout(t);
        return s;
      });
      return closing;
    },
  };
}
