import { DEFAULT_PREVIEW_BYTES } from '../inspect/capsule-view.js';
import { TapInspector } from '../inspect/tap.js';
import type { CommonArgs } from './common-options.js';
import { InspectView } from './render/inspect-view.js';
import type { Output } from './output.js';

/** Flags `connect` and `serve` get for the in-process tap. */
export interface InspectTapArgs {
  inspect: boolean;
  record?: string;
}

/** A running tap; stop() prints the summary and closes the recording. */
export interface InspectTapHandle {
  stop(): Promise<void>;
}

/**
 * Starts the tap when --inspect or --record is given (otherwise returns null and nothing subscribes, so the core's
 * publish points stay free). Call before the core starts; stop after it closed.
 */
export async function startInspectTap(args: InspectTapArgs & CommonArgs, out: Output, source: 'connect' | 'serve'): Promise<InspectTapHandle | null> {
  if (!args.inspect && args.record === undefined) return null;
  const startedAtMs = Date.now();
  const view = await InspectView.create(
    {
      json: args.json,
      verbose: args.verbose,
      bytes: DEFAULT_PREVIEW_BYTES,
      full: false,
      filters: { sessions: [], types: [], errorsOnly: false },
      print: args.inspect,
      summary: true,
      strict: false,
      showCredentials: false,
      ...(args.record !== undefined ? { record: args.record } : {}),
    },
    out,
    source,
    { live: true, startedAtMs },
  );
  // A recording keeps whole payloads so a replay can show any --bytes; the printed view cuts them itself.
  const tap = new TapInspector({ full: view.recording, onEvent: (ev) => view.handle(ev) });
  tap.start(startedAtMs);
  return {
    async stop() {
      tap.stop('shutdown');
      await view.finish();
    },
  };
}
