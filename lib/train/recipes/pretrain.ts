/**
 * MTM pre-training (REFERENCE.md sections 4 and 6): the run config, its defaults and
 * checks, and {@linkcode pretrain}, which trains any model shaped like `MtmModel` from
 * `@lib/models` on an official-format token dataset.
 *
 * The recipe: AdamW betas (0.9, 0.95), weight decay 0.05 on all but 1-D parameters and
 * `.bias` names (timm `add_weight_decay`), lr = blr * effective batch / 256, warmup then
 * half-cosine per iteration. The reference parses `--grad_clip` but never applies it: the
 * official config has `gradClip: null`, and a number turns clipping on here.
 *
 * Where things are: the loss is `mtmObjective` and the mask is drawn by `drawMtmMask`, both in
 * ./objectives.ts (the data-parallel shards call the same two); TokenAdapt enters a step
 * through the `augment` hook, the section-6 step of ../augment/augment_step.ts (its
 * TokenAdapt half: `createAugmentStep`, step 3b).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { MaskPlan, MtmModel } from "../../models/mod.ts";
import type { Rng } from "../../random/mod.ts";
import { centerCropOrigin } from "../../tokens/mod.ts";
import type { LoadedCheckpoint } from "../engine/checkpoint.ts";
import type { ConfigSchema, ConfigValue } from "../engine/config.ts";
import type { MicroBatch, PreparedBatch, TokenSource } from "../engine/loop.ts";
import { DataParallel, microBatchRng, takeHostCodes } from "../engine/parallel.ts";
import { addWeightDecay } from "../engine/param_groups.ts";
import {
  type RunOptimConfig,
  type RunParams,
  runRngs,
  type RunSummary,
  runTraining,
} from "../engine/runner.ts";
import { cosineLr, type LrScaling, scaleLr } from "../engine/schedule.ts";
import { drawMtmMask, mtmObjective } from "./objectives.ts";

/** Where the training (and test) records come from. */
export interface DataConfig {
  /** Official-format training data file (`NAME-token.data.bin.gz`; index and labels next to it). */
  train: string;
  /** Official-format test data file (evaluation), or `null`. */
  test: string | null;
  /** Use only the first N training records (tiny runs), or `null` for all. */
  limitTrain: number | null;
  /** Use only the first N test records, or `null` for all. */
  limitTest: number | null;
}

/**
 * The embedded default training data (Fashion-MNIST tokens under data/). Until the
 * dataset lands, pass `--data <file>`.
 */
export const DEFAULT_TRAIN_DATA = "data/fmnist8/fmnist-train-token.data.bin.gz";
/** The embedded default test data. */
export const DEFAULT_TEST_DATA = "data/fmnist8/fmnist-test-token.data.bin.gz";

/** How an `n x n` record becomes the model's `m x m` input when no augmentation hook runs. */
export type CropMode = "center" | "random";

/** A resolved MTM pre-training config: plain JSON, saved with the run. */
export interface PretrainConfig extends RunOptimConfig {
  /** Always `pretrain`. */
  kind: "pretrain";
  /** The model config (the fields of `MtmConfig` in `@lib/models`), resolved. */
  model: { [key: string]: ConfigValue };
  /** Data files and limits. */
  data: DataConfig;
  /** Base lr, scaled by `lrScaling` with the effective batch (MTM: 1.5e-4). */
  blr: number;
  /** Absolute lr; overrides `blr` when not null. */
  lr: number | null;
  /** Scaling rule from blr (MTM: linear, blr * batch / 256). */
  lrScaling: LrScaling;
  /** Final lr of the cosine (MTM: 0). */
  minLr: number;
  /** Warmup epochs (MTM: 40 of 400). */
  warmupEpochs: number;
  /** Weight decay of the decaying group (MTM: 0.05). */
  weightDecay: number;
  /** Crop of the input when no augmentation hook is given. */
  crop: CropMode;
}

/**
 * The official MTM recipe (REFERENCE.md section 4) except the model and data, which the
 * task fills in. Every value has its reason in the doc of {@linkcode PretrainConfig}.
 */
export const PRETRAIN_DEFAULTS: Omit<PretrainConfig, "model"> = {
  kind: "pretrain",
  seed: 0,
  data: { train: DEFAULT_TRAIN_DATA, test: null, limitTrain: null, limitTest: null },
  batchSize: 64,
  accumIter: 4,
  epochs: 400,
  maxSteps: null,
  blr: 1.5e-4,
  lr: null,
  lrScaling: "linear",
  minLr: 0,
  warmupEpochs: 40,
  weightDecay: 0.05,
  betas: [0.9, 0.95],
  eps: 1e-8,
  gradClip: null,
  crop: "random",
  logEvery: 20,
  checkpointEvery: 0,
  evalEvery: 0,
  keepCheckpoints: 1,
  workers: 1,
};

/** What the defaults cannot say about {@linkcode PretrainConfig} (for config merging). */
export const PRETRAIN_SCHEMA: ConfigSchema = {
  nullable: {
    lr: "number",
    gradClip: "number",
    maxSteps: "integer",
    "data.test": "string",
    "data.limitTrain": "integer",
    "data.limitTest": "integer",
  },
  choices: {
    kind: ["pretrain"],
    lrScaling: ["linear", "sqrt", "none"],
    crop: ["center", "random"],
  },
  integers: [
    "seed",
    "batchSize",
    "accumIter",
    "epochs",
    "logEvery",
    "checkpointEvery",
    "evalEvery",
    "keepCheckpoints",
    "workers",
  ],
};

/**
 * Check the ranges of a merged run config (types were checked when merging).
 * @param c the config
 * @throws {RangeError} naming the key and value
 */
export function checkRunConfig(c: RunOptimConfig & { warmupEpochs: number; minLr: number }): void {
  const bad = (key: string, v: unknown, want: string) =>
    new RangeError(`Config key "${key}": ${JSON.stringify(v)} ${want}`);
  for (const k of ["batchSize", "accumIter", "epochs", "logEvery", "keepCheckpoints"] as const) {
    if (!(c[k] >= 1)) throw bad(k, c[k], "must be >= 1");
  }
  for (const k of ["checkpointEvery", "evalEvery", "minLr", "warmupEpochs", "eps"] as const) {
    if (!(c[k] >= 0)) throw bad(k, c[k], "must be >= 0");
  }
  if (c.maxSteps !== null && !(c.maxSteps >= 1)) throw bad("maxSteps", c.maxSteps, "must be >= 1");
  const w = c.workers ?? 1;
  if (!(Number.isInteger(w) && w >= 1 && w <= c.batchSize)) {
    throw bad("workers", w, `must be an integer in [1, batchSize = ${c.batchSize}]`);
  }
  if (c.gradClip !== null && !(c.gradClip > 0)) throw bad("gradClip", c.gradClip, "must be > 0");
  if (!c.betas.every((b) => b >= 0 && b < 1)) throw bad("betas", c.betas, "must be in [0, 1)");
  if (!(c.warmupEpochs < c.epochs)) {
    throw bad("warmupEpochs", c.warmupEpochs, `must be below epochs (${c.epochs})`);
  }
}

/**
 * A model shaped like `MtmModel` from `@lib/models` (with `config.workers > 1` it must
 * be an `MtmModel`: the workers rebuild it from its config).
 */
export interface MtmLike {
  /** Parameters by reference name. */
  readonly params: RunParams;
  /** The resolved config: `gridSide` is the input side m. */
  readonly config: { readonly gridSide: number };
  /**
   * Draw a masking (what `drawMtmMask` calls).
   * @param batch samples
   * @param rng the generator
   */
  randomMasking(batch: number, rng: Rng): MaskPlan;
  /**
   * @param codes `[B, m, m]` int32
   * @param options the masking, generator for dropout; training mode
   * @returns loss, logits and mask (caller owns them)
   */
  forward(
    codes: tf.Tensor3D,
    options: { plan?: MaskPlan; rng?: Rng; training?: boolean },
  ): { loss: tf.Scalar; logits: tf.Tensor; mask: tf.Tensor };
}

/** What an augmentation step receives: one micro-batch as stored. */
export interface AugmentInput {
  /** `[B, n, n]` int32 codes as stored (not disposed by the hook). */
  codes: tf.Tensor3D;
  /** `[B]` labels, or `null`. */
  labels: Int32Array | null;
  /** The epoch. */
  epoch: number;
  /** Completed optimizer steps. */
  step: number;
  /**
   * `[B]` indices of the records in the training data (what the oracle TokenAdapt half reads
   * the records' images by); the other steps ignore it.
   */
  indices?: Int32Array;
}

/** What an augmentation step returns (the loop disposes it). */
export interface AugmentOutput {
  /** `[B, m, m]` int32 codes for the model (augmented embeddings re-quantized). */
  codes: tf.Tensor3D;
  /** `[B, C]` float32 soft targets (fine-tuning with Mixup/CutMix); else hard labels are used. */
  targets?: tf.Tensor2D;
}

/**
 * The augmentation step of REFERENCE.md section 6 (TokenAdapt / RRC / ColorAdapt /
 * Mixup...), plugged into a run. Synchronous; every random draw from `rng` (whose state
 * the checkpoints keep).
 */
export type AugmentHook = (input: AugmentInput, rng: Rng) => AugmentOutput;

/**
 * Crop `[B, n, n]` host codes to `[B, m, m]`: centered (torchvision's rounding) or at a
 * uniformly random offset per sample.
 *
 * @param codes `[B * n * n]` row-major
 * @param shape `[B, n, n]`
 * @param m the crop side
 * @param mode `center` or `random`
 * @param rng for `random`
 * @returns `[B * m * m]` row-major (a copy, or `codes` itself when m = n)
 * @throws {RangeError} when m > n
 */
export function cropCodes(
  codes: Int32Array,
  shape: readonly [number, number, number],
  m: number,
  mode: CropMode,
  rng?: Rng,
): Int32Array {
  const [B, n] = shape;
  if (m === n) return codes;
  if (!(m >= 1 && m <= n)) throw new RangeError(`Cannot crop ${m}x${m} from a ${n}x${n} grid`);
  const out = new Int32Array(B * m * m);
  const [ct, cl] = centerCropOrigin(n, n, m);
  for (let b = 0; b < B; b++) {
    let top = ct, left = cl;
    if (mode === "random") {
      if (rng === undefined) throw new TypeError("Cannot crop at random without an Rng");
      top = rng.int(0, n - m + 1);
      left = rng.int(0, n - m + 1);
    }
    for (let i = 0; i < m; i++) {
      const src = b * n * n + (top + i) * n + left;
      out.set(codes.subarray(src, src + m), b * m * m + i * m);
    }
  }
  return out;
}

/**
 * Turn a micro-batch into model input codes: the augmentation hook when given, else a
 * crop to m. Shared by both recipes.
 * @param b the micro-batch as read
 * @param m the model's grid side
 * @param crop the crop when there is no hook
 * @param rng the `augment` generator (crop offsets, or handed to the hook)
 * @param augment the augmentation step, if any
 * @returns `[B, m, m]` int32 codes and optional soft targets, owned by the caller
 * @throws {TypeError} when the hook returns codes of another shape
 */
export function inputCodes(
  b: MicroBatch,
  m: number,
  crop: CropMode,
  rng: Rng,
  augment: AugmentHook | undefined,
): AugmentOutput {
  const [B, n] = b.shape;
  if (augment !== undefined) {
    const raw = tf.tensor3d(b.codes, [B, n, n], "int32");
    try {
      const out = augment(
        { codes: raw, labels: b.labels, epoch: b.epoch, step: b.step, indices: b.indices },
        rng,
      );
      if (out.codes.rank !== 3 || out.codes.shape[1] !== m || out.codes.shape[2] !== m) {
        throw new TypeError(
          `The augmentation step returned codes of shape [${out.codes.shape}], expected [${B}, ${m}, ${m}]`,
        );
      }
      return out;
    } finally {
      raw.dispose();
    }
  }
  return { codes: tf.tensor3d(cropCodes(b.codes, b.shape, m, crop, rng), [B, m, m], "int32") };
}

/** Options of {@linkcode pretrain}. */
export interface PretrainOptions {
  /** The resolved config (see {@linkcode PRETRAIN_DEFAULTS}). */
  config: PretrainConfig;
  /** The model (e.g. `new MtmModel(config.model, new Rng(config.seed).fork("init"))`). */
  model: MtmLike;
  /** The training records. */
  data: TokenSource;
  /** The run folder. */
  runDir: string;
  /** Resume from this checkpoint of the same run. */
  resume?: LoadedCheckpoint | null;
  /** The augmentation step; without it, records are cropped to m (`config.crop`). */
  augment?: AugmentHook;
  /** Show progress. @default {true} */
  progress?: boolean;
  /** Extra fields for the log's start record. */
  startInfo?: Record<string, unknown>;
  /** Where human-readable lines go. @default {console.error} */
  print?: (line: string) => void;
  /** Asked after every step; true stops the run with a checkpoint (see `RunSetup.stop`). */
  stop?: () => boolean;
}

/**
 * Pre-train an MTM model (or resume its run).
 *
 * Generators (from `config.seed`, states in every checkpoint): `model` (masking and
 * dropout) and `augment` (crop offsets or the augmentation hook). The data order comes
 * from the seed and the epoch. With `config.workers` W > 1 each micro-batch is split
 * across the main thread and W - 1 workers (../engine/parallel.ts): the crop / augmentation and
 * the masking plan are still drawn in the main thread from these generators, dropout
 * per shard from `microBatchRng(seed, batch)`.
 *
 * @param o config, model, data, run folder
 * @returns the run summary (`metrics.json`)
 * @throws {NonFiniteLossError} when the loss becomes NaN/Inf
 * @throws {RangeError} for a config out of range or a model grid larger than the data's
 */
export async function pretrain(o: PretrainOptions): Promise<RunSummary> {
  const c = o.config;
  checkRunConfig(c);
  const m = o.model.config.gridSide;
  if (m > o.data.gridSide) {
    throw new RangeError(
      `Cannot pre-train a ${m}x${m} model on ${o.data.gridSide}x${o.data.gridSide} records`,
    );
  }
  const groups = addWeightDecay(
    o.model.params.entries().map((e) => ({
      name: e.name,
      shape: e.shape,
      trainable: e.trainable,
    })),
    c.weightDecay,
  );
  const lr = c.lr ?? scaleLr(c.blr, c.batchSize * c.accumIter, c.lrScaling);
  const rngs = runRngs(c.seed, ["model", "augment"]);
  const workers = c.workers ?? 1;
  const model = o.model as unknown as MtmModel;
  const pool = workers > 1 ? await DataParallel.start(model, { workers }) : null;
  return await runTraining({
    kind: "pretrain",
    config: c as unknown as PretrainConfig & Record<string, unknown>,
    params: o.model.params,
    data: o.data,
    limit: c.data.limitTrain,
    groups,
    lrAt: (e) =>
      cosineLr(e, { lr, minLr: c.minLr, warmupEpochs: c.warmupEpochs, epochs: c.epochs }),
    rngs,
    prepare: (b: MicroBatch): PreparedBatch => {
      const { codes, targets } = inputCodes(b, m, c.crop, rngs.augment, o.augment);
      targets?.dispose();
      return {
        loss: () =>
          mtmObjective(
            o.model,
            codes,
            drawMtmMask(o.model, codes.shape[0], rngs.model),
            rngs.model,
          ),
        dispose: () => codes.dispose(),
      };
    },
    gradients: pool === null ? undefined : async (b: MicroBatch, scale: number) => {
      const { codes, targets } = inputCodes(b, m, c.crop, rngs.augment, o.augment);
      targets?.dispose();
      const host = await takeHostCodes(codes);
      const B = b.shape[0];
      const plan = drawMtmMask(model, B, rngs.model);
      const rng = microBatchRng(c.seed, b);
      return await pool.gradients({ codes: host, batch: B, plan }, { scale, rng, step: b.step });
    },
    runDir: o.runDir,
    resume: o.resume,
    progress: o.progress,
    stop: o.stop,
    print: o.print,
    startInfo: { lr, ...o.startInfo },
  }).finally(() => pool?.close());
}
