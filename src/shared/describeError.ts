/**
 * An error's message for a log line. amqplib and ioredis errors name host and port, never the
 * password, so the message is safe to log; the error object itself (options, stack) is not used.
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A stack and its causes kept for a log line: enough to find a bug, bounded. */
const MAX_STACK_CHARS = 8192;

/**
 * A bug's story for a log line: the stack, then each `cause`'s (as Node prints them), cut to a
 * bound. For errors the bridge did not expect, where the message alone does not say where.
 */
export function describeBug(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined; depth++) {
    parts.push(
      current instanceof Error
        ? (current.stack ?? `${current.name}: ${current.message}`)
        : describeError(current),
    );
    current = current instanceof Error ? current.cause : undefined;
  }
  const text = parts.join('\ncaused by: ');
  return text.length > MAX_STACK_CHARS ? `${text.slice(0, MAX_STACK_CHARS)}…` : text;
}
