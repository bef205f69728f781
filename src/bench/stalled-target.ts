import { Worker } from 'node:worker_threads';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';

/** workerData of the stalled-target worker. */
export interface StalledTargetRequest {
  /** IPv4 or IPv6 literal to bind. */
  host: string;
  /** Shared flag: 0 = stay stalled, 1 = read again, 2 = close at once. */
  flag: SharedArrayBuffer;
  /** Receive buffer to ask for, bytes; omitted = the system default. */
  recvBufferBytes?: number;
  /** After resuming, report once no datagram arrived for this long, ms. */
  quietMs: number;
}

/** Messages the stalled-target worker posts to its parent. */
export type StalledTargetToParent =
  | { type: 'listening'; address: string; port: number; recvBufferBytes: number }
  | { type: 'drained'; received: number }
  | { type: 'error'; message: string };

/** A UDP socket that is bound but not read, so its receive buffer fills and the kernel drops (and counts) the rest. */
export interface StalledTarget {
  readonly address: string;
  readonly port: number;
  /** Receive buffer the kernel granted, bytes. */
  readonly recvBufferBytes: number;
  /** Starts reading again; resolves with the datagrams read once the queue stayed empty for the quiet time. */
  resume(): Promise<number>;
  /** Stops the thread (stalled or not). Safe to call more than once. */
  close(): Promise<void>;
}

/** Flag value: the worker keeps its event loop blocked. */
export const STALLED_TARGET_STALLED = 0;
/** Flag value: the worker reads again. */
export const STALLED_TARGET_RESUME = 1;
/** Flag value: the worker closes its socket and ends. */
export const STALLED_TARGET_CLOSE = 2;

/**
 * Starts a UDP target whose socket is never read until resume(): it lives in a worker thread that blocks its own
 * event loop on a shared flag right after binding, so the kernel queues datagrams until the receive buffer is full
 * and then drops them (Linux counts them in the socket's `drops` column of /proc/net/udp).
 */
export async function startStalledTarget(options: { host?: string; recvBufferBytes?: number; quietMs?: number } = {}): Promise<StalledTarget> {
  const flag = new SharedArrayBuffer(4);
  const state = new Int32Array(flag);
  const request: StalledTargetRequest = {
    host: options.host ?? '127.0.0.1',
    flag,
    ...(options.recvBufferBytes !== undefined ? { recvBufferBytes: options.recvBufferBytes } : {}),
    quietMs: options.quietMs ?? 300,
  };
  const worker = new Worker(new URL('./stalled-target-worker.js', import.meta.url), { workerData: request });
  let exited = false;
  const exitedP = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  worker.on('error', () => {});
  const listening = await new Promise<Extract<StalledTargetToParent, { type: 'listening' }>>((resolve, reject) => {
    worker.on('message', (msg: StalledTargetToParent) => {
      if (msg.type === 'listening') resolve(msg);
      else if (msg.type === 'error') reject(new UdpTunnelError(ErrorCodes.IO, `stalled target: ${msg.message}`));
    });
    void exitedP.then(() => reject(new UdpTunnelError(ErrorCodes.IO, 'stalled target worker exited before listening')));
  });
  worker.removeAllListeners('message');
  let drained: Promise<number> | null = null;
  const wake = (value: number): void => {
    Atomics.store(state, 0, value);
    Atomics.notify(state, 0);
  };
  return {
    address: listening.address,
    port: listening.port,
    recvBufferBytes: listening.recvBufferBytes,
    resume() {
      drained ??= new Promise<number>((resolve) => {
        if (exited) return resolve(0);
        worker.on('message', (msg: StalledTargetToParent) => {
          if (msg.type === 'drained') resolve(msg.received);
        });
        void exitedP.then(() => resolve(0));
        wake(STALLED_TARGET_RESUME);
      });
      return drained;
    },
    async close() {
      wake(STALLED_TARGET_CLOSE);
      if (exited) return;
      worker.postMessage({ type: 'close' });
      const t = setTimeout(() => void worker.terminate(), 2000);
      await exitedP;
      clearTimeout(t);
    },
  };
}
