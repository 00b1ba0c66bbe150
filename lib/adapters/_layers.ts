/**
 * Private building blocks of TokenAdapt: linear maps in `[in, out]` layout (plain 2-D
 * matMuls, the fast case on wasm), LayerNorm, and the pre-norm transformer layer of the
 * reference (attention without qkv bias, Linear-Tanh-Linear MLP).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** Parameters of one pre-norm transformer layer, in tfjs layouts. */
export interface LayerParams {
  /** Attention LayerNorm weight `[D]`. */
  ln1g: tf.Tensor1D;
  /** Attention LayerNorm bias `[D]`. */
  ln1b: tf.Tensor1D;
  /** qkv projection `[D, 3 * heads * headDim]` (no bias). */
  qkv: tf.Tensor2D;
  /** Output projection `[heads * headDim, D]`. */
  outW: tf.Tensor2D;
  /** Output projection bias `[D]`. */
  outB: tf.Tensor1D;
  /** MLP LayerNorm weight `[D]`. */
  ln2g: tf.Tensor1D;
  /** MLP LayerNorm bias `[D]`. */
  ln2b: tf.Tensor1D;
  /** First MLP linear `[D, mlp]`. */
  fc1W: tf.Tensor2D;
  /** First MLP bias `[mlp]`. */
  fc1B: tf.Tensor1D;
  /** Second MLP linear `[mlp, D]`. */
  fc2W: tf.Tensor2D;
  /** Second MLP bias `[D]`. */
  fc2B: tf.Tensor1D;
}

/**
 * `x @ w + b` on the last axis of a tensor of any rank.
 * @param x `[..., in]`
 * @param w `[in, out]`
 * @param b `[out]` or undefined
 * @returns `[..., out]`
 */
export function linear(x: tf.Tensor, w: tf.Tensor2D, b?: tf.Tensor1D): tf.Tensor {
  const shape = x.shape;
  const rows = shape.slice(0, -1).reduce((a, c) => a * c, 1);
  const y = tf.matMul(x.reshape([rows, shape[shape.length - 1]]), w);
  const z = b === undefined ? y : y.add(b);
  return z.reshape([...shape.slice(0, -1), w.shape[1]]);
}

/**
 * LayerNorm over the last axis (biased variance, as torch).
 * @param x `[..., D]`
 * @param g weight `[D]`
 * @param b bias `[D]`
 * @param eps added to the variance
 * @returns `[..., D]`
 */
export function layerNorm(x: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return x.sub(mean).mul(tf.rsqrt(variance.add(eps))).mul(g).add(b);
}

/**
 * One pre-norm transformer layer: `x + Attn(LN(x))`, then `x + MLP(LN(x))` with a tanh MLP.
 * @param x `[B, L, D]`
 * @param p the layer's parameters
 * @param heads number of heads
 * @param headDim width of a head
 * @param eps LayerNorm eps
 * @returns `[B, L, D]`
 */
export function transformerLayer(
  x: tf.Tensor3D,
  p: LayerParams,
  heads: number,
  headDim: number,
  eps: number,
): tf.Tensor3D {
  const [B, L, D] = x.shape;
  const h = layerNorm(x, p.ln1g, p.ln1b, eps);
  const qkv = linear(h, p.qkv).reshape([B, L, 3, heads, headDim]).transpose([2, 0, 3, 1, 4]);
  const [q, k, v] = tf.split(qkv, 3, 0).map((t) => t.reshape([B * heads, L, headDim]));
  const scores = tf.matMul(q, k, false, true).mul(1 / Math.sqrt(headDim)); // [B*H, L, L]
  const attn = tf.matMul(tf.softmax(scores), v); // [B*H, L, hd]
  const merged = attn.reshape([B, heads, L, headDim]).transpose([0, 2, 1, 3])
    .reshape([B, L, heads * headDim]);
  const x1 = x.add(linear(merged, p.outW, p.outB));
  const h2 = layerNorm(x1, p.ln2g, p.ln2b, eps);
  const m = linear(tf.tanh(linear(h2, p.fc1W, p.fc1B)), p.fc2W, p.fc2B);
  return x1.add(m).reshape([B, L, D]) as tf.Tensor3D;
}
