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
 * Starts connect's start-up probe; its verdict is rendered when it comes (and handed to `onResult`) and never ends
 * the process.
 */
export function startProxyProbe(config: ProxyConfig, out: Output, onResult?: (r: ProxyProbeResult) => void): BackgroundProbe {
  const controller = new AbortController();
  const running = probeProxy(config, { signal: controller.signal }).then(
    (r) => {
      // A probe cut short by shutdown has nothing to say.
      if (controller.signal.aborted) return;
      renderProxyProbe(out, r);
      onResult?.(r);
    },
    (err: unknown) => out.warn(`proxy check: ${(err as Error)?.message ?? String(err)}`),
  );
  return {
    stop: async () => {
      controller.abort();
      await running;
    },
  };
}

/**
 * `connect --check`: one tunnel, reported; throws the tunnel's error afterwards, so the one place that maps errors
 * to exit codes gives 1 and a one-line message.
 */
export async function runTunnelCheck(config: ProxyConfig, out: Output): Promise<void> {
  const r = await checkTunnel(config);
  renderTunnelCheck(out, r);
  if (!r.ok) throw r.error ?? new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'the tunnel was not established');
}
