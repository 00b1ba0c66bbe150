/**
 * MNIST-style idx files (`train-images-idx3-ubyte`, plain or `.gz`).
 *
 * Layout: magic `00 00 <type> <ndim>`, `ndim` big-endian uint32 dimensions, then
 * big-endian row-major data. Types: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
 * 0x0D float32, 0x0E float64.
 *
 * @module
 */
import { type DType, DTYPE_BYTES, type HostTensor, sizeOf } from "./host_tensor.ts";
import { gunzip, GunzipLimitError, gunzipPrefix } from "./gzip.ts";
import { readFileChecked } from "./fs.ts";
import { checkReadSize, maxReadBytes } from "./limits.ts";

const TYPE_TO_DTYPE: Record<number, DType> = {
  0x08: "uint8",
  0x09: "int8",
  0x0b: "int16",
  0x0c: "int32",
  0x0d: "float32",
  0x0e: "float64",
};

/** Options of {@linkcode readIdx}. */
export interface IdxReadOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
  /** The cap on the decompressed size. @default {maxReadBytes()} */
  maxBytes?: number;
}

function hex(b: number): string {
  return b.toString(16).padStart(2, "0");
}

/**
 * Parse an idx file. A gzip-compressed file (magic 1f 8b) is decompressed first.
 *
 * @param bytes the file's bytes
 * @param options source name for errors
 * @returns the array, dtype from the type byte, shape from the header (data copied out of
 *   `bytes` and converted to little-endian; uint8/int8 data may share memory with `bytes`)
 * @throws {SyntaxError} for a corrupt gzip stream, a wrong magic, an unknown type, or data
 *   shorter than the shape needs, e.g.
 *   `Cannot read idx "x.idx": wrong magic 50 4b 03 04 (expected 00 00 <type> <ndim>)`
 *
 * @example
 * ```ts
 * import { readIdx } from "@lib/io";
 * const t = readIdx(new Uint8Array([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]));
 * console.assert(t.dtype === "uint8" && t.shape[0] === 2 && t.data[1] === 9);
 * ```
 */
export function readIdx(bytes: Uint8Array, options: IdxReadOptions = {}): HostTensor {
  const source = options.source ?? "<bytes>";
  const bad = (what: string) => new SyntaxError(`Cannot read idx "${source}": ${what}`);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    // read the header first, then decompress exactly what it declares
    const magic = gunzipPrefix(bytes, 4, { source });
    const ndim = magic.length >= 4 ? magic[3] : 0;
    const head = gunzipPrefix(bytes, 4 + 4 * ndim, { source });
    if (head.length >= 4 + 4 * ndim && head[0] === 0 && head[1] === 0) {
      const size = DTYPE_BYTES[TYPE_TO_DTYPE[head[2]]] ?? 1;
      const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
      let declared = 4 + 4 * ndim;
      let n = 1;
      for (let d = 0; d < ndim; d++) n *= view.getUint32(4 + 4 * d, false);
      declared += n * size;
      checkReadSize(`idx "${source}"`, declared, maxReadBytes(options.maxBytes));
      try {
        bytes = gunzip(bytes, { source, maxBytes: declared });
      } catch (e) {
        if (!(e instanceof GunzipLimitError)) throw e;
        throw bad(`it decompresses past the ${declared} bytes its header declares`);
      }
    } else {
      bytes = gunzipPrefix(bytes, 4, { source }); // enough to report the bad magic
    }
  }
  if (bytes.length < 4) throw bad(`file of ${bytes.length} bytes is shorter than the magic`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const m = Array.from(bytes.subarray(0, 4), hex).join(" ");
    throw bad(`wrong magic ${m} (expected 00 00 <type> <ndim>)`);
  }
  const dtype = TYPE_TO_DTYPE[bytes[2]];
  if (dtype === undefined) throw bad(`unknown data type 0x${hex(bytes[2])}`);
  const ndim = bytes[3];
  const dataStart = 4 + 4 * ndim;
  if (bytes.length < dataStart) {
    throw bad(`header of ${ndim} dimensions runs past the end of the ${bytes.length}-byte file`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let d = 0; d < ndim; d++) shape.push(view.getUint32(4 + 4 * d, false));
  const size = DTYPE_BYTES[dtype];
  const n = sizeOf(shape);
  const have = bytes.length - dataStart;
  if (n * size > have) {
    throw bad(`data holds ${have} bytes, shape [${shape}] of ${dtype} needs ${n * size}`);
  }
  let data: HostTensor["data"];
  switch (dtype) {
    case "uint8":
      data = bytes.subarray(dataStart, dataStart + n);
      break;
    case "int8":
      data = new Int8Array(bytes.buffer, bytes.byteOffset + dataStart, n);
      break;
    case "int16": {
      const a = new Int16Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getInt16(dataStart + 2 * i, false);
      data = a;
      break;
    }
    case "int32": {
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getInt32(dataStart + 4 * i, false);
      data = a;
      break;
    }
    case "float32": {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getFloat32(dataStart + 4 * i, false);
      data = a;
      break;
    }
    default: {
      const a = new Float64Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getFloat64(dataStart + 8 * i, false);
      data = a;
    }
  }
  return { dtype, shape, data };
}

/**
 * Read an idx file (`.gz` or plain; compression is detected from the bytes).
 *
 * @param path file path
 * @returns the array
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {SyntaxError} for a malformed file (named in the message)
 */
export async function readIdxFile(path: string): Promise<HostTensor> {
  return readIdx(await readFileChecked(path, { what: "idx file" }), { source: path });
}

/** Images and their labels, as {@linkcode readIdxImagesAndLabels} returns them. */
export interface IdxImagesAndLabels {
  /** `[N, H, W]` (or whatever rank the file has, N first), dtype of the file (uint8 for MNIST). */
  images: HostTensor;
  /** `[N]`, dtype of the file (uint8 for MNIST). */
  labels: HostTensor;
}

/**
 * Read an idx image file and its label file, checking they hold the same number of records.
 *
 * @param imagesPath e.g. `train-images-idx3-ubyte.gz`
 * @param labelsPath e.g. `train-labels-idx1-ubyte.gz`
 * @returns both arrays
 * @throws {SyntaxError} for a malformed file, or a label file that is not 1-D
 * @throws {RangeError} when the counts differ, e.g.
 *   `Cannot pair "a-images.gz" (60000 images) with "b-labels.gz" (10000 labels): counts differ`
 */
export async function readIdxImagesAndLabels(
  imagesPath: string,
  labelsPath: string,
): Promise<IdxImagesAndLabels> {
  const images = await readIdxFile(imagesPath);
  const labels = await readIdxFile(labelsPath);
  if (images.shape.length < 1) {
    throw new SyntaxError(`Cannot read idx "${imagesPath}": images have no record dimension`);
  }
  if (labels.shape.length !== 1) {
    throw new SyntaxError(
      `Cannot read idx "${labelsPath}": labels have shape [${labels.shape}], expected 1-D`,
    );
  }
  if (images.shape[0] !== labels.shape[0]) {
    throw new RangeError(
      `Cannot pair "${imagesPath}" (${images.shape[0]} images) with "${labelsPath}" ` +
        `(${labels.shape[0]} labels): counts differ`,
    );
  }
  return { images, labels };
}

/**
 * Serialize an array as an idx file (big-endian), e.g. for test inputs and small exports.
 *
 * @param t a uint8, int8, int16, int32, float32 or float64 array
 * @returns the (uncompressed) file's bytes
 * @throws {TypeError} for another dtype, more than 255 dimensions, or a data length that
 *   does not fill the shape
 */
export function writeIdx(t: HostTensor): Uint8Array {
  const entry = Object.entries(TYPE_TO_DTYPE).find(([, d]) => d === t.dtype);
  if (entry === undefined) throw new TypeError(`Cannot write ${t.dtype} to idx`);
  if (t.shape.length > 255) throw new TypeError(`Cannot write ${t.shape.length} dims to idx`);
  const n = sizeOf(t.shape);
  if (t.data.length !== n) {
    throw new TypeError(
      `Cannot write idx: ${t.data.length} elements do not fill shape [${t.shape}]`,
    );
  }
  const size = DTYPE_BYTES[t.dtype];
  const start = 4 + 4 * t.shape.length;
  const out = new Uint8Array(start + n * size);
  const view = new DataView(out.buffer);
  out[2] = Number(entry[0]);
  out[3] = t.shape.length;
  t.shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const src = t.data as unknown as ArrayLike<number>;
  for (let i = 0; i < n; i++) {
    const o = start + i * size;
    switch (t.dtype) {
      case "uint8":
        view.setUint8(o, src[i]);
        break;
      case "int8":
        view.setInt8(o, src[i]);
        break;
      case "int16":
        view.setInt16(o, src[i], false);
        break;
      case "int32":
        view.setInt32(o, src[i], false);
        break;
      case "float32":
        view.setFloat32(o, src[i], false);
        break;
      default:
        view.setFloat64(o, src[i], false);
    }
  }
  return out;
}
