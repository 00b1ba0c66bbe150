/**
 * The objective of each training phase, batch -> loss: ONE function per phase, called by the
 * single-thread path of the recipes (./pretrain.ts, ./finetune.ts, ./pixel.ts) and by the
 * data-parallel worker shards (../engine/_parallel_shard.ts) alike.
 *
 * - MTM pre-training: {@linkcode drawMtmMask} draws the mask (one ratio per batch, per-sample
 *   ranks; REFERENCE.md section 4) and {@linkcode mtmObjective} computes the masked-token
 *   cross-entropy (`MtmModel.forward` -> `forwardLoss` in @lib/models).
 * - Classification (tokens or pixels): {@linkcode classifierObjective}, soft-target
 *   cross-entropy of the logits against the (mixed, label-smoothed) targets.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { MaskPlan } from "../../models/mod.ts";
import type { Rng } from "../../random/mod.ts";
import { softTargetCrossEntropy } from "../engine/losses.ts";

/** What the MTM objective needs of a model (`MtmModel` has it). */
export interface MtmObjectiveModel {
  /**
   * Draw a masking for a batch.
   * @param batch samples
   * @param rng the generator
   */
  randomMasking(batch: number, rng: Rng): MaskPlan;
  /**
   * @param codes `[B, m, m]` int32
   * @param options the masking, the generator for dropout, training mode
   */
  forward(
    codes: tf.Tensor3D,
    options: { plan?: MaskPlan; rng?: Rng; training?: boolean },
  ): { loss: tf.Scalar; logits: tf.Tensor; mask: tf.Tensor };
}

/**
 * The MTM mask of one batch: the one place a training step draws it.
 * @param model the MTM model
 * @param batch samples in the (micro-)batch
 * @param rng the run's model generator
 * @returns the plan (kept, masked and dropped positions per sample)
 */
export function drawMtmMask(model: MtmObjectiveModel, batch: number, rng: Rng): MaskPlan {
  return model.randomMasking(batch, rng);
}

/**
 * The MTM loss of a batch (training mode): per-token K-way cross-entropy averaged over the
 * masked positions.
 * @param model the MTM model
 * @param codes `[B, m, m]` int32 input codes
 * @param plan the batch's mask ({@linkcode drawMtmMask})
 * @param rng the generator of dropout
 * @returns the loss scalar (caller owns it; call inside `valueAndGrads`)
 */
export function mtmObjective(
  model: MtmObjectiveModel,
  codes: tf.Tensor3D,
  plan: MaskPlan,
  rng: Rng,
): tf.Scalar {
  return model.forward(codes, { plan, rng, training: true }).loss;
}

/** What the classification objective needs of a model. */
export interface ClassifierObjectiveModel<X> {
  /**
   * @param x the input batch
   * @param options the generator of dropout / drop path, training mode
   */
  forward(x: X, options: { rng?: Rng; training?: boolean }): tf.Tensor;
}

/**
 * The classification loss of a batch (training mode): soft-target cross-entropy.
 * @param model a token classifier or pixel ViT
 * @param x its input batch
 * @param targets `[B, K]` soft targets (label-smoothed, mixed)
 * @param rng the generator of dropout / drop path
 * @returns the loss scalar (caller owns it)
 */
export function classifierObjective<X>(
  model: ClassifierObjectiveModel<X>,
  x: X,
  targets: tf.Tensor2D,
  rng: Rng,
): tf.Scalar {
  return softTargetCrossEntropy(model.forward(x, { rng, training: true }) as tf.Tensor2D, targets);
}
