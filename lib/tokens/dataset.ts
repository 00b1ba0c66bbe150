/**
 * Reading token datasets in the official SeiT release format (REFERENCE.md section 1):
 * `NAME-token.data.bin.gz` (gzip of all records' bytes), `NAME-token.index.npy.gz`
 * (gzip of an int64 `.npy` of N+1 byte offsets) and `NAME-label.txt`.
 *
 * The whole decompressed stream lives in ONE preallocated `Uint8Array` and the offsets in
 * one `Float64Array`; records are decoded on demand into caller-provided `Int32Array`s, so
 * ImageNet (1.28M records x 1024 codes, ~1.3 GB) opens without per-record JS objects.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  checkReadSize,
  gunzipChunks,
  type HostTensor,
  maxReadBytes,
  readFileChecked,
  readNpy,
} from "../io/mod.ts";
import { DANGLING, decodeRecord, MAX_STORABLE_CODE, scanRecord, type ScanState } from "./_codec.ts";
import { CorruptRecordError, TokenFileError } from "./errors.ts";
import { checkLabelRange, readLabels } from "./labels.ts";

/**
 * deflate expands at most ~1032x; an index claiming more bytes than this times the gzip
 * file's size (plus slack for headers) cannot be right, and is refused before allocating.
 */
const MAX_DEFLATE_RATIO = 1032;

/**
 * The largest grid side a token file may declare unless `maxGridSide` says otherwise
 * (SeiT uses 32; 256 allows 65536 codes per image). A record of an n x n grid holds at most
 * 2*n*n bytes (every code escaped), so this bounds every record's length before the data
 * is allocated.
 */
export const DEFAULT_MAX_GRID_SIDE = 256;

/** Options of {@linkcode parseTokenIndex}. */
export interface TokenIndexOptions {
  /** The grid side n when known: every record must hold n*n..2*n*n bytes. */
  gridSide?: number;
  /** The largest grid side accepted when n is not given. @default {DEFAULT_MAX_GRID_SIDE} */
  maxGridSide?: number;
  /** The cap on the decompressed index. @default {maxReadBytes()} */
  maxBytes?: number;
}

function splitPath(path: string): [string, string] {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return [path.slice(0, i + 1), path.slice(i + 1)];
}

/**
 * The index file that belongs to a data file: the reference replaces `data.bin` by
 * `index.npy` in the name (`x-token.data.bin.gz` -> `x-token.index.npy.gz`). Only the
 * file name is rewritten, never the folders.
 *
 * @param dataPath path of the `...data.bin.gz` file
 * @returns the index path
 * @throws {TypeError} when the file name holds no `data.bin`
 *
 * @example
 * ```ts
 * import { tokenIndexPath } from "@lib/tokens";
 * console.assert(tokenIndexPath("t/in1k-train-token.data.bin.gz") === "t/in1k-train-token.index.npy.gz");
 * ```
 */
export function tokenIndexPath(dataPath: string): string {
  const [dir, base] = splitPath(dataPath);
  if (!base.includes("data.bin")) {
    throw new TypeError(
      `Cannot derive the index file of "${dataPath}": its name holds no "data.bin"; pass the index path`,
    );
  }
  return dir + base.replaceAll("data.bin", "index.npy");
}

/**
 * The label file that the release ships next to a data file:
 * `NAME-token.data.bin.gz` -> `NAME-label.txt`.
 *
 * @param dataPath path of the data file
 * @returns the label path, or `null` when the name does not end in `-token.data.bin.gz`
 *
 * @example
 * ```ts
 * import { tokenLabelsPath } from "@lib/tokens";
 * console.assert(tokenLabelsPath("imagenet1k-train-token.data.bin.gz") === "imagenet1k-train-label.txt");
 * ```
 */
export function tokenLabelsPath(dataPath: string): string | null {
  const suffix = "-token.data.bin.gz";
  if (!dataPath.endsWith(suffix)) return null;
  return dataPath.slice(0, -suffix.length) + "-label.txt";
}

/**
 * Parse a token index (`.npy` or `.npy.gz`, any integer dtype, 1-D) into offsets.
 * Checks that there is at least one offset, the first is 0 and they never decrease.
 *
 * @param bytes the file's bytes
 * @param source the file name used in error messages
 * @param options the grid side when known, the largest one otherwise, the cap
 * @returns the N+1 offsets
 * @throws {TokenFileError} for a bad gzip/.npy file, a non-integer or non-1-D array,
 *   no offsets, or a first offset other than 0
 * @throws {CorruptRecordError} naming the record whose end offset is before its start, or
 *   whose length no grid of the given (or largest) side can take
 */
export function parseTokenIndex(
  bytes: Uint8Array,
  source = "<bytes>",
  options: TokenIndexOptions = {},
): Float64Array {
  let t: HostTensor;
  try {
    t = readNpy(bytes, { source, maxBytes: options.maxBytes });
  } catch (e) {
    if (e instanceof SyntaxError) throw new TokenFileError(source, e.message, { cause: e });
    throw e;
  }
  const bad = (what: string) =>
    new TokenFileError(source, `Cannot read index "${source}": ${what}`);
  if (t.shape.length !== 1) {
    throw bad(`expected a 1-D array of offsets, got shape [${t.shape}]`);
  }
  if (!["int64", "int32", "int16", "int8", "uint8"].includes(t.dtype)) {
    throw bad(`expected integer offsets, got ${t.dtype}`);
  }
  const n = t.shape[0];
  if (n === 0) throw bad("it holds no offsets (N records need N+1)");
  const offsets = new Float64Array(n);
  if (t.dtype === "int64") {
    const d = t.data as BigInt64Array;
    for (let i = 0; i < n; i++) {
      const v = d[i];
      if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw bad(`offset ${i} is ${v}, outside 0..2^53`);
      }
      offsets[i] = Number(v);
    }
  } else {
    offsets.set(t.data as Int32Array);
  }
  if (offsets[0] !== 0) throw bad(`the first offset is ${offsets[0]}, expected 0`);
  const side = options.gridSide;
  const maxSide = options.maxGridSide ?? DEFAULT_MAX_GRID_SIDE;
  checkPositiveInt("grid side", side, 46340);
  checkPositiveInt("largest grid side", maxSide, 46340);
  const lo = side === undefined ? 0 : side * side;
  const hi = 2 * (side ?? maxSide) ** 2;
  for (let i = 0; i + 1 < n; i++) {
    const len = offsets[i + 1] - offsets[i];
    if (len < 0) {
      throw new CorruptRecordError(
        source,
        i,
        `its end offset ${offsets[i + 1]} is before its start offset ${offsets[i]}`,
      );
    }
    if (len > hi || len < lo) {
      const grid = side === undefined
        ? `a grid of side at most ${maxSide} (maxGridSide) takes at most ${hi} bytes`
        : `a ${side}x${side} grid takes ${lo}..${hi} bytes`;
      throw new CorruptRecordError(source, i, `the index gives it ${len} bytes, but ${grid}`);
    }
  }
  return offsets;
}

/** Options of {@linkcode openTokenDataset} and {@linkcode TokenDataset.fromBuffers}. */
export interface TokenDatasetOptions {
  /**
   * The index file.
   * @default {tokenIndexPath(dataPath)}
   */
  indexPath?: string;
  /**
   * The label file; `null` for none. When left out, the release's sibling
   * (`tokenLabelsPath(dataPath)`) is used if it exists.
   */
  labelsPath?: string | null;
  /** The grid side n (each record holds n*n codes). Inferred from record 0 when left out. */
  gridSide?: number;
  /** The codebook size K: every code must be < K. Unchecked (beyond 0..510) when left out. */
  codebookSize?: number;
  /** The largest grid side accepted when `gridSide` is not given. @default {DEFAULT_MAX_GRID_SIDE} */
  maxGridSide?: number;
  /**
   * The number of classes: every label must be in 0..numClasses-1 (checked when the data
   * opens, naming the label file and line). Unchecked (beyond >= 0) when left out.
   */
  numClasses?: number;
  /** The cap on the decompressed data and index. @default {maxReadBytes()} */
  maxBytes?: number;
  /**
   * Decode-check every record when opening (code count, codebook range), so that a
   * corrupt record is reported up front rather than mid-epoch. Reads are always checked.
   * @default {true}
   */
  verify?: boolean;
}

/** Options of {@linkcode TokenDataset.fromBuffers}: names for error messages and labels. */
export interface TokenDatasetBufferOptions {
  /** Labels, one per record. */
  labels?: Int32Array | null;
  /** The grid side n; inferred from record 0 when left out. */
  gridSide?: number;
  /** The codebook size K. */
  codebookSize?: number;
  /** @default {true} */
  verify?: boolean;
  /** Data name in messages. @default {"<data>"} */
  dataPath?: string;
  /** Index name in messages. @default {"<index>"} */
  indexPath?: string;
  /** Labels name in messages. @default {"<labels>"} */
  labelsPath?: string;
}

function checkPositiveInt(name: string, v: number | undefined, max = Infinity): void {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1 && v <= max)) {
    throw new RangeError(`Cannot use ${name} ${v}: expected an integer in 1..${max}`);
  }
}

/**
 * An opened token dataset: the decompressed stream, offsets and labels in memory,
 * records decoded on demand. Create with {@linkcode openTokenDataset} (files) or
 * {@linkcode TokenDataset.fromBuffers} (memory).
 *
 * @example
 * ```ts
 * import { TokenDataset } from "@lib/tokens";
 * // two 2x2 records; the code 300 is stored as the bytes 255, 45
 * const data = new Uint8Array([1, 2, 3, 4, 255, 45, 0, 0, 9]);
 * const ds = TokenDataset.fromBuffers(data, new Float64Array([0, 4, 9]));
 * console.assert(ds.length === 2 && ds.gridSide === 2);
 * console.assert(ds.readRecord(1).join() === "300,0,0,9");
 * ```
 */
export class TokenDataset {
  /** The data file (or its name in messages). */
  readonly dataPath: string;
  /** The index file (or its name in messages). */
  readonly indexPath: string;
  /** The label file, or `null` when there are no labels. */
  readonly labelsPath: string | null;
  /** Number of records N. */
  readonly length: number;
  /** Grid side n (0 for an empty dataset whose side was not given). */
  readonly gridSide: number;
  /** Codes per record, n*n. */
  readonly codesPerRecord: number;
  /** The codebook size K the codes were checked against, or `null`. */
  readonly codebookSize: number | null;
  /** Labels, one per record, or `null`. Do not modify. */
  readonly labels: Int32Array | null;
  /** The decompressed byte stream. Do not modify. */
  readonly data: Uint8Array;
  /** The N+1 byte offsets of the records into {@linkcode TokenDataset.data}. Do not modify. */
  readonly offsets: Float64Array;

  private constructor(
    data: Uint8Array,
    offsets: Float64Array,
    o: Required<Omit<TokenDatasetBufferOptions, "labelsPath" | "gridSide" | "codebookSize">> & {
      labelsPath: string | null;
      gridSide: number;
      codebookSize: number | null;
    },
  ) {
    this.data = data;
    this.offsets = offsets;
    this.dataPath = o.dataPath;
    this.indexPath = o.indexPath;
    this.labelsPath = o.labelsPath;
    this.length = offsets.length - 1;
    this.gridSide = o.gridSide;
    this.codesPerRecord = o.gridSide * o.gridSide;
    this.codebookSize = o.codebookSize;
    this.labels = o.labels;
  }

  /**
   * Build a dataset from an in-memory decompressed stream and offsets, validated exactly
   * as {@linkcode openTokenDataset} validates files.
   *
   * @param data the decompressed byte stream (kept, not copied)
   * @param offsets N+1 byte offsets (kept, not copied)
   * @param options labels, grid side, codebook size, names for messages
   * @returns the dataset
   * @throws {TokenFileError} for offsets that do not start at 0 or end at `data.length`,
   *   or a label count other than N
   * @throws {CorruptRecordError} for a record with a negative length, the wrong number of
   *   codes (not a square for record 0 when n is inferred), a dangling escape, or a code >= K
   * @throws {RangeError} for a bad `gridSide` or `codebookSize`
   */
  static fromBuffers(
    data: Uint8Array,
    offsets: Float64Array,
    options: TokenDatasetBufferOptions = {},
  ): TokenDataset {
    const dataPath = options.dataPath ?? "<data>";
    const indexPath = options.indexPath ?? "<index>";
    checkPositiveInt("grid side", options.gridSide, 46340);
    checkPositiveInt("codebook size", options.codebookSize, MAX_STORABLE_CODE + 1);
    if (offsets.length === 0) {
      throw new TokenFileError(
        indexPath,
        `Cannot read index "${indexPath}": it holds no offsets (N records need N+1)`,
      );
    }
    if (offsets[0] !== 0) {
      throw new TokenFileError(
        indexPath,
        `Cannot read index "${indexPath}": the first offset is ${offsets[0]}, expected 0`,
      );
    }
    const n = offsets.length - 1;
    for (let i = 0; i < n; i++) {
      if (!(offsets[i + 1] >= offsets[i])) {
        throw new CorruptRecordError(
          indexPath,
          i,
          `its end offset ${offsets[i + 1]} is before its start offset ${offsets[i]}`,
        );
      }
    }
    checkDataLength(offsets, data.length, dataPath, indexPath);
    const state: ScanState = { max: -1 };
    let gridSide = options.gridSide ?? 0;
    if (options.gridSide === undefined && n > 0) {
      const count = scanRecord(data, 0, offsets[1], state);
      if (count === DANGLING) throw danglingError(dataPath, 0);
      const side = Math.round(Math.sqrt(count));
      if (count === 0 || side * side !== count) {
        throw new CorruptRecordError(dataPath, 0, `its ${count} codes do not form a square grid`);
      }
      gridSide = side;
    }
    const labels = options.labels ?? null;
    const labelsPath = labels === null ? null : options.labelsPath ?? "<labels>";
    if (labels !== null && labels.length !== n) {
      throw new TokenFileError(
        labelsPath!,
        `Cannot pair labels "${labelsPath}" with "${dataPath}": ${labels.length} labels for ${n} records`,
      );
    }
    const ds = new TokenDataset(data, offsets, {
      dataPath,
      indexPath,
      labelsPath,
      labels,
      gridSide,
      codebookSize: options.codebookSize ?? null,
      verify: options.verify ?? true,
    });
    if (options.verify ?? true) ds.#verifyAll();
    return ds;
  }

  #verifyAll(): void {
    const { data, offsets } = this;
    const nn = this.codesPerRecord;
    const k = this.codebookSize ?? MAX_STORABLE_CODE + 1;
    const state: ScanState = { max: -1 };
    for (let i = 0; i < this.length; i++) {
      const count = scanRecord(data, offsets[i], offsets[i + 1], state);
      if (count !== nn || state.max >= k) this.#recordError(i);
    }
  }

  /** Throw the precise error for record i (count, dangling escape, or code >= K). */
  #recordError(i: number): never {
    const start = this.offsets[i], end = this.offsets[i + 1];
    const state: ScanState = { max: -1 };
    const count = scanRecord(this.data, start, end, state);
    if (count === DANGLING) throw danglingError(this.dataPath, i);
    if (count !== this.codesPerRecord) {
      throw new CorruptRecordError(
        this.dataPath,
        i,
        `expected ${this.codesPerRecord} codes, got ${count}`,
      );
    }
    const codes = new Int32Array(count);
    decodeRecord(this.data, start, end, codes, 0, count);
    const k = this.codebookSize!;
    const pos = codes.findIndex((c) => c >= k);
    const n = this.gridSide;
    throw new CorruptRecordError(
      this.dataPath,
      i,
      `code ${codes[pos]} at row ${Math.floor(pos / n)}, column ${
        pos % n
      } is outside the codebook of ${k} codes`,
    );
  }

  #checkIndex(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.length)) {
      throw new RangeError(
        `Cannot read record ${i} of "${this.dataPath}": it holds ${this.length} records`,
      );
    }
  }

  /**
   * The raw encoded bytes of record i (a view into {@linkcode TokenDataset.data}).
   * @param i record index
   * @returns the bytes (do not modify)
   * @throws {RangeError} for an index outside 0..N-1
   */
  recordBytes(i: number): Uint8Array {
    this.#checkIndex(i);
    return this.data.subarray(this.offsets[i], this.offsets[i + 1]);
  }

  /**
   * Decode record i (row-major n x n codes) into `out[outOffset .. outOffset + n*n)`.
   *
   * @param i record index
   * @param out destination; a new `Int32Array(n*n)` when left out
   * @param outOffset where the first code goes
   * @returns `out`
   * @throws {RangeError} for an index outside 0..N-1 or an `out` too short
   * @throws {CorruptRecordError} when the record does not decode to n*n codes < K (only
   *   possible when the dataset was opened with `verify: false`)
   */
  readRecord(i: number, out?: Int32Array, outOffset = 0): Int32Array {
    this.#checkIndex(i);
    const nn = this.codesPerRecord;
    out ??= new Int32Array(nn);
    if (!(Number.isInteger(outOffset) && outOffset >= 0 && outOffset + nn <= out.length)) {
      throw new RangeError(
        `Cannot decode record ${i} into ${out.length} codes at offset ${outOffset}: it needs ${nn}`,
      );
    }
    const count = decodeRecord(this.data, this.offsets[i], this.offsets[i + 1], out, outOffset, nn);
    if (count !== nn) this.#recordError(i);
    const k = this.codebookSize;
    if (k !== null) {
      for (let j = outOffset, e = outOffset + nn; j < e; j++) {
        if (out[j] >= k) this.#recordError(i);
      }
    }
    return out;
  }

  /**
   * Decode several records, in the given order, into one row-major buffer.
   *
   * @param indices record indices (repeats allowed)
   * @param out destination of length >= B*n*n; a new one when left out
   * @returns `out`, holding `[B, n, n]` int32 codes
   * @throws {RangeError} for a bad index or an `out` too short
   * @throws {CorruptRecordError} as {@linkcode TokenDataset.readRecord}
   *
   * @example
   * ```ts
   * import { TokenDataset } from "@lib/tokens";
   * const ds = TokenDataset.fromBuffers(new Uint8Array([5, 6, 7]), new Float64Array([0, 1, 2, 3]));
   * console.assert(ds.readBatch([2, 0]).join() === "7,5");
   * ```
   */
  readBatch(indices: ArrayLike<number>, out?: Int32Array): Int32Array {
    const nn = this.codesPerRecord;
    const b = indices.length;
    out ??= new Int32Array(b * nn);
    if (out.length < b * nn) {
      throw new RangeError(
        `Cannot decode ${b} records into ${out.length} codes: they need ${b * nn}`,
      );
    }
    for (let j = 0; j < b; j++) this.readRecord(indices[j], out, j * nn);
    return out;
  }

  /**
   * Decode several records into a tensor.
   *
   * @param indices record indices
   * @returns a new `[B, n, n]` int32 tensor; the caller owns (and disposes) it
   * @throws {RangeError} for a bad index
   * @throws {CorruptRecordError} as {@linkcode TokenDataset.readRecord}
   */
  readBatchTensor(indices: ArrayLike<number>): tf.Tensor3D {
    const n = this.gridSide;
    return tf.tensor3d(this.readBatch(indices), [indices.length, n, n], "int32");
  }

  /**
   * The labels of several records.
   *
   * @param indices record indices
   * @param out destination of length >= B; a new one when left out
   * @returns `out`
   * @throws {TypeError} when the dataset has no labels
   * @throws {RangeError} for a bad index
   */
  labelsOf(indices: ArrayLike<number>, out?: Int32Array): Int32Array {
    const labels = this.labels;
    if (labels === null) {
      throw new TypeError(`Cannot read labels of "${this.dataPath}": it was opened without labels`);
    }
    out ??= new Int32Array(indices.length);
    if (out.length < indices.length) {
      throw new RangeError(
        `Cannot read ${indices.length} labels into ${out.length} slots`,
      );
    }
    for (let j = 0; j < indices.length; j++) {
      const i = indices[j];
      this.#checkIndex(i);
      out[j] = labels[i];
    }
    return out;
  }
}

/**
 * Check that the offsets (already non-decreasing) span exactly `length` bytes.
 * @throws {CorruptRecordError} naming the first record that ends past `length`
 * @throws {TokenFileError} when the data runs on past the last offset
 */
function checkDataLength(
  offsets: Float64Array,
  length: number,
  dataPath: string,
  indexPath: string,
): void {
  const n = offsets.length - 1;
  const last = offsets[n];
  if (last > length) {
    let i = 0;
    while (offsets[i + 1] <= length) i++;
    throw new CorruptRecordError(
      dataPath,
      i,
      `index "${indexPath}" puts its end at byte ${
        offsets[i + 1]
      }, past the end of the ${length} decompressed bytes`,
    );
  }
  if (last < length) {
    const size = length === last + 1 ? `more than ${last}` : `${length}`;
    throw new TokenFileError(
      dataPath,
      `Cannot read token data "${dataPath}": it decompresses to ${size} bytes, but index "${indexPath}" ends at byte ${last}`,
    );
  }
}

function danglingError(file: string, record: number): CorruptRecordError {
  return new CorruptRecordError(
    file,
    record,
    "its last byte is a 255 escape with no code byte after it",
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Stream-decompress a gzip file into a preallocated buffer of exactly `size` bytes,
 * stopping as soon as the stream runs past `size` (a gzip bomb costs one chunk).
 * @returns the buffer and the decompressed length (`size + 1` when the stream is longer)
 */
async function gunzipInto(path: string, size: number): Promise<[Uint8Array, number]> {
  const buf = new Uint8Array(size);
  let pos = 0, total = 0;
  const file = await Deno.open(path);
  try {
    for await (const chunk of gunzipChunks(file.readable, { source: path })) {
      const room = size - pos;
      if (chunk.length > room) {
        total = size + 1;
        break;
      }
      buf.set(chunk, pos);
      pos += chunk.length;
      total = pos;
    }
  } catch (e) {
    if (e instanceof SyntaxError) throw new TokenFileError(path, e.message, { cause: e });
    throw e;
  } finally {
    try {
      file.close();
    } catch {
      // the readable stream closed it already
    }
  }
  return [buf, total];
}

/**
 * Open a token dataset: read and check the index, stream-decompress the data into one
 * buffer sized by the last offset, read the labels, and (by default) decode-check every
 * record.
 *
 * @param dataPath the `NAME-token.data.bin.gz` file
 * @param options index/labels paths, grid side, codebook size, verification
 * @returns the dataset
 * @throws {Deno.errors.NotFound} when the data, index or an explicitly named label file is missing
 * @throws {TokenFileError} for a corrupt or truncated gzip stream, a malformed index, data
 *   longer than the index says, or a label count other than N, e.g.
 *   `Cannot pair labels "a-label.txt" with "a-token.data.bin.gz": 49 labels for 50 records`
 * @throws {CorruptRecordError} for a bad record, e.g.
 *   `Cannot decode record 17 of "train-token.data.bin.gz": expected 1024 codes, got 1022`
 * @throws {TypeError} when no index path is given and none can be derived, or a file is a
 *   directory
 * @throws {RangeError} when the index declares more data than the cap
 *
 * @example
 * ```ts ignore
 * import { openTokenDataset } from "@lib/tokens";
 * const ds = await openTokenDataset("data/imagenet1k-train-token.data.bin.gz", { codebookSize: 391 });
 * const batch = ds.readBatch([0, 5, 9]); // Int32Array [3 * 32 * 32]
 * ```
 */
export async function openTokenDataset(
  dataPath: string,
  options: TokenDatasetOptions = {},
): Promise<TokenDataset> {
  checkPositiveInt("grid side", options.gridSide, 46340);
  checkPositiveInt("codebook size", options.codebookSize, MAX_STORABLE_CODE + 1);
  const indexPath = options.indexPath ?? tokenIndexPath(dataPath);
  let labelsPath: string | null;
  if (options.labelsPath === undefined) {
    const derived = tokenLabelsPath(dataPath);
    labelsPath = derived !== null && await exists(derived) ? derived : null;
  } else {
    labelsPath = options.labelsPath;
  }
  checkPositiveInt("largest grid side", options.maxGridSide, 46340);
  checkPositiveInt("number of classes", options.numClasses);
  const cap = maxReadBytes(options.maxBytes);
  const offsets = parseTokenIndex(
    await readFileChecked(indexPath, { what: "index", maxBytes: cap }),
    indexPath,
    { gridSide: options.gridSide, maxGridSide: options.maxGridSide, maxBytes: cap },
  );
  const size = offsets[offsets.length - 1];
  const info = await Deno.stat(dataPath).catch((e) => {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`Cannot read token data "${dataPath}": no such file`);
    }
    throw e;
  });
  if (info.isDirectory) {
    throw new TypeError(`Cannot read token data "${dataPath}": it is a directory, not a file`);
  }
  checkReadSize(`token data "${dataPath}" (as index "${indexPath}" declares)`, size, cap);
  const gzSize = info.size;
  const bound = MAX_DEFLATE_RATIO * gzSize + 4096;
  if (size > bound) {
    throw new TokenFileError(
      indexPath,
      `Cannot read index "${indexPath}": its last offset ${size} exceeds the ${bound} bytes that the ${gzSize}-byte "${dataPath}" can decompress to`,
    );
  }
  const [data, total] = await gunzipInto(dataPath, size);
  checkDataLength(offsets, total, dataPath, indexPath);
  const labels = labelsPath === null ? null : await readLabels(labelsPath);
  if (labels !== null && options.numClasses !== undefined) {
    checkLabelRange(labels, options.numClasses, labelsPath!);
  }
  return TokenDataset.fromBuffers(data, offsets, {
    labels,
    labelsPath: labelsPath ?? undefined,
    gridSide: options.gridSide,
    codebookSize: options.codebookSize,
    verify: options.verify,
    dataPath,
    indexPath,
  });
}
