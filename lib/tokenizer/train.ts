/**
 * Training the VQ tokenizer: reconstruction MSE + commitment loss through a
 * straight-through estimator, Adam on the encoder/decoder, EMA updates of the cosine
 * codebook, restarts of dead codes, resumable checkpoints.
 *
 * One step on a batch x (network space, [-1, 1]):
 * ```
 * e  = normalize(encoder(x))                 [B*n*n, d] unit rows
 * k  = argmax_k <e, c_k>                     cosine assignment (codebook rows are unit)
 * q  = c_k
 * y  = decoder(e + stopgrad(q - e))          straight-through: the decoder sees q,
 *                                            the encoder gets the decoder's gradient
 * loss = mean((y - x)^2) + beta * mean(|e - q|^2)
 * Adam step on encoder + decoder; EMA of counts and sums of e per code; every
 * `restartEvery` steps, codes used less than `deadThreshold` x the mean restart at a
 * random e of the batch.
 * ```
 * Data order: epoch `k` visits the images in `Rng(seed).fork("epoch:k").permutation(N)`,
 * `floor(N / batchSize)` batches per epoch; so a resumed run sees exactly the batches the
 * uninterrupted run would.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import { Rng } from "../random/mod.ts";
import {
  AdamW,
  cosineLr,
  letSignalsIn,
  loadCheckpoint,
  RunStoppedError,
  saveCheckpoint,
} from "../train/mod.ts";
import {
  gridSize,
  type ResolvedTokenizerConfig,
  type ResolvedTokenizerTrainConfig,
  resolveTokenizerConfig,
  resolveTokenizerTrainConfig,
  type TokenizerConfig,
  type TokenizerTrainConfig,
} from "./config.ts";
import { EmaCodebook } from "./ema.ts";
import { imageBatch, imageSetDims } from "./images.ts";
import { tokenizerTensors } from "./io.ts";
import { assignCodes, imagesToNetwork, VqTokenizer } from "./model.ts";
import { stopGradient } from "./_layers.ts";

/** What one training step measured. */
export interface TokenizerStepInfo {
  /** Steps completed (1 after the first). */
  step: number;
  /** Total steps of the run. */
  steps: number;
  /** Epoch of this step (fractional: steps * batch / N). */
  epoch: number;
  /** The loss optimized: mse + beta * commit. */
  loss: number;
  /** Reconstruction MSE in network space ([-1, 1], padded image). */
  mse: number;
  /** `10 log10(4 / mse)`: PSNR on the 0..1 scale of the padded batch, dB. */
  psnr: number;
  /** Commitment term `mean |e - q|^2`. */
  commit: number;
  /** Distinct codes used in this batch. */
  codesUsed: number;
  /** Codes restarted at this step (0 on most steps). */
  restarted: number;
  /** The learning rate of this step. */
  lr: number;
}

/** Options of {@linkcode trainTokenizer}. */
export interface TrainTokenizerOptions {
  /** The architecture. Ignored when resuming (the checkpoint's is used and compared). */
  config?: TokenizerConfig;
  /** The recipe. */
  train?: TokenizerTrainConfig;
  /** Folder for checkpoints (created). Without it, nothing is saved. */
  runDir?: string;
  /** Continue from the checkpoint in `runDir`. */
  resume?: boolean;
  /**
   * Stop once this many steps are done (a checkpoint is saved), as if interrupted; a later
   * call with `resume` and the same recipe continues exactly where it stopped.
   * @default {train.steps}
   */
  stopAtStep?: number;
  /** Called after every step. */
  onStep?: (info: TokenizerStepInfo) => void;
  /**
   * Asked after every step (SIGINT / SIGTERM, `listenForStop` of `@lib/train`): true saves
   * a checkpoint there and throws `RunStoppedError`, so a resume continues exactly.
   * @default {never}
   */
  stop?: () => boolean;
  /** Called with human-readable events (init, restarts, checkpoints). */
  log?: (line: string) => void;
  /** The name of the image source, for messages and the saved config. @default {"<images>"} */
  source?: string;
}

/** What {@linkcode trainTokenizer} returns. */
export interface TrainTokenizerResult {
  /** The trained tokenizer (unpruned codebook); the caller owns it. */
  tokenizer: VqTokenizer;
  /** The resolved architecture. */
  config: ResolvedTokenizerConfig;
  /** The resolved recipe. */
  train: ResolvedTokenizerTrainConfig;
  /** One entry per step run in this call (not the steps before a resume). */
  history: TokenizerStepInfo[];
  /** Wall time of the steps, seconds, every segment of a resumed run included. */
  trainSeconds: number;
  /** The step the run started from (0, or the checkpoint's step). */
  startStep: number;
}

/** The config stored in a tokenizer checkpoint. */
interface CheckpointConfig {
  tokenizer: ResolvedTokenizerConfig;
  train: ResolvedTokenizerTrainConfig;
  images: { count: number; shape: number[] };
}

/**
 * The images of a training step, deterministic in (seed, step): epoch `k` visits the
 * images in `Rng(seed).fork("epoch:k").permutation(count)`, `floor(count / batchSize)`
 * batches per epoch (the tail of each permutation is skipped).
 *
 * @param seed the run's seed
 * @param step the step (0-based)
 * @param count images in the training set
 * @param batchSize images per step
 * @returns `batchSize` image indices
 * @throws {RangeError} when `count < batchSize`
 */
export function batchIndices(
  seed: number,
  step: number,
  count: number,
  batchSize: number,
): Int32Array {
  const perEpoch = Math.floor(count / batchSize);
  if (perEpoch < 1) {
    throw new RangeError(`Cannot train on ${count} images with batches of ${batchSize}`);
  }
  const epoch = Math.floor(step / perEpoch);
  const at = (step % perEpoch) * batchSize;
  const perm = new Rng(seed).fork(`epoch:${epoch}`).permutation(count);
  return perm.slice(at, at + batchSize);
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Train a tokenizer on an image set (or resume a run), seeded and checkpointed.
 *
 * @param images `[N, H, W]` or `[N, C, H, W]`, uint8 or float32 (0..1); H = W = inputSize
 * @param options architecture, recipe, run folder, resume flag, callbacks
 * @returns the trained tokenizer (the caller owns and disposes it) and the step history
 * @throws {TypeError} when the images do not fit the architecture
 * @throws {CheckpointError} when resuming from a missing or damaged checkpoint
 * @throws {RangeError} when resuming with a different architecture, recipe or image set
 * @throws {RunStoppedError} when `stop` asked it to stop (a checkpoint is on disk)
 *
 * @example
 * ```ts ignore
 * import { trainTokenizer } from "@lib/tokenizer";
 * const { tokenizer } = await trainTokenizer(images, { train: { steps: 100 } });
 * ```
 */
export async function trainTokenizer(
  images: HostTensor,
  options: TrainTokenizerOptions = {},
): Promise<TrainTokenizerResult> {
  const source = options.source ?? "<images>";
  const log = options.log ?? (() => {});
  const [N, C, H, W] = imageSetDims(images, source);
  let config = resolveTokenizerConfig(options.config);
  const train = resolveTokenizerTrainConfig(options.train);
  const resume = options.resume === true;
  const ckpt = resume
    ? await (() => {
      if (options.runDir === undefined) throw new TypeError("Cannot resume without a runDir");
      return loadCheckpoint(options.runDir);
    })()
    : null;
  if (ckpt !== null) {
    const saved = ckpt.state.config as CheckpointConfig;
    config = resolveTokenizerConfig(saved.tokenizer);
    if (options.config !== undefined && !sameJson(resolveTokenizerConfig(options.config), config)) {
      throw new RangeError(
        `Cannot resume "${options.runDir}": its architecture ${JSON.stringify(config)} differs ` +
          `from the one asked for ${JSON.stringify(resolveTokenizerConfig(options.config))}`,
      );
    }
    const { steps: _a, checkpointEvery: _b, ...savedRest } = saved.train;
    const { steps: _c, checkpointEvery: _d, ...rest } = train;
    if (!sameJson(savedRest, rest)) {
      throw new RangeError(
        `Cannot resume "${options.runDir}": its recipe ${JSON.stringify(saved.train)} differs ` +
          `from ${JSON.stringify(train)} (only steps and checkpointEvery may change; a new ` +
          "length also stretches the lr schedule)",
      );
    }
    if (saved.images.count !== N || !sameJson(saved.images.shape.slice(1), images.shape.slice(1))) {
      throw new RangeError(
        `Cannot resume "${options.runDir}": it trained on ${saved.images.count} images of shape ` +
          `[${saved.images.shape.slice(1)}], "${source}" has ${N} of [${images.shape.slice(1)}]`,
      );
    }
  }
  if (C !== config.channels || H !== config.inputSize || W !== config.inputSize) {
    throw new TypeError(
      `Cannot train on "${source}": its images are ${C}x${H}x${W} (CxHxW), the tokenizer takes ` +
        `${config.channels}x${config.inputSize}x${config.inputSize}`,
    );
  }
  const n = gridSize(config);
  const K = config.codebookSize, d = config.codeDim, B = train.batchSize;
  const tok = VqTokenizer.create(config, new Rng(train.seed).fork("init"));
  const names = tok.parameterNames();
  const vars = tok.trainableVariables();
  const opt = new AdamW(names.map((name, i) => ({ name, variable: vars[i] })));
  const ema = new EmaCodebook(K, d);
  let step = 0;
  let initialized = false;
  // steps' time before a resume (the checkpoints carry it) and in this call
  let priorSeconds = 0, seconds = 0;
  const setCodebook = () => tok.decoder.setCodebook(tf.tensor2d(ema.codebook(), [K, d]));
  try {
    if (ckpt !== null) {
      const src = `${ckpt.dir}/${ckpt.state.weights}`;
      for (let i = 0; i < names.length; i++) {
        const t = ckpt.model.get(names[i]);
        if (t === undefined || t.shape.join() !== vars[i].shape.join()) {
          throw new TypeError(
            `Cannot resume from "${src}": tensor "${names[i]}" missing or misshapen`,
          );
        }
        tf.tidy(() => vars[i].assign(tf.tensor(t.data as Float32Array, vars[i].shape, "float32")));
      }
      ema.loadTensors(ckpt.model, src);
      if (ckpt.state.optimizer === null) {
        throw new TypeError(`Cannot resume from "${src}": no optimizer state`);
      }
      opt.loadState(ckpt.state.optimizer, ckpt.optimizer, src);
      setCodebook();
      step = ckpt.state.step;
      priorSeconds = Number(ckpt.state.extra?.trainSeconds ?? 0) || 0;
      initialized = true;
      log(`resumed from ${src} at step ${step}`);
    }
    const startStep = step;
    const history: TokenizerStepInfo[] = [];
    const perEpoch = Math.floor(N / B);
    let lastSaved = step;
    const save = async (lr: number) => {
      lastSaved = step;
      if (options.runDir === undefined) return;
      const model = await tokenizerTensors(tok);
      for (const [k, v] of ema.toTensors()) model.set(k, v);
      const cfg: CheckpointConfig = {
        tokenizer: config,
        train,
        images: { count: N, shape: [...images.shape] },
      };
      await saveCheckpoint(options.runDir, model, await opt.stateTensors(), {
        step,
        epoch: Math.floor(step / perEpoch),
        iter: step % perEpoch,
        config: cfg,
        rng: {},
        optimizer: opt.stateJson(),
        lr,
        extra: { source, trainSeconds: priorSeconds + seconds },
      });
      log(`checkpoint at step ${step} in ${options.runDir}`);
    };
    if (options.runDir !== undefined) await Deno.mkdir(options.runDir, { recursive: true });
    const stopAt = Math.min(train.steps, options.stopAtStep ?? train.steps);
    while (step < stopAt) {
      const t0 = performance.now();
      const idx = batchIndices(train.seed, step, N, B);
      const lr = cosineLr(step + 1, {
        lr: train.lr,
        minLr: 0.1 * train.lr,
        warmupEpochs: train.warmupSteps,
        epochs: Math.max(train.steps, train.warmupSteps + 1),
      });
      const raw = imageBatch(images, idx);
      const x = imagesToNetwork(raw, config);
      raw.dispose();
      try {
        if (!initialized) {
          const e0 = tf.tidy(() => tok.encodeVectors(x));
          ema.initFromVectors(e0.dataSync() as Float32Array, new Rng(train.seed).fork("codebook"));
          e0.dispose();
          setCodebook();
          initialized = true;
        }
        const cb = tok.codebook;
        const kept: tf.Tensor[] = [];
        const { value, grads } = tf.variableGrads(() => {
          const e = tok.encodeVectors(x);
          // the assignment must not be on the tape (GatherV2 has no gradient for indices):
          // a copy of e from its data cuts it off
          const eConst = tf.tensor2d(e.dataSync() as Float32Array, [e.shape[0], e.shape[1]]);
          const codes = assignCodes(eConst, cb);
          const q = tf.gather(cb, codes) as tf.Tensor2D;
          const zst = tf.add(e, stopGradient(tf.sub(q, e)));
          const y = tok.decoder.decodeVectors(tf.reshape(zst, [B, n, n, d]) as tf.Tensor4D);
          const mse = tf.mean(tf.square(tf.sub(y, x)));
          const commit = tf.mean(tf.sum(tf.square(tf.sub(e, q)), 1));
          kept.push(tf.keep(eConst), tf.keep(codes), tf.keep(mse), tf.keep(commit));
          return tf.add(mse, tf.mul(commit, train.beta)) as tf.Scalar;
        }, vars);
        try {
          const byName = new Map<string, tf.Tensor>();
          vars.forEach((v, i) => byName.set(names[i], grads[v.name]));
          opt.step(byName, lr);
        } finally {
          tf.dispose(grads);
        }
        const [eT, codesT, mseT, commitT] = kept;
        const loss = value.dataSync()[0];
        const mse = mseT.dataSync()[0], commit = commitT.dataSync()[0];
        const eHost = eT.dataSync() as Float32Array;
        const codes = codesT.dataSync() as Int32Array;
        tf.dispose([value, ...kept]);
        if (!Number.isFinite(loss)) {
          throw new RangeError(`Tokenizer training diverged at step ${step + 1}: loss ${loss}`);
        }
        ema.update(eHost, codes, train.emaDecay);
        step++;
        seconds += (performance.now() - t0) / 1000;
        let restarted = 0;
        if (
          train.restartEvery > 0 && step % train.restartEvery === 0 &&
          step <= train.restartUntil * train.steps
        ) {
          restarted = ema.restartDead(
            eHost,
            train.deadThreshold,
            new Rng(train.seed).fork(`restart:${step}`),
          ).length;
        }
        setCodebook();
        const used = new Set(codes).size;
        const info: TokenizerStepInfo = {
          step,
          steps: train.steps,
          epoch: step / perEpoch,
          loss,
          mse,
          psnr: 10 * Math.log10(4 / mse),
          commit,
          codesUsed: used,
          restarted,
          lr,
        };
        history.push(info);
        options.onStep?.(info);
        if (train.checkpointEvery > 0 && step % train.checkpointEvery === 0) await save(lr);
        // a signal's listener runs only when the event loop turns
        if (options.stop !== undefined) await letSignalsIn();
        if (step < stopAt && options.stop?.()) {
          if (step > lastSaved) await save(lr);
          throw new RunStoppedError(step, options.runDir ?? "<no run folder>");
        }
      } finally {
        x.dispose();
      }
    }
    if (step > lastSaved) await save(history.at(-1)?.lr ?? 0);
    opt.dispose();
    return {
      tokenizer: tok,
      config,
      train,
      history,
      startStep,
      trainSeconds: priorSeconds + seconds,
    };
  } catch (e) {
    opt.dispose();
    tok.dispose();
    throw e;
  }
}
