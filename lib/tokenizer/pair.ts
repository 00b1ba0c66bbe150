/**
 * A tokenizer seen as the `PairTokenizer` TokenAdapt training and evaluation take (images in,
 * codes out, and where the code grid sits in pixel space).
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs";
import type { PairTokenizer } from "../adapters/mod.ts";
import { gridSize } from "./config.ts";
import type { VqTokenizer } from "./model.ts";

/**
 * The `PairTokenizer` view of a tokenizer: its frame (`imageSize`, the padded square the code
 * grid covers), the image side it encodes (`inputSize`), channels and grid side.
 *
 * @param tok the whole tokenizer (its encoder makes the codes of augmented images)
 * @returns a PairTokenizer whose `encode` calls `tok.encode` (the caller owns the codes)
 * @example
 * ```ts ignore
 * import { loadTokenizer, pairTokenizer } from "@lib/tokenizer";
 * const pair = pairTokenizer(await loadTokenizer("data/fmnist8")); // frame 32, images 28, 8x8 codes
 * ```
 */
export function pairTokenizer(tok: VqTokenizer): PairTokenizer {
  return {
    frameSize: tok.config.imageSize,
    imageSize: tok.config.inputSize,
    channels: tok.config.channels,
    gridSize: gridSize(tok.config),
    encode: (x: tf.Tensor4D) => tok.encode(x),
  };
}
