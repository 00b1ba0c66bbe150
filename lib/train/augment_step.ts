/**
 * The training-step augmentation of SeiT++ (REFERENCE.md section 6), for both phases:
 *
 * 1. codes `[B, n, n]` -> codebook embeddings `[B, d, n, n]` (the fixed release codebook);
 * 2. the colour step on the whole batch: Emb-Noise or ColorAdapt (with both on, one choice
 *    per batch: Noise with probability `noiseChoice`, else ColorAdapt);
 * 3. the batch splits in halves. First half (TokenAdapt): f -> geometric augmentation to
 *    `2m x 2m` -> Mixup/CutMix in TokenAdapt space -> g -> codes -> embeddings `[B/2, d, m, m]`.
 *    Second half (base): token RRC to `m` -> CutMix;
 * 4. concatenate, `convertToCodes`: the model's input codes `[B, m, m]`, with soft targets
 *    `[B, K]` (label-smoothed, mixed per half) when fine-tuning.
 *
 * Every part is a config switch, so the ablation {none, ColorAdapt, TokenAdapt, both} is a
 * config change ({@linkcode augmentStepAblation}): with TokenAdapt off the whole batch takes
 * the base path; with ColorAdapt off the colour step is Emb-Noise alone (Emb-Noise is a SeiT
 * augmentation, present in the baseline). Every random draw comes from the `Rng` handed in;
 * the TokenAdapt networks are frozen (no gradient flows through the step: g ends in argmax).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { type CodeQuantizer, randomResizedCrop } from "../tokens/mod.ts";
import {
  applyGeometric,
  colorAdapt,
  createMixup,
  drawGeometricParams,
  embNoise,
  type GeometricAugConfig,
  type Mixup,
  type ResolvedGeometricAugConfig,
  resolveGeometricAugConfig,
  type TokenAdapt,
} from "../adapters/mod.ts";
import { smoothedOneHot } from "./targets.ts";
import type { AugmentHook, AugmentInput, AugmentOutput } from "./pretrain.ts";

/** Mixup/CutMix settings of one half (timm `Mixup` arguments). */
export interface HalfMixConfig {
  /** Mixup's Beta alpha; 0 = no Mixup. */
  mixupAlpha: number;
  /** CutMix's Beta alpha; 0 = no CutMix. */
  cutmixAlpha: number;
  /** Probability that the half is mixed. @default {1} */
  prob?: number;
  /** With both alphas > 0: probability of CutMix. @default {0.5} */
  switchProb?: number;
}

/** Settings of the augmentation step. */
export interface AugmentStepConfig {
  /** Model grid side m. @default {28} */
  size?: number;
  /** Send the first half of the batch through TokenAdapt. @default {true} */
  tokenAdapt?: boolean;
  /** ColorAdapt in the colour step. @default {true} */
  colorAdapt?: boolean;
  /** Emb-Noise in the colour step. @default {true} */
  noise?: boolean;
  /** With both colour transforms on: probability of Noise (else ColorAdapt) per batch. @default {0.75} */
  noiseChoice?: number;
  /** Fraction of the batch ColorAdapt replaces. @default {0.5} */
  colorAdaptProb?: number;
  /** Fraction of the batch Emb-Noise touches. @default {0.5} */
  noiseProb?: number;
  /** Emb-Noise per-channel scale. @default {1} */
  noiseScale?: number;
  /** Emb-Noise per-element std. @default {1} */
  noiseStd?: number;
  /** Area range of the base half's RRC (0.2 in pre-training, 0.08 in fine-tuning). @default {[0.08, 1]} */
  rrcScale?: [number, number];
  /** Aspect range of the RRCs. @default {[0.75, 1.3333333333333333]} */
  rrcRatio?: [number, number];
  /** TokenAdapt's geometric augmentation (its crop range defaults to `rrcScale`). @default {{}} */
  geometric?: GeometricAugConfig;
  /** Mixing of the base half; `null` = none. @default {{ mixupAlpha: 0, cutmixAlpha: 1 }} */
  baseMix?: HalfMixConfig | null;
  /** Mixing in TokenAdapt space; `null` = none. @default {{ mixupAlpha: 0.8, cutmixAlpha: 1 }} */
  tokenAdaptMix?: HalfMixConfig | null;
  /** Label smoothing of the soft targets. @default {0.1} */
  labelSmoothing?: number;
  /** Classes of the soft targets; `null` = no targets and no mixing (pre-training). @default {null} */
  numClasses?: number | null;
  /** Samples per TokenAdapt forward pass (bounds memory: f attends over n*n tokens). @default {8} */
  chunk?: number;
}

/** An {@linkcode AugmentStepConfig} with every field set (plain JSON). */
export interface ResolvedAugmentStepConfig {
  /** Model grid side m. */
  size: number;
  /** TokenAdapt on the first half. */
  tokenAdapt: boolean;
  /** ColorAdapt in the colour step. */
  colorAdapt: boolean;
  /** Emb-Noise in the colour step. */
  noise: boolean;
  /** Probability of Noise when both are on. */
  noiseChoice: number;
  /** ColorAdapt fraction. */
  colorAdaptProb: number;
  /** Emb-Noise fraction. */
  noiseProb: number;
  /** Emb-Noise scale. */
  noiseScale: number;
  /** Emb-Noise std. */
  noiseStd: number;
  /** Base RRC area range. */
  rrcScale: [number, number];
  /** RRC aspect range. */
  rrcRatio: [number, number];
  /** TokenAdapt geometric augmentation. */
  geometric: ResolvedGeometricAugConfig;
  /** Base-half mixing or null. */
  baseMix: Required<HalfMixConfig> | null;
  /** TokenAdapt-half mixing or null. */
  tokenAdaptMix: Required<HalfMixConfig> | null;
  /** Label smoothing. */
  labelSmoothing: number;
  /** Classes or null. */
  numClasses: number | null;
  /** TokenAdapt chunk. */
  chunk: number;
}

const KEYS = [
  "size",
  "tokenAdapt",
  "colorAdapt",
  "noise",
  "noiseChoice",
  "colorAdaptProb",
  "noiseProb",
  "noiseScale",
  "noiseStd",
  "rrcScale",
  "rrcRatio",
  "geometric",
  "baseMix",
  "tokenAdaptMix",
  "labelSmoothing",
  "numClasses",
  "chunk",
];

function resolveMix(
  m: HalfMixConfig | null | undefined,
  def: HalfMixConfig,
): Required<HalfMixConfig> | null {
  if (m === null) return null;
  const v = m ?? def;
  return { prob: 1, switchProb: 0.5, ...v };
}

/**
 * Fill in defaults and validate.
 * @param config partial settings
 * @returns the resolved settings
 * @throws {TypeError} for an unknown key or wrong type
 * @throws {RangeError} for out-of-range values
 */
export function resolveAugmentStepConfig(
  config: AugmentStepConfig = {},
): ResolvedAugmentStepConfig {
  for (const k of Object.keys(config)) {
    if (!KEYS.includes(k)) {
      throw new TypeError(`Unknown augmentation step key "${k}"; known keys: ${KEYS.join(", ")}`);
    }
  }
  const rrcScale = config.rrcScale ?? [0.08, 1];
  const rrcRatio = config.rrcRatio ?? [3 / 4, 4 / 3];
  const c: ResolvedAugmentStepConfig = {
    size: config.size ?? 28,
    tokenAdapt: config.tokenAdapt ?? true,
    colorAdapt: config.colorAdapt ?? true,
    noise: config.noise ?? true,
    noiseChoice: config.noiseChoice ?? 0.75,
    colorAdaptProb: config.colorAdaptProb ?? 0.5,
    noiseProb: config.noiseProb ?? 0.5,
    noiseScale: config.noiseScale ?? 1,
    noiseStd: config.noiseStd ?? 1,
    rrcScale: [rrcScale[0], rrcScale[1]],
    rrcRatio: [rrcRatio[0], rrcRatio[1]],
    geometric: resolveGeometricAugConfig({
      cropScale: [rrcScale[0], rrcScale[1]],
      cropRatio: [rrcRatio[0], rrcRatio[1]],
      ...config.geometric,
    }),
    baseMix: resolveMix(config.baseMix, { mixupAlpha: 0, cutmixAlpha: 1 }),
    tokenAdaptMix: resolveMix(config.tokenAdaptMix, { mixupAlpha: 0.8, cutmixAlpha: 1 }),
    labelSmoothing: config.labelSmoothing ?? 0.1,
    numClasses: config.numClasses ?? null,
    chunk: config.chunk ?? 8,
  };
  for (const k of ["tokenAdapt", "colorAdapt", "noise"] as const) {
    if (typeof c[k] !== "boolean") {
      throw new TypeError(
        `Augmentation step key "${k}": expected a boolean, got ${JSON.stringify(c[k])}`,
      );
    }
  }
  for (const k of ["noiseChoice", "colorAdaptProb", "noiseProb"] as const) {
    if (!(c[k] >= 0 && c[k] <= 1)) {
      throw new RangeError(`Augmentation step key "${k}": ${c[k]} is not in [0, 1]`);
    }
  }
  if (!(c.labelSmoothing >= 0 && c.labelSmoothing < 1)) {
    throw new RangeError(`Augmentation step labelSmoothing ${c.labelSmoothing}: expected [0, 1)`);
  }
  for (const k of ["size", "chunk"] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) {
      throw new RangeError(`Augmentation step key "${k}": ${c[k]} is not an integer >= 1`);
    }
  }
  if (c.numClasses !== null && (!Number.isInteger(c.numClasses) || c.numClasses < 1)) {
    throw new RangeError(
      `Augmentation step numClasses ${c.numClasses}: expected an integer >= 1 or null`,
    );
  }
  if (!(c.rrcScale[0] > 0 && c.rrcScale[0] <= c.rrcScale[1] && c.rrcScale[1] <= 1)) {
    throw new RangeError(`Augmentation step rrcScale [${c.rrcScale}]: expected 0 < lo <= hi <= 1`);
  }
  if (!(c.noiseScale >= 0 && c.noiseStd >= 0)) {
    throw new RangeError(`Augmentation step noiseScale/noiseStd must be >= 0`);
  }
  return c;
}

/**
 * Fine-tuning settings (REFERENCE.md section 5): colour step Noise 0.75 / ColorAdapt 0.25,
 * RRC area [0.08, 1], CutMix 1.0 on the base half, Mixup 0.8 / CutMix 1.0 in TokenAdapt space,
 * label smoothing 0.1.
 * @param numClasses classes of the soft targets
 * @param size model grid side m
 * @returns the resolved settings
 */
export function augmentStepFinetune(numClasses: number, size = 28): ResolvedAugmentStepConfig {
  return resolveAugmentStepConfig({ numClasses, size });
}

/**
 * Pre-training settings: no colour step, RRC area [0.2, 1], no mixing, no targets.
 * @param size model grid side m
 * @returns the resolved settings
 */
export function augmentStepPretrain(size = 28): ResolvedAugmentStepConfig {
  return resolveAugmentStepConfig({
    size,
    colorAdapt: false,
    noise: false,
    rrcScale: [0.2, 1],
    baseMix: null,
    tokenAdaptMix: null,
  });
}

/** The four arms of the SeiT++ ablation. */
export type AblationArm = "none" | "coloradapt" | "tokenadapt" | "both";

/**
 * One arm of the ablation {none, ColorAdapt, TokenAdapt, both}: the given settings with
 * TokenAdapt and ColorAdapt switched (Emb-Noise and the base path are kept).
 * @param base the settings of the full method
 * @param arm which components stay on
 * @returns the resolved settings
 * @throws {RangeError} for an unknown arm
 */
export function augmentStepAblation(
  base: AugmentStepConfig,
  arm: AblationArm,
): ResolvedAugmentStepConfig {
  if (!["none", "coloradapt", "tokenadapt", "both"].includes(arm)) {
    throw new RangeError(
      `Unknown ablation arm "${arm}": expected none, coloradapt, tokenadapt or both`,
    );
  }
  return resolveAugmentStepConfig({
    ...base,
    tokenAdapt: arm === "tokenadapt" || arm === "both",
    colorAdapt: arm === "coloradapt" || arm === "both",
  });
}

/** What was drawn in one application (plain JSON), for logs and galleries. */
export interface AugmentStepRecord {
  /** `"noise"`, `"coloradapt"` or `"none"`. */
  color: string;
  /** Samples sent through TokenAdapt (the first ones). */
  tokenAdaptSamples: number;
  /** The geometric parameters of the TokenAdapt half, or null. */
  geometric: unknown;
  /** The mixing parameters of the TokenAdapt half, or null. */
  tokenAdaptMix: unknown;
  /** The RRC boxes of the base half. */
  rrc: unknown;
  /** The mixing parameters of the base half, or null. */
  baseMix: unknown;
}

/** A configured augmentation step; {@linkcode AugmentStep.hook} plugs into the training recipes. */
export interface AugmentStep {
  /** The resolved settings. */
  readonly config: ResolvedAugmentStepConfig;
  /**
   * Augment one batch.
   * @param input codes `[B, n, n]` int32 (not disposed) and labels when fine-tuning
   * @param rng every draw comes from it
   * @returns codes `[B, m, m]` int32, soft targets `[B, K]` when `numClasses` is set (caller owns them), and the draws
   */
  run(input: AugmentInput, rng: Rng): AugmentOutput & { record: AugmentStepRecord };
  /** The same as {@linkcode AugmentStep.run}, in the shape the training recipes take. */
  readonly hook: AugmentHook;
}

/** What {@linkcode createAugmentStep} needs besides the settings. */
export interface AugmentStepDeps {
  /** The release codebook. */
  quantizer: CodeQuantizer;
  /** The frozen TokenAdapt networks (required when `tokenAdapt` is on). */
  tokenAdapt?: TokenAdapt | null;
}

/**
 * Build the augmentation step.
 *
 * @param config settings (see {@linkcode augmentStepFinetune}, {@linkcode augmentStepPretrain})
 * @param deps the codebook and the TokenAdapt networks
 * @returns the step
 * @throws {TypeError} when TokenAdapt is on but missing, or its codebook size/width differ from the codebook's
 * @throws {RangeError} when TokenAdapt's output grid is not `size`
 */
export function createAugmentStep(config: AugmentStepConfig, deps: AugmentStepDeps): AugmentStep {
  const c = resolveAugmentStepConfig(config);
  const q = deps.quantizer;
  const ta = deps.tokenAdapt ?? null;
  if (c.tokenAdapt) {
    if (ta === null) {
      throw new TypeError(
        "Cannot build the augmentation step: tokenAdapt is on but no TokenAdapt was given",
      );
    }
    if (ta.config.codebookSize !== q.size || ta.config.codeDim !== q.dim) {
      throw new TypeError(
        `Cannot build the augmentation step: TokenAdapt has K=${ta.config.codebookSize}, d=${ta.config.codeDim}; the codebook K=${q.size}, d=${q.dim}`,
      );
    }
    if (ta.config.outputGrid !== c.size) {
      throw new RangeError(
        `Cannot build the augmentation step: TokenAdapt outputs ${ta.config.outputGrid}x${ta.config.outputGrid} codes, the model takes ${c.size}x${c.size}`,
      );
    }
  }
  const mixer = (m: Required<HalfMixConfig> | null): Mixup | null =>
    m === null || c.numClasses === null ? null : createMixup({
      numClasses: c.numClasses,
      mixupAlpha: m.mixupAlpha,
      cutmixAlpha: m.cutmixAlpha,
      prob: m.prob,
      switchProb: m.switchProb,
      labelSmoothing: c.labelSmoothing,
    });
  const baseMixer = mixer(c.baseMix), taMixer = mixer(c.tokenAdaptMix);
  const rrc = randomResizedCrop(c.size, { scale: c.rrcScale, ratio: c.rrcRatio });
  const noise = embNoise({ prob: c.noiseProb, scale: c.noiseScale, std: c.noiseStd });
  const ca = colorAdapt({ prob: c.colorAdaptProb });

  const chunked = (x: tf.Tensor4D, f: (t: tf.Tensor4D) => tf.Tensor): tf.Tensor => {
    const B = x.shape[0];
    if (B <= c.chunk) return f(x);
    const parts: tf.Tensor[] = [];
    for (let s = 0; s < B; s += c.chunk) {
      parts.push(tf.tidy(() => f(x.slice([s], [Math.min(c.chunk, B - s)]))));
    }
    const out = tf.concat(parts);
    tf.dispose(parts);
    return out;
  };

  const mixHalf = (
    x: tf.Tensor4D,
    labels: Int32Array | null,
    m: Mixup | null,
    rng: Rng,
  ): { x: tf.Tensor4D; targets: tf.Tensor2D | null; params: unknown } => {
    if (c.numClasses === null || labels === null) return { x, targets: null, params: null };
    if (m === null) {
      const t = smoothedOneHot(labels, c.numClasses, c.labelSmoothing);
      return { x, targets: tf.tensor2d(t, [labels.length, c.numClasses]), params: null };
    }
    const r = m.run(x, labels, rng);
    return { x: r.x, targets: r.targets, params: r.params };
  };

  const run = (input: AugmentInput, rng: Rng): AugmentOutput & { record: AugmentStepRecord } => {
    const codes = input.codes;
    if (!(codes instanceof tf.Tensor) || codes.rank !== 3 || codes.dtype !== "int32") {
      throw new TypeError("Cannot augment: expected codes as a [B, n, n] int32 tensor");
    }
    const [B, n] = codes.shape;
    const labels = input.labels;
    if (c.numClasses !== null && (labels === null || labels.length !== B)) {
      throw new TypeError(
        `Cannot augment for ${c.numClasses}-class targets: expected ${B} labels, got ${
          labels === null ? "none" : labels.length
        }`,
      );
    }
    const half = c.tokenAdapt ? Math.floor(B / 2) : 0;
    if (c.tokenAdapt && ta !== null && ta.config.inputGrid !== n) {
      throw new RangeError(
        `Cannot augment ${n}x${n} codes: TokenAdapt takes ${ta.config.inputGrid}x${ta.config.inputGrid}`,
      );
    }
    if (
      c.numClasses !== null &&
      ((half > 0 && taMixer !== null && half % 2 !== 0) ||
        (baseMixer !== null && (B - half) % 2 !== 0))
    ) {
      throw new RangeError(
        `Cannot augment a batch of ${B}: each mixed half must have an even size`,
      );
    }
    const record: AugmentStepRecord = {
      color: "none",
      tokenAdaptSamples: half,
      geometric: null,
      tokenAdaptMix: null,
      rrc: null,
      baseMix: null,
    };
    const [outCodes, targets] = tf.tidy(() => {
      // 1. embeddings
      let emb = q.embed(codes);
      // 2. colour step
      let which: "noise" | "coloradapt" | "none" = "none";
      if (c.noise && c.colorAdapt) which = rng.uniform() < c.noiseChoice ? "noise" : "coloradapt";
      else if (c.noise) which = "noise";
      else if (c.colorAdapt) which = "coloradapt";
      if (which !== "none") {
        const t = which === "noise" ? noise : ca;
        const p = (t.draw as (x: tf.Tensor4D, r: Rng) => unknown)(emb, rng);
        emb = (t.apply as (x: tf.Tensor4D, p: unknown) => tf.Tensor4D)(emb, p);
      }
      record.color = which;
      const outs: tf.Tensor4D[] = [];
      const tgts: tf.Tensor2D[] = [];
      // 3a. TokenAdapt half
      if (half > 0 && ta !== null) {
        const xa = emb.slice([0], [half]) as tf.Tensor4D;
        const up = chunked(xa, (t) => ta.convert(t)) as tf.Tensor4D; // [half, d, 2n, 2n]
        const gp = drawGeometricParams(up.shape, 2 * c.size, c.geometric, rng);
        record.geometric = gp;
        const geo = applyGeometric(up, gp, { fillMask: c.geometric.fillMask });
        const la = labels === null ? null : labels.subarray(0, half);
        const mixed = mixHalf(geo, la, taMixer, rng);
        record.tokenAdaptMix = mixed.params;
        const taCodes = chunked(mixed.x, (t) => ta.invert(t)) as tf.Tensor3D;
        outs.push(q.embed(taCodes));
        if (mixed.targets !== null) tgts.push(mixed.targets);
      }
      // 3b. base half
      if (B - half > 0) {
        const xb = (half > 0 ? emb.slice([half], [B - half]) : emb) as tf.Tensor4D;
        const boxes = rrc.draw(xb, rng);
        record.rrc = boxes;
        const cropped = rrc.apply(xb, boxes);
        const lb = labels === null ? null : labels.subarray(half);
        const mixed = mixHalf(cropped, lb, baseMixer, rng);
        record.baseMix = mixed.params;
        outs.push(mixed.x);
        if (mixed.targets !== null) tgts.push(mixed.targets);
      }
      // 4. concatenate and re-quantize
      const all = outs.length === 1 ? outs[0] : tf.concat(outs);
      const out = q.toCodes(all);
      return tgts.length === 0 ? [out] : [out, tgts.length === 1 ? tgts[0] : tf.concat(tgts)];
    }) as [tf.Tensor3D, tf.Tensor2D?];
    return targets === undefined
      ? { codes: outCodes, record }
      : { codes: outCodes, targets, record };
  };
  return { config: c, run, hook: (input, rng) => run(input, rng) };
}
