/**
 * Gradient clipping by global norm, as torch 1.13's `clip_grad_norm_` (L2).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/**
 * The L2 norm of all gradients together: `sqrt(sum over tensors of |g|^2)`.
 *
 * @param grads gradients (not consumed)
 * @returns `[] float32` scalar, owned by the caller
 * @throws {RangeError} for an empty gradient list
 */
export function globalNorm(grads: Iterable<tf.Tensor>): tf.Scalar {
  const list = [...grads];
  if (list.length === 0) throw new RangeError("Cannot take the global norm of no gradients");
  return tf.tidy(() => tf.stack(list.map((g) => tf.norm(g))).norm() as tf.Scalar);
}

/** What {@linkcode clipByGlobalNorm} returns. */
export interface ClippedGradients {
  /** Clipped gradients by name: new tensors owned by the caller. */
  grads: Map<string, tf.Tensor>;
  /** The global norm before clipping, `[] float32`, owned by the caller. */
  norm: tf.Scalar;
}

/**
 * Scale all gradients by `min(1, maxNorm / (norm + 1e-6))` where `norm` is their
 * global L2 norm (torch's `clip_grad_norm_`, which always multiplies by the clamped
 * coefficient). Runs on the device without reading values back.
 *
 * @param grads gradients by name (not consumed)
 * @param maxNorm the largest allowed global norm (> 0)
 * @returns new clipped gradients and the norm before clipping (caller disposes both)
 * @throws {RangeError} for a non-positive maxNorm or no gradients
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { clipByGlobalNorm } from "@lib/train";
 * const g = tf.tensor1d([3, 4]);
 * const { grads, norm } = clipByGlobalNorm(new Map([["w", g]]), 1);
 * console.assert(Math.abs(norm.dataSync()[0] - 5) < 1e-6);
 * console.assert(Math.abs(grads.get("w")!.dataSync()[0] - 0.6) < 1e-6);
 * tf.dispose([g, norm, ...grads.values()]);
 * ```
 */
export function clipByGlobalNorm(
  grads: ReadonlyMap<string, tf.Tensor>,
  maxNorm: number,
): ClippedGradients {
  if (!(maxNorm > 0)) throw new RangeError(`Cannot clip gradients to norm ${maxNorm}`);
  const names = [...grads.keys()];
  const out = tf.tidy(() => {
    const norm = globalNorm(grads.values());
    const coef = tf.minimum(tf.div(maxNorm, norm.add(1e-6)), 1);
    return [norm, ...names.map((n) => grads.get(n)!.mul(coef))];
  });
  const [norm, ...clipped] = out;
  return { grads: new Map(names.map((n, i) => [n, clipped[i]])), norm: norm as tf.Scalar };
}
