/**
 * A ViT on raw pixels, the baseline of the storage study: patch conv on `[B, C, H, W]`
 * images (run as one matMul over patches), CLS token, learned positions initialized
 * from the sin-cos table, the same blocks as the token models, pooling, norm, head.
 * Parameter names follow timm's VisionTransformer.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import {
  checkVitShape,
  type FieldRule,
  POS_INT,
  resolveFields,
  VIT_CLASSIFIER_RULES,
} from "./_config.ts";
import { sincos2d, truncNormal } from "./init.ts";
import { linear } from "./ops.ts";
import { ParamStore } from "./params.ts";
import type { RecordFn } from "./mtm.ts";
import { addPatchEmbed, patchify } from "./token_embed.ts";
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

/** Pixel ViT configuration; {@linkcode resolvePixelVitConfig} fills the defaults. */
export interface PixelVitConfig {
  /** Square image side H = W. @default {28} */
  imageSize?: number;
  /** Image channels C. @default {1} */
  channels?: number;
  /** Patch side P in pixels (imageSize divisible by it). @default {4} */
  patchSize?: number;
  /** Number of classes. @default {10} */
  numClasses?: number;
  /** Width D (divisible by numHeads and by 4). @default {192} */
  embedDim?: number;
  /** Blocks. @default {4} */
  depth?: number;
  /** Heads. @default {3} */
  numHeads?: number;
  /** MLP hidden width / width. @default {4} */
  mlpRatio?: number;
  /** Bias on qkv. @default {true} */
  qkvBias?: boolean;
  /** LayerNorm epsilon. @default {1e-6} */
  normEps?: number;
  /** Dropout after adding positions and inside blocks. @default {0} */
  dropout?: number;
  /** Attention dropout. @default {0} */
  attnDropout?: number;
  /** Stochastic depth of the last block. @default {0.1} */
  dropPath?: number;
  /** Average the non-CLS outputs (true) or use CLS (false). @default {true} */
  globalPool?: boolean;
  /** Linear init of the blocks. @default {"trunc_normal"} */
  linearInit?: LinearInit;
  /** Std of the head init. @default {0.02} */
  headInitStd?: number;
}

/** A fully resolved {@linkcode PixelVitConfig} (plain JSON). */
export type ResolvedPixelVitConfig = Required<PixelVitConfig>;

const DEFAULTS: ResolvedPixelVitConfig = {
  imageSize: 28,
  channels: 1,
  patchSize: 4,
  numClasses: 10,
  embedDim: 192,
  depth: 4,
  numHeads: 3,
  mlpRatio: 4,
  qkvBias: true,
  normEps: 1e-6,
  dropout: 0,
  attnDropout: 0,
  dropPath: 0.1,
  globalPool: true,
  linearInit: "trunc_normal",
  headInitStd: 0.02,
};

const RULES: { [K in keyof ResolvedPixelVitConfig]: FieldRule } = {
  ...VIT_CLASSIFIER_RULES,
  imageSize: POS_INT,
  channels: POS_INT,
  patchSize: POS_INT,
};

/**
 * Fill defaults and validate a {@linkcode PixelVitConfig}.
 * @param config overrides (unknown keys are refused)
 * @returns the resolved config
 * @throws {TypeError} for an unknown field or a wrong type
 * @throws {RangeError} for inconsistent or out-of-range values
 */
export function resolvePixelVitConfig(config: PixelVitConfig = {}): ResolvedPixelVitConfig {
  const what = "PixelVitConfig";
  const c = resolveFields<ResolvedPixelVitConfig>(what, config, DEFAULTS, RULES);
  checkVitShape(what, c, "imageSize", c.imageSize);
  return c;
}

/** Options of {@linkcode PixelVit.forward}. */
export interface PixelVitRunOptions {
  /** Training mode. @default {false} */
  training?: boolean;
  /** Generator for dropout / drop path. */
  rng?: Rng;
  /** Receives `act_patch_embed`, `pooled_before_norm`, `features` (disposed after the call). */
  record?: RecordFn;
}

/**
 * A small ViT on pixels.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { PixelVit } from "@lib/models";
 * import { Rng } from "@lib/random";
 * const model = new PixelVit({ embedDim: 32, depth: 1, numHeads: 2 }, new Rng(0));
 * const images = tf.zeros([2, 1, 28, 28]) as tf.Tensor4D;
 * const logits = model.forward(images);
 * console.assert(logits.shape.join() === "2,10");
 * tf.dispose([images, logits]);
 * model.dispose();
 * ```
 */
export class PixelVit {
  /** The resolved configuration. */
  readonly config: ResolvedPixelVitConfig;
  /** Parameters by timm's names. */
  readonly params: ParamStore;
  /** Patches per image L. */
  readonly numPatches: number;
  readonly #encoder: EncoderSpec;

  /**
   * Build and initialize (blocks per `linearInit`, zero biases, LayerNorm 1/0, CLS
   * N(0, 0.02), positions = the sin-cos table, patch conv PyTorch's default, head
   * trunc-normal with `headInitStd`).
   * @param config overrides of the defaults
   * @param rng generator for the initial values
   */
  constructor(config: PixelVitConfig, rng: Rng) {
    const c = resolvePixelVitConfig(config);
    this.config = c;
    const grid = c.imageSize / c.patchSize;
    this.numPatches = grid * grid;
    this.#encoder = encoderSpecOf(c);
    const block = this.#encoder.block;
    const p = new ParamStore("pixel_vit");
    this.params = p;
    p.add("cls_token", tokenInit(c.embedDim, 0.02, rng));
    p.add(
      "pos_embed",
      tf.tensor3d(sincos2d(c.embedDim, grid, true), [1, 1 + this.numPatches, c.embedDim]),
    );
    addPatchEmbed(p, c.channels, c.embedDim, c.patchSize, rng);
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
  }

  /**
   * Features before the head.
   * @param images `[B, C, H, W]` float32
   * @param options training, rng, record
   * @returns `[B, D]` float32, owned by the caller
   * @throws {TypeError} for a wrong image shape
   */
  forwardFeatures(images: tf.Tensor4D, options: PixelVitRunOptions = {}): tf.Tensor2D {
    const c = this.config;
    const [batch, ch, h, w] = images.shape;
    if (images.rank !== 4 || ch !== c.channels || h !== c.imageSize || w !== c.imageSize) {
      throw new TypeError(
        `Cannot run a pixel ViT on [${images.shape}]: expected [B, ${c.channels}, ${c.imageSize}, ${c.imageSize}]`,
      );
    }
    const training = options.training ?? false;
    return tf.tidy(() => {
      const p = this.params;
      const nhwc = tf.reshape(tf.transpose(tf.cast(images, "float32"), [0, 2, 3, 1]), [
        batch * h * w,
        ch,
      ]);
      const pe = linear(
        patchify(nhwc as tf.Tensor2D, c.imageSize, c.patchSize),
        p.get("patch_embed.proj.weight") as tf.Tensor2D,
        p.get("patch_embed.proj.bias") as tf.Tensor1D,
      );
      return encoderFeatures(p, pe, batch, this.#encoder, {
        training,
        rng: options.rng,
        record: options.record,
      });
    });
  }

  /**
   * Class logits.
   * @param images `[B, C, H, W]` float32
   * @param options training, rng, record
   * @returns `[B, numClasses]` float32, owned by the caller
   */
  forward(images: tf.Tensor4D, options: PixelVitRunOptions = {}): tf.Tensor2D {
    return tf.tidy(() => applyLinear(this.params, "head", this.forwardFeatures(images, options)));
  }

  /** Dispose every parameter. */
  dispose(): void {
    this.params.dispose();
  }
}
