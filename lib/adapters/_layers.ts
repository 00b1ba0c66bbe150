/**
 * Private building blocks of TokenAdapt on top of `@lib/models`' differentiable ops (whose
 * hand-written gradients keep wasm on plain 2-D matMuls): the pre-norm transformer layer of
 * the reference (attention without qkv bias, Linear-Tanh-Linear MLP). Activations are 2-D
 * `[B*L, D]`, rows in (batch, position) order; Linear weights are `[in, out]`.
 *
 * Measured on wasm: its Tanh kernel is ~7x slower than `2 sigmoid(2x) - 1` (the same
 * function; absolute difference ~1e-7), which is used there.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { attention, layerNorm, linear } from "../models/mod.ts";

export { layerNorm, linear };

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

function tanh(x: tf.Tensor): tf.Tensor {
  if (tf.getBackend() !== "wasm") return tf.tanh(x);
  return tf.sub(tf.mul(tf.sigmoid(tf.mul(x, 2)), 2), 1);
}

/**
 * One pre-norm transformer layer: `x + Attn(LN(x))`, then `x + MLP(LN(x))` with a tanh MLP.
 * The qkv channels are laid out `[q | k | v]`, each `heads x headDim` (the reference's
 * `chunk(3)` then `b n (h d)`), which is the layout `attention` expects.
 * @param x `[B*L, D]`
 * @param p the layer's parameters
 * @param batch B
 * @param seq L
 * @param heads number of heads
 * @param eps LayerNorm eps
 * @returns `[B*L, D]`
 */
export function transformerLayer(
  x: tf.Tensor2D,
  p: LayerParams,
  batch: number,
  seq: number,
  heads: number,
  eps: number,
): tf.Tensor2D {
  const h = layerNorm(x, p.ln1g, p.ln1b, eps);
  const a = attention(linear(h, p.qkv), batch, seq, heads);
  const x1 = tf.add(x, linear(a, p.outW, p.outB)) as tf.Tensor2D;
  const h2 = layerNorm(x1, p.ln2g, p.ln2b, eps);
  const m = linear(tanh(linear(h2, p.fc1W, p.fc1B)) as tf.Tensor2D, p.fc2W, p.fc2B);
  return tf.add(x1, m) as tf.Tensor2D;
}
