// The inspector's defaults as plain values: the CLI's option schema and `--help` read them without loading the relay.
import { DEFAULT_MAX_HEAD_BYTES } from '../tunnel/http/http1-head.js';

/** InspectRelay's defaults; `inspect --listen` shows them in its help. */
export const RELAY_DEFAULTS = {
  connectTimeoutMs: 10_000,
  maxConnections: 1024,
  maxStreamsPerConnection: 100,
  maxHeadBytes: DEFAULT_MAX_HEAD_BYTES,
  headTimeoutMs: 10_000,
} as const;

/** Payload bytes shown per capsule unless told otherwise. */
export const DEFAULT_PREVIEW_BYTES = 16;
