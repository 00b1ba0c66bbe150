/**
 * Classification targets: label smoothing and mixup/cutmix label mixing (timm's
 * `mixup_target`), as soft targets `[B, C] float32`. The mixing of the inputs themselves
 * (embedding maps) belongs to the augmentation step (`@lib/adapters` Mixup, which builds
 * its targets by the same rule).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

function checkLabels(labels: ArrayLike<number>, numClasses: number): void {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new RangeError(`Cannot build targets for ${numClasses} classes`);
  }
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
      throw new RangeError(`Label ${y} of sample ${i} is outside 0..${numClasses - 1}`);
    }
  }
}

/**
 * Smoothed one-hot targets on the host: off value `smoothing / C`, on value
 * `1 - smoothing + smoothing / C` (float32, as timm's `one_hot`).
 *
 * @param labels class indices, length B
 * @param numClasses C
 * @param smoothing label smoothing in [0, 1)
 * @returns `[B * C]` row-major float32 values
 * @throws {RangeError} for a label outside 0..C-1 or a bad smoothing
 */
export function smoothedOneHot(
  labels: ArrayLike<number>,
  numClasses: number,
  smoothing = 0,
): Float32Array {
  checkLabels(labels, numClasses);
  if (!(smoothing >= 0 && smoothing < 1)) {
    throw new RangeError(`Cannot use label smoothing ${smoothing}: expected [0, 1)`);
  }
  const off = Math.fround(smoothing / numClasses);
  const on = Math.fround(1 - smoothing + smoothing / numClasses);
  const out = new Float32Array(labels.length * numClasses).fill(off);
  for (let i = 0; i < labels.length; i++) out[i * numClasses + labels[i]] = on;
  return out;
}

/**
 * timm's `mixup_target`: `lam * onehot(labels) + (1 - lam) * onehot(reversed labels)`,
 * both smoothed, in float32 arithmetic as torch computes it. With `lam = 1` these are
 * the smoothed one-hot targets. The partner of sample i is sample B-1-i (timm's batch
 * mixing flips the batch).
 *
 * @param labels class indices, length B
 * @param numClasses C
 * @param options `lam` (the weight of each sample's own label, default 1) and
 *   `smoothing` (default 0)
 * @returns `[B, C] float32`, owned by the caller
 * @throws {RangeError} for a label outside 0..C-1, lam outside [0, 1], or a bad smoothing
 *
 * @example
 * ```ts
 * import { mixupTargets } from "@lib/train";
 * const t = mixupTargets([0, 1], 2, { lam: 0.75 });
 * console.assert(t.arraySync()[0][0] === 0.75 && t.arraySync()[0][1] === 0.25);
 * t.dispose();
 * ```
 */
export function mixupTargets(
  labels: ArrayLike<number>,
  numClasses: number,
  options: { lam?: number; smoothing?: number } = {},
): tf.Tensor2D {
  const lam = options.lam ?? 1;
  if (!(lam >= 0 && lam <= 1)) throw new RangeError(`Cannot mix targets with lam ${lam}`);
  const y = smoothedOneHot(labels, numClasses, options.smoothing ?? 0);
  const B = labels.length;
  const out = new Float32Array(y.length);
  const l = Math.fround(lam), r = Math.fround(1 - lam);
  for (let i = 0; i < B; i++) {
    const j = B - 1 - i;
    for (let c = 0; c < numClasses; c++) {
      out[i * numClasses + c] = Math.fround(y[i * numClasses + c] * l) +
        Math.fround(y[j * numClasses + c] * r);
    }
  }
  return tf.tensor2d(out, [B, numClasses], "float32");
}
