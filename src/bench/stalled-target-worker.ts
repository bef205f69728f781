import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { STALLED_TARGET_CLOSE, STALLED_TARGET_STALLED } from './stalled-target.js';
import type { StalledTargetRequest, StalledTargetToParent } from './stalled-target.js';

// Entry point of the thread startStalledTarget starts: binds, then keeps its event loop blocked so the socket is
// never read while stalled.
const port = parentPort;
if (port === null) throw new Error('stalled-target-worker must run in a worker thread');
const request = workerData as StalledTargetRequest;
const post = (msg: StalledTargetToParent): void => port.postMessage(msg);
const state = new Int32Array(request.flag);

const socket = createSocket(isIP(request.host) === 6 ? 'udp6' : 'udp4');
let received = 0;
let quietTimer: NodeJS.Timeout | null = null;
const close = (): void => {
  if (quietTimer) clearTimeout(quietTimer);
  port.off('message', onMessage);
  try {
    socket.close();
  } catch {
    // Already closed.
  }
};
const onMessage = (msg: unknown): void => {
  if ((msg as { type?: unknown } | null)?.type === 'close') close();
};
socket.on('error', (err) => post({ type: 'error', message: err.message }));
socket.on('message', () => {
  received++;
  if (quietTimer) quietTimer.refresh();
});
socket.bind(0, request.host, () => {
  if (request.recvBufferBytes !== undefined) {
    try {
      socket.setRecvBufferSize(request.recvBufferBytes);
    } catch {
      // Refused by the system limits: the default buffer fills as well.
    }
  }
  const a = socket.address();
  post({ type: 'listening', address: a.address, port: a.port, recvBufferBytes: socket.getRecvBufferSize() });
  // Blocking here, inside the bind callback, keeps libuv from ever polling the socket until the flag changes.
  // The timeout only bounds each wait; the loop is what keeps the thread stalled.
  while (Atomics.load(state, 0) === STALLED_TARGET_STALLED) Atomics.wait(state, 0, STALLED_TARGET_STALLED, 1000);
  if (Atomics.load(state, 0) === STALLED_TARGET_CLOSE) {
    close();
    return;
  }
  port.on('message', onMessage);
  quietTimer = setTimeout(() => {
    quietTimer = null;
    post({ type: 'drained', received });
  }, request.quietMs);
});
