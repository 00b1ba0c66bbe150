/**
 * The pieces shared by the tiny WebAssembly modules this project assembles in code (the
 * dropout-mask filler in lib/models/_mask_wasm.ts, the SIMD AdamW loop in
 * lib/train/engine/_adamw_simd.ts): LEB128 integers, sections, names, local access, value
 * types, and one instance per wasm memory the module imports as `env.memory`.
 *
 * @module
 */

/** Value types of the binary format. */
export const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;

/** The module header: "\0asm", version 1. */
export const WASM_HEADER: readonly number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

/** Unsigned LEB128 bytes of a non-negative integer below 2^32. */
export function leb(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) {
    throw new RangeError(`leb: ${n} is not an unsigned 32-bit integer`);
  }
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** A section: its id, the body's length, the body. */
export function section(id: number, body: readonly number[]): number[] {
  return [id, ...leb(body.length), ...body];
}

/** A name: its UTF-8 length, then its bytes. */
export function name(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...leb(b.length), ...b];
}

/** `local.get i`. */
export const get = (i: number): number[] => [0x20, ...leb(i)];
/** `local.set i`. */
export const set = (i: number): number[] => [0x21, ...leb(i)];

/** The import section that brings in one memory (minimum 1 page) as `env.memory`. */
export function importEnvMemory(): number[] {
  return section(2, /* import */ [
    1,
    ...name("env"),
    ...name("memory"),
    0x02,
    0x00,
    1,
  ]);
}

/**
 * One instance of `bytes` per wasm memory, built at first use; `pick` reads what the
 * caller needs from its exports. Where the runtime cannot compile or instantiate the module
 * (no SIMD, say) the result is `null`, remembered for that memory too.
 *
 * @param bytes the module (importing `env.memory`)
 * @param pick what to keep from the instance's exports
 * @returns a function from a memory to the picked exports or `null`
 */
export function perMemory<T>(
  bytes: Uint8Array,
  pick: (exports: WebAssembly.Exports) => T,
): (memory: WebAssembly.Memory) => T | null {
  const cache = new WeakMap<WebAssembly.Memory, T | null>();
  let module: WebAssembly.Module | null | undefined;
  return (memory) => {
    let e = cache.get(memory);
    if (e === undefined) {
      try {
        module ??= new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
        e = pick(new WebAssembly.Instance(module, { env: { memory } }).exports);
      } catch {
        module ??= null;
        e = null;
      }
      cache.set(memory, e);
    }
    return e;
  };
}
