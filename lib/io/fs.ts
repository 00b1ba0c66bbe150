/**
 * Small file-system helpers: reading a file that must be a regular file of bounded size,
 * and writing one atomically to a path whose folder must exist. Their errors name the
 * user's path (never a temporary file).
 *
 * @module
 */
import { checkReadSize, maxReadBytes } from "./limits.ts";

/** Options of {@linkcode readFileChecked}. */
export interface ReadFileOptions {
  /** What the file is, for messages (`index`, `labels`, `torch file`). @default {"file"} */
  what?: string;
  /** The cap on the file's size in bytes. @default {maxReadBytes()} */
  maxBytes?: number;
}

/**
 * Read a whole file that must be a regular file no larger than the cap.
 *
 * @param path file path
 * @param options what it is (for messages) and the size cap
 * @returns the bytes
 * @throws {Deno.errors.NotFound} `Cannot read index "x.npy.gz": no such file`
 * @throws {TypeError} `Cannot read index "x.npy.gz": it is a directory, not a file`
 * @throws {RangeError} for a file larger than the cap
 *
 * @example
 * ```ts
 * import { readFileChecked } from "@lib/io";
 * const p = await Deno.makeTempFile();
 * await Deno.writeFile(p, new Uint8Array([1, 2]));
 * console.assert((await readFileChecked(p)).length === 2);
 * ```
 */
export async function readFileChecked(
  path: string,
  options: ReadFileOptions = {},
): Promise<Uint8Array> {
  const what = options.what ?? "file";
  const cap = maxReadBytes(options.maxBytes);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read ${what} "${path}": no such file`);
    }
    throw e;
  }
  if (info.isDirectory) {
    throw new TypeError(`Cannot read ${what} "${path}": it is a directory, not a file`);
  }
  if (info.isFile) checkReadSize(`${what} "${path}"`, info.size, cap);
  return await Deno.readFile(path);
}

/**
 * Check that a file can be written at `path`: its folder exists and is a folder, and the
 * path itself is not a folder.
 *
 * @param path the output path, as the user gave it
 * @param what what the file is, for messages @default {"output"}
 * @throws {Deno.errors.NotFound} `Cannot write output "out/x.png": folder "out" does not exist`
 * @throws {TypeError} `Cannot write output "out": it is a directory`
 */
export async function checkOutputPath(path: string, what = "output"): Promise<void> {
  const cut = path.lastIndexOf("/");
  const dir = cut < 0 ? "." : cut === 0 ? "/" : path.slice(0, cut);
  let d: Deno.FileInfo;
  try {
    d = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(
        `Cannot write ${what} "${path}": folder "${dir}" does not exist`,
      );
    }
    throw e;
  }
  if (!d.isDirectory) {
    throw new TypeError(`Cannot write ${what} "${path}": "${dir}" is not a folder`);
  }
  if (path.endsWith("/")) throw new TypeError(`Cannot write ${what} "${path}": it is a directory`);
  try {
    if ((await Deno.stat(path)).isDirectory) {
      throw new TypeError(`Cannot write ${what} "${path}": it is a directory`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Write a file atomically: a temporary sibling, then rename over the target. Nothing is
 * left behind on failure, and an existing file is replaced only by a complete one.
 *
 * @param path file path
 * @param bytes contents
 * @throws {Deno.errors.NotFound | TypeError} as {@linkcode checkOutputPath}, naming `path`
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await checkOutputPath(path);
  let suffix = "";
  for (const b of crypto.getRandomValues(new Uint8Array(6))) suffix += b.toString(36);
  const tmp = `${path}.${Deno.pid}.${suffix}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot write "${path}": ${(e as Error).message}`);
    }
    throw e;
  }
}

/**
 * Read a JSON object file.
 * @param path the file
 * @returns the object, or null when the file does not exist
 * @throws {SyntaxError} naming the file when it is not JSON or not an object
 */
export async function readJsonObject(path: string): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse "${path}": ${(e as Error).message}`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new SyntaxError(`Cannot parse "${path}": expected a JSON object`);
  }
  return v as Record<string, unknown>;
}
