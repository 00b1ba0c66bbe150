/**
 * NumPy `.npy` arrays (format versions 1, 2 and 3), plain or gzip-compressed.
 *
 * @module
 */
import {
  type DType,
  DTYPE_BYTES,
  type HostTensor,
  sizeOf,
  typedArrayFromBytes,
} from "./host_tensor.ts";
import { gunzip, GunzipLimitError, gunzipPrefix, gzip } from "./gzip.ts";
import { readFileChecked, writeFileAtomic } from "./fs.ts";
import { checkReadSize, maxReadBytes } from "./limits.ts";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR_TO_DTYPE: Record<string, DType> = {
  f8: "float64",
  f4: "float32",
  f2: "float16",
  i8: "int64",
  i4: "int32",
  i2: "int16",
  i1: "int8",
  u1: "uint8",
  b1: "bool",
};

const DTYPE_TO_DESCR: Partial<Record<DType, string>> = {
  float64: "<f8",
  float32: "<f4",
  float16: "<f2",
  int64: "<i8",
  int32: "<i4",
  int16: "<i2",
  int8: "|i1",
  uint8: "|u1",
  bool: "|b1",
};

/** Options of {@linkcode readNpy}. */
export interface NpyReadOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
  /** The cap on the decompressed size. @default {maxReadBytes()} */
  maxBytes?: number;
}

function bad(source: string, what: string): SyntaxError {
  return new SyntaxError(`Cannot read .npy "${source}": ${what}`);
}

/**
 * Parse an `.npy` file. A gzip-compressed file (magic 1f 8b) is decompressed first.
 * Big-endian and Fortran-order arrays are converted to little-endian C order.
 *
 * @param bytes the file's bytes
 * @param options source name for errors
 * @returns the array (its data may share memory with `bytes`)
 * @throws {SyntaxError} for a bad magic, header or size, e.g.
 *   `Cannot read .npy "x.npy": data holds 12 bytes, shape [4] of int64 needs 32`, or a
 *   gzip stream that runs past the bytes its header declares (decompression stops there)
 * @throws {RangeError} when the header asks for more than the cap
 *
 * @example
 * ```ts
 * import { readNpy, writeNpy } from "@lib/io";
 * const t = { dtype: "int64" as const, shape: [3], data: new BigInt64Array([0n, 5n, 9n]) };
 * console.assert(readNpy(writeNpy(t)).data[2] === 9n);
 * ```
 */
export function readNpy(bytes: Uint8Array, options: NpyReadOptions = {}): HostTensor {
  const source = options.source ?? "<bytes>";
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    // read the header first, then decompress exactly what it declares (a gzip bomb stops there)
    const start = headerBounds(gunzipPrefix(bytes, 12, { source }), source, false);
    const head = parseHeader(gunzipPrefix(bytes, start.dataStart, { source }), source);
    const declared = head.dataStart + head.need;
    checkReadSize(`.npy "${source}"`, declared, maxReadBytes(options.maxBytes));
    try {
      bytes = gunzip(bytes, { source, maxBytes: Math.max(declared, 1) });
    } catch (e) {
      if (!(e instanceof GunzipLimitError)) throw e;
      throw bad(
        source,
        `it decompresses past the ${declared} bytes its header declares (shape [${head.shape}] of ${head.dtype})`,
      );
    }
  }
  const { dtype, shape, order, fortran, dataStart, need } = parseHeader(bytes, source);
  const have = bytes.length - dataStart;
  if (have < need) {
    throw bad(source, `data holds ${have} bytes, shape [${shape}] of ${dtype} needs ${need}`);
  }
  let raw = bytes.subarray(dataStart, dataStart + need);
  const size = DTYPE_BYTES[dtype];
  if (order === ">" && size > 1) {
    raw = raw.slice();
    for (let i = 0; i < raw.length; i += size) raw.subarray(i, i + size).reverse();
  }
  let data = typedArrayFromBytes(dtype, raw);
  if (fortran && shape.length > 1) data = fortranToC(data, shape);
  return { dtype, shape, data };
}

/** numpy itself refuses headers over 10000 bytes by default; we allow 1 MB. */
const MAX_HEADER = 2 ** 20;

function headerBounds(
  bytes: Uint8Array,
  source: string,
  complete = true,
): { major: number; headerStart: number; dataStart: number } {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) {
    throw bad(source, "missing the \\x93NUMPY magic");
  }
  const major = bytes[6];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number, headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw bad(source, "truncated header");
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw bad(source, `unsupported format version ${major}.${bytes[7]}`);
  }
  if (headerLen > MAX_HEADER) {
    throw bad(source, `header of ${headerLen} bytes is longer than the ${MAX_HEADER} allowed`);
  }
  const dataStart = headerStart + headerLen;
  if (complete && dataStart > bytes.length) {
    throw bad(
      source,
      `header of ${headerLen} bytes runs past the end of the ${bytes.length}-byte file`,
    );
  }
  return { major, headerStart, dataStart };
}

interface NpyHeader {
  dtype: DType;
  shape: number[];
  order: string;
  fortran: boolean;
  dataStart: number;
  /** Bytes of data the shape needs. */
  need: number;
}

function parseHeader(bytes: Uint8Array, source: string): NpyHeader {
  const { major, headerStart, dataStart } = headerBounds(bytes, source);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(headerStart, dataStart),
  );
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw bad(source, `header is not a valid dict: ${JSON.stringify(header.trim().slice(0, 200))}`);
  }
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map((s) => {
    const d = Number(s.replace(/L$/, ""));
    if (!Number.isSafeInteger(d) || d < 0) throw bad(source, `bad dimension "${s}" in shape`);
    return d;
  });
  const order = descr[0];
  const dtype = DESCR_TO_DTYPE[descr.slice(1)];
  if (dtype === undefined || !"<>|=".includes(order)) {
    throw bad(source, `unsupported dtype descr '${descr}'`);
  }
  const need = sizeOf(shape) * DTYPE_BYTES[dtype];
  if (!Number.isSafeInteger(need)) throw bad(source, `shape [${shape}] is too large`);
  return { dtype, shape, order, fortran: fortran === "True", dataStart, need };
}

function fortranToC<T extends HostTensor["data"]>(data: T, shape: number[]): T {
  const n = data.length;
  const out = new (data.constructor as new (n: number) => T)(n);
  const rank = shape.length;
  const fStrides = new Array<number>(rank);
  let s = 1;
  for (let d = 0; d < rank; d++) {
    fStrides[d] = s;
    s *= shape[d];
  }
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let f = 0;
    for (let d = 0; d < rank; d++) f += idx[d] * fStrides[d];
    (out as unknown as number[])[i] = (data as unknown as number[])[f];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Serialize an array as `.npy` (version 1.0, little-endian, C order).
 *
 * @param t the array (bfloat16 is refused: NumPy has no such dtype)
 * @returns the file's bytes
 * @throws {TypeError} for bfloat16 or a data length that does not match the shape
 */
export function writeNpy(t: HostTensor): Uint8Array {
  const descr = DTYPE_TO_DESCR[t.dtype];
  if (descr === undefined) throw new TypeError(`Cannot write ${t.dtype} to .npy`);
  if (t.data.length !== sizeOf(t.shape)) {
    throw new TypeError(
      `Cannot write .npy: ${t.data.length} elements do not fill shape [${t.shape}]`,
    );
  }
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(", ")})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += " ".repeat(pad === 64 ? 0 : pad) + "\n";
  const hb = new TextEncoder().encode(header);
  const data = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Uint8Array(10 + hb.length + data.length);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, hb.length, true);
  out.set(hb, 10);
  out.set(data, 10 + hb.length);
  return out;
}

/**
 * Read an `.npy` or `.npy.gz` file.
 * @param path file path
 * @returns the array
 * @throws {SyntaxError} for a malformed file (named in the message)
 */
export async function readNpyFile(path: string): Promise<HostTensor> {
  return readNpy(await readFileChecked(path, { what: ".npy" }), { source: path });
}

/**
 * Write an `.npy` file (gzip-compressed when the name ends in `.gz`), atomically.
 * @param path file path
 * @param t the array
 */
export async function writeNpyFile(path: string, t: HostTensor): Promise<void> {
  const bytes = writeNpy(t);
  await writeFileAtomic(path, path.endsWith(".gz") ? gzip(bytes) : bytes);
}
