/**
 * Resource limits shared by the file readers: no reader allocates more than what a file's
 * own headers justify, and never more than one configurable cap per file.
 *
 * The cap is {@linkcode DEFAULT_MAX_READ_BYTES} unless the environment variable
 * `SEITPP_MAX_READ_BYTES` (a positive integer, bytes) or a reader's `maxBytes` option says
 * otherwise.
 *
 * @module
 */

/** The default cap on the bytes one reader may hold for one file: 8 GiB. */
export const DEFAULT_MAX_READ_BYTES = 8 * 2 ** 30;

/** The environment variable that overrides {@linkcode DEFAULT_MAX_READ_BYTES}. */
export const MAX_READ_BYTES_ENV = "SEITPP_MAX_READ_BYTES";

/**
 * The cap on the bytes one reader may hold for one file.
 *
 * @param explicit a reader's `maxBytes` option; wins when given
 * @returns `explicit`, else `SEITPP_MAX_READ_BYTES` when set (and readable), else
 *   {@linkcode DEFAULT_MAX_READ_BYTES}
 * @throws {RangeError} when `explicit` or the environment variable is not a positive integer
 *
 * @example
 * ```ts
 * import { maxReadBytes } from "@lib/io";
 * console.assert(maxReadBytes(1024) === 1024);
 * ```
 */
export function maxReadBytes(explicit?: number): number {
  if (explicit !== undefined) {
    if (!Number.isSafeInteger(explicit) || explicit < 1) {
      throw new RangeError(`Cannot use maxBytes ${explicit}: expected a positive integer`);
    }
    return explicit;
  }
  let env: string | undefined;
  try {
    env = Deno.env.get(MAX_READ_BYTES_ENV);
  } catch {
    env = undefined; // no env permission: the default
  }
  if (env === undefined || env === "") return DEFAULT_MAX_READ_BYTES;
  const v = Number(env);
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new RangeError(
      `Cannot use ${MAX_READ_BYTES_ENV}="${env}": expected a positive integer (bytes)`,
    );
  }
  return v;
}

/**
 * Refuse an allocation that passes the cap.
 *
 * @param what what is being read, with its file, e.g. `idx "train-images"`
 * @param bytes the bytes the file's headers ask for
 * @param cap the cap from {@linkcode maxReadBytes}
 * @throws {RangeError} `Cannot read idx "x": its header asks for 9e9 bytes, more than the
 *   cap of 8589934592 (set SEITPP_MAX_READ_BYTES to raise it)`
 */
export function checkReadSize(what: string, bytes: number, cap: number): void {
  if (bytes > cap) {
    throw new RangeError(
      `Cannot read ${what}: it asks for ${bytes} bytes, more than the cap of ${cap} ` +
        `(set ${MAX_READ_BYTES_ENV} to raise it)`,
    );
  }
}
