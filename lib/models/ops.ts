/**
 * Differentiable building blocks with hand-written gradients, arranged so that the
 * forward AND the backward pass use only plain 2-D matMuls (with explicit transposes),
 * row gathers and elementwise ops.
 *
 * Why: on tfjs-backend-wasm a plain 2-D matMul runs at ~25 GFLOP/s but a transposed or
 * batched one at ~2 GFLOP/s, and tfjs's own gradient of `matMul` uses the transposed
 * forms; `tf.gather`'s gradient needs `UnsortedSegmentSum`, which wasm lacks. Every op
 * here is a `tf.customGrad`, so it can be used inside `tf.variableGrads` on any backend.
 *
 * On wasm with a system BLAS (`nativeOpsActive()` from lib/backend), linear gradients use
 * transposed BLAS operands instead, and attention, GELU, LayerNorm and the softmax
 * cross-entropy run as fused native kernels (lib/backend/native_ops.ts); the results agree
 * with the plain path within float32 rounding (test/backend/blas_test.ts, parity).
 *
 * Conventions: activations are 2-D `[rows, channels]` float32 (rows = batch x sequence),
 * Linear weights are stored `[in, out]` (the transpose of PyTorch's `[out, in]`).
 * Every function returns a new tensor owned by the caller.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import {
  nativeAttention,
  nativeAttentionGrad,
  nativeGelu,
  nativeLayerNorm,
  nativeLayerNormGrad,
  nativeOpsActive,
  nativeSoftmaxCrossEntropy,
  nativeSoftmaxCrossEntropyGrad,
} from "../backend/mod.ts";
import {
  filledTensor,
  gatherRows as gatherRowsRaw,
  prefersSlicedMatMul,
  splitRows,
  unstack0,
} from "./_kernels.ts";
import { fillThresholdWasm } from "./_mask_wasm.ts";

type Save = (tensors: tf.Tensor[]) => void;
// deno-lint-ignore no-explicit-any
type GradFunc = (dy: any, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];

/** `tf.customGrad` with loose typing (its declared types do not fit several inputs). */
function withGrad<A extends unknown[]>(
  f: (...args: A) => { value: tf.Tensor; gradFunc: GradFunc },
): (...inputs: tf.Tensor[]) => tf.Tensor {
  return tf.customGrad(f as never) as never;
}

/*
 * wasm cost model behind the backward passes below (tfjs-backend-wasm 4.22, XNNPACK):
 * `matMul(a, b)` packs its right operand b anew for every new b tensor, at roughly
 * 15 ns per element, and transposing a wide 2-D matrix is much slower than a narrow
 * one. So products of two activation-sized matrices keep the NARROWER one on the right,
 * and reductions over rows run as `x^T ones` (a narrow right operand) rather than
 * `sum(x, 0)` (which transposes internally) or `ones x` (which packs x).
 */

/** Column sums `[N, C] -> [C]`, given `dyT = dy^T` (`[C, N]`). */
function colSumT(dyT: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.reshape(tf.matMul(dyT, tf.ones([dyT.shape[1], 1])), [dyT.shape[0]]));
}

/** Column sums `[N, C] -> [C]`. */
function colSum(dy: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => colSumT(tf.transpose(dy)));
}

/**
 * The gradients of `y = x W (+ b)`: `[dx, dW, db]` (db only when `withBias`).
 * dW = x^T dy keeps the narrower of x and dy as the packed right operand.
 */
function linearGrads(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  dy: tf.Tensor2D,
  withBias: boolean,
): tf.Tensor[] {
  if (nativeOpsActive()) {
    // wasm with a BLAS: transposed operands cost nothing (the BLAS reads them in place).
    return tf.tidy(() => {
      const dx = tf.matMul(dy, w, false, true);
      const dw = tf.matMul(x, dy, true, false);
      if (!withBias) return [dx, dw];
      return [dx, dw, tf.reshape(tf.matMul(tf.ones([1, dy.shape[0]]), dy), [dy.shape[1]])];
    });
  }
  return tf.tidy(() => {
    const dx = tf.matMul(dy, tf.transpose(w));
    const dyT = tf.transpose(dy);
    const dw = x.shape[1] <= dy.shape[1]
      ? tf.transpose(tf.matMul(dyT, x))
      : tf.matMul(tf.transpose(x), dy);
    return withBias ? [dx, dw, colSumT(dyT)] : [dx, dw];
  });
}

const linearWithBias = withGrad(
  (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, save: Save) => {
    save([x, w]);
    return {
      value: tf.fused.matMul({ a: x, b: w, bias: b }),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as tf.Tensor2D[];
        return linearGrads(sx, sw, dy, true);
      },
    };
  },
) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;

const linearNoBias = withGrad(
  (x: tf.Tensor2D, w: tf.Tensor2D, save: Save) => {
    save([x, w]);
    return {
      value: tf.matMul(x, w),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sw] = saved as tf.Tensor2D[];
        return linearGrads(sx, sw, dy, false);
      },
    };
  },
) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/**
 * A Linear layer `y = x W + b` (PyTorch's `x W^T + b` with `W` stored transposed).
 *
 * @param x input `[N, in]` float32
 * @param w weight `[in, out]` float32
 * @param b optional bias `[out]` float32
 * @returns `[N, out]` float32
 * @throws {TypeError} when the inner sizes differ
 */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor2D {
  if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[0]) {
    throw new TypeError(`Cannot apply a Linear [${w.shape}] (stored [in, out]) to [${x.shape}]`);
  }
  return b === undefined ? linearNoBias(x, w) : linearWithBias(x, w, b);
}

/**
 * `y = x W^T + b` with a weight that receives NO gradient (PyTorch's `weight.detach()`),
 * e.g. the MTM output layer tied to the input embedding table.
 *
 * @param x input `[N, in]` float32
 * @param weight `[out, in]` float32 (used as its transpose; not differentiated)
 * @param b bias `[out]` float32 (differentiated)
 * @returns `[N, out]` float32
 */
export function linearDetachedWeight(
  x: tf.Tensor2D,
  weight: tf.Tensor2D,
  b: tf.Tensor1D,
): tf.Tensor2D {
  if (x.shape[1] !== weight.shape[1]) {
    throw new TypeError(`Cannot multiply [${x.shape}] by the transpose of [${weight.shape}]`);
  }
  const f = withGrad(
    (x: tf.Tensor2D, b: tf.Tensor1D, save: Save) => {
      save([weight]);
      return {
        // Not fused: tfjs-wasm's _FusedMatMul checks the bias's ORIGINAL buffer shape,
        // and this bias is usually a reshape of a [1, 1, K] parameter.
        // (with a BLAS: the transposed operand and any bias shape cost nothing extra)
        value: nativeOpsActive()
          ? tf.fused.matMul({ a: x, b: weight, transposeB: true, bias: b })
          : tf.tidy(() => tf.add(tf.matMul(x, tf.transpose(weight)), b)),
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => [
          tf.matMul(dy, saved[0] as tf.Tensor2D),
          nativeOpsActive()
            ? tf.reshape(tf.matMul(tf.ones([1, dy.shape[0]]), dy), [dy.shape[1]])
            : colSum(dy),
        ],
      };
    },
  ) as unknown as (x: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor2D;
  return f(x, b);
}

/**
 * Layer normalization over the last axis (biased variance, as PyTorch).
 *
 * @param x `[N, C]` float32
 * @param gamma `[C]` scale
 * @param beta `[C]` shift
 * @param eps added to the variance
 * @returns `[N, C]` float32
 */
export function layerNorm(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): tf.Tensor2D {
  if (nativeOpsActive() && x.dtype === "float32") {
    const native = withGrad(
      (x: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D, save: Save) => {
        const [value, xhat, rstd] = nativeLayerNorm(x, g, b, eps);
        save([xhat, rstd, g]);
        tf.dispose([xhat, rstd]);
        return {
          value,
          gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
            const [xh, rs, gs] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
            return nativeLayerNormGrad(dy, xh, rs, gs);
          },
        };
      },
    ) as unknown as (x: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D) => tf.Tensor2D;
    return native(x, gamma, beta);
  }
  const f = withGrad(
    (x: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D, save: Save) => {
      const [xhat, rstd] = tf.tidy(() => {
        const mean = tf.mean(x, -1, true);
        const xc = tf.sub(x, mean);
        const variance = tf.mean(tf.square(xc), -1, true);
        const rstd = tf.rsqrt(tf.add(variance, eps));
        return [tf.mul(xc, rstd), rstd];
      });
      save([xhat, rstd, g]);
      const value = tf.tidy(() => tf.add(tf.mul(xhat, g), b)) as tf.Tensor2D;
      xhat.dispose();
      rstd.dispose();
      return {
        value,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
          const [xh, rs, gs] = saved;
          const dg = colSum(tf.mul(dy, xh) as tf.Tensor2D);
          const db = colSum(dy);
          const dxh = tf.mul(dy, gs);
          const m1 = tf.mean(dxh, -1, true);
          const m2 = tf.mean(tf.mul(dxh, xh), -1, true);
          const dx = tf.mul(rs, tf.sub(tf.sub(dxh, m1), tf.mul(xh, m2)));
          return [dx, dg, db];
        },
      };
    },
  ) as unknown as (x: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D) => tf.Tensor2D;
  return f(x, gamma, beta);
}

// Abramowitz & Stegun 7.1.26: erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1/(1 + p z),
// z >= 0, |error| <= 1.5e-7 (the same approximation tfjs's cpu backend uses for erf).
const ERF_P = 0.3275911;
const ERF_A = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429];
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * GELU, erf form as PyTorch's default `nn.GELU()`: `x * Phi(x)`, Phi the standard normal
 * CDF. Phi is evaluated with A&S 7.1.26 (|error of erf| <= 1.5e-7): tfjs-wasm's `Erf`
 * is ~5x slower than the dozen elementwise ops here, and the `exp(-x^2/2)` computed for
 * Phi is reused by the gradient `Phi(x) + x phi(x)`.
 *
 * @param x any float32 tensor
 * @returns same shape
 */
export function gelu<T extends tf.Tensor>(x: T): T {
  if (nativeOpsActive()) {
    const native = withGrad((x: tf.Tensor, save: Save) => {
      const [value, slope] = nativeGelu(x);
      save([slope]);
      slope.dispose();
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(dy, saved[0])],
      };
    }) as unknown as (x: tf.Tensor) => tf.Tensor;
    return native(x) as T;
  }
  const f = withGrad(
    (x: tf.Tensor, save: Save) => {
      const [cdf, xpdf] = tf.tidy(() => {
        const z = tf.mul(tf.abs(x), Math.SQRT1_2);
        const t = tf.reciprocal(tf.add(tf.mul(z, ERF_P), 1));
        let poly = tf.mul(t, ERF_A[4]);
        for (let i = 3; i >= 0; i--) poly = tf.mul(tf.add(poly, ERF_A[i]), t);
        const gauss = tf.exp(tf.mul(tf.square(x), -0.5)); // exp(-z^2)
        const tail = tf.mul(tf.mul(poly, gauss), 0.5); // Phi(-|x|)
        const positive = tf.step(x); // 1 for x > 0, else 0
        // Phi(x) = tail for x <= 0, 1 - tail for x > 0
        const cdf = tf.add(tail, tf.mul(positive, tf.sub(1, tf.mul(tail, 2))));
        return [cdf, tf.mul(tf.mul(x, gauss), INV_SQRT_2PI)];
      });
      save([cdf, xpdf]);
      const value = tf.mul(x, cdf);
      tf.dispose([cdf, xpdf]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [tf.mul(dy, tf.add(saved[0], saved[1]))],
      };
    },
  ) as unknown as (x: tf.Tensor) => tf.Tensor;
  return f(x) as T;
}

/**
 * Batched matMul `[n, r, k] x [n, k, c] -> [n, r, c]` without transposes, run as n plain
 * 2-D matMuls on wasm/cpu (see {@linkcode prefersSlicedMatMul}) and as one batched matMul
 * elsewhere. Not differentiable by itself (used inside custom gradients).
 *
 * @param a `[n, r, k]`
 * @param b `[n, k, c]`
 * @returns `[n, r, c]`
 */
export function bmm(a: tf.Tensor3D, b: tf.Tensor3D): tf.Tensor3D {
  if (!prefersSlicedMatMul() || a.shape[0] === 1) return tf.matMul(a, b);
  const as = unstack0(a) as tf.Tensor2D[];
  const bs = unstack0(b) as tf.Tensor2D[];
  const outs = as.map((ai, i) => tf.matMul(ai, bs[i]));
  const out = tf.stack(outs) as tf.Tensor3D;
  tf.dispose(as);
  tf.dispose(bs);
  tf.dispose(outs);
  return out;
}

function transpose12(x: tf.Tensor3D): tf.Tensor3D {
  return tf.transpose(x, [0, 2, 1]);
}

/** `[B*N, H*hd] -> [B*H, N, hd]` */
function splitHeads(x: tf.Tensor2D, batch: number, seq: number, heads: number): tf.Tensor3D {
  const hd = x.shape[1] / heads;
  return tf.reshape(
    tf.transpose(tf.reshape(x, [batch, seq, heads, hd]), [0, 2, 1, 3]),
    [batch * heads, seq, hd],
  );
}

/** `[B*H, N, hd] -> [B*N, H*hd]` */
function mergeHeads(x: tf.Tensor3D, batch: number, heads: number): tf.Tensor2D {
  const [, seq, hd] = x.shape;
  return tf.reshape(
    tf.transpose(tf.reshape(x, [batch, heads, seq, hd]), [0, 2, 1, 3]),
    [batch * seq, heads * hd],
  );
}

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  /** Dropout probability on the attention weights (training only). @default {0} */
  dropout?: number;
  /** Generator for the dropout mask; required when `dropout > 0`. */
  rng?: Rng;
}

/**
 * Multi-head scaled dot-product attention from a fused qkv projection, laid out as
 * timm's `Attention`: channel `t*C + h*hd + e` of `qkv` is part t (q, k, v) of head h.
 * `softmax(q k^T * hd^-0.5)` (then dropout), times v, heads merged back.
 *
 * @param qkv `[B*N, 3*C]` float32, rows in (batch, position) order
 * @param batch B
 * @param seq N
 * @param heads number of heads (C divisible by it)
 * @param options attention dropout
 * @returns `[B*N, C]` float32 (before the output projection)
 * @throws {TypeError} when the sizes do not fit
 */
export function attention(
  qkv: tf.Tensor2D,
  batch: number,
  seq: number,
  heads: number,
  options: AttentionOptions = {},
): tf.Tensor2D {
  const c3 = qkv.shape[1];
  if (qkv.shape[0] !== batch * seq || c3 % (3 * heads) !== 0) {
    throw new TypeError(
      `Cannot run attention with batch ${batch}, sequence ${seq}, ${heads} heads on qkv [${qkv.shape}]`,
    );
  }
  const c = c3 / 3;
  const scale = 1 / Math.sqrt(c / heads);
  const p = options.dropout ?? 0;
  const dropMask = p > 0 ? requireRng(options.rng, "attention dropout") : undefined;
  if (nativeOpsActive()) {
    const native = withGrad(
      (qkv: tf.Tensor2D, save: Save) => {
        const mask = dropMask === undefined
          ? undefined
          : dropoutMask([batch * heads, seq, seq], p, dropMask) as tf.Tensor3D;
        const [value, probs] = nativeAttention(qkv, batch, seq, heads, scale, mask);
        save(mask === undefined ? [qkv, probs] : [qkv, probs, mask]);
        tf.dispose([probs, mask]);
        return {
          value,
          gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
            const [sqkv, sp, sm] = saved as [tf.Tensor2D, tf.Tensor3D, tf.Tensor3D | undefined];
            return [nativeAttentionGrad(dy, sqkv, sp, batch, seq, heads, scale, sm)];
          },
        };
      },
    ) as unknown as (qkv: tf.Tensor2D) => tf.Tensor2D;
    return native(qkv);
  }
  const f = withGrad(
    (qkv: tf.Tensor2D, save: Save) => {
      const [q, k, v] = tf.tidy(() => {
        const parts = unstack0(tf.transpose(tf.reshape(qkv, [batch * seq, 3, c]), [1, 0, 2]));
        const out = parts.map((t) => splitHeads(t as tf.Tensor2D, batch, seq, heads));
        tf.dispose(parts);
        return [tf.mul(out[0], scale), out[1], out[2]] as tf.Tensor3D[];
      });
      const probs = tf.tidy(() => tf.softmax(bmm(q, transpose12(k)))) as tf.Tensor3D;
      let mask: tf.Tensor | undefined;
      let used = probs;
      if (dropMask !== undefined) {
        mask = dropoutMask(probs.shape, p, dropMask);
        used = tf.mul(probs, mask);
      }
      const value = tf.tidy(() => mergeHeads(bmm(used, v), batch, heads));
      save(mask === undefined ? [q, k, v, probs] : [q, k, v, probs, mask]);
      if (used !== probs) used.dispose();
      tf.dispose([q, k, v, probs]);
      mask?.dispose();
      return {
        value,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
          const [sq, sk, sv, sp, sm] = saved as tf.Tensor3D[];
          const dO = splitHeads(dy, batch, seq, heads);
          const pUsed = sm === undefined ? sp : tf.mul(sp, sm);
          const dv = bmm(transpose12(pUsed as tf.Tensor3D), dO);
          let dP = bmm(dO, transpose12(sv));
          if (sm !== undefined) dP = tf.mul(dP, sm);
          const dS = tf.mul(sp, tf.sub(dP, tf.sum(tf.mul(dP, sp), -1, true))) as tf.Tensor3D;
          const dq = tf.mul(bmm(dS, sk), scale) as tf.Tensor3D;
          const dk = bmm(transpose12(dS), sq);
          const merged = [dq, dk, dv].map((t) => mergeHeads(t, batch, heads));
          return [tf.reshape(tf.transpose(tf.stack(merged), [1, 0, 2]), [batch * seq, 3 * c])];
        },
      };
    },
  ) as unknown as (qkv: tf.Tensor2D) => tf.Tensor2D;
  return f(qkv);
}

/** One-hot as float32. (tfjs-wasm 4.22's OneHot writes wrong values for dtype float32.) */
function oneHotF32(targets: tf.Tensor1D, k: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(targets, k), "float32")) as tf.Tensor2D;
}

function requireRng(rng: Rng | undefined, what: string): Rng {
  if (rng === undefined) throw new TypeError(`Cannot apply ${what} without an Rng`);
  return rng;
}

/**
 * A dropout mask tensor: each element independently `0` with probability p, else
 * `1/(1-p)` (inverted dropout, as PyTorch).
 *
 * @param shape the mask's shape
 * @param p drop probability in [0, 1)
 * @param rng generator (one 32-bit draw per element)
 * @returns a float32 tensor owned by the caller
 * @throws {RangeError} for p outside [0, 1)
 */
export function dropoutMask(shape: number[], p: number, rng: Rng): tf.Tensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`Cannot use dropout probability ${p}`);
  const keep = Math.fround(1 / (1 - p));
  const threshold = p * 4294967296;
  return filledTensor(shape, (out, memory) => {
    // The same draws either way: in wasm straight on the heap where it can run.
    if (memory === null || !fillThresholdWasm(memory, out, rng, threshold, 0, keep)) {
      rng.fillThreshold(out, threshold, 0, keep);
    }
  });
}

/**
 * Inverted dropout (identity when `p` is 0). Its gradient multiplies by the same mask
 * (tfjs's own gradient of `mul` would first cast the mask, a copy of its size).
 *
 * @param x any float32 tensor
 * @param p drop probability in [0, 1)
 * @param rng generator
 * @returns same shape, owned by the caller
 */
export function dropout<T extends tf.Tensor>(x: T, p: number, rng: Rng | undefined): T {
  if (p === 0) return tf.clone(x);
  const r = requireRng(rng, "dropout");
  const f = withGrad((x: tf.Tensor, save: Save) => {
    const mask = dropoutMask(x.shape, p, r);
    const value = tf.mul(x, mask);
    save([mask]);
    mask.dispose();
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, saved[0]),
    };
  });
  return f(x) as T;
}

/**
 * Stochastic depth (timm `drop_path`): per sample, the whole branch is zeroed with
 * probability p, else scaled by `1/(1-p)`.
 *
 * @param x branch output `[B*N, C]`, rows in (batch, position) order
 * @param batch B
 * @param p drop probability in [0, 1)
 * @param rng generator (one draw per sample)
 * @returns same shape, owned by the caller
 */
export function dropPath(
  x: tf.Tensor2D,
  batch: number,
  p: number,
  rng: Rng | undefined,
): tf.Tensor2D {
  if (p === 0) return tf.clone(x);
  const r = requireRng(rng, "drop path");
  const seq = x.shape[0] / batch;
  const keep = new Float32Array(batch);
  for (let b = 0; b < batch; b++) keep[b] = r.uniform() < p ? 0 : 1 / (1 - p);
  return tf.tidy(() =>
    tf.reshape(
      tf.mul(tf.reshape(x, [batch, seq, x.shape[1]]), tf.tensor3d(keep, [batch, 1, 1])),
      x.shape,
    )
  ) as tf.Tensor2D;
}

/**
 * Gather rows of a 2-D tensor with a gradient (scatter-add into the source rows, so
 * repeated indices accumulate): the differentiable counterpart of
 * `tf.gather(x, indices, 0)` that also works on wasm.
 *
 * @param x `[R, C]` float32
 * @param indices row indices in [0, R), host array or int32 tensor `[n]`
 * @returns `[n, C]` float32
 */
export function gatherRows(x: tf.Tensor2D, indices: Int32Array | tf.Tensor1D): tf.Tensor2D {
  const idx = indices instanceof Int32Array ? tf.tensor1d(indices, "int32") : indices;
  const n = idx.shape[0];
  const [rows, cols] = x.shape;
  const f = withGrad(
    (x: tf.Tensor2D, save: Save) => {
      save([idx]);
      return {
        value: gatherRowsRaw(x, idx) as tf.Tensor2D,
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => [
          tf.scatterND(tf.reshape(saved[0], [n, 1]), dy, [rows, cols]),
        ],
      };
    },
  ) as unknown as (x: tf.Tensor2D) => tf.Tensor2D;
  const out = f(x);
  if (idx !== indices) idx.dispose();
  return out;
}

/**
 * Rows of `a` then rows of `b` (`tf.concat([a, b], 0)`), with a gradient that copies the
 * two row blocks of `dy` out directly (tfjs's gradient of concat slices, and wasm's
 * `Slice` copies the whole of `dy` for each slice).
 *
 * @param a `[Na, C]`
 * @param b `[Nb, C]`
 * @returns `[Na + Nb, C]`, owned by the caller
 * @throws {TypeError} when the column counts differ
 */
export function concatRows(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  if (a.rank !== 2 || b.rank !== 2 || a.shape[1] !== b.shape[1]) {
    throw new TypeError(`Cannot concatenate the rows of [${a.shape}] and [${b.shape}]`);
  }
  const sizes = [a.shape[0], b.shape[0]];
  const f = withGrad((a: tf.Tensor2D, b: tf.Tensor2D) => ({
    value: tf.concat([a, b], 0),
    gradFunc: (dy: tf.Tensor2D) => splitRows(dy, sizes),
  })) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;
  return f(a, b);
}

/**
 * Per-row softmax cross-entropy against integer targets with label smoothing s, as
 * timm's `LabelSmoothingCrossEntropy` without reduction:
 * `(1-s) * (-log p[target]) + s * mean_k(-log p[k])`. s = 0 is plain cross-entropy.
 *
 * @param logits `[N, K]` float32
 * @param targets `[N]` int32 class indices in [0, K)
 * @param smoothing s in [0, 1)
 * @returns per-row loss `[N]` float32
 */
export function softmaxCrossEntropyRows(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  smoothing = 0,
): tf.Tensor1D {
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new RangeError(`Cannot use label smoothing ${smoothing}: expected [0, 1)`);
  }
  const k = logits.shape[1];
  if (nativeOpsActive() && logits.dtype === "float32" && targets.dtype === "int32") {
    const native = withGrad((x: tf.Tensor2D, save: Save) => {
      const [value, probs] = nativeSoftmaxCrossEntropy(x, targets, smoothing);
      save([probs]);
      probs.dispose();
      return {
        value,
        gradFunc: (dy: tf.Tensor1D, saved: tf.Tensor[]) => [
          nativeSoftmaxCrossEntropyGrad(dy, saved[0] as tf.Tensor2D, targets, smoothing),
        ],
      };
    }) as unknown as (x: tf.Tensor2D) => tf.Tensor1D;
    return native(logits);
  }
  const f = withGrad(
    (x: tf.Tensor2D, save: Save) => {
      const onehot = oneHotF32(targets, k);
      const { value, probs } = tf.tidy(() => {
        const z = tf.sub(x, tf.max(x, -1, true));
        const e = tf.exp(z);
        const sum = tf.sum(e, -1, true);
        const lse = tf.reshape(tf.log(sum), [-1]);
        const nll = tf.sub(lse, tf.sum(tf.mul(z, onehot), -1));
        let value = nll;
        if (smoothing > 0) {
          const smooth = tf.sub(lse, tf.mean(z, -1)); // mean_k(-log p_k)
          value = tf.add(tf.mul(nll, 1 - smoothing), tf.mul(smooth, smoothing));
        }
        return { value, probs: tf.mul(e, tf.reciprocal(sum)) };
      });
      save([probs, onehot]);
      probs.dispose();
      onehot.dispose();
      return {
        value,
        gradFunc: (dy: tf.Tensor1D, saved: tf.Tensor[]) => {
          const [p, oh] = saved;
          let g = tf.sub(p, tf.mul(oh, 1 - smoothing));
          if (smoothing > 0) g = tf.sub(g, smoothing / k);
          return [tf.mul(g, tf.reshape(dy, [-1, 1]))];
        },
      };
    },
  ) as unknown as (x: tf.Tensor2D) => tf.Tensor1D;
  return f(logits);
}

/**
 * Per-row binary cross-entropy with logits against the one-hot target, averaged over the
 * K classes (PyTorch `BCEWithLogitsLoss(reduction="none")(x, one_hot).mean(-1)`).
 *
 * @param logits `[N, K]` float32
 * @param targets `[N]` int32 class indices
 * @returns per-row loss `[N]` float32
 */
export function bceOneHotRows(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const k = logits.shape[1];
  const f = withGrad(
    (x: tf.Tensor2D, save: Save) => {
      const onehot = oneHotF32(targets, k);
      save([x, onehot]);
      const value = tf.tidy(() =>
        tf.mean(
          tf.add(tf.sub(tf.relu(x), tf.mul(x, onehot)), tf.log1p(tf.exp(tf.neg(tf.abs(x))))),
          -1,
        )
      ) as tf.Tensor1D;
      onehot.dispose();
      return {
        value,
        gradFunc: (dy: tf.Tensor1D, saved: tf.Tensor[]) => {
          const [sx, oh] = saved;
          return [tf.mul(tf.sub(tf.sigmoid(sx), oh), tf.div(tf.reshape(dy, [-1, 1]), k))];
        },
      };
    },
  ) as unknown as (x: tf.Tensor2D) => tf.Tensor1D;
  return f(logits);
}
