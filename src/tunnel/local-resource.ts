/**
 * errno codes that mean this host ran short of file descriptors, kernel buffers or memory. They are the proxy's own
 * trouble, not the target's, and they pass once resources free up.
 */
export const LOCAL_RESOURCE_ERRNOS: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM']);

/** True for an error whose errno code is one of LOCAL_RESOURCE_ERRNOS. */
export function isLocalResourceError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && LOCAL_RESOURCE_ERRNOS.has(code);
}

/** What a TunnelServer reports ('local-resource-error') each time it runs short of local resources. */
export interface LocalResourceEvent {
  /** The errno code: EMFILE, ENFILE, ENOBUFS or ENOMEM. */
  code: string;
  /** The call that failed: `bind` or `connect` for a target socket, `accept` for a client connection. */
  syscall: string;
  /** 503 when a request was refused; null when a client connection was lost on accept. */
  status: 503 | null;
  /** The client whose request was refused; null on accept. */
  client: string | null;
  /** The text sent in Proxy-Status `details`, or the failure for accept. */
  details: string;
}
