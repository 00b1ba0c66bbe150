/**
 * The AdamW element loop as a tiny WebAssembly SIMD function that works on the wasm
 * backend's own memory (imported), four float32 lanes at a time.
 *
 * The module is assembled here from the instruction list below (no build step, no
 * binary blob). Its arithmetic is the tensor path's, operation for operation, in float32
 * (wasm's `f32x4` add/sub/mul/div/sqrt are IEEE, correctly rounded per lane), so results
 * are bit for bit those of ./fused_adamw.ts's scalar loop and of the tensor path.
 *
 * @module
 */
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
  V128,
  WASM_HEADER,
} from "../../backend/wasm_assemble.ts";

/**
 * `adamw(p, m, v, g, out, groups, decay, b1, 1-b1, b2, 1-b2, stepSize, sqrt(1-b2^t), eps)`:
 * byte offsets of the parameter (read), its moments (updated in place), the gradient
 * (read) and the new parameter values (written), then `groups` of four elements.
 */
export type AdamWSimd = (
  p: number,
  m: number,
  v: number,
  g: number,
  out: number,
  groups: number,
  decay: number,
  b1: number,
  omb1: number,
  b2: number,
  omb2: number,
  stepSize: number,
  bc2Sqrt: number,
  eps: number,
) => void;

// Opcodes (WebAssembly core 2.0 + fixed-width SIMD).
const simd = (op: number) => [0xfd, ...leb(op)];
const ALIGN4 = [2, 0]; // memarg: align 2^2 (a hint), offset 0
const load = [...simd(0x00), ...ALIGN4];
const store = [...simd(0x0b), ...ALIGN4];
const splat = simd(0x13);
const [sqrt, add, sub, mul, div] = [0xe3, 0xe4, 0xe5, 0xe6, 0xe7].map(simd);
const i32Add = [0x6a];

// Parameters 0-5: p, m, v, g, out (byte offsets), groups of 4; 6-13: the float32 scalars.
const P = 0, M = 1, V = 2, G = 3, OUT = 4, N = 5;
// Locals: 14 byte index, 15 end, 16-18 g/m/v lanes, 19-26 the scalars splatted.
const I = 14, END = 15, GV = 16, MV = 17, VV = 18;
const DECAY = 19, B1 = 20, OMB1 = 21, B2 = 22, OMB2 = 23, STEP = 24, BC2 = 25, EPS = 26;
const at = (base: number) => [...get(base), ...get(I), ...i32Add];

// deno-fmt-ignore
const body: number[] = [
  ...leb(2), ...leb(2), I32, ...leb(11), V128, // locals: 2 x i32, 11 x v128
  // splat the eight scalars
  ...[6, 7, 8, 9, 10, 11, 12, 13].flatMap((k) => [...get(k), ...splat, ...set(k + 13)]),
  // end = groups * 16 bytes
  ...get(N), 0x41, 4, 0x74, ...set(END),
  0x02, 0x40, // block
  0x03, 0x40, // loop
  ...get(I), ...get(END), 0x4f, 0x0d, 1, // br_if (i >= end) out of the block
  // g
  ...at(G), ...load, ...set(GV),
  // m = m*b1 + g*(1-b1)
  ...at(M), ...load, ...get(B1), ...mul, ...get(GV), ...get(OMB1), ...mul, ...add, ...set(MV),
  // v = v*b2 + (g*(1-b2))*g
  ...at(V), ...load, ...get(B2), ...mul, ...get(GV), ...get(OMB2), ...mul, ...get(GV), ...mul,
  ...add, ...set(VV),
  ...at(M), ...get(MV), ...store,
  ...at(V), ...get(VV), ...store,
  // out = p*decay - (m*stepSize) / (sqrt(v)/sqrt(1-b2^t) + eps)
  ...at(OUT),
  ...at(P), ...load, ...get(DECAY), ...mul,
  ...get(MV), ...get(STEP), ...mul,
  ...get(VV), ...sqrt, ...get(BC2), ...div, ...get(EPS), ...add,
  ...div, ...sub, ...store,
  // i += 16
  ...get(I), 0x41, 16, ...i32Add, ...set(I),
  0x0c, 0, // br to the loop
  0x0b, // end loop
  0x0b, // end block
  0x0b, // end function
];

// deno-fmt-ignore
const MODULE = new Uint8Array([
  ...WASM_HEADER,
  ...section(1, [1, 0x60, 14, I32, I32, I32, I32, I32, I32, ...Array(8).fill(F32), 0]), // type
  ...importEnvMemory(),
  ...section(3, [1, 0]), // function 0 has type 0
  ...section(7, [1, ...name("adamw"), 0x00, 0]), // export
  ...section(10, [1, ...leb(body.length), ...body]), // code
]);

const bound = perMemory(MODULE, (e) => e.adamw as AdamWSimd);

/**
 * The SIMD AdamW loop bound to a wasm memory.
 *
 * @param memory the wasm backend's memory (not shared)
 * @returns the function, or `null` where this runtime has no wasm SIMD
 */
export function adamwSimd(memory: WebAssembly.Memory): AdamWSimd | null {
  return bound(memory);
}
