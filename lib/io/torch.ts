/**
 * A safe reader for PyTorch `torch.save` files: the zip format (torch >= 1.6) and the legacy
 * format (a sequence of pickles followed by raw storages). Nothing in the file is executed:
 * the pickles go through {@linkcode unpickle} with an allow-list of exactly the globals
 * needed to rebuild tensors and plain containers:
 *
 * - `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`,
 *   `_rebuild_parameter_with_state` (a parameter becomes its tensor);
 * - the storage classes `torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage`
 *   and `torch.UntypedStorage` (as bytes), only as persistent-id markers;
 * - the torch dtype objects (`torch.float32`, ... become the string `"torch.float32"`),
 *   `torch.device` (a string such as `"cuda:0"`) and `torch.Size` (a tuple);
 * - `collections.OrderedDict` (a {@linkcode PyDict}), `argparse.Namespace` (a `PyDict` of its
 *   attributes, `pyClass` `"argparse.Namespace"`), `builtins.set`/`frozenset` (a `Set`) and
 *   `_codecs.encode` with the latin1 encoding (how protocol 2 stores `bytes`).
 *
 * Anything else is refused with an {@linkcode UnsafePickleError}. Tensors come back as
 * {@linkcode HostTensor}s with their original dtype and shape; strided and offset views are
 * materialized in row-major order (each tensor owns a fresh copy of its elements).
 *
 * @module
 */
import {
  type DType,
  DTYPE_BYTES,
  type HostArray,
  type HostTensor,
  sizeOf,
  typedArrayFromBytes,
} from "./host_tensor.ts";
import {
  PyCallable,
  PyDict,
  PyOpaque,
  type PyValue,
  typeName,
  unpickle,
  UnsafePickleError,
} from "./pickle.ts";
import { readFileChecked } from "./fs.ts";
import { readZip } from "./zip.ts";

const STORAGE_DTYPES: Record<string, DType> = {
  DoubleStorage: "float64",
  FloatStorage: "float32",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
  UntypedStorage: "uint8",
};

const TORCH_DTYPES = new Set([
  "float64",
  "double",
  "float32",
  "float",
  "float16",
  "half",
  "bfloat16",
  "int64",
  "long",
  "int32",
  "int",
  "int16",
  "short",
  "int8",
  "uint8",
  "bool",
  "complex64",
  "complex128",
]);

/** Legacy format magic number (the first pickle of a pre-1.6 torch.save file). */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** An overlapping or broadcast view may expand its storage up to this many bytes. */
const MAX_EXPANDED_VIEW_BYTES = 64 * 2 ** 20;
/**
 * All views of one file together may expand their storages by at most this many bytes
 * beyond the storages' own size (the default of `maxExpandedBytes`).
 */
export const DEFAULT_MAX_EXPANDED_BYTES = 256 * 2 ** 20;

/** Options of {@linkcode readTorch}. */
export interface TorchReadOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
  /**
   * The bytes all tensors of the file may hold beyond what its storages hold (broadcast
   * and overlapping views, tied weights).
   * @default {DEFAULT_MAX_EXPANDED_BYTES}
   */
  maxExpandedBytes?: number;
  /** The cap on the decompressed archive entries. @default {maxReadBytes()} */
  maxBytes?: number;
}

function notTorch(source: string, what: string): SyntaxError {
  return new SyntaxError(`Cannot read "${source}": not a torch.save file (${what})`);
}

/** A storage class named in a persistent id (a marker; never called). */
class StorageType extends PyOpaque {
  constructor(qualname: string, readonly dtype: DType) {
    super(qualname);
  }
}

/** A storage: a key, its element type and count; its bytes once known. */
class TorchStorage extends PyOpaque {
  bytes: Uint8Array | undefined;
  constructor(
    readonly key: string,
    readonly dtype: DType,
    readonly numel: number,
    readonly root?: { storage: TorchStorage; offset: number },
  ) {
    super("torch.storage");
  }
}

interface PendingTensor {
  tensor: HostTensor;
  storage: TorchStorage;
  offset: number;
  size: number[];
  stride: number[];
}

class Reader {
  readonly pending: PendingTensor[] = [];
  littleEndian = true;

  constructor(
    readonly source: string,
    readonly maxExpandedBytes: number,
    readonly maxBytes: number | undefined,
  ) {}

  bad(what: string): SyntaxError {
    return new SyntaxError(`Cannot read torch file "${this.source}": ${what}`);
  }

  resolveGlobal = (module: string, name: string): PyValue | undefined => {
    const q = `${module}.${name}`;
    switch (q) {
      case "torch._utils._rebuild_tensor_v2":
      case "torch._utils._rebuild_tensor":
        return new PyCallable(q, (a) => this.rebuildTensor(q, a));
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state":
        return new PyCallable(q, (a) => {
          if (a.length < 1 || !isTensor(a[0])) throw this.bad(`${q} without a tensor`);
          return a[0];
        });
      case "collections.OrderedDict":
        return new PyCallable(q, (a) => {
          const d = new PyDict(q);
          if (a.length === 0) return d;
          const items = a[0];
          if (a.length > 1 || !Array.isArray(items)) throw this.bad(`${q} with bad arguments`);
          for (const kv of items) {
            if (!Array.isArray(kv) || kv.length !== 2) throw this.bad(`${q} item is not a pair`);
            d.set(kv[0], kv[1]);
          }
          return d;
        });
      case "argparse.Namespace":
        return new PyCallable(q, (a) => {
          if (a.length > 0) throw this.bad(`${q} with positional arguments`);
          return new PyDict(q);
        });
      case "builtins.set":
      case "builtins.frozenset":
      case "__builtin__.set":
      case "__builtin__.frozenset":
        return new PyCallable(q, (a) => {
          if (a.length === 0) return new Set();
          if (a.length !== 1 || !Array.isArray(a[0])) throw this.bad(`${q} with bad arguments`);
          return new Set(a[0] as PyValue[]);
        });
      case "_codecs.encode":
        return new PyCallable(q, (a) => {
          if (a.length !== 2 || typeof a[0] !== "string" || a[1] !== "latin1") {
            throw this.bad(`${q} is only allowed as encode(str, "latin1")`);
          }
          const s = a[0];
          const out = new Uint8Array(s.length);
          for (let i = 0; i < s.length; i++) {
            const c = s.charCodeAt(i);
            if (c > 255) throw this.bad(`${q}: character ${c} is not latin1`);
            out[i] = c;
          }
          return out;
        });
      case "torch.Size":
        return new PyCallable(q, (a) => {
          if (a.length !== 1 || !Array.isArray(a[0])) throw this.bad(`${q} with bad arguments`);
          return Object.freeze([...a[0]]) as readonly PyValue[];
        });
      case "torch.device":
        return new PyCallable(q, (a) => {
          if (typeof a[0] !== "string" || a.length > 2) throw this.bad(`${q} with bad arguments`);
          return a.length === 2 && a[1] !== null ? `${a[0]}:${a[1]}` : a[0];
        });
    }
    if (module === "torch" && name in STORAGE_DTYPES) {
      return new StorageType(q, STORAGE_DTYPES[name]);
    }
    if (module === "torch" && TORCH_DTYPES.has(name)) return q;
    return undefined;
  };

  intArg(v: PyValue, what: string): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw this.bad(
        `${what} is ${typeof v === "number" ? v : typeName(v)}, not a non-negative int`,
      );
    }
    return v;
  }

  intTuple(v: PyValue, what: string): number[] {
    if (!Array.isArray(v)) throw this.bad(`${what} is a ${typeName(v)}, not a tuple`);
    return (v as PyValue[]).map((x, i) => this.intArg(x, `${what}[${i}]`));
  }

  rebuildTensor(q: string, a: readonly PyValue[]): HostTensor {
    const [storage, offset, size, stride] = a;
    if (a.length < 4 || !(storage instanceof TorchStorage)) {
      throw this.bad(`${q} needs (storage, offset, size, stride, ...), got ${a.length} arguments`);
    }
    const shape = this.intTuple(size, "tensor size");
    const strides = this.intTuple(stride, "tensor stride");
    if (shape.length !== strides.length) {
      throw this.bad(`tensor size [${shape}] and stride [${strides}] differ in rank`);
    }
    const tensor = {
      dtype: storage.dtype,
      shape,
      data: typedArrayFromBytes(storage.dtype, new Uint8Array(0)),
    } as HostTensor;
    this.pending.push({
      tensor,
      storage,
      offset: this.intArg(offset, "storage offset"),
      size: shape,
      stride: strides,
    });
    return tensor;
  }

  storageFromPid(pid: PyValue): TorchStorage {
    if (!Array.isArray(pid) || pid.length < 5 || pid[0] !== "storage") {
      throw this.bad(`unsupported persistent id ${describe(pid)}`);
    }
    const [, type, key, , numel] = pid as PyValue[];
    if (!(type instanceof StorageType)) throw this.bad(`storage type ${describe(type)} is unknown`);
    if (typeof key !== "string") throw this.bad(`storage key ${describe(key)} is not a str`);
    const n = this.intArg(numel, `element count of storage "${key}"`);
    return new TorchStorage(key, type.dtype, n);
  }

  /** Fill every pending tensor from its storage (which must have its bytes by now). */
  finish(): void {
    // bytes justified by the file: every distinct root storage once, plus the cap
    const roots = new Set<TorchStorage>();
    let budget = this.maxExpandedBytes;
    for (const p of this.pending) {
      let s = p.storage;
      while (s.root !== undefined) s = s.root.storage;
      if (!roots.has(s)) {
        roots.add(s);
        budget += s.numel * DTYPE_BYTES[s.dtype];
      }
    }
    let used = 0;
    for (const p of this.pending) {
      used += sizeOf(p.size) * DTYPE_BYTES[p.storage.dtype];
      if (used > budget) {
        throw new RangeError(
          `Cannot read torch file "${this.source}": its ${this.pending.length} tensors expand ` +
            `past the ${budget} bytes its storages justify (${this.maxExpandedBytes} bytes of ` +
            `broadcast or shared views allowed; raise maxExpandedBytes to read it)`,
        );
      }
    }
    for (const p of this.pending) p.tensor.data = this.materialize(p);
  }

  storageArray(s: TorchStorage): HostArray {
    if (s.root !== undefined) {
      const all = this.storageArray(s.root.storage);
      if (s.root.offset + s.numel > all.length) {
        throw this.bad(`storage view "${s.key}" runs past its root "${s.root.storage.key}"`);
      }
      return all.subarray(s.root.offset, s.root.offset + s.numel) as HostArray;
    }
    const size = DTYPE_BYTES[s.dtype];
    if (s.bytes === undefined) throw this.bad(`storage "${s.key}" has no data`);
    if (s.bytes.length < s.numel * size) {
      throw this.bad(
        `storage "${s.key}" holds ${s.bytes.length} bytes, ${s.numel} ${s.dtype} need ${
          s.numel * size
        }`,
      );
    }
    let raw = s.bytes.subarray(0, s.numel * size);
    if (!this.littleEndian && size > 1) {
      raw = raw.slice();
      for (let i = 0; i < raw.length; i += size) raw.subarray(i, i + size).reverse();
    }
    return typedArrayFromBytes(s.dtype, raw);
  }

  materialize(p: PendingTensor): HostArray {
    const src = this.storageArray(p.storage);
    const n = sizeOf(p.size);
    const Ctor = src.constructor as new (n: number) => HostArray;
    if (n === 0) return new Ctor(0);
    let last = p.offset;
    for (let d = 0; d < p.size.length; d++) last += (p.size[d] - 1) * p.stride[d];
    if (last >= src.length) {
      throw this.bad(
        `tensor of size [${p.size}], stride [${p.stride}], offset ${p.offset} runs past ` +
          `storage "${p.storage.key}" of ${src.length} elements`,
      );
    }
    if (n > src.length && n * DTYPE_BYTES[p.storage.dtype] > MAX_EXPANDED_VIEW_BYTES) {
      throw new RangeError(
        `Cannot read torch file "${this.source}": a view of size [${p.size}] over storage ` +
          `"${p.storage.key}" of ${src.length} elements expands past ${MAX_EXPANDED_VIEW_BYTES} bytes`,
      );
    }
    // row-major contiguous (ignoring dims of size 1): one copy
    let contiguous = true;
    for (let d = p.size.length - 1, s = 1; d >= 0; d--) {
      if (p.size[d] !== 1 && p.stride[d] !== s) contiguous = false;
      s *= p.size[d];
    }
    if (contiguous) return src.slice(p.offset, p.offset + n) as HostArray;
    const out = new Ctor(n) as unknown as { [i: number]: unknown };
    const s = src as unknown as { [i: number]: unknown };
    const rank = p.size.length;
    const idx = new Array<number>(rank).fill(0);
    let j = p.offset;
    for (let i = 0; i < n; i++) {
      out[i] = s[j];
      for (let d = rank - 1; d >= 0; d--) {
        if (++idx[d] < p.size[d]) {
          j += p.stride[d];
          break;
        }
        j -= (p.size[d] - 1) * p.stride[d];
        idx[d] = 0;
      }
    }
    return out as unknown as HostArray;
  }

  readZip(bytes: Uint8Array): PyValue {
    let files: Record<string, Uint8Array>;
    try {
      // only what a checkpoint needs is decompressed
      files = Object.fromEntries(readZip(bytes, {
        source: this.source,
        maxBytes: this.maxBytes,
        filter: (name) => /(^|\/)(data\.pkl|byteorder|data\/[^/]+)$/.test(name),
      }));
    } catch (e) {
      if (e instanceof SyntaxError) {
        throw this.bad((e as Error).message.replace(/^Cannot read zip "[^"]*": /, ""));
      }
      throw e;
    }
    const pkl = Object.keys(files).filter((n) => /^[^/]*\/?data\.pkl$/.test(n));
    if (pkl.length !== 1) {
      throw this.bad(
        pkl.length === 0
          ? 'zip entry "<archive>/data.pkl" is missing'
          : `zip holds ${pkl.length} data.pkl entries`,
      );
    }
    const prefix = pkl[0].slice(0, -"data.pkl".length);
    const order = files[`${prefix}byteorder`];
    if (order !== undefined) {
      const o = new TextDecoder().decode(order).trim();
      if (o !== "little" && o !== "big") throw this.bad(`unknown byteorder "${o}"`);
      this.littleEndian = o === "little";
    }
    const { value } = unpickle(files[pkl[0]], {
      source: `${this.source}:${pkl[0]}`,
      resolveGlobal: this.resolveGlobal,
      persistentLoad: (pid) => {
        const s = this.storageFromPid(pid);
        const name = `${prefix}data/${s.key}`;
        const data = files[name];
        if (data === undefined) throw this.bad(`zip entry "${name}" is missing`);
        s.bytes = data;
        return s;
      },
    });
    this.finish();
    return value;
  }

  readLegacy(bytes: Uint8Array): PyValue {
    const opts = { source: this.source, resolveGlobal: this.resolveGlobal };
    // a legacy file starts with a pickle (PROTO opcode 0x80) of the magic number
    if (bytes.length < 2 || bytes[0] !== 0x80 || bytes[1] < 2 || bytes[1] > 5) {
      const head = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0"));
      throw notTorch(
        this.source,
        `neither a zip archive nor a pickle; ${
          head.length === 0 ? "it is empty" : `it starts with ${head.join(" ")}`
        }`,
      );
    }
    let magic;
    try {
      magic = unpickle(bytes, opts);
    } catch (e) {
      if (e instanceof UnsafePickleError) throw e;
      const why = (e as Error).message.replace(/^Cannot unpickle "[^"]*": /, "");
      throw notTorch(this.source, `its first pickle does not parse: ${why}`);
    }
    if (magic.value !== LEGACY_MAGIC) {
      throw notTorch(this.source, "a pickle without the legacy magic number");
    }
    const proto = unpickle(bytes, { ...opts, start: magic.end });
    if (proto.value !== LEGACY_PROTOCOL) {
      throw this.bad(`unsupported legacy protocol version ${describe(proto.value)}`);
    }
    const sys = unpickle(bytes, { ...opts, start: proto.end });
    if (sys.value instanceof PyDict && sys.value.get("little_endian") === false) {
      this.littleEndian = false;
    }
    const storages = new Map<string, TorchStorage>();
    const obj = unpickle(bytes, {
      ...opts,
      start: sys.end,
      persistentLoad: (pid) => {
        if (Array.isArray(pid) && pid[0] === "module") return null; // module source, unused
        const s = this.storageFromPid(pid);
        const known = storages.get(s.key);
        const root = known ?? s;
        storages.set(s.key, root);
        const view = (pid as PyValue[])[5];
        if (view === undefined || view === null) return root;
        if (!Array.isArray(view) || view.length !== 3 || typeof view[0] !== "string") {
          throw this.bad(`bad storage view ${describe(view)}`);
        }
        const offset = this.intArg(view[1], "storage view offset");
        const n = this.intArg(view[2], "storage view size");
        const v = new TorchStorage(view[0], root.dtype, n, { storage: root, offset });
        return v;
      },
    });
    const keys = unpickle(bytes, { ...opts, start: obj.end });
    if (!Array.isArray(keys.value) || keys.value.some((k) => typeof k !== "string")) {
      throw this.bad("the storage key list is not a list of str");
    }
    let pos = keys.end;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const key of keys.value as string[]) {
      const s = storages.get(key);
      if (s === undefined) throw this.bad(`storage "${key}" is listed but never used`);
      if (pos + 8 > bytes.length) throw this.bad(`storage "${key}" is missing (file ends)`);
      const count = view.getBigInt64(pos, this.littleEndian);
      pos += 8;
      const nbytes = count * BigInt(DTYPE_BYTES[s.dtype]);
      if (count < 0n || nbytes > BigInt(bytes.length - pos)) {
        throw this.bad(
          `storage "${key}" claims ${count} elements, more than the ${
            bytes.length - pos
          } bytes left`,
        );
      }
      s.bytes = bytes.subarray(pos, pos + Number(nbytes));
      pos += Number(nbytes);
    }
    for (const [key, s] of storages) {
      if (s.bytes === undefined) throw this.bad(`storage "${key}" is not in the storage list`);
    }
    this.finish();
    return obj.value;
  }
}

function describe(v: PyValue | undefined): string {
  if (v instanceof PyOpaque) return v.qualname;
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  return `a ${typeName(v)}`;
}

/**
 * Read a `torch.save` file (zip or legacy format) safely: no code runs, only an allow-list of
 * globals is honoured (see the module doc).
 *
 * @param bytes the file's bytes
 * @param options source name for errors
 * @returns the saved object: tensors as {@linkcode HostTensor} (original dtype and shape,
 *   row-major copies), dicts as {@linkcode PyDict} (key order and types kept), lists as
 *   arrays, tuples as frozen arrays; see {@linkcode PyValue}
 * @throws {UnsafePickleError} for a global outside the allow-list, e.g.
 *   `Refusing "malicious.ckpt": global os.system is not allowed`
 * @throws {SyntaxError} for a malformed file, e.g.
 *   `Cannot read torch file "m.pth": zip entry "archive/data/3" is missing`
 * @throws {SyntaxError} for bytes that are not a torch.save file, e.g. `Cannot read "m.safetensors": not a torch.save file (neither a zip archive nor a
 *   pickle; it starts with f8 01 00 00)`
 * @throws {RangeError} for a broadcast view that would expand past 64 MiB, or tensors that
 *   together expand past their storages' bytes plus `maxExpandedBytes`
 */
export function readTorch(bytes: Uint8Array, options: TorchReadOptions = {}): PyValue {
  const r = new Reader(
    options.source ?? "<bytes>",
    options.maxExpandedBytes ?? DEFAULT_MAX_EXPANDED_BYTES,
    options.maxBytes,
  );
  try {
    if (bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 3) {
      return r.readZip(bytes);
    }
    return r.readLegacy(bytes);
  } catch (e) {
    if (
      e instanceof UnsafePickleError || e instanceof SyntaxError || e instanceof RangeError ||
      e instanceof TypeError
    ) {
      throw e;
    }
    throw r.bad((e as Error)?.message ?? String(e));
  }
}

/**
 * Read a `torch.save` file (`.pth`, `.ckpt`, `.pt`) safely.
 * @param path file path
 * @param options limits, as {@linkcode readTorch}
 * @returns the saved object, as {@linkcode readTorch}
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {UnsafePickleError | SyntaxError | RangeError} as {@linkcode readTorch}
 */
export async function readTorchFile(
  path: string,
  options: Omit<TorchReadOptions, "source"> = {},
): Promise<PyValue> {
  const bytes = await readFileChecked(path, { what: "torch file", maxBytes: options.maxBytes });
  return readTorch(bytes, { ...options, source: path });
}

/** A JSON value. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** What {@linkcode flattenTensors} returns. */
export interface FlatCheckpoint {
  /** Every tensor, by its path of keys and indices joined with ".", in traversal order. */
  tensors: Map<string, HostTensor>;
  /**
   * The non-tensor rest of the value as JSON (`undefined` when nothing is left, e.g. for a
   * bare tensor or a plain state_dict).
   */
  values: JsonValue | undefined;
}

/** Options of {@linkcode flattenTensors}. */
export interface FlattenOptions {
  /** The name of a tensor that is the whole value (a bare `torch.save(tensor)`). @default {"tensor"} */
  rootName?: string;
}

const MAX_DEPTH = 512;
const MAX_NODES = 1_000_000;

/** Is `v` a host tensor (the only plain object a {@linkcode PyValue} can be)? */
function isTensor(v: PyValue | undefined): v is HostTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) &&
    !(v instanceof Set) && !(v instanceof Uint8Array) && !(v instanceof PyOpaque);
}

/**
 * Split a value read by {@linkcode readTorch} into its tensors and its other (JSON) data.
 *
 * Tensor names join the dict keys and list/tuple indices on the way to the tensor with "."
 * (`model.blocks.0.attn.qkv.weight`, `optimizer.state.0.exp_avg`); an int key is written in
 * decimal. JSON of the rest: dicts become objects (keys as strings; a dict's BUILD attributes
 * such as a state_dict's `_metadata` become extra keys), tuples/lists/sets arrays; tensors
 * are left out of dicts (a dict left empty by that is dropped) and become `null` in lists;
 * NaN/±Infinity become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`; ints beyond 2^53
 * decimal strings; bytes `{"__bytes__": "<base64>"}`; a bare storage `"<storage KEY>"`.
 * A tensor reached twice (tied weights) is listed under each name.
 *
 * @param value a value from {@linkcode readTorch}
 * @param options the name of a bare tensor
 * @returns the tensors (the same objects as in `value`) and the JSON rest
 * @throws {TypeError} when two tensors get the same name, or the value is cyclic
 * @throws {RangeError} for nesting deeper than 512 levels or more than 1e6 nodes
 *
 * @example
 * ```ts
 * import { flattenTensors, PyDict } from "@lib/io";
 * const w = { dtype: "float32" as const, shape: [1], data: new Float32Array([2]) };
 * const ckpt = new PyDict("dict", [["model", new PyDict("dict", [["w", w]])], ["epoch", 3]]);
 * const { tensors, values } = flattenTensors(ckpt);
 * console.assert(tensors.get("model.w") === w && JSON.stringify(values) === '{"epoch":3}');
 * ```
 */
export function flattenTensors(value: PyValue, options: FlattenOptions = {}): FlatCheckpoint {
  const tensors = new Map<string, HostTensor>();
  const active = new Set<object>();
  let nodes = 0;
  const DROP = Symbol("drop");
  const walk = (v: PyValue, path: string[]): JsonValue | typeof DROP => {
    if (++nodes > MAX_NODES) {
      throw new RangeError(`Cannot flatten: more than ${MAX_NODES} nodes (shared references?)`);
    }
    if (path.length > MAX_DEPTH) {
      throw new RangeError(`Cannot flatten: nested deeper than ${MAX_DEPTH} levels`);
    }
    if (v === null || typeof v === "boolean" || typeof v === "string") return v;
    if (typeof v === "number") {
      if (Number.isFinite(v)) return v;
      return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
    }
    if (typeof v === "bigint") return v.toString();
    if (v instanceof Uint8Array) return { __bytes__: base64(v) };
    if (v instanceof TorchStorage) return `<storage ${v.key}>`;
    if (v instanceof PyOpaque) return `<${v.qualname}>`;
    if (isTensor(v)) {
      const name = path.length === 0 ? (options.rootName ?? "tensor") : path.join(".");
      if (tensors.has(name)) throw new TypeError(`Cannot flatten: two tensors are named "${name}"`);
      tensors.set(name, v);
      return DROP;
    }
    if (active.has(v)) throw new TypeError(`Cannot flatten: "${path.join(".")}" contains itself`);
    active.add(v);
    try {
      if (v instanceof PyDict) {
        const out: { [k: string]: JsonValue } = {};
        let dropped = false;
        for (const [k, x] of [...v.entries(), ...v.attributes.entries()]) {
          const key = keyString(k);
          const j = walk(x, [...path, key]);
          if (j === DROP) dropped = true;
          else out[key] = j;
        }
        return dropped && Object.keys(out).length === 0 ? DROP : out;
      }
      const items = v instanceof Set ? [...v] : v as PyValue[];
      let allDropped = items.length > 0;
      const out = items.map((x, i) => {
        const j = walk(x, [...path, String(i)]);
        if (j === DROP) return null;
        allDropped = false;
        return j;
      });
      return allDropped ? DROP : out;
    } finally {
      active.delete(v);
    }
  };
  const j = walk(value, []);
  return { tensors, values: j === DROP ? undefined : j };
}

function keyString(k: PyValue): string {
  if (typeof k === "string") return k;
  if (typeof k === "number" || typeof k === "bigint" || typeof k === "boolean" || k === null) {
    return k === null ? "None" : typeof k === "boolean" ? (k ? "True" : "False") : String(k);
  }
  if (Array.isArray(k)) return `(${(k as PyValue[]).map(keyString).join(", ")})`;
  return `<${typeName(k)}>`;
}

function base64(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** What {@linkcode torchToSafetensors} returns: what to pass to `writeSafetensors`. */
export interface TorchAsSafetensors {
  /** Every tensor, named as {@linkcode flattenTensors} names them. */
  tensors: Map<string, HostTensor>;
  /** The non-tensor values as JSON strings (see {@linkcode torchToSafetensors}). */
  metadata: Record<string, string>;
}

/**
 * Prepare a value read by {@linkcode readTorch} for a safetensors file: the tensors of
 * {@linkcode flattenTensors} and, as `__metadata__`, the non-tensor values as JSON strings:
 * for a dict at the root, one key per top-level entry that has non-tensor content
 * (`"epoch": "0"`, `"args": "{...}"`, `"model": "{\"_metadata\":...}"`); for any other root,
 * one key `"value"`.
 *
 * @param value the saved object
 * @param options the name of a bare tensor
 * @returns tensors and metadata
 * @throws {TypeError | RangeError} as {@linkcode flattenTensors}
 */
export function torchToSafetensors(
  value: PyValue,
  options: FlattenOptions = {},
): TorchAsSafetensors {
  const { tensors, values } = flattenTensors(value, options);
  const metadata: Record<string, string> = {};
  if (
    value instanceof PyDict && values !== null && typeof values === "object" &&
    !Array.isArray(values)
  ) {
    for (const [k, v] of Object.entries(values)) metadata[k] = JSON.stringify(v);
  } else if (values !== undefined) {
    metadata.value = JSON.stringify(values);
  }
  return { tensors, metadata };
}
