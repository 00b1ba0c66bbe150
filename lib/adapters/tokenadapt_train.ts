/**
 * Training TokenAdapt on a tokenizer this project owns (the reference ships only weights).
 *
 * A pair is (tokens of an image x, tokens of the geometrically augmented image A(x)). One
 * draw of A ({@linkcode drawGeometricParams}; flip and chain shared by 8 consecutive samples,
 * crops per sample) is applied twice: to the pixel
 * image (zero-padded to the tokenizer's frame, warped, cropped back, re-tokenized: the target
 * `T(A(x))`), and to f's output in feature space (translations are fractions of the size and
 * crop boxes scale with the resolution, so both see the same geometry). Loss: K-way
 * cross-entropy between g's logits and `T(A(x))`, averaged over positions; f and g train
 * jointly with Adam (linear warmup, cosine decay).
 *
 * Evaluation on held-out images, with one seeded A per image: the fraction of positions
 * where the codes agree with `T(A(x))` for (a) TokenAdapt, `g(A(f(emb(T(x)))))`, (b) the naive
 * alternative, A applied to the `n x n` embedding map itself then re-quantized
 * (`convertToCodes`), and (c) no augmentation of the tokens at all (`T(x)` itself, only
 * meaningful when A keeps the grid size).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { Rng, RngState } from "../random/mod.ts";
import type { CodeQuantizer } from "../tokens/mod.ts";
import {
  applyGeometric,
  drawGeometricParams,
  type GeometricAugConfig,
  type GeometricParams,
  type ResolvedGeometricAugConfig,
  resolveGeometricAugConfig,
} from "./geometric.ts";
import type { TokenAdapt } from "./tokenadapt.ts";
import { imageBatch } from "./_images.ts";

/**
 * What TokenAdapt training needs from a tokenizer: images in, codes out, and where the code
 * grid sits in pixel space. The code grid covers a `frameSize x frameSize` frame in which the
 * `imageSize x imageSize` image is centred (zero padding around it).
 */
export interface PairTokenizer {
  /** Side of the square frame the code grid covers (e.g. 32 for Fashion-MNIST padded from 28). */
  frameSize: number;
  /** Side of the images {@linkcode PairTokenizer.encode} takes (centred in the frame). */
  imageSize: number;
  /** Image channels. */
  channels: number;
  /** Code grid side n. */
  gridSize: number;
  /**
   * Tokenize images.
   * @param images `[B, C, imageSize, imageSize]` float32 in [0, 1] (not disposed)
   * @returns `[B, n, n]` int32 codes, owned by the caller
   */
  encode(images: tf.Tensor4D): tf.Tensor3D;
}

/** Settings of {@linkcode trainTokenAdapt}. */
export interface TokenAdaptTrainConfig {
  /** Optimizer steps (0: evaluate only). @default {2000} */
  steps?: number;
  /** Pairs per step. @default {64} */
  batchSize?: number;
  /** Peak Adam learning rate. @default {1e-3} */
  lr?: number;
  /** Linear warmup steps. @default {100} */
  warmupSteps?: number;
  /** Learning rate at the end of the cosine decay. @default {1e-5} */
  minLr?: number;
  /**
   * The augmentation A (one flip/chain per 8 samples, crops per sample). Crops default to area [0.2, 1], the pre-training range
   * of the section-6 step; the rest are the reference's values. A list is a mixture: step
   * `s` draws A from entry `s % length` (e.g. the TokenAdapt half's settings of pre-training
   * and of fine-tuning, in turn).
   * @default {{ groupSize: 8, cropScale: [0.2, 1] }}
   */
  geometric?: GeometricAugConfig | GeometricAugConfig[];
}

/** A {@linkcode TokenAdaptTrainConfig} with every field set (plain JSON, save it with the weights). */
export interface ResolvedTokenAdaptTrainConfig {
  /** Optimizer steps. */
  steps: number;
  /** Pairs per step. */
  batchSize: number;
  /** Peak learning rate. */
  lr: number;
  /** Warmup steps. */
  warmupSteps: number;
  /** Final learning rate. */
  minLr: number;
  /** The augmentation A: one entry, or a mixture taken in turn by step (`s % length`). */
  geometric: ResolvedGeometricAugConfig[];
}

/**
 * Fill in defaults and validate.
 * @param config partial settings
 * @returns the resolved settings
 * @throws {TypeError} for an unknown key or a wrong type
 * @throws {RangeError} for non-positive sizes or rates
 */
export function resolveTokenAdaptTrainConfig(
  config: TokenAdaptTrainConfig = {},
): ResolvedTokenAdaptTrainConfig {
  const known = ["steps", "batchSize", "lr", "warmupSteps", "minLr", "geometric"];
  for (const k of Object.keys(config)) {
    if (!known.includes(k)) {
      throw new TypeError(
        `Unknown TokenAdapt training key "${k}"; known keys: ${known.join(", ")}`,
      );
    }
  }
  const c: ResolvedTokenAdaptTrainConfig = {
    steps: config.steps ?? 2000,
    batchSize: config.batchSize ?? 64,
    lr: config.lr ?? 1e-3,
    warmupSteps: config.warmupSteps ?? 100,
    minLr: config.minLr ?? 1e-5,
    geometric: (Array.isArray(config.geometric) ? config.geometric : [config.geometric ?? {}])
      .map((g) => resolveGeometricAugConfig({ groupSize: 8, cropScale: [0.2, 1], ...g })),
  };
  if (c.geometric.length === 0) {
    throw new RangeError(`TokenAdapt training key "geometric": an empty list (no augmentation A)`);
  }
  if (!Number.isInteger(c.steps) || c.steps < 0) {
    throw new RangeError(`TokenAdapt training key "steps": ${c.steps} is not an integer >= 0`);
  }
  if (!Number.isInteger(c.batchSize) || c.batchSize < 1) {
    throw new RangeError(
      `TokenAdapt training key "batchSize": ${c.batchSize} is not an integer >= 1`,
    );
  }
  if (!Number.isInteger(c.warmupSteps) || c.warmupSteps < 0) {
    throw new RangeError(
      `TokenAdapt training key "warmupSteps": ${c.warmupSteps} is not an integer >= 0`,
    );
  }
  if (!(c.lr > 0) || !(c.minLr >= 0) || c.minLr > c.lr) {
    throw new RangeError(
      `TokenAdapt training lr ${c.lr} / minLr ${c.minLr}: expected 0 <= minLr <= lr, lr > 0`,
    );
  }
  return c;
}

/**
 * The learning rate at a step: linear warmup to `lr`, then half-cosine to `minLr`.
 * @param c resolved settings
 * @param step 0-based step
 * @returns the rate
 */
export function tokenAdaptLr(c: ResolvedTokenAdaptTrainConfig, step: number): number {
  if (step < c.warmupSteps) return (c.lr * (step + 1)) / c.warmupSteps;
  const t = (step - c.warmupSteps) / Math.max(1, c.steps - c.warmupSteps);
  return c.minLr + (c.lr - c.minLr) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, t)));
}

function checkGeometry(model: TokenAdapt, tok: PairTokenizer): void {
  const c = model.config;
  if (c.inputGrid !== tok.gridSize || c.outputGrid !== tok.gridSize) {
    throw new RangeError(
      `Cannot train TokenAdapt ${c.inputGrid} -> ${c.outputGrid} on a tokenizer with ${tok.gridSize}x${tok.gridSize} codes: both grids must equal it`,
    );
  }
  if (tok.frameSize % (2 * c.inputGrid) !== 0 || (tok.frameSize - tok.imageSize) % 2 !== 0) {
    throw new RangeError(
      `Cannot train TokenAdapt: the tokenizer frame ${tok.frameSize} must be a multiple of 2n = ${
        2 * c.inputGrid
      } and centre the ${tok.imageSize}-pixel image`,
    );
  }
}

/**
 * The pixel side of a pair: pad to the tokenizer's frame, apply A at frame resolution, crop
 * the image back out, clip to [0, 1].
 *
 * @param images `[B, C, s, s]` float32 in [0, 1] (not disposed)
 * @param params A, drawn on the 2n feature grid
 * @param tok the tokenizer's geometry
 * @returns `[B, C, s, s]` float32 in [0, 1], owned by the caller
 */
export function augmentPixels(
  images: tf.Tensor4D,
  params: GeometricParams,
  tok: PairTokenizer,
): tf.Tensor4D {
  const p = (tok.frameSize - tok.imageSize) / 2;
  const s = tok.imageSize;
  return tf.tidy(() => {
    const framed = p > 0 ? images.pad([[0, 0], [0, 0], [p, p], [p, p]]) : images;
    const warped = applyGeometric(framed as tf.Tensor4D, params);
    const [B, C] = warped.shape;
    const crop = p > 0 ? warped.slice([0, 0, p, p], [B, C, s, s]) : warped;
    return crop.clipByValue(0, 1) as tf.Tensor4D;
  });
}

/** A training or evaluation batch of pairs. */
export interface TokenAdaptPairs {
  /** Codebook embeddings of `T(x)`: `[B, d, n, n]` float32. */
  emb: tf.Tensor4D;
  /** Codes `T(x)`: `[B, n, n]` int32. */
  codes: tf.Tensor3D;
  /** The drawn A. */
  params: GeometricParams;
  /** Codes `T(A(x))`: `[B, n, n]` int32. */
  targets: tf.Tensor3D;
}

/**
 * Make pairs for a batch of images: `T(x)`, its embeddings, one A per sample and `T(A(x))`.
 *
 * @param images `[B, C, s, s]` float32 in [0, 1] (not disposed)
 * @param model the network (for its geometry)
 * @param tok the tokenizer
 * @param quantizer the tokenizer's codebook
 * @param geometric the augmentation settings
 * @param rng the generator for A
 * @returns the pairs; the caller disposes `emb`, `codes` and `targets`
 */
export function makePairs(
  images: tf.Tensor4D,
  model: TokenAdapt,
  tok: PairTokenizer,
  quantizer: CodeQuantizer,
  geometric: ResolvedGeometricAugConfig,
  rng: Rng,
): TokenAdaptPairs {
  checkGeometry(model, tok);
  const n = model.config.inputGrid;
  const B = images.shape[0];
  const params = drawGeometricParams(
    [B, model.config.codeDim, 2 * n, 2 * n],
    2 * n,
    geometric,
    rng,
  );
  const codes = tok.encode(images);
  const emb = quantizer.embed(codes);
  const targets = tf.tidy(() => tok.encode(augmentPixels(images, params, tok)));
  return { emb, codes, params, targets };
}

/**
 * g's logits for a batch of pairs: `g(A(f(emb)))`. Differentiable in the parameters.
 * @param model the network
 * @param pairs the batch
 * @returns `[B, m*m, K]` float32, owned by the caller
 */
export function pairLogits(model: TokenAdapt, pairs: TokenAdaptPairs): tf.Tensor3D {
  return tf.tidy(() => model.invertLogits(applyGeometric(model.convert(pairs.emb), pairs.params)));
}

/**
 * Mean K-way cross-entropy of g's logits against `T(A(x))`.
 * @param model the network
 * @param pairs the batch
 * @returns the scalar loss, owned by the caller
 */
export function pairLoss(model: TokenAdapt, pairs: TokenAdaptPairs): tf.Scalar {
  return tf.tidy(() => {
    const logits = pairLogits(model, pairs);
    const K = logits.shape[2];
    const flat = logits.reshape([-1, K]);
    const labels = tf.oneHot(pairs.targets.reshape([-1]) as tf.Tensor1D, K);
    return tf.neg(tf.sum(labels.mul(tf.logSoftmax(flat)), 1)).mean() as tf.Scalar;
  });
}

/** Adam without weight decay over a fixed list of variables (lr given per step). */
class Adam {
  #vars: tf.Variable[];
  #m: tf.Variable[];
  #v: tf.Variable[];
  #t = 0;
  constructor(vars: tf.Variable[], readonly b1 = 0.9, readonly b2 = 0.999, readonly eps = 1e-8) {
    this.#vars = vars;
    const zeros = (v: tf.Variable) => tf.tidy(() => tf.variable(tf.zerosLike(v), false));
    this.#m = vars.map(zeros);
    this.#v = vars.map(zeros);
  }
  get t(): number {
    return this.#t;
  }
  step(grads: tf.NamedTensorMap, lr: number): void {
    this.#t++;
    const c1 = 1 - this.b1 ** this.#t, c2 = 1 - this.b2 ** this.#t;
    tf.tidy(() => {
      this.#vars.forEach((p, i) => {
        const g = grads[p.name];
        const m = this.#m[i].mul(this.b1).add(g.mul(1 - this.b1));
        const v = this.#v[i].mul(this.b2).add(g.square().mul(1 - this.b2));
        this.#m[i].assign(m);
        this.#v[i].assign(v);
        p.assign(p.sub(m.div(c1).div(v.div(c2).sqrt().add(this.eps)).mul(lr)));
      });
    });
  }
  /** Moments by `optimizer.exp_avg(_sq).<name>`, in the variables' own (local) layout. */
  moments(names: readonly string[]): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    const host = (v: tf.Variable): HostTensor => ({
      dtype: "float32",
      shape: [...v.shape],
      data: Float32Array.from(v.dataSync() as Float32Array),
    });
    names.forEach((n, i) => {
      out.set(`optimizer.exp_avg.${n}`, host(this.#m[i]));
      out.set(`optimizer.exp_avg_sq.${n}`, host(this.#v[i]));
    });
    return out;
  }
  restore(names: readonly string[], moments: ReadonlyMap<string, HostTensor>, t: number): void {
    names.forEach((n, i) => {
      for (const [kind, slot] of [["exp_avg", this.#m[i]], ["exp_avg_sq", this.#v[i]]] as const) {
        const key = `optimizer.${kind}.${n}`;
        const h = moments.get(key);
        if (h === undefined || h.data.length !== slot.size) {
          throw new RangeError(
            `Cannot restore TokenAdapt's optimizer: moment "${key}" is ${
              h === undefined ? "missing" : `of size ${h.data.length}, expected ${slot.size}`
            }`,
          );
        }
        tf.tidy(() =>
          slot.assign(tf.tensor(Float32Array.from(h.data as Float32Array), slot.shape))
        );
      }
    });
    this.#t = t;
  }
  dispose(): void {
    tf.dispose([...this.#m, ...this.#v]);
  }
}

/** Per-step record of {@linkcode trainTokenAdapt}. */
export interface TokenAdaptStepLog {
  /** 0-based step. */
  step: number;
  /** Learning rate used. */
  lr: number;
  /** Mean cross-entropy of the batch. */
  loss: number;
  /** Fraction of positions where argmax g equals `T(A(x))` in this batch (before the update). */
  accuracy: number;
  /** Seconds this step took. */
  seconds: number;
}

/** Options of {@linkcode trainTokenAdapt}. */
export interface TrainTokenAdaptOptions {
  /** Called after every step (e.g. to print every 50th). */
  onStep?: (log: TokenAdaptStepLog) => void;
}

/**
 * What a {@linkcode TokenAdaptTrainer} needs to continue exactly: completed steps, the
 * generator's state, Adam's step count and moments (the weights are the model's own state
 * dict, saved beside it).
 */
export interface TokenAdaptTrainerState {
  /** Completed optimizer steps. */
  step: number;
  /** The batch/augmentation generator's state after that step. */
  rng: RngState;
  /** Adam's update count. */
  adamSteps: number;
  /** Adam's moments, `optimizer.exp_avg(_sq).<state-dict key>` (local layouts). */
  moments: Map<string, HostTensor>;
}

/**
 * Trains f and g jointly, one optimizer step per {@linkcode TokenAdaptTrainer.next} call, so
 * that a task can checkpoint, evaluate and stop between steps. Step `s` samples its batch and
 * draws A from `config.geometric[s % length]` with the generator it was given.
 */
export class TokenAdaptTrainer {
  /** The resolved settings. */
  readonly config: ResolvedTokenAdaptTrainConfig;
  #model: TokenAdapt;
  #images: HostTensor;
  #tok: PairTokenizer;
  #q: CodeQuantizer;
  #rng: Rng;
  #vars: tf.Variable[];
  #names: string[];
  #opt: Adam;
  #step = 0;

  /**
   * @param model the network (trained in place)
   * @param images `[N, s, s]` or `[N, C, s, s]`, uint8 (0..255) or float32 (0..1)
   * @param tok the tokenizer
   * @param quantizer its codebook
   * @param config training settings
   * @param rng generator for batches and A (advanced by every step)
   * @throws {RangeError} when the network's grids do not fit the tokenizer
   */
  constructor(
    model: TokenAdapt,
    images: HostTensor,
    tok: PairTokenizer,
    quantizer: CodeQuantizer,
    config: TokenAdaptTrainConfig,
    rng: Rng,
  ) {
    checkGeometry(model, tok);
    this.config = resolveTokenAdaptTrainConfig(config);
    this.#model = model;
    this.#images = images;
    this.#tok = tok;
    this.#q = quantizer;
    this.#rng = rng;
    const vs = model.variables();
    this.#vars = vs.map((v) => v.variable);
    this.#names = vs.map((v) => v.name);
    this.#opt = new Adam(this.#vars);
  }

  /** Completed optimizer steps. */
  get step(): number {
    return this.#step;
  }

  /** Whether every configured step is done. */
  get done(): boolean {
    return this.#step >= this.config.steps;
  }

  /**
   * One optimizer step.
   * @returns its log
   * @throws {Error} when the loss is non-finite (names the step; nothing is updated)
   */
  next(): TokenAdaptStepLog {
    const c = this.config, step = this.#step;
    const t0 = performance.now();
    const N = this.#images.shape[0];
    const idx = Int32Array.from({ length: c.batchSize }, () => this.#rng.int(0, N));
    const batch = imageBatch(this.#images, idx, this.#tok, "train on");
    const geometric = c.geometric[step % c.geometric.length];
    const pairs = makePairs(batch, this.#model, this.#tok, this.#q, geometric, this.#rng);
    batch.dispose();
    const lr = tokenAdaptLr(c, step);
    let loss = NaN, accuracy = NaN;
    try {
      let acc: tf.Scalar | null = null;
      const { value, grads } = tf.variableGrads(() => {
        const logits = pairLogits(this.#model, pairs);
        const K = logits.shape[2];
        acc = tf.keep(
          logits.argMax(2).equal(pairs.targets.reshape([c.batchSize, -1])).mean() as tf.Scalar,
        );
        const labels = tf.oneHot(pairs.targets.reshape([-1]) as tf.Tensor1D, K);
        return tf.neg(tf.sum(labels.mul(tf.logSoftmax(logits.reshape([-1, K]))), 1))
          .mean() as tf.Scalar;
      }, this.#vars);
      loss = value.dataSync()[0];
      value.dispose();
      accuracy = acc === null ? NaN : (acc as tf.Scalar).dataSync()[0];
      if (acc !== null) (acc as tf.Scalar).dispose();
      if (!Number.isFinite(loss)) {
        tf.dispose(grads);
        throw new Error(`TokenAdapt training loss is ${loss} at step ${step}; stopping`);
      }
      this.#opt.step(grads, lr);
      tf.dispose(grads);
    } finally {
      tf.dispose([pairs.emb, pairs.codes, pairs.targets]);
    }
    this.#step++;
    return { step, lr, loss, accuracy, seconds: (performance.now() - t0) / 1000 };
  }

  /** @returns the state to save beside the model's weights (host copies) */
  state(): TokenAdaptTrainerState {
    return {
      step: this.#step,
      rng: this.#rng.getState(),
      adamSteps: this.#opt.t,
      moments: this.#opt.moments(this.#names),
    };
  }

  /**
   * Continue from a saved state (load the model's weights first).
   * @param s a state from {@linkcode TokenAdaptTrainer.state}
   * @throws {RangeError} when a moment is missing or of the wrong size, or the step is
   *   outside the schedule
   */
  restore(s: TokenAdaptTrainerState): void {
    if (!Number.isInteger(s.step) || s.step < 0 || s.step > this.config.steps) {
      throw new RangeError(
        `Cannot restore TokenAdapt training at step ${s.step}: the schedule has ${this.config.steps} steps`,
      );
    }
    this.#opt.restore(this.#names, s.moments, s.adamSteps);
    this.#rng.setState(s.rng);
    this.#step = s.step;
  }

  /** Release the optimizer's tensors (the model is the caller's). */
  dispose(): void {
    this.#opt.dispose();
  }
}

/**
 * Train f and g jointly on pairs drawn from `images`.
 *
 * @param model the network (trained in place)
 * @param images `[N, s, s]` or `[N, C, s, s]`, uint8 (0..255) or float32 (0..1)
 * @param tok the tokenizer
 * @param quantizer its codebook
 * @param config training settings
 * @param rng generator for batches and A
 * @param options per-step callback
 * @returns every step's log
 * @throws {RangeError} when the network's grids do not fit the tokenizer
 * @throws {Error} when the loss becomes non-finite (names the step)
 */
export function trainTokenAdapt(
  model: TokenAdapt,
  images: HostTensor,
  tok: PairTokenizer,
  quantizer: CodeQuantizer,
  config: TokenAdaptTrainConfig,
  rng: Rng,
  options: TrainTokenAdaptOptions = {},
): TokenAdaptStepLog[] {
  const trainer = new TokenAdaptTrainer(model, images, tok, quantizer, config, rng);
  const logs: TokenAdaptStepLog[] = [];
  try {
    while (!trainer.done) {
      const log = trainer.next();
      logs.push(log);
      options.onStep?.(log);
    }
  } finally {
    trainer.dispose();
  }
  return logs;
}

/** Agreement with `T(A(x))` of each way to augment tokens (fractions of positions). */
export interface TokenAdaptAgreement {
  /** Held-out images evaluated. */
  images: number;
  /** TokenAdapt: `g(A(f(emb(T(x)))))`. */
  tokenAdapt: number;
  /** Naive: A on the `n x n` embedding map, then `convertToCodes`. */
  naive: number;
  /** No augmentation of the tokens: `T(x)` itself. */
  unchanged: number;
  /** Mean K-way cross-entropy of g's logits against `T(A(x))` (the training loss, held out). */
  loss: number;
  /**
   * With a decoder: PSNR (dB, over all pixels of all images) of each way's decoded codes
   * against the augmented image A(x) itself; `tokenizer` is `T(A(x))` decoded, the ceiling.
   */
  psnr?: { tokenAdapt: number; naive: number; unchanged: number; tokenizer: number };
}

/**
 * Measure how well TokenAdapt reproduces the tokens of augmented images, against the naive
 * alternative, on held-out images with one seeded A each. With `decode`, also how close the
 * decoded codes of each way come to the augmented image in pixels.
 *
 * @param model the network
 * @param images held-out images (`[N, s, s]` or `[N, C, s, s]`, uint8 or float32)
 * @param tok the tokenizer
 * @param quantizer its codebook
 * @param geometric the augmentation A
 * @param rng generator for A
 * @param options `batchSize` (images per forward pass, default 100) and `decode` (codes
 *   `[B, n, n]` -> images `[B, C, s, s]` in [0, 1])
 * @returns the agreements (and PSNRs)
 */
export function evaluateTokenAdapt(
  model: TokenAdapt,
  images: HostTensor,
  tok: PairTokenizer,
  quantizer: CodeQuantizer,
  geometric: GeometricAugConfig,
  rng: Rng,
  options: { batchSize?: number; decode?: (codes: tf.Tensor3D) => tf.Tensor4D } = {},
): TokenAdaptAgreement {
  checkGeometry(model, tok);
  const g = resolveGeometricAugConfig(geometric);
  const N = images.shape[0], bs = options.batchSize ?? 100, decode = options.decode;
  const n = model.config.inputGrid;
  let total = 0, pixels = 0, ceSum = 0;
  const hits = [0, 0, 0], sq = [0, 0, 0, 0];
  for (let s = 0; s < N; s += bs) {
    const idx = Int32Array.from({ length: Math.min(bs, N - s) }, (_, i) => s + i);
    const batch = imageBatch(images, idx, tok, "train on");
    const B = idx.length;
    const params = drawGeometricParams([B, model.config.codeDim, 2 * n, 2 * n], 2 * n, g, rng);
    try {
      const counts = tf.tidy(() => {
        const codes = tok.encode(batch);
        const emb = quantizer.embed(codes);
        const augmented = augmentPixels(batch, params, tok);
        const t = tok.encode(augmented);
        const logits = model.invertLogits(applyGeometric(model.convert(emb), params));
        const K = logits.shape[2];
        const ce = tf.neg(
          tf.sum(
            tf.oneHot(t.reshape([-1]) as tf.Tensor1D, K).mul(
              tf.logSoftmax(logits.reshape([-1, K])),
            ),
          ),
        ).dataSync()[0];
        const ways = [
          logits.argMax(2).reshape([B, n, n]) as tf.Tensor3D,
          quantizer.toCodes(applyGeometric(emb, params)),
          codes,
        ];
        const out = [...ways.map((w) => w.equal(t).sum().dataSync()[0]), ce];
        if (decode !== undefined) {
          for (const w of [...ways, t]) {
            out.push(decode(w).sub(augmented).square().sum().dataSync()[0]);
          }
        }
        return out;
      });
      for (let k = 0; k < 3; k++) hits[k] += counts[k];
      ceSum += counts[3];
      if (decode !== undefined) { for (let k = 0; k < 4; k++) sq[k] += counts[4 + k]; }
      total += B * n * n;
      pixels += batch.size;
    } finally {
      batch.dispose();
    }
  }
  const result: TokenAdaptAgreement = {
    images: N,
    tokenAdapt: hits[0] / total,
    naive: hits[1] / total,
    unchanged: hits[2] / total,
    loss: ceSum / total,
  };
  if (decode !== undefined) {
    const psnr = (k: number) => 10 * Math.log10(1 / (sq[k] / pixels));
    result.psnr = { tokenAdapt: psnr(0), naive: psnr(1), unchanged: psnr(2), tokenizer: psnr(3) };
  }
  return result;
}
