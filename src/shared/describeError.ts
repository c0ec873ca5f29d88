/**
 * An error's message for a log line. amqplib and ioredis errors name host and port, never the
 * password, so the message is safe to log; the error object itself (options, stack) is not used.
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
