/**
 * Tensors held in host memory as typed arrays: what file readers return and writers take.
 *
 * @module
 */

/** Element types that seitpp's file formats carry. */
export type DType =
  | "float64"
  | "float32"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

/** The typed array that holds each {@linkcode DType}. float16/bfloat16 keep raw bits. */
export interface DTypeArrays {
  float64: Float64Array;
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int64: BigInt64Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

/** Any typed array a {@linkcode HostTensor} may hold. */
export type HostArray = DTypeArrays[DType];

/** A tensor in host memory: row-major (C order) data with its dtype and shape. */
export interface HostTensor<D extends DType = DType> {
  /** Element type. */
  dtype: D;
  /** Dimensions, outermost first. `[]` for a scalar. */
  shape: number[];
  /** Row-major elements; length is the product of `shape`. */
  data: DTypeArrays[D];
}

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<DType, number> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/**
 * @param shape dimensions
 * @returns the number of elements (1 for a scalar)
 */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * View (copy-free when aligned) little-endian bytes as the typed array of a dtype.
 *
 * @param dtype element type
 * @param bytes the raw little-endian bytes (length a multiple of the element size)
 * @returns a typed array over a copy when `bytes` is unaligned, else over the same memory
 * @throws {RangeError} when the length is not a multiple of the element size
 */
export function typedArrayFromBytes<D extends DType>(dtype: D, bytes: Uint8Array): DTypeArrays[D] {
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(
      `Cannot view ${bytes.byteLength} bytes as ${dtype}: not a multiple of ${size}`,
    );
  }
  let src = bytes;
  if (src.byteOffset % size !== 0) src = src.slice();
  const n = src.byteLength / size;
  const buf = src.buffer as ArrayBuffer;
  const off = src.byteOffset;
  const arrays: { [K in DType]: () => DTypeArrays[K] } = {
    float64: () => new Float64Array(buf, off, n),
    float32: () => new Float32Array(buf, off, n),
    float16: () => new Uint16Array(buf, off, n),
    bfloat16: () => new Uint16Array(buf, off, n),
    int64: () => new BigInt64Array(buf, off, n),
    int32: () => new Int32Array(buf, off, n),
    int16: () => new Int16Array(buf, off, n),
    int8: () => new Int8Array(buf, off, n),
    uint8: () => new Uint8Array(buf, off, n),
    bool: () => new Uint8Array(buf, off, n),
  };
  return arrays[dtype]() as DTypeArrays[D];
}

/**
 * The raw little-endian bytes of a typed array (a view, not a copy).
 * @param data a typed array
 * @returns its bytes
 */
export function bytesOf(data: HostArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Convert any numeric host tensor to float32 (float16/bfloat16 decoded; int64 via Number).
 * @param t the tensor
 * @returns a new Float32Array (or `t.data` itself when already float32)
 */
export function toFloat32(t: HostTensor): Float32Array {
  const d = t.data;
  if (t.dtype === "float32") return d as Float32Array;
  const n = d.length;
  const out = new Float32Array(n);
  if (t.dtype === "float16") {
    const u = d as Uint16Array;
    for (let i = 0; i < n; i++) out[i] = halfToFloat(u[i]);
  } else if (t.dtype === "bfloat16") {
    const u = d as Uint16Array;
    const f = new Float32Array(1);
    const b = new Uint32Array(f.buffer);
    for (let i = 0; i < n; i++) {
      b[0] = u[i] << 16;
      out[i] = f[0];
    }
  } else if (t.dtype === "int64") {
    const b = d as BigInt64Array;
    for (let i = 0; i < n; i++) out[i] = Number(b[i]);
  } else {
    for (let i = 0; i < n; i++) out[i] = Number((d as Float64Array)[i]);
  }
  return out;
}

/**
 * Convert an integer host tensor to int32, checking the range.
 * @param t an integer (or bool) tensor
 * @returns an Int32Array (or `t.data` itself when already int32)
 * @throws {TypeError} for a float tensor
 * @throws {RangeError} for an int64 value outside int32
 */
export function toInt32(t: HostTensor): Int32Array {
  if (t.dtype === "int32") return t.data as Int32Array;
  if (t.dtype.startsWith("float") || t.dtype === "bfloat16") {
    throw new TypeError(`Cannot convert a ${t.dtype} tensor to int32`);
  }
  const n = t.data.length;
  const out = new Int32Array(n);
  if (t.dtype === "int64") {
    const b = t.data as BigInt64Array;
    for (let i = 0; i < n; i++) {
      const v = b[i];
      if (v > 2147483647n || v < -2147483648n) {
        throw new RangeError(`Cannot convert int64 value ${v} at index ${i} to int32`);
      }
      out[i] = Number(v);
    }
  } else {
    const a = t.data as Int16Array;
    for (let i = 0; i < n; i++) out[i] = a[i];
  }
  return out;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}
