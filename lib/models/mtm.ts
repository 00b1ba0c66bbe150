/**
 * The masked token modeling (MTM) pre-training model of SeiT++ (REFERENCE.md section 4;
 * MAE / MAGE lineage), split MAE-style into {@linkcode randomMasking},
 * `forwardEncoder`, `forwardDecoder`, `forwardLoss` and a three-line `forward`.
 *
 * Quirks of the reference mirrored here (the official preset; fixture README
 * "Behaviour of the official code"):
 * - masking also runs in eval mode (there is no "no mask" path in `forward`);
 * - one mask ratio per batch, from a normal(mu, std) truncated to [min, max];
 *   `numMasked = ceil(L*r)`, `numDropped = ceil(L*dropRatio)` (dropRatio = the
 *   minimum ratio, 0.4): dropped patches leave the encoder, masked-but-kept ones get
 *   `mask_token_label` (before the position table is added);
 * - the decoder has no mask token: every masked position (dropped or not) receives a
 *   copy of the decoded CLS row; the learned decoder position table is added and the
 *   sin-cos `decoder_pos_embed` is kept in the state dict but never used;
 * - the output layer is tied to the input embedding table, detached (no gradient
 *   flows into the table through it);
 * - the loss is per token, averaged over each patch's p*p tokens, then over the
 *   masked patches (dropped ones included); label smoothing
 *   `(1-s)*nll + s*mean(-log p)`, or BCE against one-hot averaged over the K classes.
 * Differences: the reference picks masked/dropped patches by `noise <= threshold`;
 * here they are the `numMasked` / `numDropped` smallest noise values, ties broken by
 * patch index (identical without ties, and never ragged with them).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { check, EPS, type FieldRule, POS_INT, PROB, resolveFields } from "./_config.ts";
import { sincos2d } from "./init.ts";
import {
  bceOneHotRows,
  concatRows,
  gatherRows,
  gelu,
  layerNorm,
  linearDetachedWeight,
  softmaxCrossEntropyRows,
} from "./ops.ts";
import { ParamStore } from "./params.ts";
import {
  addPatchEmbed,
  addTokenEmbedding,
  embedTokens,
  flattenCodes,
  patchEmbed,
  patchify,
  type TokenFrontSpec,
  unpatchify,
} from "./token_embed.ts";
import {
  addBlock,
  addLayerNorm,
  addLinear,
  applyLayerNorm,
  applyLinear,
  blockForward,
  type BlockSpec,
  tokenInit,
} from "./vit.ts";

/**
 * MTM model configuration. Every field is optional; {@linkcode resolveMtmConfig} fills
 * the defaults (the official ViT-B geometry) and checks the values.
 */
export interface MtmConfig {
  /** Token grid side m fed to the model. @default {28} */
  gridSide?: number;
  /** Patch side p in tokens; m must be divisible by p. @default {2} */
  patchSize?: number;
  /** Codebook size K (number of token ids). @default {391} */
  codebookSize?: number;
  /** Token embedding width d. @default {32} */
  tokenDim?: number;
  /** Encoder width D (divisible by numHeads and by 4 for the sin-cos table). @default {768} */
  embedDim?: number;
  /** Encoder blocks. @default {12} */
  depth?: number;
  /** Encoder attention heads. @default {12} */
  numHeads?: number;
  /** MLP hidden width / block width. @default {4} */
  mlpRatio?: number;
  /** Bias on the qkv projections. @default {true} */
  qkvBias?: boolean;
  /** Decoder width (divisible by decoderNumHeads and by 4). @default {512} (MAE's ViT-B decoder; assumed) */
  decoderEmbedDim?: number;
  /** Decoder blocks. @default {8} */
  decoderDepth?: number;
  /** Decoder attention heads. @default {16} */
  decoderNumHeads?: number;
  /** LayerNorm epsilon of the token embedding, blocks and final norms. @default {1e-6} */
  normEps?: number;
  /** LayerNorm epsilon inside the MLM output layer. @default {1e-5} */
  mlmNormEps?: number;
  /** Lower bound of the mask ratio. @default {0.4} (main_mtm_pretrain default) */
  maskRatioMin?: number;
  /** Upper bound of the mask ratio. @default {1.0} */
  maskRatioMax?: number;
  /** Mean of the (untruncated) mask-ratio normal. @default {0.45} */
  maskRatioMu?: number;
  /** Std of the (untruncated) mask-ratio normal. @default {0.25} */
  maskRatioStd?: number;
  /** Fraction of patches dropped from the encoder input. @default {maskRatioMin} */
  dropRatio?: number;
  /** Dropout after the token embedding LayerNorm (BertEmbeddings). @default {0.1} */
  embedDropout?: number;
  /** Dropout inside encoder blocks. @default {0} */
  encoderDropout?: number;
  /** Attention dropout inside encoder blocks. @default {0} */
  encoderAttnDropout?: number;
  /** Dropout inside decoder blocks. @default {0.1} */
  decoderDropout?: number;
  /** Attention dropout inside decoder blocks. @default {0.1} */
  decoderAttnDropout?: number;
  /** Label smoothing s of the token loss. @default {0} */
  labelSmoothing?: number;
  /** Use BCE against one-hot instead of cross-entropy. @default {false} */
  bceLoss?: boolean;
}

/** A fully resolved {@linkcode MtmConfig}: plain JSON, saved with runs and checkpoints. */
export type ResolvedMtmConfig = Required<MtmConfig>;

const MTM_DEFAULTS: ResolvedMtmConfig = {
  gridSide: 28,
  patchSize: 2,
  codebookSize: 391,
  tokenDim: 32,
  embedDim: 768,
  depth: 12,
  numHeads: 12,
  mlpRatio: 4,
  qkvBias: true,
  decoderEmbedDim: 512,
  decoderDepth: 8,
  decoderNumHeads: 16,
  normEps: 1e-6,
  mlmNormEps: 1e-5,
  maskRatioMin: 0.4,
  maskRatioMax: 1.0,
  maskRatioMu: 0.45,
  maskRatioStd: 0.25,
  dropRatio: NaN, // resolved to maskRatioMin
  embedDropout: 0.1,
  encoderDropout: 0,
  encoderAttnDropout: 0,
  decoderDropout: 0.1,
  decoderAttnDropout: 0.1,
  labelSmoothing: 0,
  bceLoss: false,
};

const UNIT: FieldRule = { kind: "number", min: 0, max: 1 };

const MTM_RULES: { [K in keyof ResolvedMtmConfig]: FieldRule } = {
  gridSide: POS_INT,
  patchSize: POS_INT,
  codebookSize: { kind: "int", min: 2 },
  tokenDim: POS_INT,
  embedDim: POS_INT,
  depth: POS_INT,
  numHeads: POS_INT,
  mlpRatio: { kind: "number", min: 0, max: 64, minExclusive: true },
  qkvBias: { kind: "boolean" },
  decoderEmbedDim: POS_INT,
  decoderDepth: POS_INT,
  decoderNumHeads: POS_INT,
  normEps: EPS,
  mlmNormEps: EPS,
  maskRatioMin: UNIT,
  maskRatioMax: UNIT,
  maskRatioMu: { kind: "number", min: -10, max: 10 },
  maskRatioStd: { kind: "number", min: 0, max: 10, minExclusive: true },
  dropRatio: UNIT,
  embedDropout: PROB,
  encoderDropout: PROB,
  encoderAttnDropout: PROB,
  decoderDropout: PROB,
  decoderAttnDropout: PROB,
  labelSmoothing: PROB,
  bceLoss: { kind: "boolean" },
};

/**
 * Fill defaults and validate an {@linkcode MtmConfig}.
 *
 * @param config overrides (unknown keys are refused)
 * @returns the resolved config (plain JSON)
 * @throws {TypeError} for an unknown field or a wrong type
 * @throws {RangeError} for inconsistent or out-of-range values
 *
 * @example
 * ```ts
 * import { resolveMtmConfig } from "@lib/models";
 * const c = resolveMtmConfig({ embedDim: 192, depth: 4, numHeads: 3 });
 * console.assert(c.dropRatio === 0.4 && c.gridSide === 28);
 * ```
 */
export function resolveMtmConfig(config: MtmConfig = {}): ResolvedMtmConfig {
  const what = "MtmConfig";
  const withDrop = { ...MTM_DEFAULTS, dropRatio: config.maskRatioMin ?? MTM_DEFAULTS.maskRatioMin };
  const c = resolveFields<ResolvedMtmConfig>(what, config, withDrop, MTM_RULES);
  check(
    what,
    c.gridSide % c.patchSize === 0,
    `gridSide ${c.gridSide} is not divisible by patchSize ${c.patchSize}`,
  );
  check(
    what,
    c.embedDim % c.numHeads === 0,
    `embedDim ${c.embedDim} is not divisible by numHeads ${c.numHeads}`,
  );
  check(what, c.embedDim % 4 === 0, `embedDim ${c.embedDim} is not divisible by 4 (sin-cos table)`);
  check(
    what,
    c.decoderEmbedDim % c.decoderNumHeads === 0 && c.decoderEmbedDim % 4 === 0,
    `decoderEmbedDim ${c.decoderEmbedDim} must be divisible by decoderNumHeads ${c.decoderNumHeads} and by 4`,
  );
  check(
    what,
    c.maskRatioMin < c.maskRatioMax,
    `maskRatioMin ${c.maskRatioMin} >= maskRatioMax ${c.maskRatioMax}`,
  );
  check(
    what,
    c.dropRatio <= c.maskRatioMin,
    `dropRatio ${c.dropRatio} > maskRatioMin ${c.maskRatioMin}: dropped patches must be masked`,
  );
  const numPatches = (c.gridSide / c.patchSize) ** 2;
  check(
    what,
    Math.ceil(numPatches * c.dropRatio) < numPatches,
    `dropRatio ${c.dropRatio} drops every patch`,
  );
  return c;
}

/** The masking of one batch: host arrays, a pure function of its inputs. */
export interface MaskPlan {
  /** Batch size B. */
  batch: number;
  /** Patches per sample L. */
  numPatches: number;
  /** The mask ratio r of this batch. */
  maskRatio: number;
  /** `ceil(L * r)` masked patches per sample (dropped ones included). */
  numMasked: number;
  /** `ceil(L * dropRatio)` patches per sample removed from the encoder input. */
  numDropped: number;
  /** The noise that ranked the patches, `[B*L]` (smallest first). */
  noise: Float32Array;
  /** `[B*L]` 1 where the patch is masked (its target enters the loss). */
  masked: Uint8Array;
  /** `[B*L]` 1 where the patch is dropped from the encoder (a subset of masked). */
  dropped: Uint8Array;
  /** `[B*(L-numDropped)]` kept patch indices of each sample, increasing. */
  kept: Int32Array;
}

/** Recorded noise and ratio (parity), instead of drawing them. */
export interface RecordedMasking {
  /** Uniform noise `[B*L]`, patch index `row*(m/p) + column`; smallest first. */
  noise: Float32Array;
  /** The mask ratio. */
  maskRatio: number;
}

/** The mask-ratio and drop parameters {@linkcode randomMasking} needs. */
export type MaskingParams = Pick<
  ResolvedMtmConfig,
  "maskRatioMin" | "maskRatioMax" | "maskRatioMu" | "maskRatioStd" | "dropRatio"
>;

/**
 * Draw (or take) the masking of a batch.
 *
 * With an {@linkcode Rng}: the ratio is one truncated-normal draw, then B*L uniform
 * draws rank the patches of each sample. With {@linkcode RecordedMasking}: the given
 * noise and ratio are used as they are.
 *
 * @param batch B
 * @param numPatches L
 * @param source a generator, or recorded noise + ratio
 * @param params ratio distribution and drop ratio (from the resolved config)
 * @returns the plan
 * @throws {TypeError} when recorded noise has the wrong length
 * @throws {RangeError} for a ratio outside [0, 1] or a batch/patch count below 1
 *
 * @example
 * ```ts
 * import { randomMasking, resolveMtmConfig } from "@lib/models";
 * import { Rng } from "@lib/random";
 * const plan = randomMasking(2, 196, new Rng(0), resolveMtmConfig());
 * console.assert(plan.numDropped === 79 && plan.kept.length === 2 * (196 - 79));
 * ```
 */
export function randomMasking(
  batch: number,
  numPatches: number,
  source: Rng | RecordedMasking,
  params: MaskingParams,
): MaskPlan {
  if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(numPatches) || numPatches < 1) {
    throw new RangeError(`Cannot mask a batch of ${batch} x ${numPatches} patches`);
  }
  const n = batch * numPatches;
  let noise: Float32Array;
  let maskRatio: number;
  if ("noise" in source) {
    if (!(source.noise instanceof Float32Array) || source.noise.length !== n) {
      throw new TypeError(
        `Cannot use recorded masking noise of length ${source.noise?.length}: expected ${batch} x ${numPatches} = ${n}`,
      );
    }
    noise = source.noise;
    maskRatio = source.maskRatio;
  } else {
    maskRatio = source.truncatedNormal(
      params.maskRatioMu,
      params.maskRatioStd,
      params.maskRatioMin,
      params.maskRatioMax,
    );
    noise = new Float32Array(n);
    for (let i = 0; i < n; i++) noise[i] = source.uniform();
  }
  if (!(maskRatio >= 0 && maskRatio <= 1)) {
    throw new RangeError(`Cannot mask with ratio ${maskRatio}: expected [0, 1]`);
  }
  const numMasked = Math.ceil(numPatches * maskRatio);
  const numDropped = Math.ceil(numPatches * params.dropRatio);
  if (numDropped > numMasked) {
    throw new RangeError(
      `Cannot mask ${numMasked} of ${numPatches} patches while dropping ${numDropped}: ratio ${maskRatio} < dropRatio ${params.dropRatio}`,
    );
  }
  const masked = new Uint8Array(n);
  const dropped = new Uint8Array(n);
  const numKept = numPatches - numDropped;
  const kept = new Int32Array(batch * numKept);
  const order = new Int32Array(numPatches);
  for (let b = 0; b < batch; b++) {
    const base = b * numPatches;
    for (let i = 0; i < numPatches; i++) order[i] = i;
    order.sort((x, y) => noise[base + x] - noise[base + y] || x - y);
    for (let r = 0; r < numMasked; r++) {
      masked[base + order[r]] = 1;
      if (r < numDropped) dropped[base + order[r]] = 1;
    }
    let k = b * numKept;
    for (let i = 0; i < numPatches; i++) if (!dropped[base + i]) kept[k++] = i;
  }
  return { batch, numPatches, maskRatio, numMasked, numDropped, noise, masked, dropped, kept };
}

/**
 * The reference's `[B, 1+L]` 0/1 masks (column 0 = CLS, always 0).
 * @param plan a masking plan
 * @returns `drop` (token_drop_mask) and `all` (token_all_mask) as float32 `[B*(1+L)]`
 */
export function referenceMasks(plan: MaskPlan): { drop: Float32Array; all: Float32Array } {
  const { batch, numPatches: l } = plan;
  const drop = new Float32Array(batch * (1 + l));
  const all = new Float32Array(batch * (1 + l));
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < l; i++) {
      drop[b * (1 + l) + 1 + i] = plan.dropped[b * l + i];
      all[b * (1 + l) + 1 + i] = plan.masked[b * l + i];
    }
  }
  return { drop, all };
}

/** Called with named intermediate activations (the parity fixture's names). */
export type RecordFn = (name: string, tensor: tf.Tensor) => void;

/** Options shared by the forward methods of {@linkcode MtmModel}. */
export interface MtmRunOptions {
  /** Training mode: dropouts active (masking runs in both modes). @default {false} */
  training?: boolean;
  /** Generator for dropout (training) and, without a plan, for masking. */
  rng?: Rng;
  /**
   * Receives intermediate activations (`act_token_emb`, `act_patch_embed`,
   * `act_encoder_input`, `latent`, `act_decoder_embed`, `act_decoder_input`,
   * `act_decoder_norm`) as 3-D tensors that are disposed after the call: read or
   * clone them inside.
   */
  record?: RecordFn;
}

/** Options of {@linkcode MtmModel.forward}. */
export interface MtmForwardOptions extends MtmRunOptions {
  /** The masking to use; drawn from `rng` when absent. */
  plan?: MaskPlan;
  /** Override the config's label smoothing. */
  labelSmoothing?: number;
  /** Override the config's BCE switch. */
  bceLoss?: boolean;
}

/** What {@linkcode MtmModel.forward} returns; the caller owns the tensors. */
export interface MtmOutput {
  /** Scalar loss (float32). */
  loss: tf.Scalar;
  /** `[B, m*m, K]` float32 logits, token order `row*m + column`. */
  logits: tf.Tensor3D;
  /** `[B, L]` float32, 1 where the patch is masked (dropped included). */
  mask: tf.Tensor2D;
  /** The masking used (host arrays). */
  plan: MaskPlan;
}

/** What {@linkcode MtmModel.forwardLoss} returns; the caller owns the tensors. */
export interface MtmLoss {
  /** Scalar loss: mean of `patchLoss` over masked patches. */
  loss: tf.Scalar;
  /** `[B, m*m]` per-token loss. */
  tokenLoss: tf.Tensor2D;
  /** `[B, L]` per-token loss averaged over each patch's p*p tokens. */
  patchLoss: tf.Tensor2D;
}

/**
 * The MTM model. Parameters live in {@linkcode MtmModel.params} under the reference
 * state-dict names (`pos_embed` and `decoder_pos_embed` frozen).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { MtmModel, mtmTiny } from "@lib/models";
 * import { Rng } from "@lib/random";
 * const model = new MtmModel(mtmTiny(), new Rng(0));
 * const codes = tf.zeros([2, 8, 8], "int32") as tf.Tensor3D;
 * const out = model.forward(codes, { rng: new Rng(1) });
 * console.assert(out.logits.shape.join() === `2,64,${model.config.codebookSize}`);
 * tf.dispose([codes, out.loss, out.logits, out.mask]);
 * model.dispose();
 * ```
 */
export class MtmModel {
  /** The resolved configuration. */
  readonly config: ResolvedMtmConfig;
  /** Parameters by reference name. */
  readonly params: ParamStore;
  /** Patches per side, m/p. */
  readonly patchGrid: number;
  /** Patches per sample L. */
  readonly numPatches: number;
  readonly #front: TokenFrontSpec;
  readonly #enc: BlockSpec;
  readonly #dec: BlockSpec;

  /**
   * Build and initialize (REFERENCE.md section 4: xavier-uniform Linear weights, zero
   * biases, LayerNorm 1/0, CLS and embedding table N(0, 0.02), mask token and learned
   * decoder positions zero, patch conv PyTorch's default, sin-cos tables fixed).
   *
   * @param config overrides of the official defaults (or a resolved config)
   * @param rng generator for the initial values
   * @throws {TypeError | RangeError} for a bad config
   */
  constructor(config: MtmConfig, rng: Rng) {
    const c = resolveMtmConfig(config);
    this.config = c;
    this.patchGrid = c.gridSide / c.patchSize;
    this.numPatches = this.patchGrid ** 2;
    this.#front = c;
    this.#enc = { dim: c.embedDim, numHeads: c.numHeads, mlpRatio: c.mlpRatio, qkvBias: c.qkvBias };
    this.#dec = {
      dim: c.decoderEmbedDim,
      numHeads: c.decoderNumHeads,
      mlpRatio: c.mlpRatio,
      qkvBias: c.qkvBias,
    };
    const p = new ParamStore("mtm");
    this.params = p;
    const l1 = 1 + this.numPatches;
    p.add("mask_token_label", tf.zeros([1, 1, c.embedDim]));
    p.add("cls_token", tokenInit(c.embedDim, 0.02, rng));
    p.add(
      "pos_embed",
      tf.tensor3d(sincos2d(c.embedDim, this.patchGrid, true), [1, l1, c.embedDim]),
      {
        trainable: false,
      },
    );
    p.add(
      "decoder_pos_embed",
      tf.tensor3d(sincos2d(c.decoderEmbedDim, this.patchGrid, true), [1, l1, c.decoderEmbedDim]),
      { trainable: false },
    );
    p.add("decoder_pos_embed_learned", tf.zeros([1, l1, c.decoderEmbedDim]));
    addTokenEmbedding(p, c, rng);
    addPatchEmbed(p, c.tokenDim, c.embedDim, c.patchSize, rng);
    for (let i = 0; i < c.depth; i++) addBlock(p, `blocks.${i}`, this.#enc, "xavier_uniform", rng);
    addLayerNorm(p, "norm", c.embedDim);
    addLinear(p, "decoder_embed", c.embedDim, c.decoderEmbedDim, "xavier_uniform", rng);
    for (let i = 0; i < c.decoderDepth; i++) {
      addBlock(p, `decoder_blocks.${i}`, this.#dec, "xavier_uniform", rng);
    }
    addLayerNorm(p, "decoder_norm", c.decoderEmbedDim);
    p.add("mlm_layer.bias", tf.zeros([1, 1, c.codebookSize]));
    const patchValues = c.patchSize * c.patchSize * c.tokenDim;
    addLinear(p, "mlm_layer.fc", c.decoderEmbedDim, patchValues, "xavier_uniform", rng);
    addLayerNorm(p, "mlm_layer.ln", c.tokenDim);
  }

  /**
   * Draw (or take) the masking of a batch with this model's ratio parameters.
   * @param batch B
   * @param source generator, or recorded noise + ratio
   * @returns the plan
   */
  randomMasking(batch: number, source: Rng | RecordedMasking): MaskPlan {
    return randomMasking(batch, this.numPatches, source, this.config);
  }

  #checkPlan(plan: MaskPlan, batch: number): void {
    if (plan.batch !== batch || plan.numPatches !== this.numPatches) {
      throw new TypeError(
        `Cannot use a mask plan for ${plan.batch} x ${plan.numPatches} patches on a batch of ${batch} x ${this.numPatches}`,
      );
    }
  }

  /**
   * Encoder: embed, patchify, substitute the mask token at masked-but-kept patches,
   * add the sin-cos positions, drop the dropped patches, prepend CLS, run the blocks
   * and the final norm.
   *
   * @param codes `[B, m, m]` int32 codes in [0, K)
   * @param plan the masking
   * @param options training, rng, record
   * @returns latent `[B, 1 + L - numDropped, D]` float32 (row 0 = CLS), owned by the caller
   */
  forwardEncoder(codes: tf.Tensor3D, plan: MaskPlan, options: MtmRunOptions = {}): tf.Tensor3D {
    const c = this.config;
    const batch = codes.shape[0];
    this.#checkPlan(plan, batch);
    const training = options.training ?? false;
    const rec = options.record;
    const l = this.numPatches;
    const kept = l - plan.numDropped;
    return tf.tidy(() => {
      const p = this.params;
      const emb = embedTokens(
        p,
        flattenCodes(codes, this.#front),
        c.normEps,
        training ? c.embedDropout : 0,
        options.rng,
      );
      rec?.("act_token_emb", tf.reshape(emb, [batch, c.gridSide * c.gridSide, c.tokenDim]));
      const pe = patchEmbed(p, emb, this.#front);
      rec?.("act_patch_embed", tf.reshape(pe, [batch, l, c.embedDim]));
      const maskF = new Float32Array(batch * l);
      for (let i = 0; i < maskF.length; i++) maskF[i] = plan.masked[i];
      const maskCol = tf.tensor2d(maskF, [batch * l, 1]);
      const mtl = tf.reshape(p.get("mask_token_label"), [1, c.embedDim]);
      const substituted = tf.add(tf.mul(pe, tf.sub(1, maskCol)), tf.mul(maskCol, mtl));
      const pos = p.get("pos_embed");
      const posPatches = tf.slice(pos, [0, 1, 0], [1, l, c.embedDim]);
      const withPos = tf.reshape(
        tf.add(tf.reshape(substituted, [batch, l, c.embedDim]), posPatches),
        [batch * l, c.embedDim],
      );
      const cls = tf.add(
        tf.reshape(p.get("cls_token"), [1, c.embedDim]),
        tf.reshape(tf.slice(pos, [0, 0, 0], [1, 1, c.embedDim]), [1, c.embedDim]),
      );
      const idx = new Int32Array(batch * (1 + kept));
      for (let b = 0; b < batch; b++) {
        idx[b * (1 + kept)] = batch * l;
        for (let j = 0; j < kept; j++) {
          idx[b * (1 + kept) + 1 + j] = b * l + plan.kept[b * kept + j];
        }
      }
      let x = gatherRows(concatRows(withPos as tf.Tensor2D, cls as tf.Tensor2D), idx);
      rec?.("act_encoder_input", tf.reshape(x, [batch, 1 + kept, c.embedDim]));
      for (let i = 0; i < c.depth; i++) {
        x = blockForward(p, `blocks.${i}`, this.#enc, x, batch, {
          eps: c.normEps,
          dropout: c.encoderDropout,
          attnDropout: c.encoderAttnDropout,
          dropPath: 0,
          training,
          rng: options.rng,
        });
      }
      const latent = tf.reshape(applyLayerNorm(p, "norm", x, c.normEps), [
        batch,
        1 + kept,
        c.embedDim,
      ]);
      rec?.("latent", latent);
      return latent as tf.Tensor3D;
    });
  }

  /**
   * Decoder and MLM output layer: embed the latent, put the decoded CLS row at every
   * masked position, add the learned positions, run the blocks and norm, then per patch
   * Linear -> p x p tokens -> GELU -> LayerNorm -> tied (detached) embedding + bias.
   *
   * @param latent `[B, 1 + L - numDropped, D]` from {@linkcode MtmModel.forwardEncoder}
   * @param plan the same masking
   * @param options training, rng, record
   * @returns logits `[B, m*m, K]` float32, owned by the caller
   */
  forwardDecoder(latent: tf.Tensor3D, plan: MaskPlan, options: MtmRunOptions = {}): tf.Tensor3D {
    const c = this.config;
    const batch = latent.shape[0];
    this.#checkPlan(plan, batch);
    const training = options.training ?? false;
    const rec = options.record;
    const l = this.numPatches;
    const kept = l - plan.numDropped;
    if (latent.shape[1] !== 1 + kept || latent.shape[2] !== c.embedDim) {
      throw new TypeError(
        `Cannot decode latent [${latent.shape}]: expected [${batch}, ${1 + kept}, ${c.embedDim}]`,
      );
    }
    return tf.tidy(() => {
      const p = this.params;
      const dd = c.decoderEmbedDim;
      const emb = applyLinear(
        p,
        "decoder_embed",
        tf.reshape(latent, [batch * (1 + kept), c.embedDim]),
      );
      rec?.("act_decoder_embed", tf.reshape(emb, [batch, 1 + kept, dd]));
      // Source row of each decoder position: CLS for row 0 and for masked patches,
      // else the patch's row among the kept ones.
      const idx = new Int32Array(batch * (1 + l));
      for (let b = 0; b < batch; b++) {
        const base = b * (1 + kept);
        idx[b * (1 + l)] = base;
        let r = 0;
        for (let i = 0; i < l; i++) {
          const dropped = plan.dropped[b * l + i] === 1;
          idx[b * (1 + l) + 1 + i] = plan.masked[b * l + i] ? base : base + 1 + r;
          if (!dropped) r++;
        }
      }
      const full = gatherRows(emb, idx);
      let x = tf.reshape(
        tf.add(tf.reshape(full, [batch, 1 + l, dd]), p.get("decoder_pos_embed_learned")),
        [batch * (1 + l), dd],
      ) as tf.Tensor2D;
      rec?.("act_decoder_input", tf.reshape(x, [batch, 1 + l, dd]));
      for (let i = 0; i < c.decoderDepth; i++) {
        x = blockForward(p, `decoder_blocks.${i}`, this.#dec, x, batch, {
          eps: c.normEps,
          dropout: c.decoderDropout,
          attnDropout: c.decoderAttnDropout,
          dropPath: 0,
          training,
          rng: options.rng,
        });
      }
      const normed = applyLayerNorm(p, "decoder_norm", x, c.normEps);
      rec?.("act_decoder_norm", tf.reshape(normed, [batch, 1 + l, dd]));
      const rows = new Int32Array(batch * l);
      for (let b = 0; b < batch; b++) {
        for (let i = 0; i < l; i++) rows[b * l + i] = b * (1 + l) + 1 + i;
      }
      const patches = applyLinear(p, "mlm_layer.fc", gatherRows(normed, rows));
      const tokens = gelu(unpatchify(patches, c.gridSide, c.patchSize));
      const h = layerNorm(
        tokens,
        p.get("mlm_layer.ln.weight") as tf.Tensor1D,
        p.get("mlm_layer.ln.bias") as tf.Tensor1D,
        c.mlmNormEps,
      );
      const logits = linearDetachedWeight(
        h,
        p.get("token_emb.word_embeddings.weight") as tf.Tensor2D,
        tf.reshape(p.get("mlm_layer.bias"), [c.codebookSize]) as tf.Tensor1D,
      );
      return tf.reshape(logits, [batch, c.gridSide * c.gridSide, c.codebookSize]) as tf.Tensor3D;
    });
  }

  /**
   * The loss: per-token CE with label smoothing (or BCE against one-hot), averaged over
   * each patch's p*p tokens, then over the masked patches.
   *
   * @param logits `[B, m*m, K]`
   * @param codes `[B, m, m]` int32 targets (the input codes)
   * @param plan the masking (which patches count)
   * @param options `labelSmoothing` / `bceLoss` overrides of the config
   * @returns the scalar loss and per-token / per-patch losses, owned by the caller
   */
  forwardLoss(
    logits: tf.Tensor3D,
    codes: tf.Tensor3D,
    plan: MaskPlan,
    options: { labelSmoothing?: number; bceLoss?: boolean } = {},
  ): MtmLoss {
    const c = this.config;
    const batch = codes.shape[0];
    this.#checkPlan(plan, batch);
    const bce = options.bceLoss ?? c.bceLoss;
    const s = options.labelSmoothing ?? c.labelSmoothing;
    const mm = c.gridSide * c.gridSide;
    const l = this.numPatches;
    return tf.tidy(() => {
      const targets = flattenCodes(codes, this.#front);
      const x = tf.reshape(logits, [batch * mm, c.codebookSize]) as tf.Tensor2D;
      const perToken = bce ? bceOneHotRows(x, targets) : softmaxCrossEntropyRows(x, targets, s);
      const perPatch = tf.mean(
        patchify(tf.reshape(perToken, [batch * mm, 1]), c.gridSide, c.patchSize),
        -1,
      );
      const maskF = new Float32Array(batch * l);
      for (let i = 0; i < maskF.length; i++) maskF[i] = plan.masked[i];
      const count = batch * plan.numMasked;
      const loss = tf.div(tf.sum(tf.mul(perPatch, tf.tensor1d(maskF))), count) as tf.Scalar;
      return {
        loss,
        tokenLoss: tf.reshape(perToken, [batch, mm]) as tf.Tensor2D,
        patchLoss: tf.reshape(perPatch, [batch, l]) as tf.Tensor2D,
      };
    });
  }

  /**
   * Mask, encode, decode, score.
   *
   * @param codes `[B, m, m]` int32 codes in [0, K)
   * @param options plan or rng, training, loss overrides, record
   * @returns `{ loss, logits, mask, plan }` (tensors owned by the caller)
   * @throws {TypeError} without a plan and without an rng, or for wrong shapes
   */
  forward(codes: tf.Tensor3D, options: MtmForwardOptions = {}): MtmOutput {
    const plan = options.plan ?? this.randomMasking(codes.shape[0], requireRng(options.rng));
    const out = tf.tidy(() => {
      const logits = this.forwardDecoder(this.forwardEncoder(codes, plan, options), plan, options);
      const { loss } = this.forwardLoss(logits, codes, plan, options);
      const maskF = new Float32Array(plan.masked.length);
      for (let i = 0; i < maskF.length; i++) maskF[i] = plan.masked[i];
      const mask = tf.tensor2d(maskF, [plan.batch, plan.numPatches]);
      return { loss, logits, mask };
    });
    return { ...out, plan };
  }

  /** Dispose every parameter. */
  dispose(): void {
    this.params.dispose();
  }
}

function requireRng(rng: Rng | undefined): Rng {
  if (rng === undefined) {
    throw new TypeError("Cannot draw a masking without an Rng: pass options.rng or options.plan");
  }
  return rng;
}
