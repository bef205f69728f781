import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { runLoad } from '../../src/bench/generator.js';
import type { LoadOptions } from '../../src/bench/load-types.js';

// Runs one load test with the options in workerData and posts the result; lets a test start the generator
// under Node options of its own (execArgv). `node --test dist/test/` also loads every file under a test/
// directory, so run directly (main thread) it does nothing.
if (!isMainThread && parentPort !== null) {
  const result = await runLoad(workerData as LoadOptions);
  parentPort.postMessage(result);
}
