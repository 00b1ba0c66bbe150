/**
 * Label files of the official SeiT token release: one integer per line, `\n` terminated
 * (`imagenet1k-train-label.txt`).
 *
 * @module
 */
import { readFileChecked, writeFileAtomic } from "../io/mod.ts";
import { TokenFileError } from "./errors.ts";

const INT_RE = /^[+-]?\d+$/;

/**
 * Parse label text: one integer per line (surrounding spaces and a `\r` are ignored, as
 * the reference's `int(line.strip())` does); a final newline is optional.
 *
 * @param text the file's text
 * @param source the file name used in error messages
 * @returns the labels, one per line
 * @throws {TokenFileError} for an empty or non-integer line, a negative label or a value
 *   outside int32, e.g.
 *   `Cannot read labels "a-label.txt": line 3 is not an integer: "cat"`
 *
 * @example
 * ```ts
 * import { parseLabels } from "@lib/tokens";
 * console.assert(parseLabels("3\n1\n4\n").join() === "3,1,4");
 * ```
 */
export function parseLabels(text: string, source = "<text>"): Int32Array {
  const lines = text.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const out = new Int32Array(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i].trim();
    const bad = (what: string) =>
      new TokenFileError(source, `Cannot read labels "${source}": line ${i + 1} ${what}`);
    if (s === "") throw bad("is empty");
    if (!INT_RE.test(s)) throw bad(`is not an integer: ${JSON.stringify(s.slice(0, 40))}`);
    const v = Number(s);
    if (v < 0) throw bad(`holds ${s}; a label is a class index, 0 or more`);
    if (v > 2147483647) throw bad(`holds ${s}, outside int32`);
    out[i] = v;
  }
  return out;
}

/**
 * Read a label file.
 *
 * @param path file path
 * @returns the labels, one per line
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {TokenFileError} for a malformed line (see {@linkcode parseLabels}) or bytes
 *   that are not UTF-8
 */
export async function readLabels(path: string): Promise<Int32Array> {
  const bytes = await readFileChecked(path, { what: "labels" });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new TokenFileError(path, `Cannot read labels "${path}": not UTF-8 text`, { cause: e });
  }
  return parseLabels(text, path);
}

/**
 * Format labels as the release does: one decimal integer per line, each `\n` terminated.
 *
 * @param labels the labels
 * @returns the file's text
 * @throws {RangeError} for a label that is not an integer
 *
 * @example
 * ```ts
 * import { formatLabels } from "@lib/tokens";
 * console.assert(formatLabels([7, 0]) === "7\n0\n");
 * ```
 */
export function formatLabels(labels: ArrayLike<number>): string {
  const parts = new Array<string>(labels.length);
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i];
    if (!Number.isSafeInteger(v)) {
      throw new RangeError(`Cannot write label ${i}: ${v} is not an integer`);
    }
    parts[i] = `${v}\n`;
  }
  return parts.join("");
}

/**
 * Write a label file atomically (a temporary sibling, then a rename).
 *
 * @param path file path
 * @param labels the labels
 * @throws {RangeError} for a label that is not an integer
 */
export async function writeLabels(path: string, labels: ArrayLike<number>): Promise<void> {
  await writeFileAtomic(path, new TextEncoder().encode(formatLabels(labels)));
}

/**
 * Check that every label is a class index below `numClasses`, so that a label file made
 * for another label set is refused when the data opens, not at the training step that meets
 * the bad label.
 *
 * @param labels the labels, in file order (line i+1 holds labels[i])
 * @param numClasses the model's number of classes
 * @param source the label file, for the message
 * @throws {TokenFileError} naming the file and the first bad line, e.g.
 *   `Cannot use labels "a-label.txt": line 7 holds 57, outside the 10 classes 0..9`
 * @throws {RangeError} for a `numClasses` that is not a positive integer
 *
 * @example
 * ```ts
 * import { checkLabelRange } from "@lib/tokens";
 * checkLabelRange(new Int32Array([0, 9, 3]), 10, "a-label.txt"); // fine
 * ```
 */
export function checkLabelRange(
  labels: ArrayLike<number>,
  numClasses: number,
  source = "<labels>",
): void {
  if (!Number.isSafeInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`Cannot check labels against ${numClasses} classes`);
  }
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i];
    if (!(v >= 0 && v < numClasses)) {
      throw new TokenFileError(
        source,
        `Cannot use labels "${source}": line ${
          i + 1
        } holds ${v}, outside the ${numClasses} classes 0..${numClasses - 1}`,
      );
    }
  }
}
