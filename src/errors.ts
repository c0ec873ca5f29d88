/**
 * Named errors whose messages tell the user what to do. The CLI maps them to exit codes:
 * ConfigError -> 2, everything else that stops the bridge -> 1.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The broker could not be reached at start within the configured time. */
export class BrokerUnreachableError extends Error {
  override readonly name = 'BrokerUnreachableError';
}

/** The broker answered but refused what the bridge needs (e.g. a queue with other arguments). */
export class BrokerSetupError extends Error {
  override readonly name = 'BrokerSetupError';
}

/** The HTTP listener could not bind (port in use, address not local). */
export class HttpListenError extends Error {
  override readonly name = 'HttpListenError';
}
