/**
 * Losses of pre-training and fine-tuning, as the reference computes them:
 * - token cross-entropy with label smoothing s (timm `LabelSmoothingCrossEntropy`,
 *   per row: `(1-s) * nll + s * mean_k(-log p_k)`), and its BCE variant (BCE with
 *   logits against one-hot, averaged over the K classes);
 * - `softTargetCrossEntropy` (timm `SoftTargetCrossEntropy`, the fine-tuning loss with
 *   Mixup/CutMix targets), `labelSmoothingCrossEntropy` (fine-tuning without mixup),
 *   `crossEntropy` (torch `CrossEntropyLoss`, evaluation).
 *
 * The per-row token losses have hand-written gradients (from `@lib/models`), so they
 * are cheap on wasm for `[B*m*m, K]` logits. Every function returns a tensor owned by
 * the caller and can be used inside `tf.variableGrads`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { bceOneHotRows, softmaxCrossEntropyRows } from "../../models/mod.ts";

function checkLogits(logits: tf.Tensor, what: string): void {
  if (logits.rank !== 2 || logits.dtype !== "float32") {
    throw new TypeError(
      `Cannot compute ${what} of ${logits.dtype} [${logits.shape}]: expected float32 [N, K]`,
    );
  }
}

function checkLabels(labels: tf.Tensor, n: number, what: string): void {
  if (labels.rank !== 1 || labels.dtype !== "int32" || labels.shape[0] !== n) {
    throw new TypeError(
      `Cannot compute ${what} with labels ${labels.dtype} [${labels.shape}]: expected int32 [${n}]`,
    );
  }
}

/**
 * Per-row token cross-entropy with label smoothing s (s = 0: plain negative
 * log-likelihood).
 *
 * @param logits `[N, K]` float32
 * @param targets `[N]` int32 class indices in [0, K)
 * @param smoothing s in [0, 1)
 * @returns `[N]` float32 per-row loss
 * @throws {TypeError} for wrong shapes or dtypes
 * @throws {RangeError} for s outside [0, 1)
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { tokenCrossEntropy } from "@lib/train";
 * const l = tokenCrossEntropy(tf.zeros([1, 4]), tf.tensor1d([2], "int32"));
 * console.assert(Math.abs(l.dataSync()[0] - Math.log(4)) < 1e-6);
 * l.dispose();
 * ```
 */
export function tokenCrossEntropy(
  logits: tf.Tensor2D,
  targets: tf.Tensor1D,
  smoothing = 0,
): tf.Tensor1D {
  checkLogits(logits, "token cross-entropy");
  checkLabels(targets, logits.shape[0], "token cross-entropy");
  return softmaxCrossEntropyRows(logits, targets, smoothing);
}

/**
 * Per-row BCE with logits against the one-hot target, averaged over the K classes
 * (the MTM `bce_loss` variant).
 *
 * @param logits `[N, K]` float32
 * @param targets `[N]` int32 class indices
 * @returns `[N]` float32 per-row loss
 * @throws {TypeError} for wrong shapes or dtypes
 */
export function bceWithLogitsOneHot(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  checkLogits(logits, "BCE");
  checkLabels(targets, logits.shape[0], "BCE");
  return bceOneHotRows(logits, targets);
}

/**
 * timm `SoftTargetCrossEntropy`: `mean_b sum_k -t[b,k] * log_softmax(x)[b,k]`.
 *
 * @param logits `[B, K]` float32
 * @param targets `[B, K]` float32 soft targets (rows summing to 1, e.g. mixup targets)
 * @returns scalar float32
 * @throws {TypeError} for wrong shapes or dtypes
 */
export function softTargetCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
  checkLogits(logits, "soft-target cross-entropy");
  if (
    targets.rank !== 2 || targets.shape[0] !== logits.shape[0] ||
    targets.shape[1] !== logits.shape[1]
  ) {
    throw new TypeError(
      `Cannot compute soft-target cross-entropy with targets [${targets.shape}] for logits [${logits.shape}]`,
    );
  }
  return tf.tidy(() => tf.mean(tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(logits)), -1))));
}

/**
 * timm `LabelSmoothingCrossEntropy(s)` with the batch mean.
 *
 * @param logits `[B, K]` float32
 * @param labels `[B]` int32
 * @param smoothing s in [0, 1)
 * @returns scalar float32
 * @throws {TypeError} for wrong shapes or dtypes
 */
export function labelSmoothingCrossEntropy(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  smoothing: number,
): tf.Scalar {
  return tf.tidy(() => tf.mean(tokenCrossEntropy(logits, labels, smoothing)));
}

/**
 * torch `CrossEntropyLoss()` (mean negative log-likelihood of the labels).
 *
 * @param logits `[B, K]` float32
 * @param labels `[B]` int32
 * @returns scalar float32
 * @throws {TypeError} for wrong shapes or dtypes
 */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => tf.mean(tokenCrossEntropy(logits, labels, 0)));
}
