/**
 * One AdamW step over all parameters in one pass, on the wasm backend's heap.
 *
 * The tensor path of {@linkcode AdamW} runs about 14 small kernels per parameter (multiply,
 * add, sqrt, divide, subtract, assign), each with its own dispatch, output allocation and
 * free: on a model of ~80 parameter tensors that is ~1000 kernels per step. Here each
 * parameter, its two moments and its gradient are read as `Float32Array` views of the wasm
 * memory and updated element by element in one loop: the moments in place, the new
 * parameter values into a fresh buffer that the variable is then assigned. (Writing the
 * parameter in place would be wrong: tfjs-wasm's XNNPACK kernels, e.g. Conv2D and the
 * plain-wasm matMul, cache weights packed per tensor id, and would keep using the old
 * values; a new buffer has a new id, exactly as after the tensor path's `assign`.)
 *
 * The loop runs in wasm SIMD (./_adamw_simd.ts, four lanes at a time, on the backend's own
 * memory) where the runtime has it, in JS otherwise and for the last `n % 4` elements.
 * Every operation is rounded to float32 (`Math.fround`) in the same order as the tensor
 * path's kernels, with the same float32 scalars, so the result is bit for bit the tensor
 * path's on wasm (float32 `+ - * /` and `sqrt` are correctly rounded, and a double result
 * rounded to float32 is the correctly rounded float32 result for these operations).
 *
 * A moment buffer shared with another tensor is copied first, so that writing in place
 * changes only the optimizer's own state.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { activeWasm, heapMemory, heapView, ownBuffer } from "./_wasm_heap.ts";
import { adamwSimd } from "./_adamw_simd.ts";

/** One parameter's share of a fused step (its step count `t` already incremented). */
export interface FusedAdamWItem {
  /** The parameter (float32), updated in place. */
  variable: tf.Variable;
  /** First moment (same shape), updated in place. */
  m: tf.Variable;
  /** Second moment (same shape), updated in place. */
  v: tf.Variable;
  /** The gradient (same shape), read only. */
  grad: tf.Tensor;
  /** `lr * lrScale` of this parameter. */
  lr: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** The parameter's step count after this step (>= 1). */
  t: number;
}

/**
 * Whether {@linkcode fusedAdamWStep} can run on these items: the active backend is wasm
 * and every tensor involved lives on it.
 *
 * @param items the parameters of the step
 * @returns true when the fused step applies
 */
export function canFuseAdamW(items: readonly FusedAdamWItem[]): boolean {
  const b = activeWasm();
  if (b === null) return false;
  for (const it of items) {
    for (const t of [it.variable, it.m, it.v, it.grad]) {
      if (heapView(b, t) === null) return false;
    }
  }
  return true;
}

/**
 * One AdamW step (torch 1.13 single-tensor order, see ./adamw.ts) of every item, in place
 * on the wasm heap. The caller checks {@linkcode canFuseAdamW} first.
 *
 * @param items the parameters, moments, gradients and per-parameter settings
 * @param betas moment decay rates
 * @param eps denominator epsilon
 * @throws {TypeError} when the wasm backend is not active or a tensor is not on it
 */
export function fusedAdamWStep(
  items: readonly FusedAdamWItem[],
  betas: readonly [number, number],
  eps: number,
): void {
  const b = activeWasm();
  if (b === null) throw new TypeError("Cannot run the fused AdamW step: wasm is not the backend");
  for (const it of items) {
    ownBuffer(b, it.m);
    ownBuffer(b, it.v);
  }
  const outs = items.map((it) => b.makeOutput([...it.variable.shape], "float32"));
  // Views only after all allocations (an allocation may grow the heap and detach buffers).
  const view = (t: tf.TensorInfo): Float32Array => {
    const v = heapView(b, t);
    if (v === null) {
      throw new TypeError(`Cannot run the fused AdamW step: a [${t.shape}] tensor is not on wasm`);
    }
    return v;
  };
  const fr = Math.fround;
  const [beta1, beta2] = betas;
  // The float32 scalars the tensor path multiplies, adds and divides by.
  const b1 = fr(beta1), b2 = fr(beta2), omb1 = fr(1 - beta1), omb2 = fr(1 - beta2);
  const e = fr(eps);
  const memory = heapMemory(b);
  const simd = memory === null ? null : adamwSimd(memory);
  items.forEach((it, k) => {
    let p = view(it.variable), m = view(it.m), v = view(it.v), g = view(it.grad);
    let out = view(outs[k]);
    const decay = fr(1 - it.lr * it.weightDecay);
    const stepSize = fr(it.lr / (1 - beta1 ** it.t));
    const bc2Sqrt = fr(Math.sqrt(1 - beta2 ** it.t));
    if (simd !== null) {
      // Four lanes at a time in wasm SIMD, the last n % 4 elements below.
      const groups = p.length >>> 2;
      simd(
        p.byteOffset,
        m.byteOffset,
        v.byteOffset,
        g.byteOffset,
        out.byteOffset,
        groups,
        decay,
        b1,
        omb1,
        b2,
        omb2,
        stepSize,
        bc2Sqrt,
        e,
      );
      const done = groups * 4;
      [p, m, v, g, out] = [p, m, v, g, out].map((a) => a.subarray(done));
    }
    updateArrays(p, m, v, g, out, decay, b1, omb1, b2, omb2, stepSize, bc2Sqrt, e);
  });
  items.forEach((it, k) => {
    const t = tf.engine().makeTensorFromTensorInfo(outs[k]);
    it.variable.assign(t);
    t.dispose();
  });
}

/** The element loop, on its own so that V8 optimizes it once for all parameters. */
function updateArrays(
  p: Float32Array,
  m: Float32Array,
  v: Float32Array,
  g: Float32Array,
  out: Float32Array,
  decay: number,
  b1: number,
  omb1: number,
  b2: number,
  omb2: number,
  stepSize: number,
  bc2Sqrt: number,
  eps: number,
): void {
  const fr = Math.fround;
  const n = p.length;
  for (let i = 0; i < n; i++) {
    const gi = g[i];
    const pd = fr(p[i] * decay);
    const mi = fr(fr(m[i] * b1) + fr(gi * omb1));
    const vi = fr(fr(v[i] * b2) + fr(fr(gi * omb2) * gi));
    const denom = fr(fr(fr(Math.sqrt(vi)) / bc2Sqrt) + eps);
    out[i] = pd - fr(fr(mi * stepSize) / denom);
    m[i] = mi;
    v[i] = vi;
  }
}
