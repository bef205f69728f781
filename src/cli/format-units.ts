// Library defaults are numbers (ms, bytes); flags take text. These write a default the way a user would type it,
// so `--help` shows `[default: "60s"]` and the default goes through the same parser as a typed value.

/** A duration in ms as a flag value parseDuration reads back: whole seconds as `Ns`, anything else as `Nms`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`not a duration: ${ms} ms`);
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** A size in bytes as a flag value parseSize reads back: whole MiB as `Nm`, whole KiB as `Nk`, anything else in bytes. */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`not a size: ${bytes} bytes`);
  if (bytes > 0 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)}m`;
  if (bytes > 0 && bytes % 1024 === 0) return `${bytes / 1024}k`;
  return String(bytes);
}
