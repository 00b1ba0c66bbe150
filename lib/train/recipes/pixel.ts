/**
 * The pixel baseline of the storage study: a ViT on raw (or box-downsampled) Fashion-MNIST
 * pixels read from idx ubyte files, trained with the fine-tuning recipe of the token
 * classifiers (layer-wise lr decay, AdamW, cosine schedule, label smoothing) and the pixel
 * counterpart of the token base path: random resized crop (bicubic, area `rrcScale`) then
 * CutMix. Evaluation is on the whole test image (downsampled the same way as the stored
 * training images). A run of {@linkcode runTraining}: same run folder, log, checkpoints,
 * exact resume.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { readIdxImagesAndLabels } from "../../io/mod.ts";
import { createMixup } from "../../adapters/mod.ts";
import type { PixelVit, ResolvedPixelVitConfig } from "../../models/mod.ts";
import { randomResizedCrop } from "../../tokens/mod.ts";
import type { LoadedCheckpoint } from "../engine/checkpoint.ts";
import type { ConfigSchema } from "../engine/config.ts";
import type { MicroBatch, PreparedBatch, TokenSource } from "../engine/loop.ts";
import { crossEntropy } from "../engine/losses.ts";
import { classifierObjective } from "./objectives.ts";
import { topKCorrect } from "../engine/metrics.ts";
import { paramGroupsLrd, VIT_NO_WEIGHT_DECAY } from "../engine/param_groups.ts";
import { checkRunConfig } from "./pretrain.ts";
import { type RunOptimConfig, runRngs, type RunSummary, runTraining } from "../engine/runner.ts";
import { cosineLr, type LrScaling, scaleLr } from "../engine/schedule.ts";
import { smoothedOneHot } from "../engine/targets.ts";

/** Where the pixel baseline's images come from. */
export interface PixelDataConfig {
  /** Training images (idx ubyte, optionally gzipped) `[N, S, S]`. */
  train: string;
  /** Training labels (idx ubyte). */
  trainLabels: string;
  /** Test images (idx ubyte) at any side that `imageSize` divides. */
  test: string;
  /** Test labels. */
  testLabels: string;
  /** The model's side S; test images are box-downsampled to it. */
  imageSize: number;
  /** Use only the first N test images, or `null` for all. */
  limitTest: number | null;
}

/** A resolved pixel-baseline config: plain JSON, saved with the run. */
export interface PixelBaselineConfig extends RunOptimConfig {
  /** Always `pixel`. */
  kind: "pixel";
  /** The pixel ViT config, resolved. */
  model: ResolvedPixelVitConfig;
  /** Data files. */
  data: PixelDataConfig;
  /** Base lr (as the token fine-tuning). */
  blr: number;
  /** Absolute lr; overrides `blr` when not null. */
  lr: number | null;
  /** Scaling rule from blr. */
  lrScaling: LrScaling;
  /** Final lr of the cosine. */
  minLr: number;
  /** Warmup epochs. */
  warmupEpochs: number;
  /** Weight decay of decaying parameters. */
  weightDecay: number;
  /** Layer-wise lr decay. */
  layerDecay: number;
  /** Label smoothing. */
  smoothing: number;
  /** Area range of the random resized crop. */
  rrcScale: [number, number];
  /** CutMix's Beta alpha (0 = none). */
  cutmixAlpha: number;
  /** Pixel mean (of x / 255) subtracted before the model. */
  pixelMean: number;
  /** Pixel std (of x / 255) divided by. */
  pixelStd: number;
  /** Batch size of evaluation. */
  evalBatchSize: number;
}

/**
 * The pixel recipe: the token fine-tuning recipe's optimizer and schedule (REFERENCE.md
 * section 5), RRC area [0.08, 1] and CutMix 1.0 as on the token base path, the
 * Fashion-MNIST pixel statistics. Data paths are set per run.
 */
export const PIXEL_DEFAULTS: Omit<PixelBaselineConfig, "model"> = {
  kind: "pixel",
  seed: 0,
  data: {
    train: "",
    trainLabels: "",
    test: "",
    testLabels: "",
    imageSize: 28,
    limitTest: null,
  },
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
  rrcScale: [0.08, 1],
  cutmixAlpha: 1,
  pixelMean: 0.286,
  pixelStd: 0.353,
  evalBatchSize: 256,
  logEvery: 20,
  checkpointEvery: 0,
  evalEvery: 1,
  keepCheckpoints: 1,
};

/** What the defaults cannot say about {@linkcode PixelBaselineConfig}. */
export const PIXEL_SCHEMA: ConfigSchema = {
  nullable: {
    lr: "number",
    gradClip: "number",
    maxSteps: "integer",
    "data.limitTest": "integer",
  },
  choices: { kind: ["pixel"], lrScaling: ["linear", "sqrt", "none"] },
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
    "data.imageSize",
  ],
};

/**
 * Images held in memory as a {@linkcode TokenSource}: "codes" are the uint8 pixel values
 * (0..255) of `[N, S, S]` images, so the training loop reads them like token grids.
 */
export class PixelSource implements TokenSource {
  /** Images N. */
  readonly length: number;
  /** Side S. */
  readonly gridSide: number;
  /** Labels. */
  readonly labels: Int32Array;
  readonly #pixels: Uint8Array;

  /**
   * Images already in memory.
   * @param pixels `[N * S * S]` uint8 row-major (kept, not copied)
   * @param side S
   * @param labels N labels
   * @throws {TypeError} when the sizes disagree
   */
  constructor(pixels: Uint8Array, side: number, labels: Int32Array) {
    if (pixels.length !== labels.length * side * side) {
      throw new TypeError(
        `Cannot pair ${pixels.length} pixels with ${labels.length} labels of ${side}x${side} images`,
      );
    }
    this.#pixels = pixels;
    this.gridSide = side;
    this.length = labels.length;
    this.labels = labels;
  }

  /**
   * Read idx images and labels, box-downsampling the images to `side`.
   * @param images idx image file `[N, H, W]` uint8
   * @param labels idx label file `[N]`
   * @param side the side to deliver (must divide H)
   * @param limit keep only the first N images, or `null`
   * @returns the source
   * @throws {TypeError} for images that are not uint8 `[N, H, H]`
   */
  static async open(
    images: string,
    labels: string,
    side: number,
    limit: number | null = null,
  ): Promise<PixelSource> {
    const px = await readIdxImagesAndLabels(images, labels);
    if (px.images.dtype !== "uint8" || px.images.shape.length !== 3) {
      throw new TypeError(
        `Cannot read "${images}" as images: expected uint8 [N, H, W], got ${px.images.dtype} [${px.images.shape}]`,
      );
    }
    const [N0, H, W] = px.images.shape as [number, number, number];
    const N = limit === null ? N0 : Math.min(limit, N0);
    const data = (px.images.data as Uint8Array).subarray(0, N * H * W);
    const small = H === side ? data.slice() : downsampleImages(data, [N, H, W], side);
    const lab = Int32Array.from(px.labels.data as ArrayLike<number>, (v) => v).subarray(0, N);
    return new PixelSource(small, side, lab);
  }

  /**
   * Read images as "codes" (pixel values).
   * @param indices image indices
   * @param out optional destination
   * @returns `[B, S, S]` int32 pixel values
   */
  readBatch(indices: ArrayLike<number>, out?: Int32Array): Int32Array {
    const n = this.gridSide * this.gridSide;
    const o = out ?? new Int32Array(indices.length * n);
    for (let b = 0; b < indices.length; b++) {
      const i = indices[b];
      if (!(i >= 0 && i < this.length)) {
        throw new RangeError(`Cannot read image ${i}: the source has ${this.length}`);
      }
      const src = this.#pixels.subarray(i * n, (i + 1) * n);
      for (let k = 0; k < n; k++) o[b * n + k] = src[k];
    }
    return o;
  }
}

/**
 * Box-downsample `[N, H, W]` uint8 images by an integer factor (mean of each f x f block,
 * rounded half up).
 *
 * @param images `[N * H * W]` row-major uint8
 * @param shape `[N, H, W]`
 * @param side the output side (H and W must be multiples of it)
 * @returns `[N * side * side]` uint8
 * @throws {RangeError} when `side` does not divide the image side
 */
export function downsampleImages(
  images: Uint8Array,
  shape: readonly [number, number, number],
  side: number,
): Uint8Array {
  const [N, H, W] = shape;
  if (H % side !== 0 || W % side !== 0 || H !== W) {
    throw new RangeError(`Cannot box-downsample ${H}x${W} images to ${side}x${side}`);
  }
  const f = H / side;
  if (f === 1) return images.slice();
  const out = new Uint8Array(N * side * side);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < side; i++) {
      for (let j = 0; j < side; j++) {
        let s = 0;
        for (let a = 0; a < f; a++) {
          const row = n * H * W + (i * f + a) * W + j * f;
          for (let b = 0; b < f; b++) s += images[row + b];
        }
        out[n * side * side + i * side + j] = Math.floor(s / (f * f) + 0.5);
      }
    }
  }
  return out;
}

function normalize(
  codes: Int32Array,
  B: number,
  S: number,
  mean: number,
  std: number,
): tf.Tensor4D {
  return tf.tidy(() =>
    tf.tensor4d(codes, [B, 1, S, S], "int32").toFloat().div(255).sub(mean).div(std) as tf.Tensor4D
  );
}

/**
 * Top-1/top-5 accuracy and mean cross-entropy of a pixel ViT on whole images.
 * @param model the model
 * @param data the images
 * @param config mean/std and batch size
 * @returns `{ top1, top5, loss, n }`
 */
export async function evaluatePixelVit(
  model: PixelVit,
  data: PixelSource,
  config: Pick<PixelBaselineConfig, "pixelMean" | "pixelStd" | "evalBatchSize">,
): Promise<Record<string, number>> {
  const N = data.length, S = data.gridSide, C = model.config.numClasses;
  const k5 = Math.min(5, C);
  let c1 = 0, c5 = 0, lossSum = 0;
  for (let start = 0; start < N; start += config.evalBatchSize) {
    const B = Math.min(config.evalBatchSize, N - start);
    const idx = Int32Array.from({ length: B }, (_, i) => start + i);
    const labels = Int32Array.from(idx, (i) => data.labels[i]);
    const x = normalize(data.readBatch(idx), B, S, config.pixelMean, config.pixelStd);
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

/** Options of {@linkcode trainPixelBaseline}. */
export interface PixelBaselineOptions {
  /** The resolved config. */
  config: PixelBaselineConfig;
  /** The model (e.g. `new PixelVit(config.model, new Rng(config.seed).fork("init"))`). */
  model: PixelVit;
  /** The run folder. */
  runDir: string;
  /** Resume from this checkpoint of the same run. */
  resume?: LoadedCheckpoint | null;
  /** Show progress. @default {true} */
  progress?: boolean;
  /** Where human-readable lines go. */
  print?: (line: string) => void;
  /** Asked after every step; true stops with a checkpoint (see `RunSetup.stop`). */
  stop?: () => boolean;
}

/**
 * Train (or resume) the pixel baseline. Generators (from `config.seed`): `model` (dropout,
 * drop path) and `augment` (crops, CutMix).
 *
 * @param o config, model, run folder
 * @returns the run summary with the last evaluation
 * @throws {NonFiniteLossError} when the loss becomes NaN/Inf
 * @throws {RangeError} for a config out of range or a batch that CutMix cannot pair
 */
export async function trainPixelBaseline(o: PixelBaselineOptions): Promise<RunSummary> {
  const c = o.config;
  checkRunConfig(c);
  const S = c.data.imageSize;
  if (o.model.config.imageSize !== S) {
    throw new RangeError(
      `Cannot train a ${o.model.config.imageSize}-pixel model on ${S}-pixel images (data.imageSize)`,
    );
  }
  if (c.cutmixAlpha > 0 && c.batchSize % 2 !== 0) {
    throw new RangeError(`Cannot CutMix batches of ${c.batchSize}: the batch size must be even`);
  }
  const data = await PixelSource.open(c.data.train, c.data.trainLabels, S);
  const test = await PixelSource.open(c.data.test, c.data.testLabels, S, c.data.limitTest);
  const C = o.model.config.numClasses;
  const groups = paramGroupsLrd(
    o.model.params.entries().map((e) => ({ name: e.name, shape: e.shape, trainable: e.trainable })),
    {
      weightDecay: c.weightDecay,
      layerDecay: c.layerDecay,
      numLayers: o.model.config.depth + 1,
      noWeightDecayList: VIT_NO_WEIGHT_DECAY,
    },
  );
  const lr = c.lr ?? scaleLr(c.blr, c.batchSize * c.accumIter, c.lrScaling);
  const rngs = runRngs(c.seed, ["model", "augment"]);
  const rrc = randomResizedCrop(S, { scale: c.rrcScale });
  const mix = c.cutmixAlpha > 0
    ? createMixup({
      numClasses: C,
      mixupAlpha: 0,
      cutmixAlpha: c.cutmixAlpha,
      labelSmoothing: c.smoothing,
    })
    : null;
  return await runTraining({
    kind: "pixel",
    config: c as unknown as PixelBaselineConfig & Record<string, unknown>,
    params: o.model.params,
    data,
    limit: null,
    groups,
    lrAt: (e) =>
      cosineLr(e, { lr, minLr: c.minLr, warmupEpochs: c.warmupEpochs, epochs: c.epochs }),
    rngs,
    prepare: (b: MicroBatch): PreparedBatch => {
      const B = b.shape[0];
      const [x, t] = tf.tidy(() => {
        const raw = normalize(b.codes, B, S, c.pixelMean, c.pixelStd);
        const cropped = rrc.apply(raw, rrc.draw(raw, rngs.augment));
        if (mix !== null) {
          const r = mix.run(cropped, b.labels!, rngs.augment);
          return [r.x, r.targets];
        }
        return [cropped, tf.tensor2d(smoothedOneHot(b.labels!, C, c.smoothing), [B, C])];
      }) as [tf.Tensor4D, tf.Tensor2D];
      return {
        loss: () => classifierObjective(o.model, x, t, rngs.model),
        dispose: () => tf.dispose([x, t]),
      };
    },
    evaluate: () => evaluatePixelVit(o.model, test, c),
    runDir: o.runDir,
    resume: o.resume,
    progress: o.progress,
    print: o.print,
    stop: o.stop,
    startInfo: { lr, numLayers: o.model.config.depth + 1, records: data.length },
  });
}
