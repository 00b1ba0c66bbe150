/**
 * The training-step augmentation of SeiT++ (REFERENCE.md section 6), for both phases:
 *
 * 1. codes `[B, n, n]` -> codebook embeddings `[B, d, n, n]` (the fixed release codebook);
 * 2. the colour step on the whole batch: ONE RandomChoice per batch among Emb-Noise
 *    (probability `noiseChoice`), ColorAdapt (`colorAdaptChoice`) and identity (the rest).
 *    A component switched off has probability 0 and its share goes to identity: with
 *    ColorAdapt off, 1 - 0.75 = a quarter of the batches get no colour op (not more noise);
 * 3. the batch splits in halves as the reference's `chunk(2)` does: the FIRST half
 *    (`ceil(B/2)`) takes the base path, token RRC to `m` -> CutMix; the SECOND half
 *    (`floor(B/2)`) goes through TokenAdapt: f -> geometric augmentation to `2m x 2m` ->
 *    Mixup/CutMix in TokenAdapt space -> g -> codes -> embeddings `[B/2, d, m, m]`. Both
 *    halves crop with the same range, `rrcScale` (the reference's one `rrc_ratio`);
 * 4. concatenate, `convertToCodes`: the model's input codes `[B, m, m]`, with soft targets
 *    `[B, K]` (label-smoothed, mixed per half) when fine-tuning.
 *
 * Every part is a config switch, so the ablation arms (./arms.ts) are config changes: with
 * TokenAdapt off the whole batch takes the base path; `tokenAdaptGeometry: "identity"` sends
 * the TokenAdapt half through f then g with no geometric change (g's reconstruction error
 * alone); `tokenAdaptSource: "oracle"` replaces f -> A -> Mix -> g by the tokenizer's codes of
 * the records' pixel images under the same drawn A and mixing, `T(Mix(A(x)))` (./oracle.ts).
 * Every random draw comes from the `Rng` handed in, and every draw is in the
 * returned {@linkcode AugmentStepRecord} (see ./draw_trace.ts for the per-sample trace); the
 * TokenAdapt networks are frozen (no gradient flows through the step: g ends in argmax).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../../random/mod.ts";
import {
  type CodeQuantizer,
  type CropBox,
  drawRrcBox,
  randomResizedCrop,
  type RrcTry,
} from "../../tokens/mod.ts";
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
} from "../../adapters/mod.ts";
import { smoothedOneHot } from "../engine/targets.ts";
import { oracleTokens, type TokenAdaptOracle } from "./oracle.ts";
import type { AugmentHook, AugmentInput, AugmentOutput } from "../recipes/pretrain.ts";

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
  /** Colour step: probability that a batch gets Emb-Noise (when `noise` is on). @default {0.75} */
  noiseChoice?: number;
  /** Colour step: probability that a batch gets ColorAdapt (when `colorAdapt` is on). @default {0.25} */
  colorAdaptChoice?: number;
  /** Fraction of the batch ColorAdapt replaces. @default {0.5} */
  colorAdaptProb?: number;
  /** Fraction of the batch Emb-Noise touches. @default {0.5} */
  noiseProb?: number;
  /** Emb-Noise per-channel scale. @default {1} */
  noiseScale?: number;
  /** Emb-Noise per-element std. @default {1} */
  noiseStd?: number;
  /** Area range of BOTH halves' RRC (the reference's `rrc_ratio`: 0.2 pre-training, 0.08 fine-tuning). @default {[0.08, 1]} */
  rrcScale?: [number, number];
  /** Aspect range of both halves' RRC. @default {[0.75, 1.3333333333333333]} */
  rrcRatio?: [number, number];
  /**
   * TokenAdapt's geometric augmentation (flip, affine chain). Its crop range is always
   * `rrcScale` / `rrcRatio`: `cropScale` / `cropRatio` given here are replaced by them.
   * @default {{}}
   */
  geometric?: GeometricAugConfig;
  /** `"augment"`: the geometric augmentation; `"identity"`: f then g with no geometric change. @default {"augment"} */
  tokenAdaptGeometry?: "augment" | "identity";
  /**
   * Where the TokenAdapt half's tokens come from: `"tokenadapt"`, `g(Mix(A(f(t))))`; `"oracle"`,
   * the tokenizer's codes of the records' pixel images under the same A and mixing,
   * `T(Mix(A(x)))` (what a perfect TokenAdapt would give; ./oracle.ts).
   * @default {"tokenadapt"}
   */
  tokenAdaptSource?: "tokenadapt" | "oracle";
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
  /** Probability of the Noise choice of the colour step. */
  noiseChoice: number;
  /** Probability of the ColorAdapt choice of the colour step. */
  colorAdaptChoice: number;
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
  /** TokenAdapt geometric augmentation (crop = rrcScale / rrcRatio). */
  geometric: ResolvedGeometricAugConfig;
  /** TokenAdapt half geometry: augmented, or identity. */
  tokenAdaptGeometry: "augment" | "identity";
  /** TokenAdapt half tokens: TokenAdapt's, or the oracle's re-tokenized pixels. */
  tokenAdaptSource: "tokenadapt" | "oracle";
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
  "colorAdaptChoice",
  "colorAdaptProb",
  "noiseProb",
  "noiseScale",
  "noiseStd",
  "rrcScale",
  "rrcRatio",
  "geometric",
  "tokenAdaptGeometry",
  "tokenAdaptSource",
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
    colorAdaptChoice: config.colorAdaptChoice ?? 0.25,
    colorAdaptProb: config.colorAdaptProb ?? 0.5,
    noiseProb: config.noiseProb ?? 0.5,
    noiseScale: config.noiseScale ?? 1,
    noiseStd: config.noiseStd ?? 1,
    rrcScale: [rrcScale[0], rrcScale[1]],
    rrcRatio: [rrcRatio[0], rrcRatio[1]],
    // one crop range for both halves (REFERENCE.md section 6): the geometric crop is rrcScale
    geometric: resolveGeometricAugConfig({
      ...config.geometric,
      cropScale: [rrcScale[0], rrcScale[1]],
      cropRatio: [rrcRatio[0], rrcRatio[1]],
    }),
    tokenAdaptGeometry: config.tokenAdaptGeometry ?? "augment",
    tokenAdaptSource: config.tokenAdaptSource ?? "tokenadapt",
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
  for (const k of ["noiseChoice", "colorAdaptChoice", "colorAdaptProb", "noiseProb"] as const) {
    if (!(c[k] >= 0 && c[k] <= 1)) {
      throw new RangeError(`Augmentation step key "${k}": ${c[k]} is not in [0, 1]`);
    }
  }
  if (c.noiseChoice + c.colorAdaptChoice > 1 + 1e-9) {
    throw new RangeError(
      `Augmentation step noiseChoice ${c.noiseChoice} + colorAdaptChoice ${c.colorAdaptChoice} > 1: ` +
        `the colour step is one choice per batch among Noise, ColorAdapt and identity`,
    );
  }
  if (!["augment", "identity"].includes(c.tokenAdaptGeometry)) {
    throw new RangeError(
      `Augmentation step tokenAdaptGeometry ${
        JSON.stringify(c.tokenAdaptGeometry)
      }: expected "augment" or "identity"`,
    );
  }
  if (!["tokenadapt", "oracle"].includes(c.tokenAdaptSource)) {
    throw new RangeError(
      `Augmentation step tokenAdaptSource ${
        JSON.stringify(c.tokenAdaptSource)
      }: expected "tokenadapt" or "oracle"`,
    );
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

/** The colour step's three choices and their probabilities (they sum to 1). */
export interface ColourChoice {
  /** Probability of Emb-Noise. */
  noise: number;
  /** Probability of ColorAdapt. */
  colorAdapt: number;
  /** Probability of no colour op. */
  identity: number;
}

/**
 * The colour step's RandomChoice as a resolved step runs it: a component switched off has
 * probability 0, identity takes the rest. `null` when both are off (no choice is drawn:
 * the reference's pre-training has no colour step at all).
 * @param c resolved settings
 * @returns the probabilities, or null
 */
export function colourChoice(c: ResolvedAugmentStepConfig): ColourChoice | null {
  if (!c.noise && !c.colorAdapt) return null;
  const noise = c.noise ? c.noiseChoice : 0;
  const colorAdapt = c.colorAdapt ? c.colorAdaptChoice : 0;
  return { noise, colorAdapt, identity: Math.max(0, 1 - noise - colorAdapt) };
}

/** The geometric settings of the identity transform: no flip, no affine, the whole grid. */
export function identityGeometry(
  g: ResolvedGeometricAugConfig,
): ResolvedGeometricAugConfig {
  return { ...g, flipProb: 0, chainProb: 0, cropScale: [1, 1], cropRatio: [1, 1] };
}

/** What was drawn in one application (plain JSON), for logs, galleries and draw traces. */
export interface AugmentStepRecord {
  /** `"noise"`, `"coloradapt"` or `"none"` (identity, or no colour step). */
  color: "noise" | "coloradapt" | "none";
  /** Whether a colour choice was drawn (false: no colour step, as in pre-training). */
  colorDrawn: boolean;
  /** The samples the colour op changed (sorted batch indices; empty for none). */
  colorSamples: number[];
  /** Samples of the base half: `0 .. baseSamples - 1`. */
  baseSamples: number;
  /** Samples sent through TokenAdapt: the LAST ones, `baseSamples .. B - 1`. */
  tokenAdaptSamples: number;
  /** The geometric parameters of the TokenAdapt half (`GeometricParams`), or null. */
  geometric: unknown;
  /** The accepted RRC try (area fraction, aspect) per TokenAdapt sample; null = fallback box. */
  geometricCrops: ({ area: number; aspect: number } | null)[];
  /** The mixing parameters of the TokenAdapt half (`MixupParams`), or null. */
  tokenAdaptMix: unknown;
  /** The RRC boxes of the base half (`CropBox[]`). */
  rrc: unknown;
  /** The accepted RRC try (area fraction, aspect) per base sample; null = fallback box. */
  rrcCrops: ({ area: number; aspect: number } | null)[];
  /** The mixing parameters of the base half (`MixupParams`), or null. */
  baseMix: unknown;
}

function acceptedTry(tries: RrcTry[]): { area: number; aspect: number } | null {
  const t = tries.find((x) => x.accepted);
  return t === undefined ? null : { area: t.areaFraction, aspect: t.aspectRatio };
}

/** Per-sample RRC boxes with the accepted try of each (the same draws as `randomResizedCrop`). */
function drawBoxes(
  rng: Rng,
  B: number,
  H: number,
  W: number,
  scale: [number, number],
  ratio: [number, number],
): { boxes: CropBox[]; crops: ({ area: number; aspect: number } | null)[] } {
  const boxes: CropBox[] = [], crops: ({ area: number; aspect: number } | null)[] = [];
  for (let b = 0; b < B; b++) {
    const tries: RrcTry[] = [];
    boxes.push(drawRrcBox(rng, H, W, scale, ratio, tries));
    crops.push(acceptedTry(tries));
  }
  return { boxes, crops };
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
  /** The frozen TokenAdapt networks (required when `tokenAdapt` is on with source `tokenadapt`). */
  tokenAdapt?: TokenAdapt | null;
  /** The training records' images and the tokenizer (required with source `oracle`). */
  oracle?: TokenAdaptOracle | null;
  /** Called with the record of every application through `hook` (draw traces: ./draw_trace.ts). */
  trace?: (record: AugmentStepRecord) => void;
}

/**
 * Build the augmentation step.
 *
 * @param config settings (see {@linkcode augmentStepFinetune}, {@linkcode augmentStepPretrain})
 * @param deps the codebook and the TokenAdapt networks
 * @returns the step
 * @throws {TypeError} when TokenAdapt is on but missing (or, with source `oracle`, the oracle
 *   is), or its codebook size/width differ from the codebook's
 * @throws {RangeError} when TokenAdapt's (or the oracle tokenizer's) grid is not `size`
 */
export function createAugmentStep(config: AugmentStepConfig, deps: AugmentStepDeps): AugmentStep {
  const c = resolveAugmentStepConfig(config);
  const q = deps.quantizer;
  const oracle = c.tokenAdapt && c.tokenAdaptSource === "oracle" ? deps.oracle ?? null : null;
  const ta = oracle === null ? deps.tokenAdapt ?? null : null;
  if (c.tokenAdapt && c.tokenAdaptSource === "oracle") {
    if (oracle === null) {
      throw new TypeError(
        "Cannot build the augmentation step: its TokenAdapt half is the oracle (tokenAdaptSource " +
          '"oracle") but no oracle (the training images and the tokenizer) was given',
      );
    }
    if (oracle.tokenizer.gridSize !== c.size) {
      throw new RangeError(
        `Cannot build the augmentation step: the oracle's tokenizer makes ${oracle.tokenizer.gridSize}x${oracle.tokenizer.gridSize} codes, the model takes ${c.size}x${c.size}`,
      );
    }
  } else if (c.tokenAdapt) {
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

  const choice = colourChoice(c);
  const geometry = c.tokenAdaptGeometry === "identity"
    ? identityGeometry(c.geometric)
    : c.geometric;
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
    // chunk(2): the first ceil(B/2) samples take the base path, the rest TokenAdapt
    const half = c.tokenAdapt ? Math.floor(B / 2) : 0;
    const nBase = B - half;
    if (oracle !== null && oracle.tokenizer.gridSize !== n) {
      throw new RangeError(
        `Cannot augment ${n}x${n} codes with the oracle: its tokenizer makes ${oracle.tokenizer.gridSize}x${oracle.tokenizer.gridSize}`,
      );
    }
    const indices = input.indices ?? null;
    if (oracle !== null && half > 0 && (indices === null || indices.length !== B)) {
      throw new TypeError(
        `Cannot augment with the oracle TokenAdapt half: it needs the batch's ${B} record indices ` +
          `(AugmentInput.indices), got ${indices === null ? "none" : indices.length}`,
      );
    }
    if (c.tokenAdapt && ta !== null && ta.config.inputGrid !== n) {
      throw new RangeError(
        `Cannot augment ${n}x${n} codes: TokenAdapt takes ${ta.config.inputGrid}x${ta.config.inputGrid}`,
      );
    }
    if (
      c.numClasses !== null &&
      ((half > 0 && taMixer !== null && half % 2 !== 0) ||
        (baseMixer !== null && nBase % 2 !== 0))
    ) {
      throw new RangeError(
        `Cannot augment a batch of ${B}: each mixed half must have an even size`,
      );
    }
    const record: AugmentStepRecord = {
      color: "none",
      colorDrawn: false,
      colorSamples: [],
      baseSamples: nBase,
      tokenAdaptSamples: half,
      geometric: null,
      geometricCrops: [],
      tokenAdaptMix: null,
      rrc: null,
      rrcCrops: [],
      baseMix: null,
    };
    const [outCodes, targets] = tf.tidy(() => {
      // 1. embeddings
      const plain = q.embed(codes);
      let emb = plain;
      let colourOp: ((x: tf.Tensor4D) => tf.Tensor4D) | null = null;
      // 2. colour step: one RandomChoice per batch (Noise | ColorAdapt | identity)
      let which: "noise" | "coloradapt" | "none" = "none";
      if (choice !== null) {
        record.colorDrawn = true;
        const u = rng.uniform();
        if (u < choice.noise) which = "noise";
        else if (u < choice.noise + choice.colorAdapt) which = "coloradapt";
      }
      if (which !== "none") {
        const t = which === "noise" ? noise : ca;
        const p = (t.draw as (x: tf.Tensor4D, r: Rng) => { perm: Int32Array; count: number })(
          emb,
          rng,
        );
        record.colorSamples = Array.from(p.perm.subarray(0, p.count)).sort((x, y) => x - y);
        const apply = t.apply as (x: tf.Tensor4D, p: unknown) => tf.Tensor4D;
        if (oracle !== null) colourOp = (x) => apply(x, p);
        emb = apply(emb, p);
      }
      record.color = which;
      const outs: tf.Tensor4D[] = [];
      const tgts: tf.Tensor2D[] = [];
      // 3a. base half (first): token RRC to m, then CutMix
      if (nBase > 0) {
        const xb = (half > 0 ? emb.slice([0], [nBase]) : emb) as tf.Tensor4D;
        const drawn = drawBoxes(rng, nBase, n, n, c.rrcScale, c.rrcRatio);
        record.rrc = drawn.boxes;
        record.rrcCrops = drawn.crops;
        const cropped = rrc.apply(xb, drawn.boxes);
        const lb = labels === null ? null : labels.subarray(0, nBase);
        const mixed = mixHalf(cropped, lb, baseMixer, rng);
        record.baseMix = mixed.params;
        outs.push(mixed.x);
        if (mixed.targets !== null) tgts.push(mixed.targets);
      }
      // 3b'. the oracle TokenAdapt half: T(Mix(A(x))) from the records' pixels, the same draws
      if (half > 0 && oracle !== null) {
        const tries: RrcTry[][] = [];
        const gp = drawGeometricParams(
          [half, q.dim, 2 * n, 2 * n],
          2 * c.size,
          geometry,
          rng,
          tries,
        );
        record.geometric = gp;
        record.geometricCrops = tries.map(acceptedTry);
        const la = labels === null ? null : labels.subarray(nBase);
        const x = oracle.images(indices!.subarray(nBase));
        const classes = c.numClasses !== null && la !== null ? c.numClasses : null;
        let mix = null;
        if (classes !== null && taMixer !== null) {
          const params = taMixer.draw([half, q.dim, 2 * c.size, 2 * c.size], rng);
          record.tokenAdaptMix = params;
          mix = { mixer: taMixer, params, labels: la! };
        }
        const half_ = oracleTokens(x, gp, oracle.tokenizer, mix, {
          fillMask: c.geometric.fillMask,
        });
        if (classes !== null && mix === null) {
          half_.targets = tf.tensor2d(
            smoothedOneHot(la!, classes, c.labelSmoothing),
            [la!.length, classes],
          );
        }
        let e = q.embed(half_.codes);
        if (colourOp !== null) {
          // the colour op (drawn and applied to f's input in the TokenAdapt arm) on the same
          // samples with the same draws, applied to the oracle's embeddings
          const base = nBase > 0 ? [plain.slice([0], [nBase]) as tf.Tensor4D] : [];
          const full = colourOp(base.length > 0 ? tf.concat([...base, e]) : e);
          e = full.slice([nBase], [half]) as tf.Tensor4D;
        }
        outs.push(e);
        if (half_.targets !== null) tgts.push(half_.targets);
      }
      // 3b. TokenAdapt half (second): f -> geometric -> mixing in TokenAdapt space -> g
      if (half > 0 && ta !== null) {
        const xa = emb.slice([nBase], [half]) as tf.Tensor4D;
        const up = chunked(xa, (t) => ta.convert(t)) as tf.Tensor4D; // [half, d, 2n, 2n]
        const tries: RrcTry[][] = [];
        const gp = drawGeometricParams(up.shape, 2 * c.size, geometry, rng, tries);
        record.geometric = gp;
        record.geometricCrops = tries.map(acceptedTry);
        const geo = applyGeometric(up, gp, { fillMask: c.geometric.fillMask });
        const la = labels === null ? null : labels.subarray(nBase);
        const mixed = mixHalf(geo, la, taMixer, rng);
        record.tokenAdaptMix = mixed.params;
        const taCodes = chunked(mixed.x, (t) => ta.invert(t)) as tf.Tensor3D;
        outs.push(q.embed(taCodes));
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
  const trace = deps.trace;
  return {
    config: c,
    run,
    hook: (input, rng) => {
      const out = run(input, rng);
      trace?.(out.record);
      return out;
    },
  };
}
