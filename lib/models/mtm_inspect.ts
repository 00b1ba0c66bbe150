/**
 * Looking inside masked token modeling: where a mask plan hides and drops tokens (as a
 * token-level grid), and what the model predicts there (argmax codes, the MAE-style
 * "visible tokens kept, masked ones predicted" grid, and accuracy on masked tokens).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";
import type { MaskPlan, MtmModel } from "./mtm.ts";

/** Cell values of {@linkcode maskGrid}. */
export const MASK_CELL = {
  /** The token is seen by the encoder. */
  visible: 0,
  /** Masked: its patch enters the encoder as the mask token, and the loss. */
  masked: 1,
  /** Dropped: its patch is removed from the encoder input (and masked). */
  dropped: 2,
} as const;

/**
 * The masking of a batch at token resolution: each patch's state spread over its p x p
 * tokens.
 *
 * @param plan the masking (`plan.numPatches` = (m/p)^2)
 * @param patchSize p, tokens per patch side
 * @returns `[B, m, m]` int32 with {@linkcode MASK_CELL} values
 * @throws {RangeError} when the plan's patch count is not a square or p < 1
 * @example
 * ```ts
 * import { maskGrid, randomMasking, resolveMtmConfig } from "@lib/models";
 * import { Rng } from "@lib/random";
 * const plan = randomMasking(1, 16, new Rng(0), resolveMtmConfig());
 * const g = maskGrid(plan, 2); // [1, 8, 8]
 * console.assert(g.shape.join() === "1,8,8");
 * ```
 */
export function maskGrid(plan: MaskPlan, patchSize: number): HostTensor<"int32"> {
  const side = Math.round(Math.sqrt(plan.numPatches));
  if (side * side !== plan.numPatches || !(Number.isInteger(patchSize) && patchSize >= 1)) {
    throw new RangeError(
      `Cannot lay out ${plan.numPatches} patches of ${patchSize} tokens as a square grid`,
    );
  }
  const m = side * patchSize;
  const out = new Int32Array(plan.batch * m * m);
  for (let b = 0; b < plan.batch; b++) {
    for (let y = 0; y < m; y++) {
      for (let x = 0; x < m; x++) {
        const k = b * plan.numPatches + Math.floor(y / patchSize) * side +
          Math.floor(x / patchSize);
        out[(b * m + y) * m + x] = plan.dropped[k]
          ? MASK_CELL.dropped
          : plan.masked[k]
          ? MASK_CELL.masked
          : MASK_CELL.visible;
      }
    }
  }
  return { dtype: "int32", shape: [plan.batch, m, m], data: out };
}

/** What {@linkcode mtmPredict} returns (host arrays; nothing to dispose). */
export interface MtmPrediction {
  /** The masking used. */
  plan: MaskPlan;
  /** The masking at token resolution, `[B, m, m]` ({@linkcode maskGrid}). */
  mask: HostTensor<"int32">;
  /** The true codes, `[B, m, m]`. */
  truth: HostTensor<"int32">;
  /** The argmax of the logits at every position, `[B, m, m]`. */
  predicted: HostTensor<"int32">;
  /** The true codes where visible, the predicted ones where masked, `[B, m, m]`. */
  filled: HostTensor<"int32">;
  /** Fraction of masked tokens predicted exactly. */
  maskedAccuracy: number;
  /** The model's loss on this batch (mean CE over masked patches). */
  loss: number;
}

/**
 * Run the model once in eval mode and read its predictions back.
 *
 * @param model the MTM model
 * @param codes `[B, m, m]` int32 (not disposed)
 * @param options `rng` to draw the masking, or a `plan`
 * @returns truth, prediction, filled grid, mask grid, masked-token accuracy and loss
 * @throws {TypeError} without a plan and without an rng, or for wrong shapes
 */
export function mtmPredict(
  model: MtmModel,
  codes: tf.Tensor3D,
  options: { rng?: Rng; plan?: MaskPlan },
): MtmPrediction {
  const out = model.forward(codes, { rng: options.rng, plan: options.plan, training: false });
  try {
    const [B, m] = codes.shape;
    const argmax = tf.tidy(() => out.logits.argMax(-1).toInt());
    const predicted = Int32Array.from(argmax.dataSync());
    argmax.dispose();
    const truth = Int32Array.from(codes.dataSync() as Int32Array);
    const mask = maskGrid(out.plan, model.config.patchSize);
    const filled = new Int32Array(truth.length);
    let hit = 0, masked = 0;
    for (let i = 0; i < truth.length; i++) {
      const isMasked = mask.data[i] !== MASK_CELL.visible;
      filled[i] = isMasked ? predicted[i] : truth[i];
      if (isMasked) {
        masked++;
        if (predicted[i] === truth[i]) hit++;
      }
    }
    const shape = [B, m, m];
    return {
      plan: out.plan,
      mask,
      truth: { dtype: "int32", shape, data: truth },
      predicted: { dtype: "int32", shape, data: predicted },
      filled: { dtype: "int32", shape, data: filled },
      maskedAccuracy: masked > 0 ? hit / masked : NaN,
      loss: out.loss.dataSync()[0],
    };
  } finally {
    tf.dispose([out.loss, out.logits, out.mask]);
  }
}
