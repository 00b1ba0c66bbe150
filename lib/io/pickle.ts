/**
 * A safe, minimal Python unpickler: it builds plain values and never runs anything.
 *
 * Every `GLOBAL`/`STACK_GLOBAL` goes through a caller-supplied allow-list
 * ({@linkcode UnpickleOptions.resolveGlobal}); a global that is not on it stops the load
 * with an {@linkcode UnsafePickleError} before any call could happen. "Calls" (`REDUCE`,
 * `NEWOBJ`) only reach the JavaScript functions the allow-list returns.
 *
 * Python values become (see {@linkcode PyValue}):
 * - `None` → `null`; `bool` → `boolean`; `float` → `number`;
 * - `int` → `number` when it is a safe integer, else `bigint` (a whole-valued float
 *   and an int of the same value are then the same `number`);
 * - `str` → `string`; `bytes`/`bytearray` → `Uint8Array`; Python 2 `str` → latin-1 `string`;
 * - `list` → a mutable `Array`; `tuple` → a frozen `Array` (`Object.isFrozen` tells them apart);
 * - `set`/`frozenset` → `Set`;
 * - `dict` → {@linkcode PyDict}, a `Map` that keeps insertion order and the key types
 *   (int key `0` and str key `"0"` are different keys); attributes set on a dict
 *   subclass by `BUILD` (e.g. a state_dict's `_metadata`) go to `PyDict.attributes`.
 *
 * Supported opcodes: everything of protocols 2 to 5 that plain data needs (PROTO, FRAME,
 * STOP, MARK, POP, POP_MARK, DUP, the int/float/bytes/unicode opcodes, NONE/NEWTRUE/NEWFALSE,
 * containers, memo ops, GLOBAL/STACK_GLOBAL, REDUCE, BUILD, NEWOBJ, NEWOBJ_EX, PERSID/BINPERSID,
 * READONLY_BUFFER) plus the protocol 0/1 opcodes INT, LONG, FLOAT, GET, PUT, DICT, LIST.
 * Refused as malformed: the protocol-0 quoted strings (STRING, UNICODE), INST, OBJ, the
 * extension registry (EXT1/2/4) and out-of-band buffers (NEXT_BUFFER).
 *
 * @module
 */
import type { HostTensor } from "./host_tensor.ts";

/** A Python value as the unpickler rebuilds it (see the module doc for the mapping). */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | readonly PyValue[]
  | Set<PyValue>
  | PyDict
  | HostTensor
  | PyOpaque;

/**
 * A Python `dict` (or `collections.OrderedDict`, or an `argparse.Namespace` turned into a
 * record): a `Map` in insertion order with the original key types.
 */
export class PyDict extends Map<PyValue, PyValue> {
  /** The Python class: `"dict"`, `"collections.OrderedDict"`, `"argparse.Namespace"`. */
  readonly pyClass: string;
  /** Instance attributes set by `BUILD` (e.g. `_metadata` of a module state_dict). */
  readonly attributes: Map<string, PyValue> = new Map();

  /**
   * @param pyClass the Python class name
   * @param entries initial entries
   */
  constructor(pyClass = "dict", entries?: Iterable<readonly [PyValue, PyValue]>) {
    super(entries);
    this.pyClass = pyClass;
  }
}

/**
 * An object that is not plain data: an allowed global (a class or function the allow-list
 * returned) or something a handler built (e.g. a torch storage). Subclass it to hold state.
 */
export class PyOpaque {
  /** `module.name` of what it stands for, for messages. */
  readonly qualname: string;

  /** @param qualname `module.name` */
  constructor(qualname: string) {
    this.qualname = qualname;
  }
}

/** An allowed global that can be called by `REDUCE` or instantiated by `NEWOBJ`. */
export class PyCallable extends PyOpaque {
  /** Build the result of `f(*args)` (REDUCE) or `cls.__new__(cls, *args)` (NEWOBJ). */
  readonly call: (args: readonly PyValue[]) => PyValue;

  /**
   * @param qualname `module.name`
   * @param call the JavaScript implementation; it must only build data
   */
  constructor(qualname: string, call: (args: readonly PyValue[]) => PyValue) {
    super(qualname);
    this.call = call;
  }
}

/**
 * Thrown when a pickle names a global that is not on the allow-list. Nothing of the pickle
 * has been executed when it is thrown.
 */
export class UnsafePickleError extends Error {
  /** The file or stream that was refused. */
  readonly source: string;
  /** The refused global, `module.name`. */
  readonly global: string;

  /**
   * @param source the file name
   * @param global the refused `module.name`
   */
  constructor(source: string, global: string) {
    super(`Refusing "${source}": global ${printable(global)} is not allowed`);
    this.name = "UnsafePickleError";
    this.source = source;
    this.global = global;
  }
}

/**
 * A name as it may appear in a message: itself when short and printable ASCII, else quoted
 * with escapes and cut to 60 characters (names in hostile or corrupt pickles can be anything).
 * @param s a name
 * @returns a safe one-line rendering
 */
export function printable(s: string): string {
  if (/^[\x21-\x7e]{1,60}$/.test(s)) return s;
  return JSON.stringify(s.length > 60 ? s.slice(0, 60) + "..." : s);
}

/** Options of {@linkcode unpickle}. */
export interface UnpickleOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
  /** Byte offset where the pickle starts. @default {0} */
  start?: number;
  /**
   * The allow-list: the value a `GLOBAL module name` stands for, or `undefined` to refuse
   * it (an {@linkcode UnsafePickleError}). @default {refuses every global}
   */
  resolveGlobal?: (module: string, name: string) => PyValue | undefined;
  /**
   * Resolves a persistent id (PERSID/BINPERSID). @default {refuses persistent ids}
   * It may throw a typed error naming the file.
   */
  persistentLoad?: (pid: PyValue) => PyValue;
}

/** What {@linkcode unpickle} returns. */
export interface UnpickleResult {
  /** The unpickled value. */
  value: PyValue;
  /** The byte offset just past the STOP opcode (where a following pickle would start). */
  end: number;
}

/**
 * Unpickle one pickle from `bytes` (starting at `options.start`), building only data.
 *
 * @param bytes the bytes holding the pickle
 * @param options source name, start offset, global allow-list, persistent-id loader
 * @returns the value and the offset just after its STOP opcode
 * @throws {UnsafePickleError} for a global the allow-list refuses, e.g.
 *   `Refusing "m.ckpt": global os.system is not allowed`
 * @throws {SyntaxError} for malformed input, e.g.
 *   `Cannot unpickle "x.pkl": unknown opcode 0xff at byte 2` (also any error of
 *   an allow-list handler that is not already typed)
 *
 * @example
 * ```ts
 * import { PyDict, unpickle } from "@lib/io";
 * // {"a": [1, 2.5]} pickled with protocol 2
 * const b = new Uint8Array([0x80, 2, 0x7d, 0x71, 0, 0x58, 1, 0, 0, 0, 0x61, 0x71, 1, 0x5d,
 *   0x71, 2, 0x28, 0x4b, 1, 0x47, 0x40, 4, 0, 0, 0, 0, 0, 0, 0x65, 0x73, 0x2e]);
 * const d = unpickle(b).value as PyDict;
 * console.assert((d.get("a") as number[])[1] === 2.5);
 * ```
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): UnpickleResult {
  const source = options.source ?? "<bytes>";
  const u = new Unpickler(bytes, options.start ?? 0, source, options);
  try {
    return u.run();
  } catch (e) {
    if (
      e instanceof UnsafePickleError || e instanceof SyntaxError || e instanceof RangeError ||
      e instanceof TypeError
    ) {
      throw e;
    }
    throw new SyntaxError(
      `Cannot unpickle "${source}": ${(e as Error)?.message ?? String(e)} at byte ${u.opPos}`,
    );
  }
}

type Stack = PyValue[];

class Unpickler {
  readonly view: DataView;
  pos: number;
  opPos = 0;
  stack: Stack = [];
  meta: Stack[] = [];
  memo = new Map<number, PyValue>();
  readonly utf8 = new TextDecoder("utf-8", { fatal: true });
  readonly latin1 = new TextDecoder("latin1");

  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly source: string,
    readonly options: UnpickleOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
  }

  bad(what: string): SyntaxError {
    return new SyntaxError(`Cannot unpickle "${this.source}": ${what} at byte ${this.opPos}`);
  }

  need(n: number): number {
    if (n < 0 || this.pos + n > this.bytes.length) {
      throw this.bad(
        `${n} bytes needed but only ${Math.max(0, this.bytes.length - this.pos)} remain`,
      );
    }
    const p = this.pos;
    this.pos += n;
    return p;
  }

  u8(): number {
    return this.bytes[this.need(1)];
  }
  u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  u64(): number {
    const v = this.view.getBigUint64(this.need(8), true);
    // any length past the input is refused by need(); clamp to keep it a number
    return v > BigInt(this.bytes.length) ? this.bytes.length + 1 : Number(v);
  }
  take(n: number): Uint8Array {
    const p = this.need(n);
    return this.bytes.subarray(p, p + n);
  }
  line(): string {
    const nl = this.bytes.indexOf(0x0a, this.pos);
    if (nl < 0) throw this.bad("a text argument runs to the end of the input");
    const s = this.latin1.decode(this.bytes.subarray(this.pos, nl));
    this.pos = nl + 1;
    return s;
  }
  text(b: Uint8Array): string {
    try {
      return this.utf8.decode(b);
    } catch {
      throw this.bad("invalid UTF-8 in a string");
    }
  }

  push(v: PyValue): void {
    this.stack.push(v);
  }
  pop(): PyValue {
    if (this.stack.length === 0) throw this.bad("stack underflow");
    return this.stack.pop() as PyValue;
  }
  top(): PyValue {
    if (this.stack.length === 0) throw this.bad("stack underflow");
    return this.stack[this.stack.length - 1];
  }
  popMark(): PyValue[] {
    const items = this.stack;
    const prev = this.meta.pop();
    if (prev === undefined) throw this.bad("no MARK to pop to");
    this.stack = prev;
    return items;
  }
  memoGet(i: number): PyValue {
    const v = this.memo.get(i);
    if (v === undefined) throw this.bad(`memo key ${i} is not set`);
    return v;
  }
  memoPut(i: number): void {
    this.memo.set(i, this.top());
  }

  int(v: bigint): number | bigint {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v;
  }
  long(b: Uint8Array): number | bigint {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return this.int(v);
  }
  parseInt(s: string, what: string): number | bigint {
    const t = s.trim().replace(/L$/, "");
    if (!/^[-+]?\d+$/.test(t)) throw this.bad(`bad ${what} literal ${printable(s)}`);
    return this.int(BigInt(t));
  }

  global(module: string, name: string): PyValue {
    const v = this.options.resolveGlobal?.(module, name);
    if (v === undefined) throw new UnsafePickleError(this.source, `${module}.${name}`);
    return v;
  }

  call(f: PyValue, args: PyValue, op: string): PyValue {
    if (!(f instanceof PyCallable)) {
      const what = f instanceof PyOpaque ? f.qualname : typeName(f);
      throw this.bad(`${op} of ${what}, which is not callable`);
    }
    if (!Array.isArray(args)) {
      throw this.bad(`${op} arguments are a ${typeName(args)}, not a tuple`);
    }
    return f.call(args);
  }

  setItems(d: PyValue, items: PyValue[]): void {
    if (!(d instanceof PyDict)) throw this.bad(`SETITEMS on a ${typeName(d)}`);
    if (items.length % 2 !== 0) throw this.bad("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  }

  appends(l: PyValue, items: PyValue[]): void {
    if (!Array.isArray(l) || Object.isFrozen(l)) throw this.bad(`APPENDS on a ${typeName(l)}`);
    for (const x of items) (l as PyValue[]).push(x);
  }

  build(obj: PyValue, state: PyValue): void {
    let slots: PyValue = null;
    if (Array.isArray(state) && Object.isFrozen(state) && state.length === 2) {
      [state, slots] = state as PyValue[];
    }
    if (!(obj instanceof PyDict)) throw this.bad(`BUILD on a ${typeName(obj)}`);
    for (const s of [state, slots]) {
      if (s === null) continue;
      if (!(s instanceof PyDict)) throw this.bad(`BUILD with a ${typeName(s)} state`);
      for (const [k, v] of s) {
        if (typeof k !== "string") throw this.bad(`BUILD with a ${typeName(k)} attribute name`);
        if (obj.pyClass === "argparse.Namespace") obj.set(k, v);
        else obj.attributes.set(k, v);
      }
    }
  }

  run(): UnpickleResult {
    const b = this.bytes;
    for (;;) {
      this.opPos = this.pos;
      if (this.pos >= b.length) throw this.bad("input ends before the STOP opcode");
      const op = b[this.pos++];
      switch (op) {
        case 0x80: { // PROTO
          const p = this.u8();
          if (p > 5) throw this.bad(`unsupported pickle protocol ${p}`);
          break;
        }
        case 0x95: // FRAME (length is advisory)
          this.u64();
          break;
        case 0x2e: { // STOP
          const v = this.pop();
          return { value: v, end: this.pos };
        }
        case 0x28: // MARK
          this.meta.push(this.stack);
          this.stack = [];
          break;
        case 0x30: // POP
          if (this.stack.length === 0) this.popMark();
          else this.stack.pop();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;
        // numbers
        case 0x4a: // BININT
          this.push(this.view.getInt32(this.need(4), true));
          break;
        case 0x4b: // BININT1
          this.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.push(this.u16());
          break;
        case 0x8a: // LONG1
          this.push(this.long(this.take(this.u8())));
          break;
        case 0x8b: { // LONG4
          const n = this.view.getInt32(this.need(4), true);
          if (n < 0) throw this.bad("LONG4 with a negative length");
          this.push(this.long(this.take(n)));
          break;
        }
        case 0x49: { // INT (protocol 0)
          const s = this.line();
          if (s === "01") this.push(true);
          else if (s === "00") this.push(false);
          else this.push(this.parseInt(s, "INT"));
          break;
        }
        case 0x4c: // LONG (protocol 0)
          this.push(this.parseInt(this.line(), "LONG"));
          break;
        case 0x46: { // FLOAT (protocol 0)
          const s = this.line().trim();
          const special: Record<string, number> = { inf: Infinity, "-inf": -Infinity, nan: NaN };
          const v = s in special ? special[s] : Number(s);
          if (Number.isNaN(v) && s !== "nan") throw this.bad(`bad FLOAT literal ${printable(s)}`);
          this.push(v);
          break;
        }
        case 0x47: // BINFLOAT (big-endian)
          this.push(this.view.getFloat64(this.need(8), false));
          break;
        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        // strings and bytes
        case 0x58: // BINUNICODE
          this.push(this.text(this.take(this.u32())));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.push(this.text(this.take(this.u8())));
          break;
        case 0x8d: // BINUNICODE8
          this.push(this.text(this.take(this.u64())));
          break;
        case 0x42: // BINBYTES
          this.push(this.take(this.u32()).slice());
          break;
        case 0x43: // SHORT_BINBYTES
          this.push(this.take(this.u8()).slice());
          break;
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          this.push(this.take(this.u64()).slice());
          break;
        case 0x54: { // BINSTRING (Python 2 str)
          const n = this.view.getInt32(this.need(4), true);
          if (n < 0) throw this.bad("BINSTRING with a negative length");
          this.push(this.latin1.decode(this.take(n)));
          break;
        }
        case 0x55: // SHORT_BINSTRING
          this.push(this.latin1.decode(this.take(this.u8())));
          break;
        case 0x98: // READONLY_BUFFER
          this.top();
          break;
        // containers
        case 0x29: // EMPTY_TUPLE
          this.push(Object.freeze([]) as readonly PyValue[]);
          break;
        case 0x85: // TUPLE1
          this.push(Object.freeze([this.pop()]) as readonly PyValue[]);
          break;
        case 0x86: { // TUPLE2
          const y = this.pop(), x = this.pop();
          this.push(Object.freeze([x, y]) as readonly PyValue[]);
          break;
        }
        case 0x87: { // TUPLE3
          const z = this.pop(), y = this.pop(), x = this.pop();
          this.push(Object.freeze([x, y, z]) as readonly PyValue[]);
          break;
        }
        case 0x74: // TUPLE
          this.push(Object.freeze(this.popMark()) as readonly PyValue[]);
          break;
        case 0x5d: // EMPTY_LIST
          this.push([]);
          break;
        case 0x6c: // LIST
          this.push(this.popMark());
          break;
        case 0x61: { // APPEND
          const x = this.pop();
          this.appends(this.top(), [x]);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          this.appends(this.top(), items);
          break;
        }
        case 0x7d: // EMPTY_DICT
          this.push(new PyDict());
          break;
        case 0x64: { // DICT
          const d = new PyDict();
          this.setItems(d, this.popMark());
          this.push(d);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop(), k = this.pop();
          this.setItems(this.top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.top(), items);
          break;
        }
        case 0x8f: // EMPTY_SET
          this.push(new Set());
          break;
        case 0x90: { // ADDITEMS
          const items = this.popMark();
          const s = this.top();
          if (!(s instanceof Set)) throw this.bad(`ADDITEMS on a ${typeName(s)}`);
          for (const x of items) s.add(x);
          break;
        }
        case 0x91: // FROZENSET
          this.push(new Set(this.popMark()));
          break;
        // memo
        case 0x67: // GET
          this.push(this.memoGet(Number(this.parseInt(this.line(), "GET"))));
          break;
        case 0x68: // BINGET
          this.push(this.memoGet(this.u8()));
          break;
        case 0x6a: // LONG_BINGET
          this.push(this.memoGet(this.u32()));
          break;
        case 0x70: // PUT
          this.memoPut(Number(this.parseInt(this.line(), "PUT")));
          break;
        case 0x71: // BINPUT
          this.memoPut(this.u8());
          break;
        case 0x72: // LONG_BINPUT
          this.memoPut(this.u32());
          break;
        case 0x94: // MEMOIZE
          this.memoPut(this.memo.size);
          break;
        // globals, calls, objects
        case 0x63: { // GLOBAL
          const module = this.line(), name = this.line();
          this.push(this.global(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop(), module = this.pop();
          if (typeof name !== "string" || typeof module !== "string") {
            throw this.bad("STACK_GLOBAL needs two strings");
          }
          this.push(this.global(module, name));
          break;
        }
        case 0x52: { // REDUCE
          const args = this.pop(), f = this.pop();
          this.push(this.call(f, args, "REDUCE"));
          break;
        }
        case 0x81: { // NEWOBJ
          const args = this.pop(), cls = this.pop();
          this.push(this.call(cls, args, "NEWOBJ"));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          const kwargs = this.pop(), args = this.pop(), cls = this.pop();
          if (!(kwargs instanceof PyDict) || kwargs.size > 0) {
            throw this.bad("NEWOBJ_EX with keyword arguments");
          }
          this.push(this.call(cls, args, "NEWOBJ_EX"));
          break;
        }
        case 0x62: { // BUILD
          const state = this.pop();
          this.build(this.top(), state);
          break;
        }
        case 0x51: { // BINPERSID
          const pid = this.pop();
          this.push(this.persistent(pid));
          break;
        }
        case 0x50: // PERSID
          this.push(this.persistent(this.line()));
          break;
        default: {
          const names: Record<number, string> = {
            0x53: "STRING",
            0x56: "UNICODE",
            0x69: "INST",
            0x6f: "OBJ",
            0x82: "EXT1",
            0x83: "EXT2",
            0x84: "EXT4",
            0x97: "NEXT_BUFFER",
          };
          const hex = `0x${op.toString(16).padStart(2, "0")}`;
          throw this.bad(
            op in names ? `unsupported opcode ${names[op]} (${hex})` : `unknown opcode ${hex}`,
          );
        }
      }
    }
  }

  persistent(pid: PyValue): PyValue {
    if (this.options.persistentLoad === undefined) {
      throw this.bad("a persistent id, but this pickle is read without a persistent loader");
    }
    return this.options.persistentLoad(pid);
  }
}

/**
 * A short Python-ish type name of a value, for messages.
 * @param v a value
 * @returns e.g. `"int"`, `"tuple"`, `"dict"`, `"tensor"`
 */
export function typeName(v: PyValue | undefined): string {
  if (v === null) return "None";
  if (v === undefined) return "nothing";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (typeof v === "bigint") return "int";
  if (typeof v === "string") return "str";
  if (v instanceof Uint8Array) return "bytes";
  if (Array.isArray(v)) return Object.isFrozen(v) ? "tuple" : "list";
  if (v instanceof Set) return "set";
  if (v instanceof PyDict) return v.pyClass;
  if (v instanceof PyOpaque) return printable(v.qualname);
  return "tensor";
}
