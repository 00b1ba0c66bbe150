/**
 * Fine-tuning a token classifier (REFERENCE.md section 5): the run config, its defaults,
 * evaluation (top-1/top-5 on the centre crop) and {@linkcode finetune}, which trains any
 * model shaped like `TokenClassifier` from `@lib/models`, optionally initialized from an
 * MTM pre-training run.
 *
 * The recipe: layer-wise lr decay 0.65 (MAE `param_groups_lrd`), weight decay 0.1 except
 * 1-D parameters, `pos_embed` and `cls_token`; lr = blr * sqrt(effective batch) / 8 with
 * blr 1e-3; 5 of 100 epochs warmup, min lr 1e-6; AdamW default betas; label smoothing
 * 0.1 through soft targets (Mixup/CutMix targets when the augmentation step makes them).
 *
 * Where things are: the loss is `classifierObjective` in ./objectives.ts (the data-parallel
 * shards call the same); TokenAdapt, ColorAdapt and the colour choice enter a step through
 * the `augment` hook, the section-6 step of ../augment/augment_step.ts.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { TokenClassifier } from "../../models/mod.ts";
import type { Rng } from "../../random/mod.ts";
import type { HostTensor } from "../../io/mod.ts";
import { type LoadedCheckpoint, readModelWeights } from "../engine/checkpoint.ts";
import type { ConfigSchema, ConfigValue } from "../engine/config.ts";
import type { MicroBatch, PreparedBatch, TokenSource } from "../engine/loop.ts";
import { crossEntropy } from "../engine/losses.ts";
import { classifierObjective } from "./objectives.ts";
import { checkInitReport } from "./init_check.ts";
import { topKCorrect } from "../engine/metrics.ts";
import { DataParallel, microBatchRng, takeHostCodes } from "../engine/parallel.ts";
import { paramGroupsLrd, VIT_NO_WEIGHT_DECAY } from "../engine/param_groups.ts";
import {
  type AugmentHook,
  checkRunConfig,
  cropCodes,
  type CropMode,
  type DataConfig,
  DEFAULT_TEST_DATA,
  DEFAULT_TRAIN_DATA,
  inputCodes,
} from "./pretrain.ts";
import {
  type RunOptimConfig,
  type RunParams,
  runRngs,
  type RunSummary,
  runTraining,
} from "../engine/runner.ts";
import { cosineLr, type LrScaling, scaleLr } from "../engine/schedule.ts";
import { smoothedOneHot } from "../engine/targets.ts";

/** A resolved fine-tuning config: plain JSON, saved with the run. */
export interface FinetuneConfig extends RunOptimConfig {
  /** Always `finetune`. */
  kind: "finetune";
  /** The classifier config (the fields of `ClassifierConfig` in `@lib/models`), resolved. */
  model: { [key: string]: ConfigValue };
  /** Data files and limits (`test` is evaluated). */
  data: DataConfig;
  /** Initial weights: an MTM run folder or weights file, or `null` (from scratch). */
  init: string | null;
  /** Base lr (SeiT fine-tuning: 1e-3). */
  blr: number;
  /** Absolute lr; overrides `blr` when not null. */
  lr: number | null;
  /** Scaling rule from blr (fine-tuning: sqrt, blr * sqrt(batch) / 8). */
  lrScaling: LrScaling;
  /** Final lr of the cosine (1e-6). */
  minLr: number;
  /** Warmup epochs (5 of 100). */
  warmupEpochs: number;
  /** Weight decay of decaying parameters (0.1). */
  weightDecay: number;
  /** Layer-wise lr decay (0.65). */
  layerDecay: number;
  /** Label smoothing of the targets (0.1). */
  smoothing: number;
  /** Crop of the input when no augmentation hook is given (eval always takes the centre). */
  crop: CropMode;
  /** Batch size of evaluation. */
  evalBatchSize: number;
}

/** The official fine-tuning recipe (REFERENCE.md section 5) except the model. */
export const FINETUNE_DEFAULTS: Omit<FinetuneConfig, "model"> = {
  kind: "finetune",
  seed: 0,
  data: {
    train: DEFAULT_TRAIN_DATA,
    test: DEFAULT_TEST_DATA,
    limitTrain: null,
    limitTest: null,
  },
  init: null,
  batchSize: 128,
  accumIter: 1,
  epochs: 100,
  maxSteps: null,
  blr: 1e-3,
  lr: null,
  lrScaling: "sqrt",
  minLr: 1e-6,
  warmupEpochs: 5,
  weightDecay: 0.1,
  layerDecay: 0.65,
  betas: [0.9, 0.999],
  eps: 1e-8,
  gradClip: null,
  smoothing: 0.1,
  crop: "random",
  evalBatchSize: 256,
  logEvery: 20,
  checkpointEvery: 0,
  evalEvery: 1,
  keepCheckpoints: 1,
  workers: 1,
};

/** What the defaults cannot say about {@linkcode FinetuneConfig}. */
export const FINETUNE_SCHEMA: ConfigSchema = {
  nullable: {
    lr: "number",
    gradClip: "number",
    maxSteps: "integer",
    init: "string",
    "data.test": "string",
    "data.limitTrain": "integer",
    "data.limitTest": "integer",
  },
  choices: {
    kind: ["finetune"],
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
    "evalBatchSize",
    "workers",
  ],
};

/**
 * A model shaped like `TokenClassifier` from `@lib/models` (with `config.workers > 1` it
 * must be a `TokenClassifier`: the workers rebuild it from its config).
 */
export interface ClassifierLike {
  /** Parameters by reference name. */
  readonly params: RunParams;
  /** The resolved config. */
  readonly config: {
    readonly gridSide: number;
    readonly numClasses: number;
    readonly depth: number;
  };
  /**
   * @param codes `[B, m, m]` int32
   * @param options training mode and the dropout / drop-path generator
   * @returns `[B, numClasses]` logits, owned by the caller
   */
  forward(codes: tf.Tensor3D, options: { rng?: Rng; training?: boolean }): tf.Tensor2D;
  /**
   * @param state an MTM state dict
   * @returns what was loaded, missing, unexpected, mismatched
   */
  loadFromMtm(state: Map<string, HostTensor>): {
    loaded: string[];
    missing: string[];
    unexpected: string[];
    mismatchedShapes: string[];
  };
}

/** What {@linkcode evaluateClassifier} returns. */
export interface EvalResult {
  /** Top-1 accuracy in [0, 1]. */
  top1: number;
  /** Top-5 accuracy in [0, 1] (top-C when C < 5). */
  top5: number;
  /** Mean cross-entropy (no smoothing). */
  loss: number;
  /** Samples evaluated. */
  n: number;
  [key: string]: number;
}

/**
 * Evaluate a classifier on the centre `m x m` crop of every record (eval mode).
 *
 * @param model the classifier
 * @param data records with labels
 * @param options batch size and a record limit
 * @returns accuracy, loss, count
 * @throws {TypeError} when the data has no labels
 */
export async function evaluateClassifier(
  model: ClassifierLike,
  data: TokenSource,
  options: { batchSize?: number; limit?: number | null } = {},
): Promise<EvalResult> {
  if (data.labels === null) throw new TypeError("Cannot evaluate on data without labels");
  const N = options.limit == null ? data.length : Math.min(options.limit, data.length);
  const bs = options.batchSize ?? 256;
  const m = model.config.gridSide, n = data.gridSide;
  const C = model.config.numClasses;
  const k5 = Math.min(5, C);
  let c1 = 0, c5 = 0, lossSum = 0;
  for (let start = 0; start < N; start += bs) {
    const B = Math.min(bs, N - start);
    const idx = Int32Array.from({ length: B }, (_, i) => start + i);
    const codes = cropCodes(data.readBatch(idx), [B, n, n], m, "center");
    const labels = Int32Array.from(idx, (i) => data.labels![i]);
    const x = tf.tensor3d(codes, [B, m, m], "int32");
    const logits = model.forward(x, { training: false });
    try {
      const [a, b] = await topKCorrect(logits, labels, [1, k5]);
      c1 += a;
      c5 += b;
      const l = tf.tidy(() => crossEntropy(logits, tf.tensor1d(labels, "int32")).mul(B));
      lossSum += (await l.data())[0];
      l.dispose();
    } finally {
      x.dispose();
      logits.dispose();
    }
  }
  return { top1: c1 / N, top5: c5 / N, loss: lossSum / N, n: N };
}

/** Options of {@linkcode finetune}. */
export interface FinetuneOptions {
  /** The resolved config. */
  config: FinetuneConfig;
  /** The classifier (e.g. `new TokenClassifier(config.model, new Rng(config.seed).fork("init"))`). */
  model: ClassifierLike;
  /** Training records (with labels). */
  data: TokenSource;
  /** Test records for evaluation, or `null`. */
  test?: TokenSource | null;
  /** The run folder. */
  runDir: string;
  /** Resume from this checkpoint of the same run (then `config.init` is not loaded again). */
  resume?: LoadedCheckpoint | null;
  /** The augmentation step; without it, records are cropped (`config.crop`) with hard labels. */
  augment?: AugmentHook;
  /** Show progress. @default {true} */
  progress?: boolean;
  /** Where warnings go. @default {console.error} */
  print?: (line: string) => void;
  /** Asked after every step; true stops the run with a checkpoint (see `RunSetup.stop`). */
  stop?: () => boolean;
}

/**
 * Fine-tune a classifier (or resume its run): loads `config.init` (an MTM run or
 * weights file) through `loadFromMtm` and reports every missing / unexpected /
 * mismatched name (the reference loads with strict=False silently; here each is
 * printed and logged), then trains with layer-wise lr decay and evaluates at epoch ends.
 *
 * Generators (from `config.seed`): `model` (dropout, drop path) and `augment`. With
 * `config.workers` W > 1 each micro-batch is split across the main thread and W - 1
 * workers (../engine/parallel.ts): crops, augmentation and targets are made in the main thread,
 * dropout and drop path per shard from `microBatchRng(seed, batch)`; evaluation runs in
 * the main thread.
 *
 * @param o config, model, data, run folder
 * @returns the run summary, with the last evaluation
 * @throws {NonFiniteLossError} when the loss becomes NaN/Inf
 * @throws {TypeError} when training data has no labels
 * @throws {InitMismatchError} when `init` is not a pre-training of this model (another
 *   width, depth or grid: the first tensor that does not fit is named)
 */
export async function finetune(o: FinetuneOptions): Promise<RunSummary> {
  const c = o.config;
  checkRunConfig(c);
  const print = o.print ?? ((l: string) => console.error(l));
  const m = o.model.config.gridSide;
  const C = o.model.config.numClasses;
  if (o.data.labels === null) throw new TypeError("Cannot fine-tune on data without labels");
  if (m > o.data.gridSide) {
    throw new RangeError(
      `Cannot fine-tune a ${m}x${m} model on ${o.data.gridSide}x${o.data.gridSide} records`,
    );
  }
  const startInfo: Record<string, unknown> = {};
  if (c.init !== null && !o.resume) {
    const { tensors, source } = await readModelWeights(c.init);
    const report = o.model.loadFromMtm(tensors);
    // refuses another width / depth / grid, naming the first tensor that does not fit
    const { fresh, dropped } = checkInitReport(report, source);
    print(
      `finetune: loaded ${report.loaded.length} of ${o.model.params.entries().length} ` +
        `tensors from ${source}; fresh (the classifier's own): ${fresh.join(", ") || "none"}; ` +
        `dropped (decoder / MLM): ${dropped.length} (${summarizeNames(dropped)})`,
    );
    startInfo.init = { source, ...report };
  }
  const numLayers = o.model.config.depth + 1;
  const groups = paramGroupsLrd(
    o.model.params.entries().map((e) => ({ name: e.name, shape: e.shape, trainable: e.trainable })),
    {
      weightDecay: c.weightDecay,
      layerDecay: c.layerDecay,
      numLayers,
      noWeightDecayList: VIT_NO_WEIGHT_DECAY,
    },
  );
  const lr = c.lr ?? scaleLr(c.blr, c.batchSize * c.accumIter, c.lrScaling);
  const rngs = runRngs(c.seed, ["model", "augment"]);
  const test = o.test ?? null;
  const workers = c.workers ?? 1;
  const model = o.model as unknown as TokenClassifier;
  const pool = workers > 1 ? await DataParallel.start(model, { workers }) : null;
  return await runTraining({
    kind: "finetune",
    config: c as unknown as FinetuneConfig & Record<string, unknown>,
    params: o.model.params,
    data: o.data,
    limit: c.data.limitTrain,
    groups,
    lrAt: (e) =>
      cosineLr(e, { lr, minLr: c.minLr, warmupEpochs: c.warmupEpochs, epochs: c.epochs }),
    rngs,
    prepare: (b: MicroBatch): PreparedBatch => {
      const { codes, targets } = inputCodes(b, m, c.crop, rngs.augment, o.augment);
      const t = targets ?? tf.tensor2d(smoothedOneHot(b.labels!, C, c.smoothing), [b.shape[0], C]);
      return {
        loss: () => classifierObjective(o.model, codes, t, rngs.model),
        dispose: () => {
          codes.dispose();
          t.dispose();
        },
      };
    },
    gradients: pool === null ? undefined : async (b: MicroBatch, scale: number) => {
      const { codes, targets } = inputCodes(b, m, c.crop, rngs.augment, o.augment);
      let host: Int32Array, t: Float32Array;
      try {
        host = await takeHostCodes(codes);
        t = targets
          ? Float32Array.from(await targets.data() as Float32Array)
          : smoothedOneHot(b.labels!, C, c.smoothing);
      } finally {
        codes.dispose();
        targets?.dispose();
      }
      const B = b.shape[0];
      const rng = microBatchRng(c.seed, b);
      return await pool.gradients({ codes: host, batch: B, targets: t }, {
        scale,
        rng,
        step: b.step,
      });
    },
    evaluate: test === null
      ? undefined
      : () =>
        evaluateClassifier(o.model, test, { batchSize: c.evalBatchSize, limit: c.data.limitTest }),
    runDir: o.runDir,
    resume: o.resume,
    progress: o.progress,
    stop: o.stop,
    print,
    startInfo: { lr, numLayers, ...startInfo },
  }).finally(() => pool?.close());
}

function summarizeNames(names: string[]): string {
  const prefixes = new Map<string, number>();
  for (const n of names) {
    const p = n.split(".")[0];
    prefixes.set(p, (prefixes.get(p) ?? 0) + 1);
  }
  return [...prefixes].map(([p, k]) => (k > 1 ? `${p}.* x${k}` : p)).join(", ") || "none";
}
