/**
 * How a running command stops: its stop action runs once, on the first SIGINT/SIGTERM or when the
 * command finishes by itself, and a second signal exits at once.
 */

/** `action` run at most once, however often it is called. */
export function once(action: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= action());
}

/** Runs until the first SIGINT/SIGTERM (then `stop`), or until `done` settles. A second signal exits at once. */
export async function untilSignalled(done: Promise<void>, stop: () => Promise<void>): Promise<void> {
  let signalled = false;
  const onSignal = () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write('\nstopping...\n');
    void stop().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await done;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
