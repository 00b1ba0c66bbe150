/**
 * The front end shared by the MTM model and the token classifier: a learned token
 * embedding table with LayerNorm and dropout (the reference's `BertEmbeddings` without
 * position embeddings, `token_emb.*`), then a patch convolution (`patch_embed.proj`,
 * kernel = stride = p) run as one matMul over (row, column, channel)-ordered patches.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { conv2dDefault, normal } from "./init.ts";
import { dropout, gatherRows, linear } from "./ops.ts";
import { internalShape, type ParamStore, torchToInternal } from "./params.ts";
import { addLayerNorm, applyLayerNorm } from "./vit.ts";

/** Geometry of the token front end. */
export interface TokenFrontSpec {
  /** Token grid side m fed to the model. */
  gridSide: number;
  /** Patch side p in tokens (m divisible by p). */
  patchSize: number;
  /** Codebook size K. */
  codebookSize: number;
  /** Token embedding width d. */
  tokenDim: number;
  /** Transformer width D. */
  embedDim: number;
}

/**
 * Register `token_emb.word_embeddings.weight` [K, d] ~ N(0, std) and
 * `token_emb.LayerNorm.*` (ones / zeros).
 *
 * @param store where to register
 * @param spec geometry
 * @param rng generator
 * @param std std of the embedding table init (REFERENCE.md section 4: 0.02)
 */
export function addTokenEmbedding(
  store: ParamStore,
  spec: TokenFrontSpec,
  rng: Rng,
  std = 0.02,
): void {
  const { codebookSize: k, tokenDim: d } = spec;
  store.add("token_emb.word_embeddings.weight", tf.tensor2d(normal(k * d, std, rng), [k, d]));
  addLayerNorm(store, "token_emb.LayerNorm", d);
}

/**
 * Register `patch_embed.proj.weight` (PyTorch `[D, d, p, p]`, stored `[p*p*d, D]`) and
 * `patch_embed.proj.bias` with PyTorch's default Conv2d initialization.
 *
 * @param store where to register
 * @param inChannels input channels (d for tokens, C for pixels)
 * @param embedDim output width D
 * @param patchSize kernel = stride p
 * @param rng generator
 */
export function addPatchEmbed(
  store: ParamStore,
  inChannels: number,
  embedDim: number,
  patchSize: number,
  rng: Rng,
): void {
  const conv = conv2dDefault(embedDim, inChannels, patchSize, rng);
  const shape = [embedDim, inChannels, patchSize, patchSize];
  store.add(
    "patch_embed.proj.weight",
    tf.tensor(torchToInternal("conv", shape, conv.weight), internalShape("conv", shape), "float32"),
    { shape, layout: "conv" },
  );
  store.add("patch_embed.proj.bias", tf.tensor1d(conv.bias));
}

/**
 * Check a batch of token codes and flatten it.
 * @param codes `[B, m, m]` int32 codes in [0, K)
 * @param spec geometry
 * @returns `[B*m*m]` int32 (a reshape, owned by the caller)
 * @throws {TypeError} for a wrong shape or dtype
 */
export function flattenCodes(codes: tf.Tensor, spec: TokenFrontSpec): tf.Tensor1D {
  const m = spec.gridSide;
  if (codes.dtype !== "int32" || codes.rank !== 3 || codes.shape[1] !== m || codes.shape[2] !== m) {
    throw new TypeError(
      `Cannot embed codes ${codes.dtype} [${codes.shape}]: expected int32 [B, ${m}, ${m}]`,
    );
  }
  return tf.reshape(codes, [-1]);
}

/**
 * Token embedding: table lookup, LayerNorm, dropout (training only).
 *
 * @param store parameters
 * @param codes `[B*m*m]` int32 codes
 * @param eps LayerNorm epsilon
 * @param drop dropout probability (0 in eval)
 * @param rng generator for dropout
 * @returns `[B*m*m, d]` float32, rows in (batch, row, column) order
 */
export function embedTokens(
  store: ParamStore,
  codes: tf.Tensor1D,
  eps: number,
  drop: number,
  rng: Rng | undefined,
): tf.Tensor2D {
  const table = store.get("token_emb.word_embeddings.weight") as tf.Tensor2D;
  const e = applyLayerNorm(store, "token_emb.LayerNorm", gatherRows(table, codes), eps);
  return drop > 0 ? dropout(e, drop, rng) : e;
}

/**
 * Rearrange token rows into patch rows: `[B*m*m, d]` -> `[B*L, p*p*d]` with L = (m/p)^2,
 * patches in row-major order and each patch's values in (row, column, channel) order.
 * Its own inverse up to the reshape (see {@linkcode unpatchify}).
 *
 * @param x `[B*m*m, d]`
 * @param gridSide m
 * @param patchSize p
 * @returns `[B*L, p*p*d]`
 */
export function patchify(x: tf.Tensor2D, gridSide: number, patchSize: number): tf.Tensor2D {
  const d = x.shape[1];
  const p = patchSize;
  if (p === 1) return tf.clone(x);
  const mh = gridSide / p;
  const rows = x.shape[0] / (p * gridSide); // B * mh
  return tf.reshape(
    tf.transpose(tf.reshape(x, [rows, p, mh, p * d]), [0, 2, 1, 3]),
    [rows * mh, p * p * d],
  );
}

/**
 * Inverse of {@linkcode patchify}: `[B*L, p*p*c]` -> `[B*m*m, c]`.
 *
 * @param x `[B*L, p*p*c]`, each row (row, column, channel)-ordered
 * @param gridSide m
 * @param patchSize p
 * @returns `[B*m*m, c]` rows in (batch, row, column) order
 */
export function unpatchify(x: tf.Tensor2D, gridSide: number, patchSize: number): tf.Tensor2D {
  const p = patchSize;
  const c = x.shape[1] / (p * p);
  if (p === 1) return tf.clone(x);
  const mh = gridSide / p;
  const rows = x.shape[0] / mh; // B * mh
  return tf.reshape(
    tf.transpose(tf.reshape(x, [rows, mh, p, p * c]), [0, 2, 1, 3]),
    [rows * p * gridSide, c],
  );
}

/**
 * Patch embedding: Conv2d(d -> D, kernel = stride = p) on the `[B, d, m, m]` map,
 * flattened to patch rows (PyTorch `proj(x).flatten(2).transpose(1, 2)`).
 *
 * @param store parameters
 * @param emb `[B*m*m, d]` token embeddings
 * @param spec geometry
 * @returns `[B*L, D]` float32
 */
export function patchEmbed(
  store: ParamStore,
  emb: tf.Tensor2D,
  spec: TokenFrontSpec,
): tf.Tensor2D {
  return linear(
    patchify(emb, spec.gridSide, spec.patchSize),
    store.get("patch_embed.proj.weight") as tf.Tensor2D,
    store.get("patch_embed.proj.bias") as tf.Tensor1D,
  );
}
