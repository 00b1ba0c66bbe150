/**
 * Private building blocks of the tokenizer, written so that every heavy product is a plain
 * 2-D matMul (fast on wasm) in both the forward and the backward pass:
 * - `linear` has a custom gradient with explicit transposes (wasm's transposed matMul is
 *   ~10x slower than a plain one);
 * - 3x3 convolutions have a custom gradient made of two more forward convolutions,
 *   because wasm has no Conv2DBackpropFilter kernel (and im2col via slices is ~10x slower);
 * - stride-2 down/up sampling are space-to-depth / depth-to-space reshapes around `linear`.
 * All activations are NHWC.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";

/** What tf.customGrad takes (its typing wants `(...args: (Tensor | GradSaveFunc)[])`). */
type GradFn = Parameters<typeof tf.customGrad>[0];

/**
 * `x @ w` whose gradient uses only plain matMuls and explicit transposes.
 * x: [N, I], w: [I, O] -> [N, O].
 */
export const linear: (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D = tf.customGrad(
  ((x: tf.Tensor2D, w: tf.Tensor2D, save: tf.GradSaveFunc) => {
    save([x, w]);
    return {
      value: tf.matMul(x, w),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor2D, tf.Tensor2D];
        const dx = tf.matMul(dy, tf.transpose(ws));
        // x^T dy: transpose whichever of x, dy is narrower
        const dw = xs.shape[1] <= dy.shape[1]
          ? tf.matMul(tf.transpose(xs), dy)
          : tf.transpose(tf.matMul(tf.transpose(dy), xs));
        return [dx, dw];
      },
    };
  }) as unknown as GradFn,
) as unknown as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/** Identity forward, zero gradient (`x.detach()`). */
export const stopGradient: <T extends tf.Tensor>(x: T) => T = tf.customGrad(
  ((x: tf.Tensor) => ({
    value: tf.clone(x),
    gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
  })) as unknown as GradFn,
) as unknown as <T extends tf.Tensor>(x: T) => T;

/** A 1x1 convolution: x [B,H,W,I], w [I,O], b [O] -> [B,H,W,O]. */
export function dense(x: tf.Tensor4D, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor4D {
  const [B, H, W, I] = x.shape;
  const y = linear(tf.reshape(x, [B * H * W, I]), w);
  return tf.reshape(tf.add(y, b), [B, H, W, w.shape[1]]);
}

/** The 9x9 permutation that reverses the 3x3 kernel positions (wasm's Reverse is slow). */
function FLIP9(): tf.Tensor2D {
  const m = new Float32Array(81);
  for (let k = 0; k < 9; k++) m[k * 9 + (8 - k)] = 1;
  return tf.tensor2d(m, [9, 9]);
}

const conv3x3Raw: (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D = tf.customGrad(
  ((x: tf.Tensor4D, w: tf.Tensor4D, save: tf.GradSaveFunc) => {
    save([x, w]);
    return {
      value: tf.conv2d(x, w, 1, "same"),
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        // dx: a 'same' convolution of dy with the kernel flipped and in/out swapped
        const [, , I, O] = ws.shape;
        const flipped = linear(FLIP9(), tf.reshape(ws, [9, I * O]) as tf.Tensor2D);
        const wf = tf.transpose(tf.reshape(flipped, [3, 3, I, O]), [0, 1, 3, 2]) as tf.Tensor4D;
        const dx = tf.conv2d(dy, wf, 1, "same");
        // dw[ky,kx,i,o] = sum_{b,y,x} xpad[b,y+ky,x+kx,i] dy[b,y,x,o]: a 'valid' convolution
        // with batch and channels swapped ([I,H+2,W+2,B] by [H,W,B,O] -> [I,3,3,O])
        const xp = tf.transpose(tf.pad(xs, [[0, 0], [1, 1], [1, 1], [0, 0]]), [3, 1, 2, 0]);
        const f = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
        const dw = tf.transpose(tf.conv2d(xp as tf.Tensor4D, f, 1, "valid"), [1, 2, 0, 3]);
        return [dx, dw];
      },
    };
  }) as unknown as GradFn,
) as unknown as (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D;

/**
 * A 3x3 'same' convolution: x [B,H,W,I], w [3,3,I,O], b [O] -> [B,H,W,O].
 * Forward and both gradients are plain convolutions (XNNPACK on wasm), since wasm has no
 * Conv2DBackpropFilter kernel and a slow Conv2DBackpropInput.
 */
export function conv3x3(x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor1D): tf.Tensor4D {
  return tf.add(conv3x3Raw(x, w), b);
}

/** Stride-2 2x2 patches to channels: [B,H,W,C] -> [B,H/2,W/2,4C] (channel order dy, dx, c). */
export function spaceToDepth2(x: tf.Tensor4D): tf.Tensor4D {
  const [B, H, W, C] = x.shape;
  const a = tf.reshape(x, [B * (H / 2), 2, W / 2, 2 * C]);
  const t = tf.transpose(a, [0, 2, 1, 3]);
  return tf.reshape(t, [B, H / 2, W / 2, 4 * C]);
}

/** Inverse of {@linkcode spaceToDepth2}: [B,h,w,4C] -> [B,2h,2w,C]. */
export function depthToSpace2(x: tf.Tensor4D): tf.Tensor4D {
  const [B, h, w, C4] = x.shape;
  const C = C4 / 4;
  const a = tf.reshape(x, [B * h, w, 2, 2 * C]);
  const t = tf.transpose(a, [0, 2, 1, 3]);
  return tf.reshape(t, [B, 2 * h, 2 * w, C]);
}

/**
 * He-normal weights for a layer of the given fan-in, drawn from `rng`.
 * @returns a Float32Array of `fanIn * fanOut` values with std `gain * sqrt(2 / fanIn)`
 */
export function heNormal(rng: Rng, fanIn: number, fanOut: number, gain = 1): Float32Array {
  const a = rng.normalArray(fanIn * fanOut);
  const s = gain * Math.sqrt(2 / fanIn);
  for (let i = 0; i < a.length; i++) a[i] *= s;
  return a;
}
