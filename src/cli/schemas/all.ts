import type { CommandSchema } from '../options/spec.js';
import { BENCH_SCHEMA } from './bench.js';
import { CONNECT_SCHEMA } from './connect.js';
import { DEMO_SCHEMA } from './demo.js';
import { INSPECT_SCHEMA } from './inspect.js';
import { SERVE_SCHEMA } from './serve.js';

/** Every command's schema, for docs generation and tests (the CLI itself loads only the one it runs). */
export const ALL_SCHEMAS: readonly CommandSchema[] = [CONNECT_SCHEMA, SERVE_SCHEMA, INSPECT_SCHEMA, BENCH_SCHEMA, DEMO_SCHEMA];

/** The schemas whose options reference is generated into docs/<command>.md (demo is described in the README). */
export const DOCUMENTED_SCHEMAS: readonly CommandSchema[] = [CONNECT_SCHEMA, SERVE_SCHEMA, INSPECT_SCHEMA, BENCH_SCHEMA];
