/**
 * Errors raised for bad token dataset files (official SeiT release format).
 *
 * @module
 */

/**
 * A token dataset file (data, index or labels) cannot be used: a corrupt or truncated
 * gzip stream, a malformed index, a label count that does not match the records.
 * Catch this class to handle any bad token file; {@linkcode CorruptRecordError} is the
 * subclass for one bad record.
 *
 * @example
 * ```ts
 * import { TokenFileError } from "@lib/tokens";
 * const e = new TokenFileError("a-label.txt", 'Cannot read labels "a-label.txt": line 3 is empty');
 * console.assert(e instanceof Error && e.file === "a-label.txt");
 * ```
 */
export class TokenFileError extends Error {
  /** The file at fault, as it was given to the reader. */
  readonly file: string;

  /**
   * @param file the file at fault
   * @param message the whole message (it names the file)
   * @param options `cause`: the underlying error, if any
   */
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TokenFileError";
    this.file = file;
  }
}

/**
 * One record of a token dataset does not decode to a valid grid: the wrong number of
 * codes, a dangling 255 escape, a code outside the codebook, or index offsets that give
 * it a negative length or put it past the end of the data.
 * The message reads `Cannot decode record <record> of "<file>": <detail>`.
 *
 * @example
 * ```ts
 * import { CorruptRecordError } from "@lib/tokens";
 * const e = new CorruptRecordError("train.data.bin.gz", 17, "expected 1024 codes, got 1022");
 * console.assert(e.message === 'Cannot decode record 17 of "train.data.bin.gz": expected 1024 codes, got 1022');
 * ```
 */
export class CorruptRecordError extends TokenFileError {
  /** Index of the bad record (0-based, in file order). */
  readonly record: number;
  /** What is wrong with it (the message without the file/record prefix). */
  readonly detail: string;

  /**
   * @param file the file at fault
   * @param record the record's index
   * @param detail what is wrong, e.g. `expected 1024 codes, got 1022`
   */
  constructor(file: string, record: number, detail: string) {
    super(file, `Cannot decode record ${record} of "${file}": ${detail}`);
    this.name = "CorruptRecordError";
    this.record = record;
    this.detail = detail;
  }
}
