/**
 * Reading the JSON files of a run folder (`config.json`, `metrics.json`).
 *
 * @module
 */

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
