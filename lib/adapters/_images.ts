/**
 * Host image sets as tensor batches for the tokenizer pair of TokenAdapt training and
 * comparison.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { PairTokenizer } from "./tokenadapt_train.ts";

/**
 * Images of a host image set (`[N, s, s]` for one channel, or `[N, C, s, s]`; uint8 is
 * scaled to [0, 1]) as `[B, C, s, s]` float32.
 *
 * @param images the image set
 * @param idx which images, or null for all of them in order
 * @param tok the tokenizer pair (its image size and channels)
 * @param what the action named in the error, e.g. `train on`
 * @returns the batch, owned by the caller
 * @throws {TypeError} when the images do not fit the tokenizer
 */
export function imageBatch(
  images: HostTensor,
  idx: Int32Array | null,
  tok: PairTokenizer,
  what: string,
): tf.Tensor4D {
  const s = tok.imageSize, C = tok.channels;
  const per = C * s * s;
  const shape = images.shape;
  const ok = (shape.length === 3 && C === 1 && shape[1] === s && shape[2] === s) ||
    (shape.length === 4 && shape[1] === C && shape[2] === s && shape[3] === s);
  if (!ok) {
    throw new TypeError(
      `Cannot ${what} images of shape [${shape}]: the tokenizer takes ${C}x${s}x${s} images`,
    );
  }
  const scale = images.dtype === "uint8" ? 1 / 255 : 1;
  const data = images.data as ArrayLike<number>;
  if (idx === null) {
    return tf.tensor4d(Float32Array.from(data, (v) => v * scale), [shape[0], C, s, s]);
  }
  const out = new Float32Array(idx.length * per);
  idx.forEach((k, b) => {
    for (let i = 0; i < per; i++) out[b * per + i] = data[k * per + i] * scale;
  });
  return tf.tensor4d(out, [idx.length, C, s, s]);
}
