/**
 * safetensors: an 8-byte little-endian header length, a JSON header, raw tensor bytes.
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
import { readFileChecked, writeFileAtomic } from "./fs.ts";

const CODE_TO_DTYPE: Record<string, DType> = {
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
};

const DTYPE_TO_CODE: Record<DType, string> = {
  float64: "F64",
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  int16: "I16",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};

/** The content of a safetensors file. */
export interface Safetensors {
  /** Tensors by name, in the file's header order. */
  tensors: Map<string, HostTensor>;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

/** Options of {@linkcode readSafetensors}. */
export interface SafetensorsReadOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
}

/** A safetensors header is at most this large (the format's own limit is 100 MB). */
const MAX_HEADER = 100_000_000;

/**
 * Parse a safetensors file. Tensor data are views into `bytes` when aligned.
 *
 * @param bytes the file's bytes
 * @param options source name for errors
 * @returns tensors and metadata
 * @throws {SyntaxError} for a header that runs past the end, bad JSON, an unknown dtype,
 *   offsets that do not match the shape, or data_offsets that overlap, leave a gap or
 *   bytes that belong to no tensor (the format requires the tensors to tile the data), e.g.
 *   `Cannot read safetensors "m.safetensors": header of 9000 bytes runs past the end of the 100-byte file`
 *
 * @example
 * ```ts
 * import { readSafetensors, writeSafetensors } from "@lib/io";
 * const bytes = writeSafetensors(
 *   new Map([["w", { dtype: "float32" as const, shape: [2], data: new Float32Array([1, 2]) }]]),
 *   { note: "hi" },
 * );
 * const st = readSafetensors(bytes);
 * console.assert(st.tensors.get("w")!.data[1] === 2 && st.metadata.note === "hi");
 * ```
 */
export function readSafetensors(
  bytes: Uint8Array,
  options: SafetensorsReadOptions = {},
): Safetensors {
  const source = options.source ?? "<bytes>";
  const bad = (what: string) => new SyntaxError(`Cannot read safetensors "${source}": ${what}`);
  if (bytes.length < 8) {
    throw bad(`file of ${bytes.length} bytes is shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8) || n > BigInt(MAX_HEADER)) {
    throw bad(`header of ${n} bytes runs past the end of the ${bytes.length}-byte file`);
  }
  const headerLen = Number(n);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)),
    );
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw bad("header is not a JSON object");
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, HostTensor>();
  const spans: { name: string; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
        throw bad("__metadata__ is not an object");
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") throw bad(`__metadata__ value of "${k}" is not a string`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (e === null || typeof e !== "object") throw bad(`entry "${name}" is not an object`);
    const dtype = typeof e.dtype === "string" ? CODE_TO_DTYPE[e.dtype] : undefined;
    if (dtype === undefined) {
      throw bad(`tensor "${name}" has unsupported dtype ${JSON.stringify(e.dtype)}`);
    }
    if (
      !Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)
    ) {
      throw bad(`tensor "${name}" has a bad shape ${JSON.stringify(e.shape)}`);
    }
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      offs.some((o) => !Number.isSafeInteger(o) || o < 0) || offs[1] < offs[0]
    ) {
      throw bad(`tensor "${name}" has bad data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as number[];
    if (end > dataLen) {
      throw bad(
        `tensor "${name}" data [${begin}, ${end}) runs past the ${dataLen}-byte data section`,
      );
    }
    const shape = e.shape as number[];
    const need = sizeOf(shape) * DTYPE_BYTES[dtype];
    if (end - begin !== need) {
      throw bad(
        `tensor "${name}" holds ${end - begin} bytes, shape [${shape}] of ${dtype} needs ${need}`,
      );
    }
    spans.push({ name, begin, end });
    const raw = bytes.subarray(dataStart + begin, dataStart + end);
    tensors.set(name, { dtype, shape, data: typedArrayFromBytes(dtype, raw) });
  }
  // as the format requires: the tensors tile the data section, no overlap, no gap, no rest
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    if (s.begin < pos) {
      throw bad(
        `tensor "${s.name}" data [${s.begin}, ${s.end}) overlaps tensor "${
          spans[i - 1].name
        }" data [${spans[i - 1].begin}, ${spans[i - 1].end})`,
      );
    }
    if (s.begin > pos) {
      throw bad(
        `tensor "${s.name}" data starts at ${s.begin}, leaving a gap of ${
          s.begin - pos
        } bytes after ${i === 0 ? "the header" : `tensor "${spans[i - 1].name}"`}`,
      );
    }
    pos = s.end;
  }
  if (pos !== dataLen) {
    throw bad(
      `the tensors cover ${pos} bytes, but the data section holds ${dataLen} (${
        dataLen - pos
      } bytes belong to no tensor)`,
    );
  }
  return { tensors, metadata };
}

/**
 * Serialize tensors as safetensors: names sorted, data packed without gaps, header
 * padded with spaces to a multiple of 8 bytes (as the reference implementation does).
 *
 * @param tensors tensors by name (`__metadata__` is not a valid name)
 * @param metadata optional string map stored as `__metadata__`
 * @returns the file's bytes
 * @throws {TypeError} for a data length that does not fill its shape, or a reserved name
 */
export function writeSafetensors(
  tensors: Map<string, HostTensor> | Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new TypeError(`"__metadata__" cannot name a tensor`);
    if (t.data.length !== sizeOf(t.shape)) {
      throw new TypeError(
        `Cannot write tensor "${name}": ${t.data.length} elements do not fill shape [${t.shape}]`,
      );
    }
    const len = t.data.byteLength;
    header[name] = {
      dtype: DTYPE_TO_CODE[t.dtype],
      shape: t.shape,
      data_offsets: [offset, offset + len],
    };
    offset += len;
  }
  let json = JSON.stringify(header);
  const jsonBytes0 = new TextEncoder().encode(json);
  const padded = Math.ceil(jsonBytes0.length / 8) * 8;
  json += " ".repeat(padded - jsonBytes0.length);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let pos = 8 + hb.length;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/**
 * Read a safetensors file.
 * @param path file path
 * @returns tensors and metadata
 * @throws {SyntaxError} for a malformed file (named in the message)
 */
export async function readSafetensorsFile(path: string): Promise<Safetensors> {
  return readSafetensors(await readFileChecked(path, { what: "safetensors" }), { source: path });
}

/**
 * Write a safetensors file atomically.
 * @param path file path
 * @param tensors tensors by name
 * @param metadata optional `__metadata__`
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, HostTensor> | Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, writeSafetensors(tensors, metadata));
}
