/**
 * The transformer block shared by every model here: timm 0.5.4's ViT `Block`
 * (pre-norm; `x + attn(norm1(x))`, `x + mlp(norm2(x))`; qkv with or without bias;
 * GELU (erf) MLP; dropout after the attention projection and after each MLP layer;
 * attention dropout; stochastic depth on both branches), plus the Linear / LayerNorm
 * parameter helpers that name parameters as PyTorch does.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import {
  attention,
  concatRows,
  dropout,
  dropPath,
  gatherRows,
  gelu,
  layerNorm,
  linear,
} from "./ops.ts";
import type { ParamStore } from "./params.ts";
import { normal, truncNormal, xavierUniform } from "./init.ts";

/** How Linear weights are initialized. */
export type LinearInit = "xavier_uniform" | "trunc_normal";

/**
 * Register a Linear layer `<prefix>.weight` (PyTorch `[out, in]`, stored `[in, out]`)
 * and `<prefix>.bias` (zeros).
 *
 * @param store where to register
 * @param prefix e.g. `blocks.0.attn.qkv`
 * @param inDim input features
 * @param outDim output features
 * @param init `xavier_uniform` (MAE) or `trunc_normal` with std `std` (timm ViT)
 * @param rng generator
 * @param options `bias` (default true) and `std` (default 0.02)
 */
export function addLinear(
  store: ParamStore,
  prefix: string,
  inDim: number,
  outDim: number,
  init: LinearInit,
  rng: Rng,
  options: { bias?: boolean; std?: number } = {},
): void {
  const w = init === "xavier_uniform"
    ? xavierUniform(inDim, outDim, rng)
    : truncNormal(inDim * outDim, options.std ?? 0.02, rng);
  store.add(`${prefix}.weight`, tf.tensor2d(w, [inDim, outDim]), {
    shape: [outDim, inDim],
    layout: "linear",
  });
  if (options.bias ?? true) store.add(`${prefix}.bias`, tf.zeros([outDim]));
}

/**
 * Register a LayerNorm `<prefix>.weight` (ones) and `<prefix>.bias` (zeros).
 * @param store where to register
 * @param prefix e.g. `norm`
 * @param dim normalized width
 */
export function addLayerNorm(store: ParamStore, prefix: string, dim: number): void {
  store.add(`${prefix}.weight`, tf.ones([dim]));
  store.add(`${prefix}.bias`, tf.zeros([dim]));
}

/**
 * Apply a registered Linear layer.
 * @param store parameters
 * @param prefix layer name
 * @param x `[N, in]`
 * @returns `[N, out]`
 */
export function applyLinear(store: ParamStore, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const b = store.has(`${prefix}.bias`) ? store.get(`${prefix}.bias`) as tf.Tensor1D : undefined;
  return linear(x, store.get(`${prefix}.weight`) as tf.Tensor2D, b);
}

/**
 * Apply a registered LayerNorm.
 * @param store parameters
 * @param prefix layer name
 * @param x `[N, C]`
 * @param eps variance epsilon
 * @returns `[N, C]`
 */
export function applyLayerNorm(
  store: ParamStore,
  prefix: string,
  x: tf.Tensor2D,
  eps: number,
): tf.Tensor2D {
  return layerNorm(
    x,
    store.get(`${prefix}.weight`) as tf.Tensor1D,
    store.get(`${prefix}.bias`) as tf.Tensor1D,
    eps,
  );
}

/** Geometry of one block. */
export interface BlockSpec {
  /** Width C. */
  dim: number;
  /** Attention heads (C divisible by it). */
  numHeads: number;
  /** MLP hidden width = round(C * mlpRatio). */
  mlpRatio: number;
  /** Bias on the qkv projection. */
  qkvBias: boolean;
}

/**
 * Register the parameters of one block under `<prefix>.` with timm's names
 * (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`).
 *
 * @param store where to register
 * @param prefix e.g. `blocks.3`
 * @param spec geometry
 * @param init Linear init rule
 * @param rng generator
 */
export function addBlock(
  store: ParamStore,
  prefix: string,
  spec: BlockSpec,
  init: LinearInit,
  rng: Rng,
): void {
  const hidden = Math.round(spec.dim * spec.mlpRatio);
  addLayerNorm(store, `${prefix}.norm1`, spec.dim);
  addLinear(store, `${prefix}.attn.qkv`, spec.dim, 3 * spec.dim, init, rng, {
    bias: spec.qkvBias,
  });
  addLinear(store, `${prefix}.attn.proj`, spec.dim, spec.dim, init, rng);
  addLayerNorm(store, `${prefix}.norm2`, spec.dim);
  addLinear(store, `${prefix}.mlp.fc1`, spec.dim, hidden, init, rng);
  addLinear(store, `${prefix}.mlp.fc2`, hidden, spec.dim, init, rng);
}

/** Run-time settings of a block. */
export interface BlockRunOptions {
  /** LayerNorm epsilon. */
  eps: number;
  /** Dropout after the projection and the MLP layers (training only). */
  dropout: number;
  /** Dropout on the attention weights (training only). */
  attnDropout: number;
  /** Stochastic depth probability of this block (training only). */
  dropPath: number;
  /** Training mode: dropout / drop path active. */
  training: boolean;
  /** Generator for dropout / drop path; required when any is active. */
  rng?: Rng;
}

/**
 * One pre-norm transformer block.
 *
 * @param store parameters
 * @param prefix block name, e.g. `blocks.0`
 * @param spec geometry
 * @param x `[B*N, C]` float32, rows in (batch, position) order
 * @param batch B
 * @param options eps, dropouts, training, rng
 * @returns `[B*N, C]` float32
 */
export function blockForward(
  store: ParamStore,
  prefix: string,
  spec: BlockSpec,
  x: tf.Tensor2D,
  batch: number,
  options: BlockRunOptions,
): tf.Tensor2D {
  const seq = x.shape[0] / batch;
  const t = options.training;
  const drop = t ? options.dropout : 0;
  const dp = t ? options.dropPath : 0;
  const h1 = applyLayerNorm(store, `${prefix}.norm1`, x, options.eps);
  const qkv = applyLinear(store, `${prefix}.attn.qkv`, h1);
  const a = attention(qkv, batch, seq, spec.numHeads, {
    dropout: t ? options.attnDropout : 0,
    rng: options.rng,
  });
  let branch = applyLinear(store, `${prefix}.attn.proj`, a);
  if (drop > 0) branch = dropout(branch, drop, options.rng);
  if (dp > 0) branch = dropPath(branch, batch, dp, options.rng);
  const x1 = tf.add(x, branch) as tf.Tensor2D;
  const h2 = applyLayerNorm(store, `${prefix}.norm2`, x1, options.eps);
  let m = gelu(applyLinear(store, `${prefix}.mlp.fc1`, h2));
  if (drop > 0) m = dropout(m, drop, options.rng);
  m = applyLinear(store, `${prefix}.mlp.fc2`, m);
  if (drop > 0) m = dropout(m, drop, options.rng);
  if (dp > 0) m = dropPath(m, batch, dp, options.rng);
  return tf.add(x1, m) as tf.Tensor2D;
}

/**
 * timm's stochastic-depth schedule: block i of `depth` gets `rate * i / (depth - 1)`
 * (`torch.linspace(0, rate, depth)`).
 * @param rate the last block's rate
 * @param depth number of blocks
 * @returns per-block rates
 */
export function dropPathRates(rate: number, depth: number): number[] {
  if (depth === 1) return [0];
  return Array.from({ length: depth }, (_, i) => (rate * i) / (depth - 1));
}

/**
 * Initial values `N(0, std)` for a `[1, 1, D]` token (CLS), as `tf.Tensor`.
 * @param dim D
 * @param std standard deviation
 * @param rng generator
 * @returns a new `[1, 1, D]` tensor
 */
export function tokenInit(dim: number, std: number, rng: Rng): tf.Tensor3D {
  return tf.tensor3d(normal(dim, std, rng), [1, 1, dim]);
}

/** What {@linkcode encoderFeatures} needs of a classifier's configuration. */
export interface EncoderSpec {
  /** Block geometry. */
  block: BlockSpec;
  /** Number of blocks. */
  depth: number;
  /** LayerNorm epsilon. */
  normEps: number;
  /** Dropout after the position embedding and inside the blocks (training only). */
  dropout: number;
  /** Attention dropout (training only). */
  attnDropout: number;
  /** Stochastic depth rate of the last block. */
  dropPath: number;
  /** Average the non-CLS outputs (true) or take the CLS output. */
  globalPool: boolean;
}

/**
 * The {@linkcode EncoderSpec} of a classifier config (token classifier, pixel ViT).
 * @param c the resolved config's ViT fields
 * @returns the spec
 */
export function encoderSpecOf(c: {
  embedDim: number;
  numHeads: number;
  mlpRatio: number;
  qkvBias: boolean;
  depth: number;
  normEps: number;
  dropout: number;
  attnDropout: number;
  dropPath: number;
  globalPool: boolean;
}): EncoderSpec {
  return {
    block: { dim: c.embedDim, numHeads: c.numHeads, mlpRatio: c.mlpRatio, qkvBias: c.qkvBias },
    depth: c.depth,
    normEps: c.normEps,
    dropout: c.dropout,
    attnDropout: c.attnDropout,
    dropPath: c.dropPath,
    globalPool: c.globalPool,
  };
}

/** Run-time settings of {@linkcode encoderFeatures}. */
export interface EncoderRunOptions {
  /** Training mode: dropout / drop path active. */
  training: boolean;
  /** Generator for dropout / drop path. */
  rng?: Rng;
  /** Receives `act_patch_embed`, `pooled_before_norm` and `features`. */
  record?: (name: string, tensor: tf.Tensor) => void;
}

/**
 * The classifier trunk shared by the token classifier and the pixel ViT (timm's
 * `VisionTransformer.forward_features` with global pooling): prepend the CLS token
 * (`cls_token`), add `pos_embed`, dropout, the blocks `blocks.<i>`, then the mean of the
 * non-CLS outputs (or the CLS output) and LayerNorm `norm`. Call inside `tf.tidy`.
 *
 * @param store parameters
 * @param patches `[B*L, D]` patch embeddings, rows in (batch, position) order
 * @param batch B
 * @param spec geometry and rates
 * @param options training, rng, record
 * @returns `[B, D]` features
 */
export function encoderFeatures(
  store: ParamStore,
  patches: tf.Tensor2D,
  batch: number,
  spec: EncoderSpec,
  options: EncoderRunOptions,
): tf.Tensor2D {
  const dim = spec.block.dim;
  const l = patches.shape[0] / batch;
  const rec = options.record;
  rec?.("act_patch_embed", tf.reshape(patches, [batch, l, dim]));
  const idx = new Int32Array(batch * (1 + l));
  for (let b = 0; b < batch; b++) {
    idx[b * (1 + l)] = batch * l;
    for (let i = 0; i < l; i++) idx[b * (1 + l) + 1 + i] = b * l + i;
  }
  const withCls = gatherRows(
    concatRows(patches, tf.reshape(store.get("cls_token"), [1, dim])),
    idx,
  );
  let x = tf.reshape(
    tf.add(tf.reshape(withCls, [batch, 1 + l, dim]), store.get("pos_embed")),
    [batch * (1 + l), dim],
  ) as tf.Tensor2D;
  if (options.training && spec.dropout > 0) x = dropout(x, spec.dropout, options.rng);
  const rates = dropPathRates(spec.dropPath, spec.depth);
  for (let i = 0; i < spec.depth; i++) {
    x = blockForward(store, `blocks.${i}`, spec.block, x, batch, {
      eps: spec.normEps,
      dropout: spec.dropout,
      attnDropout: spec.attnDropout,
      dropPath: rates[i],
      training: options.training,
      rng: options.rng,
    });
  }
  let pooled: tf.Tensor2D;
  if (spec.globalPool) {
    const rows = new Int32Array(batch * l);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < l; i++) rows[b * l + i] = b * (1 + l) + 1 + i;
    }
    pooled = tf.mean(tf.reshape(gatherRows(x, rows), [batch, l, dim]), 1);
  } else {
    const rows = new Int32Array(batch);
    for (let b = 0; b < batch; b++) rows[b] = b * (1 + l);
    pooled = gatherRows(x, rows);
  }
  rec?.("pooled_before_norm", pooled);
  const features = applyLayerNorm(store, "norm", pooled, spec.normEps);
  rec?.("features", features);
  return features;
}
