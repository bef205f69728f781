import { parentPort, workerData } from 'node:worker_threads';
import { startEchoServer } from './echo-server.js';
import type { EchoWorkerRequest, EchoWorkerToParent } from './echo-server.js';

// Entry point of the thread startEchoInWorker starts: the echo target gets an event loop of its own, so neither
// the load generator nor the orchestrating thread can delay its replies.
const port = parentPort;
if (port === null) throw new Error('echo-worker must run in a worker thread');

const request = workerData as EchoWorkerRequest;
const post = (msg: EchoWorkerToParent): void => port.postMessage(msg);

try {
  const echo = await startEchoServer(request.options);
  const stats = (): { datagrams: number; bytes: number; dropped: number; errors: number } => ({
    datagrams: echo.datagrams,
    bytes: echo.bytes,
    dropped: echo.dropped,
    errors: echo.errors,
  });
  const onMessage = (msg: unknown): void => {
    const type = (msg as { type?: unknown } | null)?.type;
    if (type === 'stats') {
      post({ type: 'stats', stats: stats() });
    } else if (type === 'close') {
      port.off('message', onMessage);
      void echo.close().then(() => post({ type: 'closed', stats: stats() }));
    }
  };
  port.on('message', onMessage);
  post({ type: 'listening', address: echo.address() });
} catch (err) {
  post({ type: 'error', message: (err as Error).message });
}
