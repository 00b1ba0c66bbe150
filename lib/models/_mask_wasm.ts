/**
 * Dropout masks drawn by a tiny WebAssembly function that runs the Rng's generator
 * (xoshiro128**, lib/random/rng.ts) and writes the mask straight into the wasm backend's
 * memory (imported): the same draws in the same order as `Rng.fillThreshold`, so the same
 * masks and the same generator state afterwards, at a fraction of the JS loop's time.
 *
 * The module is assembled here from the instruction list below (no build step, no binary
 * blob).
 *
 * @module
 */
import type { Rng } from "../random/mod.ts";
import {
  F32,
  get,
  I32,
  importEnvMemory,
  leb,
  name,
  perMemory,
  section,
  set,
  WASM_HEADER,
} from "../backend/wasm_assemble.ts";

const i32c = (v: number) => [0x41, ...leb(v)]; // small non-negative constants only
const [ADD, MUL, XOR, SHL, ROTL, LT_U, GE_U] = [0x6a, 0x6c, 0x73, 0x74, 0x77, 0x49, 0x4f];

// fill(out byte offset, n, bound, below, above): out[i] = draw_i <u bound ? below : above.
const OUT = 0, N = 1, BOUND = 2, BELOW = 3, ABOVE = 4;
const END = 5, S0 = 6, S1 = 7, S2 = 8, S3 = 9, R = 10, T = 11;
const xorInto = (a: number, b: number) => [...get(a), ...get(b), XOR, ...set(a)];

// deno-fmt-ignore
const body: number[] = [
  1, 7, I32, // locals 5-11: i32
  ...[0, 1, 2, 3].flatMap((k) => [0x23, k, ...set(S0 + k)]), // s0..s3 = globals
  ...get(OUT), ...get(N), ...i32c(2), SHL, ADD, ...set(END),
  0x02, 0x40, 0x03, 0x40, // block, loop
  ...get(OUT), ...get(END), GE_U, 0x0d, 1, // br_if out of the block when done
  // r = rotl(s1 * 5, 7) * 9; t = s1 << 9
  ...get(S1), ...i32c(5), MUL, ...i32c(7), ROTL, ...i32c(9), MUL, ...set(R),
  ...get(S1), ...i32c(9), SHL, ...set(T),
  ...xorInto(S2, S0), ...xorInto(S3, S1), ...xorInto(S1, S2), ...xorInto(S0, S3), ...xorInto(S2, T),
  ...get(S3), ...i32c(11), ROTL, ...set(S3),
  // *out = r <u bound ? below : above
  ...get(OUT), ...get(BELOW), ...get(ABOVE), ...get(R), ...get(BOUND), LT_U, 0x1b, 0x38, 2, 0,
  ...get(OUT), ...i32c(4), ADD, ...set(OUT),
  0x0c, 0, 0x0b, 0x0b, // br loop, end loop, end block
  ...[0, 1, 2, 3].flatMap((k) => [...get(S0 + k), 0x24, k]), // globals = s0..s3
  0x0b,
];

// deno-fmt-ignore
const MODULE = new Uint8Array([
  ...WASM_HEADER,
  ...section(1, [1, 0x60, 5, I32, I32, I32, F32, F32, 0]), // type
  ...importEnvMemory(),
  ...section(3, [1, 0]), // function 0 has type 0
  ...section(6, [4, ...[0, 1, 2, 3].flatMap(() => [I32, 1, 0x41, 0, 0x0b])]), // 4 mutable i32
  ...section(7, [5, ...name("fill"), 0x00, 0,
    ...[0, 1, 2, 3].flatMap((k) => [...name(`s${k}`), 0x03, k])]), // exports
  ...section(10, [1, ...leb(body.length), ...body]), // code
]);

interface Exports {
  fill(out: number, n: number, bound: number, below: number, above: number): void;
  s0: WebAssembly.Global;
  s1: WebAssembly.Global;
  s2: WebAssembly.Global;
  s3: WebAssembly.Global;
}

const instance = perMemory(MODULE, (e) => e as unknown as Exports);

/**
 * Fill `out` (a view of `memory`) as `rng.fillThreshold(out, threshold, below, above)` does,
 * in wasm.
 *
 * @param memory the wasm memory `out` views
 * @param out the values to write
 * @param rng the generator (advanced by `out.length` draws)
 * @param threshold compared with each unsigned 32-bit draw
 * @param below the value where the draw is below the threshold
 * @param above the value elsewhere
 * @returns false (nothing drawn) where wasm cannot run it: the caller uses the JS loop
 */
export function fillThresholdWasm(
  memory: WebAssembly.Memory,
  out: Float32Array,
  rng: Rng,
  threshold: number,
  below: number,
  above: number,
): boolean {
  // `draw < threshold` for integer draws is `draw < ceil(threshold)`; 2^32 does not fit.
  const bound = Math.max(0, Math.ceil(threshold));
  if (bound >= 4294967296 || out.buffer !== memory.buffer) return false;
  const e = instance(memory);
  if (e === null) return false;
  const s = rng.getState();
  e.s0.value = s[0] | 0;
  e.s1.value = s[1] | 0;
  e.s2.value = s[2] | 0;
  e.s3.value = s[3] | 0;
  e.fill(out.byteOffset, out.length, bound | 0, below, above);
  rng.setState([e.s0.value >>> 0, e.s1.value >>> 0, e.s2.value >>> 0, e.s3.value >>> 0]);
  return true;
}
