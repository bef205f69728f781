import { runServeWorker } from './serve-cluster.js';

// Entry of a `serve --workers N` worker process (node:cluster forks it); it takes its options from the primary.
await runServeWorker();
