import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { startEchoServer } from '../../src/bench/echo-server.js';

/** workerData of this helper. */
export interface EchoWorkerData {
  maxQueuedReplies: number;
  /** Int32 slot 0: the worker blocks after reporting its port until the parent stores 1 there. */
  gate: SharedArrayBuffer;
}

// Runs an echo server in a worker (so it can run under its own Node options) and blocks its event loop until the
// parent has sent a burst, so the whole burst is read in one go. Messages: 'stats' -> counters, 'close' -> stop.
// Run directly (main thread, as `node --test dist/test/` does with every file under test/) it does nothing.
const port = parentPort;
if (!isMainThread && port !== null) {
  const { maxQueuedReplies, gate } = workerData as EchoWorkerData;
  const echo = await startEchoServer({ host: '127.0.0.1', maxQueuedReplies });
  port.postMessage({ type: 'port', port: echo.address().port });
  Atomics.wait(new Int32Array(gate), 0, 0);
  const onMessage = (msg: unknown): void => {
    if (msg === 'stats') {
      port.postMessage({ type: 'stats', datagrams: echo.datagrams, dropped: echo.dropped, errors: echo.errors });
    } else if (msg === 'close') {
      port.off('message', onMessage);
      void echo.close();
    }
  };
  port.on('message', onMessage);
}
