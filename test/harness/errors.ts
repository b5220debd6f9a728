// Named errors of the test harness, one per condition, each with a stable code.
// Tests (and CI) check them with `instanceof`, never by their message text.

/** A server binary, the Kafka jars or Java are missing or too old. The message says how to install them. */
export class ServerNotInstalledError extends Error {
  readonly code = 'FERRY_HARNESS_SERVER_NOT_INSTALLED';
  override readonly name = 'ServerNotInstalledError';
}

/** A server exited while starting, or did not become ready in time. The message carries its log tail. */
export class ServerStartError extends Error {
  readonly code = 'FERRY_HARNESS_SERVER_START';
  override readonly name = 'ServerStartError';
}

/** A server misbehaved after it started (did not stop, a topic could not be read or created...). */
export class ServerOperationError extends Error {
  readonly code = 'FERRY_HARNESS_SERVER_OPERATION';
  override readonly name = 'ServerOperationError';
}

/** `waitFor` ran out of time; `cause` is the predicate's last error, if it threw. */
export class WaitTimeoutError extends Error {
  readonly code = 'FERRY_HARNESS_WAIT_TIMEOUT';
  override readonly name = 'WaitTimeoutError';
}
