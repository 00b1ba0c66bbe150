/**
 * Learning-rate rules: scaling with the batch size and the per-iteration warmup +
 * half-cosine schedule (MAE's `lr_sched.adjust_learning_rate`).
 *
 * @module
 */

/** How the absolute lr follows from the base lr and the effective batch size. */
export type LrScaling = "linear" | "sqrt" | "none";

/**
 * The absolute learning rate from a base lr and the effective batch size
 * (`batch * accumIter`): `linear` (MTM pre-training) is `blr * batch / 256`, `sqrt`
 * (SeiT fine-tuning) is `blr * sqrt(batch) / 8`, `none` is `blr` itself.
 *
 * @param blr base learning rate
 * @param effectiveBatch samples per optimizer step (batch size times accumulation steps)
 * @param rule the scaling rule
 * @returns the learning rate
 * @throws {RangeError} for a non-positive batch, a negative/non-finite blr, or an unknown rule
 *
 * @example
 * ```ts
 * import { scaleLr } from "@lib/train";
 * console.assert(scaleLr(1.5e-4, 4096, "linear") === 1.5e-4 * 16);
 * console.assert(scaleLr(1e-3, 1024, "sqrt") === 1e-3 * 4);
 * ```
 */
export function scaleLr(blr: number, effectiveBatch: number, rule: LrScaling): number {
  if (!(blr >= 0) || !Number.isFinite(blr)) {
    throw new RangeError(`Cannot scale base lr ${blr}: expected a finite number >= 0`);
  }
  if (!Number.isInteger(effectiveBatch) || effectiveBatch < 1) {
    throw new RangeError(
      `Cannot scale the lr for batch ${effectiveBatch}: expected an integer >= 1`,
    );
  }
  switch (rule) {
    case "linear":
      return blr * effectiveBatch / 256;
    case "sqrt":
      return blr * Math.sqrt(effectiveBatch) / 8;
    case "none":
      return blr;
    default:
      throw new RangeError(
        `Unknown lr scaling rule ${JSON.stringify(rule)}: expected linear, sqrt or none`,
      );
  }
}

/** Options of {@linkcode cosineLr}. */
export interface CosineScheduleOptions {
  /** Peak learning rate (after warmup). */
  lr: number;
  /** Final learning rate. @default {0} */
  minLr?: number;
  /** Linear warmup length in epochs (may be fractional). */
  warmupEpochs: number;
  /** Total length in epochs. */
  epochs: number;
}

/**
 * Warmup then half-cosine, evaluated at a fractional epoch (MAE evaluates it every
 * iteration at `epoch + iter / itersPerEpoch`): linear from 0 to `lr` during warmup,
 * then `minLr + (lr - minLr) * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2`.
 *
 * @param epoch the fractional epoch (>= 0)
 * @param options peak, floor, warmup and total length
 * @returns the learning rate at that point
 * @throws {RangeError} for a negative epoch or warmup, or `epochs <= warmupEpochs` past warmup
 *
 * @example
 * ```ts
 * import { cosineLr } from "@lib/train";
 * const o = { lr: 1e-3, minLr: 1e-6, warmupEpochs: 5, epochs: 100 };
 * console.assert(cosineLr(2.5, o) === 5e-4);
 * console.assert(Math.abs(cosineLr(100, o) - 1e-6) < 1e-18);
 * ```
 */
export function cosineLr(epoch: number, options: CosineScheduleOptions): number {
  const { lr, warmupEpochs, epochs } = options;
  const minLr = options.minLr ?? 0;
  if (!(epoch >= 0)) throw new RangeError(`Cannot evaluate the lr schedule at epoch ${epoch}`);
  if (!(warmupEpochs >= 0)) {
    throw new RangeError(`Cannot use ${warmupEpochs} warmup epochs: expected >= 0`);
  }
  if (epoch < warmupEpochs) return lr * epoch / warmupEpochs;
  if (!(epochs > warmupEpochs)) {
    throw new RangeError(
      `Cannot run a cosine schedule of ${epochs} epochs with ${warmupEpochs} warmup epochs`,
    );
  }
  return minLr +
    (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * (epoch - warmupEpochs) / (epochs - warmupEpochs)));
}

/**
 * The fractional epoch at which the loop evaluates the schedule for an iteration
 * (MAE: `iter / itersPerEpoch + epoch`, evaluated at the first micro-batch of each
 * accumulation cycle).
 *
 * @param epoch the current epoch (integer)
 * @param iter the micro-batch index within the epoch
 * @param itersPerEpoch micro-batches per epoch
 * @returns the fractional epoch
 */
export function scheduleEpoch(epoch: number, iter: number, itersPerEpoch: number): number {
  return iter / itersPerEpoch + epoch;
}
