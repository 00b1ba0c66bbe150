/**
 * gzip in whole buffers and as streams (node:zlib, native; multi-member files supported).
 *
 * @module
 */
import { createGunzip, gunzipSync, gzipSync } from "node:zlib";
import { Gunzip } from "fflate";
import { Readable } from "node:stream";
import { readFileChecked, writeFileAtomic } from "./fs.ts";
import { maxReadBytes } from "./limits.ts";

/** Options shared by the gzip readers. */
export interface GzipReadOptions {
  /** The file or stream name used in error messages. @default {"<bytes>"} */
  source?: string;
  /**
   * Stop and refuse as soon as the output passes this many bytes (what the content's own
   * header declares, or the cap).
   * @default {maxReadBytes()}
   */
  maxBytes?: number;
}

/**
 * Thrown when a gzip stream decompresses to more bytes than allowed: more than its
 * content declares, or more than the cap.
 */
export class GunzipLimitError extends RangeError {
  /** The gzip file or stream. */
  readonly source: string;
  /** The limit that was passed. */
  readonly limit: number;
  /**
   * @param source the gzip file or stream
   * @param limit the limit in bytes
   */
  constructor(source: string, limit: number) {
    super(`Cannot gunzip "${source}": it decompresses to more than ${limit} bytes`);
    this.name = "GunzipLimitError";
    this.source = source;
    this.limit = limit;
  }
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
 * @throws {GunzipLimitError} (a RangeError) as soon as the output passes `maxBytes`
 *
 * @example
 * ```ts
 * import { gunzip, gzip } from "@lib/io";
 * const z = gzip(new TextEncoder().encode("tokens"));
 * console.assert(new TextDecoder().decode(gunzip(z)) === "tokens");
 * ```
 */
export function gunzip(bytes: Uint8Array, options: GzipReadOptions = {}): Uint8Array {
  const source = options.source ?? "<bytes>";
  const limit = maxReadBytes(options.maxBytes);
  try {
    // node stops inflating as soon as the output passes maxOutputLength
    const out = gunzipSync(bytes, { maxOutputLength: Math.max(1, Math.min(limit, 2 ** 32)) });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    if ((e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new GunzipLimitError(source, limit);
    }
    throw gunzipError(source, e);
  }
}

/**
 * Decompress only the start of a gzip buffer: at least `length` bytes when the stream
 * holds that many, reading no more compressed input than needed (64 bytes at a time), so
 * that a header can be parsed before anything large is allocated.
 *
 * @param bytes the gzip file's bytes
 * @param length how many decompressed bytes are wanted
 * @param options source name for errors
 * @returns the first decompressed bytes: `length` or more, fewer only when the whole
 *   stream is shorter
 * @throws {SyntaxError} for a corrupt stream
 *
 * @example
 * ```ts
 * import { gunzipPrefix, gzip } from "@lib/io";
 * const head = gunzipPrefix(gzip(new Uint8Array(100_000).fill(7)), 10);
 * console.assert(head.length >= 10 && head[9] === 7);
 * ```
 */
export function gunzipPrefix(
  bytes: Uint8Array,
  length: number,
  options: GzipReadOptions = {},
): Uint8Array {
  const source = options.source ?? "<bytes>";
  const parts: Uint8Array[] = [];
  let have = 0;
  // fflate's streaming gunzip (multi-member), fed 64 compressed bytes at a time: each push
  // yields at most ~66 KB, and feeding stops as soon as `length` bytes are out
  const gz = new Gunzip((chunk) => {
    parts.push(chunk);
    have += chunk.length;
  });
  try {
    for (let pos = 0; pos < bytes.length && have < length; pos += 64) {
      const end = Math.min(pos + 64, bytes.length);
      gz.push(bytes.subarray(pos, end), end === bytes.length);
    }
  } catch (e) {
    if (have < length) throw gunzipError(source, e);
  }
  const out = new Uint8Array(have);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
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
  const bytes = await readFileChecked(path);
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
