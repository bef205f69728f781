import type { ProxyConfig } from '../tunnel/client-config.js';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { probeProxy, type ProxyProbeResult } from '../tunnel/proxy-probe.js';
import { checkTunnel } from '../tunnel/tunnel-check.js';
import type { Output } from './output.js';
import { renderProxyProbe, renderTunnelCheck } from './render/proxy-check-render.js';

/** A probe running in the background of `connect`. */
export interface BackgroundProbe {
  /** Cancels the probe if it still runs and waits until its socket is closed. */
  stop(): Promise<void>;
}

/**
 * Starts connect's start-up probe of each proxy (`proxies`, default the config's one); each verdict is rendered when
 * it comes, one line per proxy (and handed to `onResult`), and never ends the process.
 */
export function startProxyProbe(
  config: ProxyConfig,
  out: Output,
  proxies: readonly string[] = [config.proxy],
  onResult?: (r: ProxyProbeResult, proxy: string) => void,
): BackgroundProbe {
  const controller = new AbortController();
  // With several proxies each line names its proxy; with one the line stays as it was.
  const named = proxies.length > 1;
  const running = Promise.all(
    proxies.map((proxy) =>
      probeProxy({ ...config, proxy }, { signal: controller.signal }).then(
        (r) => {
          // A probe cut short by shutdown has nothing to say.
          if (controller.signal.aborted) return;
          renderProxyProbe(out, r, { named });
          onResult?.(r, proxy);
        },
        (err: unknown) => out.warn(`proxy check${named ? ` ${originOf(proxy)}` : ''}: ${(err as Error)?.message ?? String(err)}`),
      ),
    ),
  );
  return {
    stop: async () => {
      controller.abort();
      await running;
    },
  };
}

/** The proxy as a probe names it: its origin, no credentials or template. */
function originOf(proxy: string): string {
  try {
    return new URL(proxy.replace(/\{.*$/, '')).origin;
  } catch {
    return proxy;
  }
}

/**
 * `connect --check`: one tunnel through each proxy, reported in turn; throws the first failed tunnel's error
 * afterwards, so the one place that maps errors to exit codes gives 1 and a one-line message.
 */
export async function runTunnelCheck(config: ProxyConfig, out: Output, proxies: readonly string[] = [config.proxy]): Promise<void> {
  let failure: UdpTunnelError | undefined;
  for (const [i, proxy] of proxies.entries()) {
    const r = await checkTunnel({ ...config, proxy });
    if (i > 0 && !out.json) out.data('');
    renderTunnelCheck(out, r);
    if (!r.ok) failure ??= r.error ?? new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'the tunnel was not established');
  }
  if (failure) throw failure;
}
