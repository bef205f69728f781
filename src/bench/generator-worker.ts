import { parentPort, workerData } from 'node:worker_threads';
import { isUdpTunnelError } from '../tunnel/errors.js';
import { runLoad } from './generator.js';
import type { LoadOptions } from './load-types.js';
import type { WorkerRequest, WorkerToParent } from './worker-messages.js';

// Entry point of the thread runLoadInWorker starts: the generator gets an event loop of its own, so a tunnel
// running in the parent cannot delay its sends or receives (and the other way round).
const port = parentPort;
if (port === null) throw new Error('generator-worker must run in a worker thread');

const request = workerData as WorkerRequest;
const controller = new AbortController();
if (request.aborted) controller.abort();
const onParentMessage = (msg: unknown): void => {
  if ((msg as { type?: unknown } | null)?.type === 'stop') controller.abort();
};
port.on('message', onParentMessage);

/** Details as plain JSON data, so posting them can never fail on an uncloneable value. */
function plainDetails(details: Record<string, unknown>): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

const post = (msg: WorkerToParent): void => port.postMessage(msg);
const options: LoadOptions = {
  ...request.options,
  signal: controller.signal,
  ...(request.progress ? { onProgress: (snapshot) => post({ type: 'progress', snapshot }) } : {}),
};

runLoad(options)
  .then((result) => post({ type: 'result', result }))
  .catch((err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    post({
      type: 'error',
      error: {
        message: e.message,
        code: isUdpTunnelError(e) ? e.code : null,
        details: isUdpTunnelError(e) ? plainDetails(e.details) : {},
        retryable: isUdpTunnelError(e) ? e.retryable : false,
      },
    });
  })
  .finally(() => {
    // Without listeners the port no longer holds the thread open, so it exits once the reply is flushed.
    port.off('message', onParentMessage);
  });
