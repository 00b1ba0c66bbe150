/**
 * ColorAdapt: AdaIN-style statistics swap on embedding maps (SeiT++), the token-space
 * counterpart of color jitter.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { checkMaps, checkProb, describeValue, type Transform } from "../tokens/mod.ts";

/** Options of {@linkcode colorAdapt}. */
export interface ColorAdaptOptions {
  /**
   * Fraction of the batch that is replaced: the first `floor(B * prob)` samples of a random
   * permutation.
   * @default {0.5}
   */
  prob?: number;
  /**
   * Added to a sample's own standard deviation before dividing. The reference has none
   * (0): a constant channel then gives NaN/Infinity, which callers working on crops of
   * uniform backgrounds may want to avoid with e.g. 1e-5.
   * @default {0}
   */
  eps?: number;
}

/** Parameters of one ColorAdapt application. */
export interface ColorAdaptParams {
  /** A permutation of `0..B-1`; samples `perm[:count]` are replaced. */
  perm: Int32Array;
  /** How many samples are replaced: `floor(B * prob)`. */
  count: number;
}

/**
 * ColorAdapt (the reference's `ColorAdapt`): sample `i` of the chosen ones becomes
 * `sigma_j * (x_i - mu_i) / (sigma_i + eps) + mu_j` with `j = B-1-i` (the batch reversed),
 * mean and UNBIASED standard deviation per sample and channel over H x W. Statistics come
 * from the input before any replacement. Draws: `rng.permutation(B)`.
 *
 * @param options prob and eps
 * @returns the transform on `[B, C, H, W]` float32 maps (H*W >= 2)
 * @throws {RangeError} for a probability outside [0, 1] or a negative eps
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { colorAdapt } from "@lib/adapters";
 * const x = tf.tensor4d([0, 2, 10, 30], [2, 1, 1, 2]); // sample 0: mean 1, sd 1.41; sample 1: mean 20, sd 14.1
 * const y = colorAdapt().apply(x, { perm: new Int32Array([0, 1]), count: 1 });
 * console.assert(y.arraySync()[0][0][0].join() === "10,30");
 * tf.dispose([x, y]);
 * ```
 */
export function colorAdapt(
  options: ColorAdaptOptions = {},
): Transform<tf.Tensor4D, ColorAdaptParams> {
  const prob = checkProb(options.prob ?? 0.5, "colorAdapt prob");
  const eps = options.eps ?? 0;
  if (!(eps >= 0)) throw new RangeError(`Cannot use colorAdapt eps = ${eps}: expected >= 0`);
  return {
    description: `color_adapt(p=${prob}${eps > 0 ? `, eps=${eps}` : ""})`,
    draw(input: tf.Tensor4D, rng: Rng): ColorAdaptParams {
      const [B] = checkMaps(input, "colorAdapt input");
      return { perm: rng.permutation(B), count: Math.floor(B * prob) };
    },
    apply(input: tf.Tensor4D, params: ColorAdaptParams): tf.Tensor4D {
      const [B, , H, W] = checkMaps(input, "colorAdapt input");
      const chosen = selectedSamples(params, B, "colorAdapt");
      if (H * W < 2) {
        throw new RangeError(
          `Cannot use colorAdapt on ${H}x${W} maps: the unbiased std needs H*W >= 2`,
        );
      }
      return tf.tidy(() => {
        if (!chosen.some((c) => c)) return tf.clone(input);
        const mean = input.mean([2, 3], true);
        const std = input.sub(mean).square().sum([2, 3], true).div(H * W - 1).sqrt();
        // Unchosen samples get neutral statistics, (x - 0) / 1 * 1 + (-0), which return x
        // bit for bit; this avoids a per-sample select over the whole batch (slow on wasm).
        const m = tf.tensor4d(chosen.map((c) => (c ? 1 : 0)), [B, 1, 1, 1], "bool");
        const ownMean = tf.where(m, mean, tf.scalar(0));
        const ownStd = tf.where(m, eps > 0 ? std.add(eps) : std, tf.scalar(1));
        const partnerStd = tf.where(m, tf.reverse(std, 0), tf.scalar(1));
        const partnerMean = tf.where(m, tf.reverse(mean, 0), tf.scalar(-0));
        return input.sub(ownMean).div(ownStd).mul(partnerStd).add(partnerMean) as tf.Tensor4D;
      });
    },
  };
}

/**
 * Which samples a perm/count pair selects; validates the parameters.
 * @param params the parameters
 * @param B batch size
 * @param what name for errors
 * @returns a flag per sample
 */
export function selectedSamples(
  params: { perm: ArrayLike<number>; count: number },
  B: number,
  what: string,
): boolean[] {
  const perm = params?.perm;
  const count = params?.count;
  if (
    perm === undefined || perm === null || typeof perm !== "object" || perm.length !== B ||
    !Number.isInteger(count) || count < 0 || count > B
  ) {
    throw new TypeError(
      `Cannot apply ${what}: expected { perm: a permutation of ${B}, count in 0..${B} }, got perm ${
        describeValue(perm)
      }${perm && typeof perm === "object" ? ` of length ${perm.length}` : ""}, count ${count}`,
    );
  }
  const seen = new Array<boolean>(B).fill(false);
  for (let k = 0; k < B; k++) {
    const p = perm[k];
    if (!Number.isInteger(p) || p < 0 || p >= B || seen[p]) {
      throw new RangeError(`Cannot apply ${what}: perm [${Array.from(perm)}] is not a permutation`);
    }
    seen[p] = true;
  }
  const chosen = new Array<boolean>(B).fill(false);
  for (let k = 0; k < count; k++) chosen[perm[k]] = true;
  return chosen;
}
