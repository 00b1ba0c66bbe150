/**
 * How the tasks report errors a user can fix (bad config or flag, missing file, corrupt
 * data, NaN loss, missing backend): one line `error: <Name>: <message>` and exit code 1,
 * instead of a stack trace. Anything else is a bug and keeps its stack trace.
 *
 * @module
 */

/** Error classes every task reports in one line. */
export const USER_ERRORS: readonly string[] = [
  "TypeError",
  "RangeError",
  "SyntaxError",
  "NotFound",
  "CheckpointError",
  "NonFiniteLossError",
  "BackendUnavailableError",
  "TokenFileError",
  "CorruptRecordError",
  "ResumeConflictError",
  "InitMismatchError",
  "GunzipLimitError",
  "UnsafePickleError",
  "IsADirectory",
  "NotADirectory",
  "PermissionDenied",
];

/**
 * Print a user error in one line and give its exit code, or rethrow anything else.
 * @param e what was thrown
 * @param more further error class names the task treats as user errors
 * @returns 1 (the exit code) for a user error
 * @throws e itself when it is not a user error
 */
export function reportUserError(e: unknown, more: readonly string[] = []): number {
  const err = e as Error;
  if (USER_ERRORS.includes(err?.name) || more.includes(err?.name)) {
    console.error(`error: ${err.name}: ${err.message}`);
    return 1;
  }
  throw e;
}
