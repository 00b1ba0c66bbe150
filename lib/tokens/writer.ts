/**
 * Writing token datasets in the official SeiT release format, streaming: records are
 * encoded and gzip-compressed to disk as they are appended; the index (`.npy.gz`, int64
 * N+1 offsets) and the labels are written at close, and every file appears by an atomic
 * rename only then.
 *
 * @module
 */
import { once } from "node:events";
import { createGzip, type Gzip } from "node:zlib";
import { checkOutputPath, writeNpyFile } from "../io/mod.ts";
import { encodeRecord, findInvalidCode, MAX_STORABLE_CODE } from "./_codec.ts";
import { tokenIndexPath, tokenLabelsPath } from "./dataset.ts";
import { writeLabels } from "./labels.ts";

/** Encoded bytes are handed to gzip in chunks of about this size. */
const CHUNK = 1 << 20;

/** Options of {@linkcode TokenWriter.create}. */
export interface TokenWriterOptions {
  /** Grid side n: each record holds n*n codes. */
  gridSide: number;
  /** Codebook size K: codes must be < K. When left out, any storable code (0..510). */
  codebookSize?: number;
  /**
   * Where the index goes.
   * @default {tokenIndexPath(dataPath)}
   */
  indexPath?: string;
  /**
   * Where the labels go (written only when records carry labels); `null` refuses labels.
   * @default {tokenLabelsPath(dataPath)}
   */
  labelsPath?: string | null;
  /**
   * gzip level 0-9.
   * @default {6}
   */
  level?: number;
}

/** What {@linkcode TokenWriter.close} wrote. */
export interface TokenWriteSummary {
  /** Records written. */
  records: number;
  /** The data file. */
  dataPath: string;
  /** The index file. */
  indexPath: string;
  /** The label file, or `null` when the records carried no labels. */
  labelsPath: string | null;
  /** Decompressed data bytes (= the last offset). */
  dataBytes: number;
  /** Size of the gzip data file. */
  compressedBytes: number;
}

/** gzip to a file with backpressure; output chunks are written in order. */
class GzipFileSink {
  #gz: Gzip;
  #file: Deno.FsFile;
  #chain: Promise<void> = Promise.resolve();
  #error: unknown = null;
  bytesOut = 0;

  constructor(file: Deno.FsFile, level: number) {
    this.#file = file;
    this.#gz = createGzip({ level, chunkSize: 1 << 18 });
    this.#gz.on("data", (c: Uint8Array) => {
      this.bytesOut += c.length;
      this.#chain = this.#chain.then(() => this.#writeAll(c)).catch((e) => {
        this.#error ??= e;
      });
    });
    this.#gz.on("error", (e: unknown) => {
      this.#error ??= e;
    });
  }

  async #writeAll(c: Uint8Array): Promise<void> {
    let p = 0;
    while (p < c.length) p += await this.#file.write(c.subarray(p));
  }

  #check(): void {
    if (this.#error !== null) throw this.#error;
  }

  /** Compress `bytes` (ownership passes to the sink: do not reuse the buffer). */
  async write(bytes: Uint8Array): Promise<void> {
    this.#check();
    if (!this.#gz.write(bytes)) await once(this.#gz, "drain");
    await this.#chain;
    this.#check();
  }

  async end(): Promise<void> {
    this.#check();
    const done = once(this.#gz, "end");
    this.#gz.end();
    await done;
    await this.#chain;
    this.#file.close();
    this.#check();
  }

  /** Stop compressing and close the file (idempotent). */
  destroy(): void {
    this.#gz.destroy();
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }
}

/**
 * Streaming writer of a token dataset. Append records (one by one or in batches), then
 * `close()`; `abort()` removes everything written so far.
 *
 * @example
 * ```ts
 * import { openTokenDataset, TokenWriter } from "@lib/tokens";
 * const dir = await Deno.makeTempDir();
 * const w = await TokenWriter.create(`${dir}/x-token.data.bin.gz`, { gridSide: 2 });
 * await w.append([1, 2, 300, 4], 7);
 * await w.appendBatch(new Int32Array([0, 0, 0, 510]), [3]);
 * await w.close();
 * const ds = await openTokenDataset(`${dir}/x-token.data.bin.gz`);
 * console.assert(ds.readRecord(0).join() === "1,2,300,4" && ds.labels!.join() === "7,3");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class TokenWriter {
  /** The data file being written. */
  readonly dataPath: string;
  /** The index file written at close. */
  readonly indexPath: string;
  /** The label file written at close (when records carry labels), or `null`. */
  readonly labelsPath: string | null;
  /** Grid side n. */
  readonly gridSide: number;
  /** Codes per record, n*n. */
  readonly codesPerRecord: number;

  #tmp: string;
  #sink: GzipFileSink;
  #maxCode: number;
  #buf: Uint8Array;
  #pos = 0;
  #bytes = 0;
  #offsets = new Float64Array(1024);
  #labels: Int32Array | null = null;
  #count = 0;
  #state: "open" | "closed" | "failed" = "open";

  private constructor(
    dataPath: string,
    indexPath: string,
    labelsPath: string | null,
    gridSide: number,
    maxCode: number,
    tmp: string,
    sink: GzipFileSink,
  ) {
    this.dataPath = dataPath;
    this.indexPath = indexPath;
    this.labelsPath = labelsPath;
    this.gridSide = gridSide;
    this.codesPerRecord = gridSide * gridSide;
    this.#maxCode = maxCode;
    this.#tmp = tmp;
    this.#sink = sink;
    this.#buf = new Uint8Array(Math.max(CHUNK, 2 * this.codesPerRecord));
  }

  /**
   * Start writing a dataset (to a temporary sibling of `dataPath`).
   *
   * @param dataPath the `NAME-token.data.bin.gz` file to create
   * @param options grid side (required), codebook size, index/labels paths, gzip level
   * @returns the writer
   * @throws {RangeError} for a bad grid side, codebook size (1..511) or level
   * @throws {TypeError} when no index path is given and none can be derived
   */
  static async create(dataPath: string, options: TokenWriterOptions): Promise<TokenWriter> {
    const { gridSide, codebookSize, level = 6 } = options;
    if (!(Number.isSafeInteger(gridSide) && gridSide >= 1 && gridSide <= 46340)) {
      throw new RangeError(`Cannot write a token dataset with grid side ${gridSide}`);
    }
    if (
      codebookSize !== undefined &&
      !(Number.isSafeInteger(codebookSize) && codebookSize >= 1 &&
        codebookSize <= MAX_STORABLE_CODE + 1)
    ) {
      throw new RangeError(
        `Cannot write a token dataset with codebook size ${codebookSize}: the format stores codes 0..${MAX_STORABLE_CODE}`,
      );
    }
    if (!(Number.isInteger(level) && level >= 0 && level <= 9)) {
      throw new RangeError(`Cannot use gzip level ${level}: expected 0..9`);
    }
    const indexPath = options.indexPath ?? tokenIndexPath(dataPath);
    const labelsPath = options.labelsPath === undefined
      ? tokenLabelsPath(dataPath)
      : options.labelsPath;
    // a missing folder or a folder in the way is named as the user gave it, not as the .tmp
    await checkOutputPath(dataPath, "token data");
    const tmp = `${dataPath}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    const file = await Deno.open(tmp, { write: true, createNew: true });
    const sink = new GzipFileSink(file, level);
    return new TokenWriter(
      dataPath,
      indexPath,
      labelsPath,
      gridSide,
      (codebookSize ?? MAX_STORABLE_CODE + 1) - 1,
      tmp,
      sink,
    );
  }

  /** Records appended so far. */
  get length(): number {
    return this.#count;
  }

  #checkOpen(): void {
    if (this.#state !== "open") {
      throw new TypeError(`Cannot append to "${this.dataPath}": the writer is ${this.#state}`);
    }
  }

  #pushLabel(label: number | undefined): void {
    const i = this.#count;
    if (label === undefined) {
      if (this.#labels !== null) {
        throw new TypeError(
          `Cannot append record ${i} to "${this.dataPath}" without a label: the records before it have labels`,
        );
      }
      return;
    }
    if (!(Number.isInteger(label) && label >= 0 && label <= 2147483647)) {
      throw new RangeError(
        `Cannot use label ${label} for record ${i}: expected a class index (an int32 >= 0)`,
      );
    }
    if (this.#labels === null) {
      if (i > 0) {
        throw new TypeError(
          `Cannot append record ${i} to "${this.dataPath}" with a label: the records before it have none`,
        );
      }
      if (this.labelsPath === null) {
        throw new TypeError(
          `Cannot write labels for "${this.dataPath}": no label file (labelsPath is null or cannot be derived)`,
        );
      }
      this.#labels = new Int32Array(1024);
    }
    if (i >= this.#labels.length) {
      const grown = new Int32Array(this.#labels.length * 2);
      grown.set(this.#labels);
      this.#labels = grown;
    }
    this.#labels[i] = label;
  }

  async #flush(): Promise<void> {
    if (this.#pos === 0) return;
    const chunk = this.#buf.subarray(0, this.#pos);
    this.#buf = new Uint8Array(this.#buf.length); // the sink keeps the old one
    this.#pos = 0;
    await this.#sink.write(chunk);
  }

  /** Encode one validated record (codes[from .. from+nn)) and record its offset. */
  async #put(codes: ArrayLike<number>, from: number, label: number | undefined): Promise<void> {
    const nn = this.codesPerRecord;
    const bad = findInvalidCode(codes, from, nn, this.#maxCode);
    if (bad >= 0) {
      throw new RangeError(
        `Cannot write record ${this.#count} to "${this.dataPath}": code ${codes[bad]} at position ${
          bad - from
        } is outside 0..${this.#maxCode}`,
      );
    }
    this.#pushLabel(label);
    if (this.#pos + 2 * nn > this.#buf.length) await this.#flush();
    const end = encodeRecord(codes, from, nn, this.#buf, this.#pos);
    this.#bytes += end - this.#pos;
    this.#pos = end;
    this.#count++;
    if (this.#count >= this.#offsets.length) {
      const grown = new Float64Array(this.#offsets.length * 2);
      grown.set(this.#offsets);
      this.#offsets = grown;
    }
    this.#offsets[this.#count] = this.#bytes;
  }

  async #guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      if (!(e instanceof RangeError || e instanceof TypeError)) this.#state = "failed";
      throw e;
    }
  }

  /**
   * Append one record.
   *
   * @param codes n*n codes, row-major
   * @param label its label; either every record has one or none has
   * @throws {TypeError} for a wrong code count, a label where the earlier records had none
   *   (or the reverse), or a closed writer
   * @throws {RangeError} for a code outside 0..K-1 (or 0..510), a non-integer code or label;
   *   nothing is written for that record and the writer stays usable
   */
  append(codes: ArrayLike<number>, label?: number): Promise<void> {
    return this.#guard(async () => {
      this.#checkOpen();
      if (codes.length !== this.codesPerRecord) {
        throw new TypeError(
          `Cannot write record ${this.#count} to "${this.dataPath}": expected ${this.codesPerRecord} codes, got ${codes.length}`,
        );
      }
      await this.#put(codes, 0, label);
    });
  }

  /**
   * Append B records.
   *
   * @param codes `[B, n, n]` codes, row-major (length B*n*n)
   * @param labels B labels, or none
   * @throws {TypeError} for a length that is not a multiple of n*n, a label count other
   *   than B, or label presence that differs from the earlier records
   * @throws {RangeError} for a bad code or label (the records before it are written)
   */
  appendBatch(codes: ArrayLike<number>, labels?: ArrayLike<number>): Promise<void> {
    return this.#guard(async () => {
      this.#checkOpen();
      const nn = this.codesPerRecord;
      if (codes.length % nn !== 0) {
        throw new TypeError(
          `Cannot write a batch of ${codes.length} codes to "${this.dataPath}": not a multiple of ${nn}`,
        );
      }
      const b = codes.length / nn;
      if (labels !== undefined && labels.length !== b) {
        throw new TypeError(
          `Cannot write a batch of ${b} records with ${labels.length} labels to "${this.dataPath}"`,
        );
      }
      for (let j = 0; j < b; j++) await this.#put(codes, j * nn, labels?.[j]);
    });
  }

  /**
   * Finish: flush and close the gzip stream, write the index and the labels, and rename
   * the data file into place.
   *
   * @returns what was written
   * @throws {TypeError} when the writer is not open
   */
  async close(): Promise<TokenWriteSummary> {
    this.#checkOpen();
    try {
      await this.#flush();
      await this.#sink.end();
    } catch (e) {
      this.#sink.destroy();
      await this.abort();
      throw e;
    }
    this.#state = "closed";
    const n = this.#count;
    const offsets = new BigInt64Array(n + 1);
    for (let i = 0; i <= n; i++) offsets[i] = BigInt(this.#offsets[i]);
    try {
      await Deno.rename(this.#tmp, this.dataPath);
      await writeNpyFile(this.indexPath, { dtype: "int64", shape: [n + 1], data: offsets });
      if (this.#labels !== null) await writeLabels(this.labelsPath!, this.#labels.subarray(0, n));
    } catch (e) {
      await Deno.remove(this.#tmp).catch(() => {});
      throw e;
    }
    return {
      records: n,
      dataPath: this.dataPath,
      indexPath: this.indexPath,
      labelsPath: this.#labels === null ? null : this.labelsPath,
      dataBytes: this.#bytes,
      compressedBytes: this.#sink.bytesOut,
    };
  }

  /** Stop and remove the temporary data file; nothing is left behind. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "failed";
    this.#sink.destroy();
    await Deno.remove(this.#tmp).catch(() => {});
  }
}

/** Options of {@linkcode writeTokenDataset}. */
export interface WriteTokenDatasetOptions extends TokenWriterOptions {
  /** Labels, one per record. */
  labels?: ArrayLike<number>;
}

/**
 * Write a whole in-memory dataset in one call.
 *
 * @param dataPath the `NAME-token.data.bin.gz` file to create
 * @param codes `[N, n, n]` codes, row-major
 * @param options as {@linkcode TokenWriter.create}, plus `labels`
 * @returns what was written
 * @throws {TypeError | RangeError} as {@linkcode TokenWriter.appendBatch}; nothing is left behind
 */
export async function writeTokenDataset(
  dataPath: string,
  codes: ArrayLike<number>,
  options: WriteTokenDatasetOptions,
): Promise<TokenWriteSummary> {
  const w = await TokenWriter.create(dataPath, options);
  try {
    await w.appendBatch(codes, options.labels);
  } catch (e) {
    await w.abort();
    throw e;
  }
  return await w.close();
}
