/**
 * A tiny pickle writer for tests: builds pickles and torch.save-shaped files (zip and
 * legacy) from a small description language, so the reader can be tested on views, dtypes
 * and malformed files that the parity fixtures do not contain.
 *
 * @module
 */
import { zipSync } from "fflate";

/** What {@linkcode pickle} can write. Arrays are tuples. */
export type PV =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PV[]
  | { float: number }
  | { list: PV[] }
  | { dict: [PV, PV][] }
  | { global: string }
  | { reduce: [PV, PV[]] }
  | { newobj: [PV, PV[]] }
  | { build: [PV, PV] }
  | { persid: PV }
  | { raw: number[] };

const enc = new TextEncoder();

function u32(n: number): number[] {
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
}

function encode(v: PV, out: number[]): void {
  if (v === null) out.push(0x4e);
  else if (v === true) out.push(0x88);
  else if (v === false) out.push(0x89);
  else if (typeof v === "number") {
    if (Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) out.push(0x4a, ...u32(v));
    else encode({ float: v }, out);
  } else if (typeof v === "bigint") {
    const bytes: number[] = [];
    let x = v;
    do {
      bytes.push(Number(BigInt.asUintN(8, x)));
      x >>= 8n;
    } while (
      !(x === 0n && !(bytes[bytes.length - 1] & 0x80)) &&
      !(x === -1n && bytes[bytes.length - 1] & 0x80)
    );
    out.push(0x8a, bytes.length, ...bytes);
  } else if (typeof v === "string") {
    const b = enc.encode(v);
    out.push(0x58, ...u32(b.length), ...b);
  } else if (v instanceof Uint8Array) out.push(0x42, ...u32(v.length), ...v);
  else if (Array.isArray(v)) {
    out.push(0x28);
    for (const x of v) encode(x, out);
    out.push(0x74);
  } else if ("float" in v) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v.float, false);
    out.push(0x47, ...b);
  } else if ("list" in v) {
    out.push(0x5d, 0x28);
    for (const x of v.list) encode(x, out);
    out.push(0x65);
  } else if ("dict" in v) {
    out.push(0x7d, 0x28);
    for (const [k, x] of v.dict) {
      encode(k, out);
      encode(x, out);
    }
    out.push(0x75);
  } else if ("global" in v) {
    const [m, n] = v.global.split(" ");
    out.push(0x63, ...enc.encode(`${m}\n${n}\n`));
  } else if ("reduce" in v) {
    encode(v.reduce[0], out);
    encode(v.reduce[1], out);
    out.push(0x52);
  } else if ("newobj" in v) {
    encode(v.newobj[0], out);
    encode(v.newobj[1], out);
    out.push(0x81);
  } else if ("build" in v) {
    encode(v.build[0], out);
    encode(v.build[1], out);
    out.push(0x62);
  } else if ("persid" in v) {
    encode(v.persid, out);
    out.push(0x51);
  } else out.push(...v.raw);
}

/**
 * @param v the value to write
 * @returns a protocol-2 pickle of it (PROTO 2 ... STOP)
 */
export function pickle(v: PV): Uint8Array {
  const out = [0x80, 2];
  encode(v, out);
  out.push(0x2e);
  return new Uint8Array(out);
}

/** An empty OrderedDict, as torch writes the backward_hooks argument. */
export const ORDERED_DICT: PV = { reduce: [{ global: "collections OrderedDict" }, []] };

/**
 * A tensor as torch pickles it.
 * @param key storage key
 * @param storageClass e.g. "FloatStorage"
 * @param numel storage element count
 * @param offset storage offset
 * @param size tensor size
 * @param stride tensor stride
 * @returns the description
 */
export function tensorPV(
  key: string,
  storageClass: string,
  numel: number,
  offset: number,
  size: number[],
  stride: number[],
  view?: PV,
): PV {
  const pid: PV[] = ["storage", { global: `torch ${storageClass}` }, key, "cpu", numel];
  if (view !== undefined) pid.push(view);
  return {
    reduce: [{ global: "torch._utils _rebuild_tensor_v2" }, [
      { persid: pid },
      offset,
      size,
      stride,
      false,
      ORDERED_DICT,
    ]],
  };
}

/**
 * A torch zip file (stored entries, like torch writes them).
 * @param obj the saved object
 * @param storages storage bytes by key
 * @param options archive folder name, byteorder entry, entries to leave out
 * @returns the file's bytes
 */
export function torchZip(
  obj: PV,
  storages: Record<string, Uint8Array>,
  options: { prefix?: string; byteorder?: string; omit?: string[] } = {},
): Uint8Array {
  const p = options.prefix ?? "archive";
  const files: Record<string, Uint8Array> = { [`${p}/data.pkl`]: pickle(obj) };
  if (options.byteorder !== undefined) files[`${p}/byteorder`] = enc.encode(options.byteorder);
  for (const [k, b] of Object.entries(storages)) files[`${p}/data/${k}`] = b;
  files[`${p}/version`] = enc.encode("3\n");
  for (const o of options.omit ?? []) delete files[`${p}/${o}`];
  return zipSync(files, { level: 0 });
}

/**
 * A legacy (pre-1.6) torch.save file.
 * @param obj the saved object
 * @param storages [key, element count, raw little-endian bytes] in file order
 * @returns the file's bytes
 */
export function torchLegacy(obj: PV, storages: [string, number, Uint8Array][]): Uint8Array {
  const sys: PV = {
    dict: [
      ["protocol_version", 1001],
      ["little_endian", true],
      ["type_sizes", { dict: [["short", 2], ["int", 4], ["long", 4]] }],
    ],
  };
  const parts = [
    pickle(0x1950a86a20f9469cfc6cn),
    pickle(1001),
    pickle(sys),
    pickle(obj),
    pickle({ list: storages.map(([k]) => k) }),
  ];
  for (const [, n, b] of storages) {
    const c = new Uint8Array(8);
    new DataView(c.buffer).setBigInt64(0, BigInt(n), true);
    parts.push(c, b);
  }
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * @param a numbers
 * @returns their float32 little-endian bytes
 */
export function f32Bytes(a: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(a).buffer);
}
