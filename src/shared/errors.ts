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

/**
 * The state file is refused (not ours, not a regular file, too large, or not in the format):
 * the bridge starts without saved tasks. The message never quotes the file's contents.
 */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';
}
