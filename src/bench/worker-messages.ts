import type { ErrorCode } from '../tunnel/errors.js';
import type { LoadOptions, LoadProgress, LoadResult } from './load-types.js';

/** Load options that can cross a thread boundary (no callbacks, no signal). */
export type TransferableLoadOptions = Omit<LoadOptions, 'onProgress' | 'signal'>;

/** workerData of the generator worker. */
export interface WorkerRequest {
  options: TransferableLoadOptions;
  /** Post progress snapshots to the parent. */
  progress: boolean;
  /** The caller's signal was already aborted: stop before sending anything. */
  aborted: boolean;
}

/** A failure reported by the generator worker. */
export interface WorkerError {
  message: string;
  code: ErrorCode | null;
  details: Record<string, unknown>;
  /** The error's `retryable`, for a coded error. */
  retryable: boolean;
}

/** Messages the generator worker posts to its parent. */
export type WorkerToParent =
  | { type: 'progress'; snapshot: LoadProgress }
  | { type: 'result'; result: LoadResult }
  | { type: 'error'; error: WorkerError };
