/**
 * The token classifier of SeiT / SeiT++ fine-tuning (REFERENCE.md section 5): the MTM
 * front end (token embedding + LayerNorm + dropout, patch conv), a CLS token, a learned
 * position table initialized from the 2-D sin-cos table, ViT blocks with stochastic
 * depth, then global average pooling of the non-CLS outputs (or the CLS output),
 * LayerNorm and a linear head.
 *
 * Eval takes the central m x m crop of the stored n x n grid: that crop is the data
 * pipeline's job; this model takes `[B, m, m]` codes.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";
import {
  checkVitShape,
  type FieldRule,
  POS_INT,
  PROB,
  resolveFields,
  VIT_CLASSIFIER_RULES,
} from "./_config.ts";
import { sincos2d, truncNormal } from "./init.ts";
import { type LoadReport, ParamStore } from "./params.ts";
import {
  addPatchEmbed,
  addTokenEmbedding,
  embedTokens,
  flattenCodes,
  patchEmbed,
  type TokenFrontSpec,
} from "./token_embed.ts";
import type { RecordFn } from "./mtm.ts";
import {
  addBlock,
  addLayerNorm,
  applyLinear,
  encoderFeatures,
  type EncoderSpec,
  encoderSpecOf,
  type LinearInit,
  tokenInit,
} from "./vit.ts";

/** Token classifier configuration; {@linkcode resolveClassifierConfig} fills the defaults. */
export interface ClassifierConfig {
  /** Token grid side m fed to the model. @default {28} */
  gridSide?: number;
  /** Patch side p in tokens. @default {2} */
  patchSize?: number;
  /** Codebook size K. @default {391} */
  codebookSize?: number;
  /** Token embedding width d. @default {32} */
  tokenDim?: number;
  /** Number of classes. @default {1000} */
  numClasses?: number;
  /** Width D (divisible by numHeads and by 4). @default {768} */
  embedDim?: number;
  /** Blocks. @default {12} */
  depth?: number;
  /** Attention heads. @default {12} */
  numHeads?: number;
  /** MLP hidden width / width. @default {4} */
  mlpRatio?: number;
  /** Bias on qkv. @default {true} */
  qkvBias?: boolean;
  /** LayerNorm epsilon everywhere. @default {1e-6} */
  normEps?: number;
  /** Dropout after the token embedding LayerNorm. @default {0.1} */
  embedDropout?: number;
  /** Dropout after adding positions and inside blocks (timm drop_rate). @default {0} */
  dropout?: number;
  /** Attention dropout. @default {0} */
  attnDropout?: number;
  /** Stochastic depth of the last block (linear from 0). @default {0.1} */
  dropPath?: number;
  /** Average the non-CLS outputs (true) or use the CLS output (false). @default {true} */
  globalPool?: boolean;
  /** Linear init of the blocks for a model trained from scratch. @default {"trunc_normal"} (timm ViT) */
  linearInit?: LinearInit;
  /** Std of the head init (trunc normal). @default {2e-5} (MAE fine-tuning; timm's from-scratch init is 0.02) */
  headInitStd?: number;
  /**
   * Init of the learned position table: the fixed 2-D sin-cos table (MAE fine-tuning) or
   * trunc-normal std 0.02 (timm's from-scratch init). @default {"sincos"}
   */
  posEmbedInit?: "sincos" | "trunc_normal";
}

/** A fully resolved {@linkcode ClassifierConfig} (plain JSON). */
export type ResolvedClassifierConfig = Required<ClassifierConfig>;

const CLS_DEFAULTS: ResolvedClassifierConfig = {
  gridSide: 28,
  patchSize: 2,
  codebookSize: 391,
  tokenDim: 32,
  numClasses: 1000,
  embedDim: 768,
  depth: 12,
  numHeads: 12,
  mlpRatio: 4,
  qkvBias: true,
  normEps: 1e-6,
  embedDropout: 0.1,
  dropout: 0,
  attnDropout: 0,
  dropPath: 0.1,
  globalPool: true,
  linearInit: "trunc_normal",
  headInitStd: 2e-5,
  posEmbedInit: "sincos",
};

const CLS_RULES: { [K in keyof ResolvedClassifierConfig]: FieldRule } = {
  ...VIT_CLASSIFIER_RULES,
  gridSide: POS_INT,
  patchSize: POS_INT,
  codebookSize: { kind: "int", min: 2 },
  tokenDim: POS_INT,
  embedDropout: PROB,
  posEmbedInit: { kind: "enum", values: ["sincos", "trunc_normal"] },
};

/**
 * Fill defaults and validate a {@linkcode ClassifierConfig}.
 * @param config overrides (unknown keys are refused)
 * @returns the resolved config
 * @throws {TypeError} for an unknown field or a wrong type
 * @throws {RangeError} for inconsistent or out-of-range values
 */
export function resolveClassifierConfig(config: ClassifierConfig = {}): ResolvedClassifierConfig {
  const what = "ClassifierConfig";
  const c = resolveFields<ResolvedClassifierConfig>(what, config, CLS_DEFAULTS, CLS_RULES);
  checkVitShape(what, c, "gridSide", c.gridSide);
  return c;
}

/** The prefixes a classifier takes from an MTM state dict (REFERENCE.md section 5). */
export const CLASSIFIER_FROM_MTM_PREFIXES: readonly string[] = [
  "token_emb.",
  "patch_embed.",
  "cls_token",
  "pos_embed",
  "blocks.",
  "norm.",
];

/** Options of {@linkcode TokenClassifier.forward}. */
export interface ClassifierRunOptions {
  /** Training mode: dropout and drop path active. @default {false} */
  training?: boolean;
  /** Generator for dropout / drop path (required in training). */
  rng?: Rng;
  /**
   * Receives `act_patch_embed` `[B, L, D]`, `pooled_before_norm` `[B, D]` and
   * `features` `[B, D]`; they are disposed after the call.
   */
  record?: RecordFn;
}

/**
 * A ViT classifier on token codes.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { classifierTiny, TokenClassifier } from "@lib/models";
 * import { Rng } from "@lib/random";
 * const model = new TokenClassifier(classifierTiny({ numClasses: 10 }), new Rng(0));
 * const codes = tf.zeros([2, 8, 8], "int32") as tf.Tensor3D;
 * const logits = model.forward(codes);
 * console.assert(logits.shape.join() === "2,10");
 * tf.dispose([codes, logits]);
 * model.dispose();
 * ```
 */
export class TokenClassifier {
  /** The resolved configuration. */
  readonly config: ResolvedClassifierConfig;
  /** Parameters by reference name (all trainable, `pos_embed` included). */
  readonly params: ParamStore;
  /** Patches per sample L. */
  readonly numPatches: number;
  readonly #front: TokenFrontSpec;
  readonly #encoder: EncoderSpec;

  /**
   * Build and initialize (blocks per `linearInit`, zero biases, LayerNorm 1/0, CLS
   * N(0, 0.02), positions = the sin-cos table, embedding N(0, 0.02), patch conv
   * PyTorch's default, head trunc-normal with `headInitStd`).
   *
   * @param config overrides of the defaults
   * @param rng generator for the initial values
   */
  constructor(config: ClassifierConfig, rng: Rng) {
    const c = resolveClassifierConfig(config);
    this.config = c;
    const grid = c.gridSide / c.patchSize;
    this.numPatches = grid * grid;
    this.#front = c;
    this.#encoder = encoderSpecOf(c);
    const block = this.#encoder.block;
    const p = new ParamStore("cls");
    this.params = p;
    p.add("cls_token", tokenInit(c.embedDim, 0.02, rng));
    const posLen = (1 + this.numPatches) * c.embedDim;
    p.add(
      "pos_embed",
      tf.tensor3d(
        c.posEmbedInit === "trunc_normal"
          ? truncNormal(posLen, 0.02, rng)
          : sincos2d(c.embedDim, grid, true),
        [1, 1 + this.numPatches, c.embedDim],
      ),
    );
    addPatchEmbed(p, c.tokenDim, c.embedDim, c.patchSize, rng);
    for (let i = 0; i < c.depth; i++) addBlock(p, `blocks.${i}`, block, c.linearInit, rng);
    addLayerNorm(p, "norm", c.embedDim);
    p.add(
      "head.weight",
      tf.tensor2d(truncNormal(c.embedDim * c.numClasses, c.headInitStd, rng), [
        c.embedDim,
        c.numClasses,
      ]),
      { shape: [c.numClasses, c.embedDim], layout: "linear" },
    );
    p.add("head.bias", tf.zeros([c.numClasses]));
    addTokenEmbedding(p, c, rng);
  }

  /**
   * Load the encoder from an MTM state dict: `token_emb.*`, `patch_embed.*`,
   * `cls_token`, `pos_embed`, `blocks.*`, `norm.*`. Everything else in the dict
   * (decoder, MLM layer, mask token, TokenAdapt) is reported unexpected; the head (and
   * anything else not found) is reported missing. Shape mismatches (e.g. another grid:
   * no position interpolation here) are reported and not loaded.
   *
   * @param mtmState PyTorch-layout tensors by reference name
   * @returns the load report
   */
  loadFromMtm(mtmState: Map<string, HostTensor>): LoadReport {
    const wanted = (n: string) =>
      CLASSIFIER_FROM_MTM_PREFIXES.some((pre) => n === pre || n.startsWith(pre));
    const usable = new Map([...mtmState].filter(([n]) => wanted(n)));
    const report = this.params.loadStateDict(usable);
    report.unexpected.push(
      ...[...mtmState.keys()].filter((n) => !wanted(n) || !this.params.has(n)),
    );
    report.unexpected = [...new Set(report.unexpected)];
    return report;
  }

  /**
   * Features before the head: blocks, pooling, final norm.
   *
   * @param codes `[B, m, m]` int32 codes in [0, K)
   * @param options training, rng, record
   * @returns `[B, D]` float32, owned by the caller
   */
  forwardFeatures(codes: tf.Tensor3D, options: ClassifierRunOptions = {}): tf.Tensor2D {
    const c = this.config;
    const batch = codes.shape[0];
    const training = options.training ?? false;
    return tf.tidy(() => {
      const p = this.params;
      const emb = embedTokens(
        p,
        flattenCodes(codes, this.#front),
        c.normEps,
        training ? c.embedDropout : 0,
        options.rng,
      );
      const pe = patchEmbed(p, emb, this.#front);
      return encoderFeatures(p, pe, batch, this.#encoder, {
        training,
        rng: options.rng,
        record: options.record,
      });
    });
  }

  /**
   * Class logits.
   * @param codes `[B, m, m]` int32 codes in [0, K)
   * @param options training, rng, record
   * @returns `[B, numClasses]` float32, owned by the caller
   */
  forward(codes: tf.Tensor3D, options: ClassifierRunOptions = {}): tf.Tensor2D {
    return tf.tidy(() => applyLinear(this.params, "head", this.forwardFeatures(codes, options)));
  }

  /** Dispose every parameter. */
  dispose(): void {
    this.params.dispose();
  }
}
