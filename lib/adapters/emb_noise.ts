/**
 * Emb-Noise: Gaussian noise on embedding maps, one offset per channel plus one per element.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { checkMaps, checkProb, describeValue, type Transform } from "../tokens/mod.ts";
import { selectedSamples } from "./color_adapt.ts";

/** Options of {@linkcode embNoise}. */
export interface EmbNoiseOptions {
  /**
   * Fraction of the batch that gets noise: the first `floor(B * prob)` samples of a random
   * permutation.
   * @default {0.5}
   */
  prob?: number;
  /**
   * Standard deviation of the per-channel offset (`N(0,1)[B, C, 1, 1]`).
   * @default {1}
   */
  scale?: number;
  /**
   * Standard deviation of the per-element noise (`N(0,1)[B, C, H, W]`).
   * @default {1}
   */
  std?: number;
}

/** Parameters of one Emb-Noise application (unit-variance draws, before scaling). */
export interface EmbNoiseParams {
  /** A permutation of `0..B-1`; samples `perm[:count]` get noise. */
  perm: Int32Array;
  /** How many samples get noise: `floor(B * prob)`. */
  count: number;
  /** `[B, C]` standard normal draws (ignored for samples without noise). */
  channel: Float32Array;
  /** `[B, C, H, W]` standard normal draws (ignored for samples without noise). */
  pixel: Float32Array;
}

/**
 * Emb-Noise (the reference's `Noise`): `x + scale * N(0,1)[B,C,1,1] + std * N(0,1)[B,C,H,W]`
 * for the samples `perm[:floor(B*prob)]`; the others are unchanged.
 *
 * Draws: `rng.permutation(B)`, then the channel draws of the chosen samples (in sample
 * order, C each), then their element draws (C*H*W each); unchosen samples draw nothing
 * and their entries stay 0.
 *
 * @param options prob, scale and std
 * @returns the transform on `[B, C, H, W]` float32 maps
 * @throws {RangeError} for a probability outside [0, 1] or a negative scale/std
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { Rng } from "@lib/random";
 * import { embNoise } from "@lib/adapters";
 * import { runTransform } from "@lib/tokens";
 * const x = tf.zeros([4, 2, 3, 3]) as tf.Tensor4D;
 * const { output, params } = runTransform(embNoise({ prob: 0.5 }), x, new Rng(1));
 * console.assert(params.count === 2 && output.shape.join() === "4,2,3,3");
 * tf.dispose([x, output]);
 * ```
 */
export function embNoise(options: EmbNoiseOptions = {}): Transform<tf.Tensor4D, EmbNoiseParams> {
  const prob = checkProb(options.prob ?? 0.5, "embNoise prob");
  const scale = options.scale ?? 1, std = options.std ?? 1;
  if (!(scale >= 0) || !(std >= 0)) {
    throw new RangeError(`Cannot use embNoise scale = ${scale}, std = ${std}: expected >= 0`);
  }
  return {
    description: `emb_noise(p=${prob}, scale=${scale}, std=${std})`,
    draw(input: tf.Tensor4D, rng: Rng): EmbNoiseParams {
      const [B, C, H, W] = checkMaps(input, "embNoise input");
      const perm = rng.permutation(B);
      const count = Math.floor(B * prob);
      const chosen = Array.from(perm.subarray(0, count)).sort((a, b) => a - b);
      const channel = new Float32Array(B * C);
      const pixel = new Float32Array(B * C * H * W);
      for (const b of chosen) {
        for (let k = b * C; k < (b + 1) * C; k++) channel[k] = rng.normal();
      }
      const L = C * H * W;
      for (const b of chosen) {
        for (let k = b * L; k < (b + 1) * L; k++) pixel[k] = rng.normal();
      }
      return { perm, count, channel, pixel };
    },
    apply(input: tf.Tensor4D, params: EmbNoiseParams): tf.Tensor4D {
      const [B, C, H, W] = checkMaps(input, "embNoise input");
      const chosen = selectedSamples(params, B, "embNoise");
      const { channel, pixel } = params;
      if (!(channel instanceof Float32Array) || channel.length !== B * C) {
        throw new TypeError(
          `Cannot apply embNoise: expected channel draws as a Float32Array of ${B * C}, got ${
            describeValue(channel)
          }`,
        );
      }
      if (!(pixel instanceof Float32Array) || pixel.length !== B * C * H * W) {
        throw new TypeError(
          `Cannot apply embNoise: expected pixel draws as a Float32Array of ${B * C * H * W}, got ${
            describeValue(pixel)
          }`,
        );
      }
      return tf.tidy(() => {
        if (!chosen.some((c) => c)) return tf.clone(input);
        const noise = tf.tensor4d(channel, [B, C, 1, 1]).mul(scale)
          .add(tf.tensor4d(pixel, [B, C, H, W]).mul(std));
        const mask = tf.tensor4d(chosen.map((c) => (c ? 1 : 0)), [B, 1, 1, 1], "float32");
        return input.add(noise.mul(mask)) as tf.Tensor4D;
      });
    },
  };
}
