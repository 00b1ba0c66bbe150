/**
 * A writer of PyTorch `torch.save` files in the zip format that torch 1.13 writes, so that
 * `torch.load(f, weights_only=True)` reads them: a protocol-2 pickle `<archive>/data.pkl`
 * whose tensors are `torch._utils._rebuild_tensor_v2` calls over persistent-id storages,
 * one raw little-endian record `<archive>/data/<key>` per storage (keys `0`, `1`, ... in
 * the order the pickle meets the tensors; records in sorted key order), and
 * `<archive>/version` (`3`). The zip is stored (no compression), every record's data
 * starts on a 64-byte boundary (a `FB` extra field of `Z` padding), sizes and CRCs follow
 * each record in a data descriptor, and the end records are zip64 + classic: byte for byte
 * what torch 1.13's writer produces for the same value saved to a buffer.
 *
 * Values (a subset of {@linkcode PyValue}): `null`, booleans, numbers (an integer-valued
 * number is a Python `int`, any other a `float`), bigints (`int`), strings, arrays (a
 * frozen array is a tuple, a mutable one a list), {@linkcode PyDict} (`pyClass`
 * `"collections.OrderedDict"`, whose `attributes` such as a state dict's `_metadata` are
 * written as its instance dict, or `"dict"`) and {@linkcode HostTensor}s (contiguous,
 * `requires_grad=False`). The same tensor object reached twice is pickled once (Python's
 * memo), as torch shares it.
 *
 * @module
 */
import { type DType, DTYPE_BYTES, type HostTensor, sizeOf } from "./host_tensor.ts";
import { PyDict, PyOpaque, type PyValue, typeName } from "./pickle.ts";
import { writeFileAtomic } from "./fs.ts";

/** Options of {@linkcode writeTorch}. */
export interface TorchWriteOptions {
  /**
   * The folder name inside the zip. torch names it after the file (`model.pth` ->
   * `model/`), or `archive` when saving to a buffer; any name loads. @default {"archive"}
   */
  archiveName?: string;
}

const STORAGE_CLASS: Record<DType, string> = {
  float64: "DoubleStorage",
  float32: "FloatStorage",
  float16: "HalfStorage",
  bfloat16: "BFloat16Storage",
  int64: "LongStorage",
  int32: "IntStorage",
  int16: "ShortStorage",
  int8: "CharStorage",
  uint8: "ByteStorage",
  bool: "BoolStorage",
};

/** Nesting bound of the writer (Python's own recursion limit is 1000). */
const MAX_DEPTH = 512;
/** Python's pickler writes APPENDS / SETITEMS in batches of this many. */
const BATCH = 1000;

function isTensor(v: PyValue): v is HostTensor {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Map) &&
    !(v instanceof Set) && !(v instanceof Uint8Array) && !(v instanceof PyOpaque);
}

/** A growable byte buffer. */
class Bytes {
  buf = new Uint8Array(1024);
  n = 0;
  reserve(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
  }
  byte(...xs: number[]): void {
    this.reserve(xs.length);
    for (const x of xs) this.buf[this.n++] = x;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
  }
  u16(x: number): void {
    this.byte(x & 255, (x >>> 8) & 255);
  }
  u32(x: number): void {
    this.byte(x & 255, (x >>> 8) & 255, (x >>> 16) & 255, (x >>> 24) & 255);
  }
  u64(x: number): void {
    this.u32(x % 2 ** 32);
    this.u32(Math.floor(x / 2 ** 32));
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.n);
  }
}

const utf8 = new TextEncoder();

interface Storage {
  key: string;
  bytes: Uint8Array;
}

/** Pickles one value the way CPython's protocol-2 pickler does for these types. */
class Pickler {
  readonly out = new Bytes();
  readonly storages: Storage[] = [];
  #memo = 0;
  /** Memo slots of globals and of the two strings torch reuses (`storage`, `cpu`). */
  readonly #shared = new Map<string, number>();
  readonly #tensors = new Map<HostTensor, number>();
  readonly #active = new Set<object>();

  constructor(readonly source: string) {}

  put(): void {
    const i = this.#memo++;
    if (i < 256) this.out.byte(0x71, i); // BINPUT
    else {
      this.out.byte(0x72); // LONG_BINPUT
      this.out.u32(i);
    }
  }

  get(i: number): void {
    if (i < 256) this.out.byte(0x68, i); // BINGET
    else {
      this.out.byte(0x6a); // LONG_BINGET
      this.out.u32(i);
    }
  }

  /** A value memoized by name (a global or a shared constant string). */
  shared(name: string, write: () => void): void {
    const at = this.#shared.get(name);
    if (at !== undefined) return this.get(at);
    write();
    this.#shared.set(name, this.#memo);
    this.put();
  }

  global(module: string, name: string): void {
    this.shared(`global ${module}.${name}`, () => {
      this.out.byte(0x63); // GLOBAL
      this.out.bytes(utf8.encode(`${module}\n${name}\n`));
    });
  }

  str(s: string): void {
    const b = utf8.encode(s);
    this.out.byte(0x58); // BINUNICODE
    this.out.u32(b.length);
    this.out.bytes(b);
    this.put();
  }

  int(v: number | bigint): void {
    const n = typeof v === "bigint" ? v : BigInt(v);
    if (n >= 0n && n <= 0xffn) this.out.byte(0x4b, Number(n)); // BININT1
    else if (n >= 0n && n <= 0xffffn) {
      this.out.byte(0x4d); // BININT2
      this.out.u16(Number(n));
    } else if (n >= -0x80000000n && n <= 0x7fffffffn) {
      this.out.byte(0x4a); // BININT
      this.out.u32(Number(BigInt.asUintN(32, n)));
    } else {
      // LONG1: two's complement, little-endian, shortest form
      const bytes: number[] = [];
      let x = n;
      for (;;) {
        bytes.push(Number(BigInt.asUintN(8, x)));
        x >>= 8n;
        const sign = bytes[bytes.length - 1] & 0x80;
        if ((x === 0n && !sign) || (x === -1n && sign)) break;
      }
      this.out.byte(0x8a, bytes.length, ...bytes);
    }
  }

  float(v: number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    this.out.byte(0x47); // BINFLOAT
    this.out.bytes(b);
  }

  tuple(items: readonly (() => void)[]): void {
    if (items.length === 0) return this.out.byte(0x29); // EMPTY_TUPLE
    if (items.length > 3) this.out.byte(0x28); // MARK
    for (const f of items) f();
    this.out.byte(items.length > 3 ? 0x74 : [0, 0x85, 0x86, 0x87][items.length]); // TUPLE(n)
    this.put();
  }

  /** Items of a list or dict in Python's batches: one item alone, else MARK ... op. */
  batched<T>(items: readonly T[], one: number, many: number, write: (x: T) => void): void {
    for (let i = 0; i < items.length; i += BATCH) {
      const batch = items.slice(i, i + BATCH);
      if (batch.length === 1) {
        write(batch[0]);
        this.out.byte(one);
      } else {
        this.out.byte(0x28);
        batch.forEach(write);
        this.out.byte(many);
      }
    }
  }

  tensor(t: HostTensor, path: string): void {
    const seen = this.#tensors.get(t);
    if (seen !== undefined) return this.get(seen);
    const cls = STORAGE_CLASS[t.dtype];
    if (cls === undefined) {
      throw new TypeError(
        `Cannot write torch file "${this.source}": "${path}" has dtype ${t.dtype}`,
      );
    }
    const numel = sizeOf(t.shape);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new TypeError(
        `Cannot write torch file "${this.source}": "${path}" has shape ${JSON.stringify(t.shape)}`,
      );
    }
    if (t.data.length !== numel) {
      throw new RangeError(
        `Cannot write torch file "${this.source}": "${path}" holds ${t.data.length} elements, ` +
          `its shape [${t.shape}] needs ${numel}`,
      );
    }
    const key = String(this.storages.length);
    const d = t.data;
    this.storages.push({
      key,
      bytes: new Uint8Array(d.buffer, d.byteOffset, numel * DTYPE_BYTES[t.dtype]),
    });
    const stride: number[] = [];
    for (let i = t.shape.length - 1, s = 1; i >= 0; i--) {
      stride.unshift(s);
      s *= t.shape[i];
    }
    this.global("torch._utils", "_rebuild_tensor_v2");
    this.tuple([
      () => {
        this.tuple([
          () => this.shared("str storage", () => this.strRaw("storage")),
          () => this.global("torch", cls),
          () => this.str(key),
          () => this.shared("str cpu", () => this.strRaw("cpu")),
          () => this.int(numel),
        ]);
        this.out.byte(0x51); // BINPERSID
      },
      () => this.int(0),
      () => this.tuple(t.shape.map((x) => () => this.int(x))),
      () => this.tuple(stride.map((x) => () => this.int(x))),
      () => this.out.byte(0x89), // requires_grad False
      () => {
        this.global("collections", "OrderedDict"); // backward hooks: OrderedDict()
        this.out.byte(0x29, 0x52); // EMPTY_TUPLE REDUCE
        this.put();
      },
    ]);
    this.out.byte(0x52); // REDUCE
    this.#tensors.set(t, this.#memo);
    this.put();
  }

  /** A string without its own memo slot (the caller memoizes it). */
  strRaw(s: string): void {
    const b = utf8.encode(s);
    this.out.byte(0x58);
    this.out.u32(b.length);
    this.out.bytes(b);
  }

  value(v: PyValue, path: string, depth: number): void {
    if (depth > MAX_DEPTH) {
      throw new RangeError(
        `Cannot write torch file "${this.source}": nested deeper than ${MAX_DEPTH} at "${path}"`,
      );
    }
    if (v === null) return this.out.byte(0x4e);
    if (v === true) return this.out.byte(0x88);
    if (v === false) return this.out.byte(0x89);
    if (typeof v === "bigint") return this.int(v);
    if (typeof v === "number") {
      if (Number.isSafeInteger(v) && !Object.is(v, -0)) return this.int(v);
      return this.float(v);
    }
    if (typeof v === "string") return this.str(v);
    if (v instanceof PyDict) {
      if (this.#active.has(v)) throw this.cyclic(path);
      this.#active.add(v);
      if (v.pyClass === "collections.OrderedDict") {
        this.global("collections", "OrderedDict");
        this.out.byte(0x29, 0x52); // EMPTY_TUPLE REDUCE
      } else if (v.pyClass === "dict") {
        this.out.byte(0x7d); // EMPTY_DICT
      } else {
        throw new TypeError(
          `Cannot write torch file "${this.source}": "${path}" is a ${v.pyClass}; ` +
            `only dict and collections.OrderedDict are written`,
        );
      }
      this.put();
      if (v.attributes.size > 0 && v.pyClass !== "collections.OrderedDict") {
        throw new TypeError(
          `Cannot write torch file "${this.source}": "${path}" is a dict with attributes ` +
            `(${[...v.attributes.keys()].join(", ")}); only an OrderedDict carries them`,
        );
      }
      const items = (entries: [PyValue, PyValue][], at: string) =>
        this.batched(entries, 0x73, 0x75, ([k, x]) => {
          const name = typeof k === "string" ? k : String(k);
          this.value(k, `${at}[key ${name}]`, depth + 1);
          this.value(x, at === "" ? name : `${at}.${name}`, depth + 1);
        });
      items([...v.entries()], path);
      if (v.attributes.size > 0) {
        // the instance dict (a state_dict's `_metadata`), as pickle's save_reduce: state, BUILD
        this.out.byte(0x7d); // EMPTY_DICT
        this.put();
        items([...v.attributes.entries()], path);
        this.out.byte(0x62); // BUILD
      }
      this.#active.delete(v);
      return;
    }
    if (Array.isArray(v)) {
      if (this.#active.has(v)) throw this.cyclic(path);
      this.#active.add(v);
      const items = v as readonly PyValue[];
      const at = (i: number) => (path === "" ? String(i) : `${path}.${i}`);
      if (Object.isFrozen(v)) {
        this.tuple(items.map((x, i) => () => this.value(x, at(i), depth + 1)));
      } else {
        this.out.byte(0x5d); // EMPTY_LIST
        this.put();
        this.batched(items.map((x, i) => [x, i] as const), 0x61, 0x65, ([x, i]) => {
          this.value(x, at(i), depth + 1);
        });
      }
      this.#active.delete(v);
      return;
    }
    if (isTensor(v)) return this.tensor(v, path === "" ? "<root>" : path);
    throw new TypeError(
      `Cannot write torch file "${this.source}": "${path || "<root>"}" is a ${typeName(v)}; ` +
        `the writer takes None, bool, int, float, str, list, tuple, dict, OrderedDict and tensors`,
    );
  }

  cyclic(path: string): TypeError {
    return new TypeError(`Cannot write torch file "${this.source}": "${path}" contains itself`);
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (zip, PNG) of some bytes.
 * @param b the bytes
 * @returns the checksum as an unsigned 32-bit number
 *
 * @example
 * ```ts
 * import { crc32 } from "@lib/io";
 * console.assert(crc32(new TextEncoder().encode("123456789")) === 0xcbf43926);
 * ```
 */
export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** torch's zip writer: stored records, data aligned to 64 bytes. */
function zipRecords(records: readonly { name: string; data: Uint8Array }[], source: string) {
  const out = new Bytes();
  const central: { name: Uint8Array; crc: number; flags: number; size: number; offset: number }[] =
    [];
  for (const r of records) {
    if (r.data.length >= 0xffffffff || out.n >= 0xffffffff) {
      throw new RangeError(
        `Cannot write torch file "${source}": record "${r.name}" or the file passes 4 GiB ` +
          `(the zip64 records torch writes for that are not implemented)`,
      );
    }
    const name = utf8.encode(r.name);
    const start = out.n + 30 + name.length + 4;
    const pad = (64 - (start % 64)) % 64;
    const offset = out.n;
    out.u32(0x04034b50); // local header
    out.u16(0); // version needed
    // UTF-8 names; sizes and CRC in a data descriptor, except for an empty record (as miniz)
    const flags = r.data.length === 0 ? 0x0800 : 0x0808;
    out.u16(flags);
    out.u16(0); // stored
    out.u32(0); // time, date
    out.u32(0); // crc (in the descriptor)
    out.u32(0); // sizes (in the descriptor)
    out.u32(0);
    out.u16(name.length);
    out.u16(4 + pad);
    out.bytes(name);
    out.byte(0x46, 0x42); // "FB"
    out.u16(pad);
    out.bytes(new Uint8Array(pad).fill(0x5a)); // "Z"
    out.bytes(r.data);
    const crc = crc32(r.data);
    if (r.data.length > 0) {
      out.u32(0x08074b50); // data descriptor
      out.u32(crc);
      out.u32(r.data.length);
      out.u32(r.data.length);
    }
    central.push({ name, crc, flags, size: r.data.length, offset });
  }
  const cdStart = out.n;
  for (const c of central) {
    out.u32(0x02014b50);
    out.u16(0); // made by
    out.u16(0); // needed
    out.u16(c.flags);
    out.u16(0);
    out.u32(0); // time, date
    out.u32(c.crc);
    out.u32(c.size);
    out.u32(c.size);
    out.u16(c.name.length);
    out.u16(0); // extra
    out.u16(0); // comment
    out.u16(0); // disk
    out.u16(0); // internal attributes
    out.u32(0); // external attributes
    out.u32(c.offset);
    out.bytes(c.name);
  }
  const cdSize = out.n - cdStart;
  const z64 = out.n;
  out.u32(0x06064b50); // zip64 end of central directory
  out.u64(44);
  out.u16(0x031e);
  out.u16(0x002d);
  out.u32(0);
  out.u32(0);
  out.u64(central.length);
  out.u64(central.length);
  out.u64(cdSize);
  out.u64(cdStart);
  out.u32(0x07064b50); // zip64 locator
  out.u32(0);
  out.u64(z64);
  out.u32(1);
  out.u32(0x06054b50); // end of central directory
  out.u16(0);
  out.u16(0);
  out.u16(central.length);
  out.u16(central.length);
  out.u32(cdSize);
  out.u32(cdStart);
  out.u16(0);
  return out.done();
}

/**
 * Serialize a value as `torch.save(value, buffer)` does in torch 1.13 (see the module doc
 * for the values and the format).
 *
 * @param value what to save, e.g. `new PyDict("dict", [["model", stateDictOf(tensors)]])`
 * @param options the archive folder name
 * @returns the file's bytes
 * @throws {TypeError} for a value the writer does not take (named by its path)
 * @throws {RangeError} for a tensor whose data does not fit its shape, or a file past 4 GiB
 *
 * @example
 * ```ts
 * import { PyDict, readTorch, stateDictOf, writeTorch } from "@lib/io";
 * const w = { dtype: "float32" as const, shape: [2], data: new Float32Array([1, 2]) };
 * const bytes = writeTorch(new PyDict("dict", [["model", stateDictOf([["w", w]])]]));
 * const back = readTorch(bytes) as PyDict;
 * console.assert((back.get("model") as PyDict).pyClass === "collections.OrderedDict");
 * ```
 */
export function writeTorch(value: PyValue, options: TorchWriteOptions = {}): Uint8Array {
  const archive = options.archiveName ?? "archive";
  if (!/^[A-Za-z0-9_.-]+$/.test(archive)) {
    throw new TypeError(
      `Cannot write torch file: archive name ${JSON.stringify(archive)} is not a plain name`,
    );
  }
  const p = new Pickler(archive);
  p.out.byte(0x80, 2); // PROTO 2
  p.value(value, "", 0);
  p.out.byte(0x2e); // STOP
  const storages = [...p.storages].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return zipRecords(
    [
      { name: `${archive}/data.pkl`, data: p.out.done() },
      ...storages.map((s) => ({ name: `${archive}/data/${s.key}`, data: s.bytes })),
      { name: `${archive}/version`, data: utf8.encode("3\n") },
    ],
    archive,
  );
}

/**
 * Write a `torch.save` file atomically (see {@linkcode writeTorch}); the archive folder is
 * named after the file, as torch names it (`ckpt/model.pth` -> `model/`).
 *
 * @param path the file
 * @param value what to save
 * @throws {TypeError | RangeError} as {@linkcode writeTorch}
 */
export async function writeTorchFile(path: string, value: PyValue): Promise<void> {
  const base = path.split("/").pop()!.replace(/\.[^.]*$/, "");
  const archiveName = /^[A-Za-z0-9_.-]+$/.test(base) && base !== "" ? base : "archive";
  await writeFileAtomic(path, writeTorch(value, { archiveName }));
}

/**
 * A state dict (`collections.OrderedDict` of tensors) in the given order, as
 * `module.state_dict()` returns it, without its `_metadata` (per-module versions, which
 * `load_state_dict` does not need).
 *
 * @param tensors tensors by parameter name
 * @returns the OrderedDict
 *
 * @example
 * ```ts
 * import { stateDictOf } from "@lib/io";
 * const b = { dtype: "float32" as const, shape: [1], data: new Float32Array([0]) };
 * console.assert(stateDictOf([["head.bias", b]]).pyClass === "collections.OrderedDict");
 * ```
 */
export function stateDictOf(tensors: Iterable<readonly [string, HostTensor]>): PyDict {
  return new PyDict("collections.OrderedDict", tensors);
}
