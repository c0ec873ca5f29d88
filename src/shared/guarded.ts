/** Where caught bugs go: BridgeStats.internalError counts them and logs each place once. */
export type InternalErrorSink = (where: string, error: unknown) => void;

/**
 * The callback for a timer (or any event-loop callback) that catches what it throws and reports
 * it: an exception thrown in a timer is uncaught and ends the Node process, so a bug in one
 * periodic check (or state restored from a bad file) would take the whole bridge down, at every
 * tick after each restart.
 */
export function guarded(
  where: string,
  report: InternalErrorSink,
  callback: () => void,
): () => void {
  return () => {
    try {
      callback();
    } catch (error) {
      report(where, error);
    }
  };
}
