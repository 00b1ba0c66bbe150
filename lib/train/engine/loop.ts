/**
 * The training loop (engine_mtm.py / engine_finetune.py in the reference): seeded data
 * order, per-iteration lr schedule, gradient accumulation, optional global-norm
 * clipping, a NaN/Inf guard, and a position (step, epoch, iteration) that a checkpoint
 * stores so that a resumed run continues exactly.
 *
 * Per epoch the records are visited in `Rng(seed).fork("epoch <e>").permutation(N)`
 * order, `floor(N / batchSize)` micro-batches (the last partial batch is dropped, as
 * the reference's `drop_last=True`). Every `accumIter` micro-batches make one optimizer
 * step; the gradients of `loss / accumIter` are summed over the cycle. A trailing
 * incomplete cycle at the end of an epoch is skipped (the reference computes it and then
 * discards its gradients at the next epoch's `zero_grad`). The lr is set at the first
 * micro-batch of each cycle to `lrAt(epoch + iter / itersPerEpoch)`.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import { Rng } from "../../random/mod.ts";
import type { AdamW } from "./adamw.ts";
import { clipByGlobalNorm } from "./clip.ts";
import { NonFiniteLossError } from "./errors.ts";

/** One model parameter as the loop and the optimizer setup see it. */
export interface TrainableEntry {
  /** Reference state-dict name. */
  name: string;
  /** The tensor. */
  variable: tf.Variable;
  /** Whether it is trained. */
  trainable: boolean;
  /** Its shape in the reference (PyTorch) layout: what the grouping rules look at. */
  shape: readonly number[];
}

/**
 * A model's parameters as the loop needs them. `ParamStore` from `@lib/models`
 * satisfies it.
 */
export interface TrainableParams {
  /** @returns every parameter, in a stable order */
  entries(): readonly TrainableEntry[];
  /**
   * @param f computes a scalar loss from the parameters
   * @returns the loss and its gradients by reference name (caller owns all)
   */
  valueAndGrads(f: () => tf.Scalar): { value: tf.Scalar; grads: Map<string, tf.Tensor> };
}

/** Records the loop reads batches from. `TokenDataset` from `@lib/tokens` satisfies it. */
export interface TokenSource {
  /** Number of records N. */
  readonly length: number;
  /** Grid side n of every record. */
  readonly gridSide: number;
  /** One label per record, or `null`. */
  readonly labels: Int32Array | null;
  /**
   * @param indices record indices
   * @param out optional destination
   * @returns `[B, n, n]` row-major int32 codes
   */
  readBatch(indices: ArrayLike<number>, out?: Int32Array): Int32Array;
}

/** Where a run stands: what a checkpoint records to resume exactly. */
export interface LoopPosition {
  /** Completed optimizer steps. */
  step: number;
  /** The epoch in progress (or about to start). */
  epoch: number;
  /** The next micro-batch index within that epoch. */
  iter: number;
}

/** One micro-batch as read from the data (host memory). */
export interface MicroBatch {
  /** The epoch it belongs to. */
  epoch: number;
  /** Its micro-batch index within the epoch. */
  iter: number;
  /** Completed optimizer steps before it. */
  step: number;
  /** The record indices. */
  indices: Int32Array;
  /**
   * `[B, n, n]` row-major int32 codes. A buffer reused for the next micro-batch: copy it
   * to keep it (tensors made from it on the cpu backend share its memory, so dispose
   * them in `PreparedBatch.dispose`).
   */
  codes: Int32Array;
  /** `[B]` labels, or `null` when the data has none. */
  labels: Int32Array | null;
  /** `[B, n, n]`. */
  shape: [number, number, number];
}

/**
 * A micro-batch made ready for the model (augmented, on the device): the loss closure
 * runs under gradient recording; `dispose` frees what `prepare` made.
 */
export interface PreparedBatch {
  /** Computes the scalar loss (called once, inside `valueAndGrads`). */
  loss(): tf.Scalar;
  /** Frees the prepared tensors. */
  dispose(): void;
}

/** What the loop reports after each optimizer step. */
export interface StepInfo {
  /** Completed optimizer steps (including this one). */
  step: number;
  /** The epoch. */
  epoch: number;
  /** The next micro-batch index. */
  iter: number;
  /** The fractional epoch at which the lr was evaluated. */
  epochFloat: number;
  /** The scheduled lr of this step. */
  lr: number;
  /** Mean loss over the cycle's micro-batches (before the division by accumIter). */
  loss: number;
  /** The global gradient norm before clipping, when clipping is on. */
  gradNorm: number | null;
  /** Samples in this step (batchSize * accumIter). */
  samples: number;
  /** Wall time of this step, seconds. */
  seconds: number;
}

/** What a {@linkcode GradientsFn} returns: the micro-batch's loss and gradients. */
export interface MicroBatchGradients {
  /** The micro-batch's mean loss, unscaled (NaN/Inf stops the run). */
  loss: number;
  /** Gradients of `scale * loss` by reference name (the caller owns and disposes them). */
  grads: Map<string, tf.Tensor>;
}

/**
 * Computes a micro-batch's loss and gradients in place of `prepare` +
 * `params.valueAndGrads` (data-parallel training: ./parallel.ts).
 * @param batch the micro-batch as read
 * @param scale the loss scale of the gradients (`1 / accumIter`)
 * @returns the unscaled loss and the gradients of `scale * loss`
 */
export type GradientsFn = (batch: MicroBatch, scale: number) => Promise<MicroBatchGradients>;

/** Options of {@linkcode trainLoop}. */
export interface TrainLoopOptions {
  /** The model's parameters. */
  params: TrainableParams;
  /** The optimizer over (a subset of) those parameters. */
  optimizer: AdamW;
  /** The training records. */
  data: TokenSource;
  /** Seed of the data order (one permutation per epoch is derived from it). */
  seed: number;
  /** Micro-batch size. */
  batchSize: number;
  /** Micro-batches per optimizer step. @default {1} */
  accumIter?: number;
  /** Epochs in the whole run (the loop stops at the end of epoch `epochs - 1`). */
  epochs: number;
  /** Use only the first N records (tiny runs). @default {all} */
  limit?: number | null;
  /** The lr at a fractional epoch. */
  lrAt: (epochFloat: number) => number;
  /** Make a micro-batch ready (augmentation, tensors) and give its loss closure. */
  prepare: (batch: MicroBatch) => PreparedBatch;
  /**
   * When given, computes each micro-batch's loss and gradients instead of `prepare` and
   * `params.valueAndGrads` (data-parallel training). @default {none}
   */
  gradients?: GradientsFn;
  /** Clip the summed gradients to this global norm; `null` for no clipping. @default {null} */
  gradClip?: number | null;
  /** Stop after this many optimizer steps in total. @default {null (no cap)} */
  maxSteps?: number | null;
  /** Where to start (a resumed run's position). @default {{ step: 0, epoch: 0, iter: 0 }} */
  start?: LoopPosition;
  /** Called after each optimizer step (logging, progress, periodic checkpoints). */
  onStep?: (info: StepInfo, position: LoopPosition) => void | Promise<void>;
  /** Called at the end of each epoch (evaluation, checkpoint), with the next position. */
  onEpochEnd?: (epoch: number, position: LoopPosition) => void | Promise<void>;
}

/** What {@linkcode trainLoop} returns. */
export interface TrainLoopResult {
  /** The position after the last step. */
  position: LoopPosition;
  /** Optimizer steps taken by this call. */
  steps: number;
  /** Loss of the last step (NaN when no step ran). */
  lastLoss: number;
  /** Why it stopped. */
  stopped: "epochs" | "maxSteps";
}

/** The geometry of an epoch for a dataset size. */
export interface EpochPlan {
  /** Micro-batches per epoch (`floor(N / batchSize)`), the schedule's denominator. */
  itersPerEpoch: number;
  /** Micro-batches actually run per epoch (whole accumulation cycles). */
  itersUsed: number;
  /** Optimizer steps per epoch. */
  stepsPerEpoch: number;
}

/**
 * How an epoch splits into micro-batches and optimizer steps.
 * @param records N
 * @param batchSize B
 * @param accumIter micro-batches per step
 * @returns micro-batches and steps per epoch
 * @throws {RangeError} when not even one optimizer step fits in an epoch
 */
export function epochPlan(records: number, batchSize: number, accumIter = 1): EpochPlan {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`Cannot use batch size ${batchSize}: expected an integer >= 1`);
  }
  if (!Number.isInteger(accumIter) || accumIter < 1) {
    throw new RangeError(`Cannot use accumIter ${accumIter}: expected an integer >= 1`);
  }
  const itersPerEpoch = Math.floor(records / batchSize);
  const stepsPerEpoch = Math.floor(itersPerEpoch / accumIter);
  if (stepsPerEpoch < 1) {
    throw new RangeError(
      `Cannot train on ${records} records with batch ${batchSize} x accumIter ${accumIter}: ` +
        `not one optimizer step per epoch`,
    );
  }
  return { itersPerEpoch, itersUsed: stepsPerEpoch * accumIter, stepsPerEpoch };
}

/**
 * The record order of an epoch: a permutation of 0..N-1 from the data seed.
 * @param seed the run's data seed
 * @param epoch the epoch
 * @param records N
 * @returns the permutation
 */
export function epochOrder(seed: number, epoch: number, records: number): Int32Array {
  return new Rng(seed).fork(`epoch ${epoch}`).permutation(records);
}

function addInto(acc: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>): void {
  for (const [name, g] of grads) {
    const prev = acc.get(name);
    if (prev === undefined) {
      acc.set(name, g);
    } else {
      acc.set(name, prev.add(g));
      prev.dispose();
      g.dispose();
    }
  }
}

function disposeAll(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
  m.clear();
}

/**
 * Run optimizer steps from `start` until the last epoch ends or `maxSteps` is reached.
 *
 * @param o the model, optimizer, data, schedule and hooks
 * @returns where it stopped
 * @throws {NonFiniteLossError} when a micro-batch's loss is NaN/Inf (before any
 *   parameter changes for that cycle)
 * @throws {RangeError} for a batch plan that does not fit the data
 */
export async function trainLoop(o: TrainLoopOptions): Promise<TrainLoopResult> {
  const accumIter = o.accumIter ?? 1;
  const records = o.limit == null ? o.data.length : Math.min(o.limit, o.data.length);
  const plan = epochPlan(records, o.batchSize, accumIter);
  const n = o.data.gridSide;
  const B = o.batchSize;
  let pos: LoopPosition = { ...(o.start ?? { step: 0, epoch: 0, iter: 0 }) };
  if (pos.iter >= plan.itersUsed) pos = { step: pos.step, epoch: pos.epoch + 1, iter: 0 };
  let steps = 0;
  let lastLoss = NaN;
  const codesBuf = new Int32Array(B * n * n);
  const acc = new Map<string, tf.Tensor>();
  try {
    while (pos.epoch < o.epochs) {
      const epoch = pos.epoch;
      const order = epochOrder(o.seed, epoch, records);
      while (pos.epoch === epoch) {
        if (o.maxSteps != null && pos.step >= o.maxSteps) {
          return { position: pos, steps, lastLoss, stopped: "maxSteps" };
        }
        const t0 = performance.now();
        const epochFloat = pos.epoch + pos.iter / plan.itersPerEpoch;
        const lr = o.lrAt(epochFloat);
        let lossSum = 0;
        for (let k = 0; k < accumIter; k++) {
          const iter = pos.iter + k;
          const indices = order.slice(iter * B, (iter + 1) * B);
          const codes = o.data.readBatch(indices, codesBuf);
          const labels = o.data.labels === null
            ? null
            : Int32Array.from(indices, (i) => o.data.labels![i]);
          const batch: MicroBatch = {
            epoch: pos.epoch,
            iter,
            step: pos.step,
            indices,
            codes,
            labels,
            shape: [B, n, n],
          };
          let v: number;
          let grads: Map<string, tf.Tensor>;
          if (o.gradients !== undefined) {
            ({ loss: v, grads } = await o.gradients(batch, 1 / accumIter));
          } else {
            const prepared = o.prepare(batch);
            let value: tf.Scalar;
            try {
              ({ value, grads } = o.params.valueAndGrads(() => {
                const l = prepared.loss();
                return accumIter === 1 ? l : l.div(accumIter);
              }));
            } finally {
              prepared.dispose();
            }
            v = (await value.data())[0] * accumIter;
            value.dispose();
          }
          if (!Number.isFinite(v)) {
            disposeAll(grads);
            throw new NonFiniteLossError(v, pos.step, pos.epoch, `micro-batch ${iter}`);
          }
          lossSum += v;
          addInto(acc, grads);
        }
        let gradNorm: number | null = null;
        if (o.gradClip != null) {
          const c = clipByGlobalNorm(acc, o.gradClip);
          gradNorm = (await c.norm.data())[0];
          c.norm.dispose();
          disposeAll(acc);
          for (const [k, g] of c.grads) acc.set(k, g);
        }
        o.optimizer.step(acc, lr);
        disposeAll(acc);
        pos = { step: pos.step + 1, epoch: pos.epoch, iter: pos.iter + accumIter };
        steps++;
        lastLoss = lossSum / accumIter;
        const info: StepInfo = {
          step: pos.step,
          epoch: pos.epoch,
          iter: pos.iter,
          epochFloat,
          lr,
          loss: lastLoss,
          gradNorm,
          samples: B * accumIter,
          seconds: (performance.now() - t0) / 1000,
        };
        const atEpochEnd = pos.iter >= plan.itersUsed;
        const next = atEpochEnd ? { step: pos.step, epoch: pos.epoch + 1, iter: 0 } : pos;
        await o.onStep?.(info, next);
        if (atEpochEnd) {
          await o.onEpochEnd?.(pos.epoch, next);
        }
        pos = next;
      }
    }
    return { position: pos, steps, lastLoss, stopped: "epochs" };
  } finally {
    disposeAll(acc);
  }
}
