/** Retry backoff settings (Envoy retry_options.backoff_options: base_interval, max_interval = 10 x base by default). */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

/**
 * Delay before retry number `retry` (1 = first retry): exponential growth capped at maxMs, with "equal jitter"
 * (half fixed, half random) so that many sessions failing together do not retry in lockstep.
 */
export function backoffDelay(retry: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, retry - 1));
  return exp / 2 + random() * (exp / 2);
}

/** Sleeps for `ms` unless `signal` aborts first (then resolves false). */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
