/**
 * Codes back to displayable pixels: a batch of code grids decoded by a tokenizer decoder into
 * uint8 images laid out `[N, H, W, C]`, the layout `imageGrid` / `tileImages` take.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import { gridSize } from "./config.ts";
import { decodeCodes } from "./bulk.ts";
import type { VqDecoder } from "./model.ts";

/** Code grids in any of the forms the notebooks hold them. */
export type CodeBatch = tf.Tensor3D | HostTensor | Int32Array;

function hostCodes(codes: CodeBatch, n: number): Int32Array {
  if (codes instanceof Int32Array) return codes;
  if (codes instanceof tf.Tensor) {
    if (codes.rank !== 3 || codes.shape[1] !== n || codes.shape[2] !== n) {
      throw new TypeError(
        `Cannot decode codes of shape [${codes.shape}]: expected [B, ${n}, ${n}]`,
      );
    }
    if (codes.dtype !== "int32") {
      throw new TypeError(`Cannot decode codes of dtype ${codes.dtype}: expected int32`);
    }
    return codes.dataSync() as Int32Array;
  }
  if (codes === null || typeof codes !== "object" || !("shape" in codes)) {
    throw new TypeError("Cannot decode codes: expected a tensor, a HostTensor or an Int32Array");
  }
  const s = codes.shape;
  if (s.length !== 3 || s[1] !== n || s[2] !== n) {
    throw new TypeError(`Cannot decode codes of shape [${s}]: expected [B, ${n}, ${n}]`);
  }
  if (codes.dtype !== "int32") {
    throw new TypeError(`Cannot decode codes of dtype ${codes.dtype}: expected int32`);
  }
  return codes.data as Int32Array;
}

/**
 * Decode code grids to uint8 images `[N, H, W, C]` (the decoder's output clipped to [0, 1],
 * times 255, rounded), ready for `imageGrid` of `@lib/report`.
 *
 * @param decoder the decoder whose codebook the codes index
 * @param codes `[N, n, n]` int32 as a tensor (not disposed) or a HostTensor, or `N*n*n`
 *   row-major codes
 * @returns `[N, H, W, C]` uint8 host images (H = W = the decoder's image side)
 * @throws {TypeError} for a wrong shape or dtype
 * @throws {RangeError} for a code outside the codebook
 * @example
 * ```ts ignore
 * import { decodedImages, loadDecoder } from "@lib/tokenizer";
 * const decoder = await loadDecoder("data/fmnist8");
 * const images = decodedImages(decoder, dataset.readBatch([0, 1, 2])); // [3, 28, 28, 1] uint8
 * ```
 */
export function decodedImages(decoder: VqDecoder, codes: CodeBatch): HostTensor<"uint8"> {
  const n = gridSize(decoder.config);
  const flat = hostCodes(codes, n);
  const decoded = decodeCodes(decoder, flat);
  const [N, C, H, W] = decoded.shape;
  const out = new Uint8Array(N * H * W * C);
  const src = decoded.data;
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      const base = (i * C + c) * H * W;
      for (let p = 0; p < H * W; p++) {
        const v = src[base + p] * 255;
        out[(i * H * W + p) * C + c] = v > 255 ? 255 : v > 0 ? Math.round(v) : 0;
      }
    }
  }
  return { dtype: "uint8", shape: [N, H, W, C], data: out };
}
