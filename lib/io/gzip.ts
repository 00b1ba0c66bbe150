/**
 * gzip in whole buffers and as streams (node:zlib, native; multi-member files supported).
 *
 * @module
 */
import { createGunzip, gunzipSync, gzipSync } from "node:zlib";
import { Readable } from "node:stream";
import { writeFileAtomic } from "./fs.ts";

/** Options shared by the gzip readers. */
export interface GzipReadOptions {
  /** The file or stream name used in error messages. @default {"<bytes>"} */
  source?: string;
}

function gunzipError(source: string, e: unknown): SyntaxError {
  const msg = (e as Error).message ?? String(e);
  return new SyntaxError(`Cannot gunzip "${source}": ${msg}`);
}

/**
 * Decompress a whole gzip buffer (all members of a multi-member file).
 *
 * @param bytes the gzip file's bytes
 * @param options source name for errors
 * @returns the decompressed bytes
 * @throws {SyntaxError} for a truncated or corrupt stream, e.g.
 *   `Cannot gunzip "a.gz": unexpected end of file`
 *
 * @example
 * ```ts
 * import { gunzip, gzip } from "@lib/io";
 * const z = gzip(new TextEncoder().encode("tokens"));
 * console.assert(new TextDecoder().decode(gunzip(z)) === "tokens");
 * ```
 */
export function gunzip(bytes: Uint8Array, options: GzipReadOptions = {}): Uint8Array {
  try {
    const out = gunzipSync(bytes);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    throw gunzipError(options.source ?? "<bytes>", e);
  }
}

/**
 * Compress bytes as one gzip member.
 *
 * @param bytes what to compress
 * @param level zlib level 0-9
 * @returns the gzip bytes
 */
export function gzip(bytes: Uint8Array, level = 6): Uint8Array {
  const out = gzipSync(bytes, { level });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Decompress a gzip stream chunk by chunk, in bounded memory.
 *
 * @param source the compressed chunks (e.g. `(await Deno.open(path)).readable`)
 * @param options source name for errors
 * @returns the decompressed chunks
 * @throws {SyntaxError} (while iterating) for a truncated or corrupt stream
 *
 * @example
 * ```ts
 * import { gunzipChunks, gzip } from "@lib/io";
 * let n = 0;
 * for await (const c of gunzipChunks([gzip(new Uint8Array(1000))])) n += c.length;
 * console.assert(n === 1000);
 * ```
 */
export async function* gunzipChunks(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: GzipReadOptions = {},
): AsyncGenerator<Uint8Array> {
  const gz = createGunzip();
  const input = Readable.from(source);
  input.on("error", (e) => gz.destroy(e));
  input.pipe(gz);
  try {
    for await (const chunk of gz) {
      const b = chunk as Uint8Array;
      yield new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    }
  } catch (e) {
    throw gunzipError(options.source ?? "<stream>", e);
  } finally {
    input.destroy();
    gz.destroy();
  }
}

/**
 * Read a whole file, gunzipping it when its name ends in `.gz`.
 *
 * @param path file path
 * @returns the (decompressed) bytes
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {SyntaxError} for a corrupt gzip file
 */
export async function readMaybeGzipped(path: string): Promise<Uint8Array> {
  const bytes = await Deno.readFile(path);
  return path.endsWith(".gz") ? gunzip(bytes, { source: path }) : bytes;
}

/**
 * Write bytes to a file, gzipping them when its name ends in `.gz`.
 * Writes to a temporary file first and renames, so a crash never leaves half a file.
 *
 * @param path file path
 * @param bytes the (uncompressed) bytes
 */
export async function writeMaybeGzipped(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(path, path.endsWith(".gz") ? gzip(bytes) : bytes);
}
