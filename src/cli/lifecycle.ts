/**
 * Runs `close` on the first SIGINT/SIGTERM and resolves when it is done; a second signal exits at once.
 * Returns a promise that settles when the process should exit, and a function to trigger shutdown from code.
 */
export function untilShutdown(close: (signal: string) => Promise<void>): { done: Promise<string>; shutdown: (why: string) => void } {
  let signalled = false;
  let resolveDone!: (why: string) => void;
  const done = new Promise<string>((r) => (resolveDone = r));
  const shutdown = (why: string): void => {
    if (signalled) return;
    signalled = true;
    close(why).then(
      () => resolveDone(why),
      () => resolveDone(why),
    );
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      process.stderr.write(`\nsecond ${sig}: exiting now\n`);
      process.exit(130);
    }
    shutdown(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  void done.then(() => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  });
  return { done, shutdown };
}
