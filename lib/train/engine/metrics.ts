/**
 * Evaluation metrics: top-k accuracy counts.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/**
 * How many samples have their label among the k highest logits, for each k.
 *
 * @param logits `[B, C] float32` (not consumed)
 * @param labels class indices, length B
 * @param ks the k values (each 1..C)
 * @returns one count per k
 * @throws {TypeError} when logits are not 2-D or B does not match
 * @throws {RangeError} for a k outside 1..C
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { topKCorrect } from "@lib/train";
 * const logits = tf.tensor2d([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]]);
 * const [top1, top2] = await topKCorrect(logits, [1, 2], [1, 2]);
 * console.assert(top1 === 1 && top2 === 2);
 * logits.dispose();
 * ```
 */
export async function topKCorrect(
  logits: tf.Tensor,
  labels: ArrayLike<number>,
  ks: readonly number[] = [1, 5],
): Promise<number[]> {
  if (logits.rank !== 2 || logits.shape[0] !== labels.length) {
    throw new TypeError(
      `Cannot score logits of shape [${logits.shape}] against ${labels.length} labels`,
    );
  }
  const C = logits.shape[1]!;
  for (const k of ks) {
    if (!Number.isInteger(k) || k < 1 || k > C) {
      throw new RangeError(`Cannot compute top-${k} accuracy over ${C} classes`);
    }
  }
  const maxK = Math.max(...ks);
  const idx = tf.tidy(() => tf.topk(logits, maxK, true).indices);
  let data: Int32Array;
  try {
    data = (await idx.data()) as Int32Array;
  } finally {
    idx.dispose();
  }
  return ks.map((k) => {
    let n = 0;
    for (let i = 0; i < labels.length; i++) {
      for (let j = 0; j < k; j++) {
        if (data[i * maxK + j] === labels[i]) {
          n++;
          break;
        }
      }
    }
    return n;
  });
}
