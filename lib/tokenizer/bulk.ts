/**
 * Whole-dataset operations: encode an image set to codes, decode codes to images,
 * measure reconstruction quality, prune the codebook to the codes in use.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import { gridSize } from "./config.ts";
import { imageBatch, imageSetDims } from "./images.ts";
import type { VqDecoder, VqTokenizer } from "./model.ts";

/** Options of the batched whole-dataset functions. */
export interface BulkOptions {
  /** Images per forward pass. @default {256} */
  batchSize?: number;
  /** The file the images came from, for messages. @default {"<images>"} */
  source?: string;
  /** Called after each batch with the number of images done. */
  onBatch?: (done: number, total: number) => void;
}

function checkFits(images: HostTensor, tok: VqTokenizer | VqDecoder, source: string): number {
  const [N, C, H, W] = imageSetDims(images, source);
  const c = tok.config;
  if (C !== c.channels || H !== c.inputSize || W !== c.inputSize) {
    throw new TypeError(
      `Cannot tokenize "${source}": its images are ${C}x${H}x${W} (CxHxW), the tokenizer takes ` +
        `${c.channels}x${c.inputSize}x${c.inputSize}`,
    );
  }
  return N;
}

function range(a: number, b: number): Int32Array {
  const r = new Int32Array(b - a);
  for (let i = 0; i < r.length; i++) r[i] = a + i;
  return r;
}

/**
 * Encode a whole image set, batch by batch.
 *
 * @param tok the tokenizer
 * @param images `[N, H, W]` or `[N, C, H, W]`, uint8 or float32 (0..1)
 * @param options batch size, source name, progress callback
 * @returns `[N * n * n]` int32 codes, row-major per image
 * @throws {TypeError} when the images do not fit the tokenizer (the message names the source)
 */
export function encodeImages(
  tok: VqTokenizer,
  images: HostTensor,
  options: BulkOptions = {},
): Int32Array {
  const source = options.source ?? "<images>";
  const N = checkFits(images, tok, source);
  const bs = options.batchSize ?? 256;
  const nn = gridSize(tok.config) ** 2;
  const out = new Int32Array(N * nn);
  for (let s = 0; s < N; s += bs) {
    const e = Math.min(N, s + bs);
    const x = imageBatch(images, range(s, e));
    try {
      const codes = tok.encode(x as tf.Tensor3D);
      out.set(codes.dataSync() as Int32Array, s * nn);
      codes.dispose();
    } finally {
      x.dispose();
    }
    options.onBatch?.(e, N);
  }
  return out;
}

/**
 * Decode codes to images, batch by batch.
 *
 * @param decoder the decoder
 * @param codes `[N * n * n]` codes, row-major per image
 * @param options batch size, progress callback
 * @returns `[N, C, H, W]` float32 in [0, 1] (H = W = the tokenizer's input size)
 * @throws {TypeError} when the code count is not a multiple of n*n
 * @throws {RangeError} for a code outside the codebook
 */
export function decodeCodes(
  decoder: VqDecoder,
  codes: Int32Array,
  options: BulkOptions = {},
): HostTensor<"float32"> {
  const n = gridSize(decoder.config);
  const nn = n * n;
  if (codes.length % nn !== 0) {
    throw new TypeError(`Cannot decode ${codes.length} codes: not a multiple of ${n}x${n}`);
  }
  const N = codes.length / nn;
  const { channels: C, inputSize: S } = decoder.config;
  const out = new Float32Array(N * C * S * S);
  const bs = options.batchSize ?? 256;
  for (let s = 0; s < N; s += bs) {
    const e = Math.min(N, s + bs);
    const c = tf.tensor3d(codes.subarray(s * nn, e * nn), [e - s, n, n], "int32");
    try {
      const img = decoder.decode(c);
      out.set(img.dataSync() as Float32Array, s * C * S * S);
      img.dispose();
    } finally {
      c.dispose();
    }
    options.onBatch?.(e, N);
  }
  return { dtype: "float32", shape: [N, C, S, S], data: out };
}

/** Reconstruction quality of decoded codes against the original images. */
export interface ReconstructionMetrics {
  /** Images compared. */
  count: number;
  /** Mean squared error over every pixel, on the 0..1 scale. */
  mse: number;
  /** `10 log10(1 / mse)`: the PSNR of the whole set as one signal, dB. */
  psnr: number;
  /** The mean over images of each image's own PSNR, dB (an exact match counts 100 dB). */
  meanImagePsnr: number;
}

/**
 * Decode codes and compare with the original images (both on the 0..1 scale, the decoder's
 * float output clipped to [0, 1], not rounded to 8 bits).
 *
 * @param decoder the decoder
 * @param codes `[N * n * n]` codes of the images
 * @param images the originals, `[N, H, W]` or `[N, C, H, W]`, uint8 or float32 (0..1)
 * @param options batch size, source name, progress callback
 * @returns MSE and PSNR
 * @throws {TypeError} when images and codes do not match in count or size
 */
export function reconstructionMetrics(
  decoder: VqDecoder,
  codes: Int32Array,
  images: HostTensor,
  options: BulkOptions = {},
): ReconstructionMetrics {
  const source = options.source ?? "<images>";
  const N = checkFits(images, decoder, source);
  const nn = gridSize(decoder.config) ** 2;
  if (codes.length !== N * nn) {
    throw new TypeError(
      `Cannot compare ${codes.length / nn} decoded records with ${N} images of "${source}"`,
    );
  }
  const { channels: C, inputSize: S } = decoder.config;
  const size = C * S * S;
  const scale = images.dtype === "uint8" ? 1 / 255 : 1;
  const src = images.data as Uint8Array | Float32Array;
  const bs = options.batchSize ?? 256;
  let total = 0, psnrSum = 0;
  for (let s = 0; s < N; s += bs) {
    const e = Math.min(N, s + bs);
    const rec = decodeCodes(decoder, codes.subarray(s * nn, e * nn), { batchSize: bs });
    const r = rec.data;
    for (let i = 0; i < e - s; i++) {
      let se = 0;
      const o = (s + i) * size, ro = i * size;
      for (let j = 0; j < size; j++) {
        const d = r[ro + j] - src[o + j] * scale;
        se += d * d;
      }
      total += se;
      const m = se / size;
      psnrSum += m > 0 ? Math.min(100, 10 * Math.log10(1 / m)) : 100;
    }
    options.onBatch?.(e, N);
  }
  const mse = total / (N * size);
  return { count: N, mse, psnr: 10 * Math.log10(1 / mse), meanImagePsnr: psnrSum / N };
}

/** What {@linkcode pruneCodebook} did. */
export interface PruneResult {
  /** Codebook size before. */
  before: number;
  /** Codebook size after (codes used at least once). */
  after: number;
  /** `kept[newCode] = oldCode`, ascending. */
  kept: Int32Array;
  /** `remap[oldCode] = newCode`, or -1 for a dropped code. */
  remap: Int32Array;
  /** Uses of each new code on the images. */
  counts: Int32Array;
}

/**
 * Keep only the codes the encoder uses on `images` (as the authors' 391-entry codebook
 * keeps only used ViT-VQGAN codes), re-indexed in their old order. The tokenizer's
 * codebook is replaced; encoding the same images afterwards gives the remapped codes.
 *
 * @param tok the tokenizer (its codebook is replaced)
 * @param images the training images
 * @param options batch size, source name, progress callback
 * @returns the mapping and usage counts
 * @throws {TypeError} when the images do not fit the tokenizer
 */
export function pruneCodebook(
  tok: VqTokenizer,
  images: HostTensor,
  options: BulkOptions = {},
): PruneResult {
  const codes = encodeImages(tok, images, options);
  const K = tok.decoder.codebookSize;
  const use = new Int32Array(K);
  for (let i = 0; i < codes.length; i++) use[codes[i]]++;
  const keptList: number[] = [];
  for (let k = 0; k < K; k++) if (use[k] > 0) keptList.push(k);
  const kept = Int32Array.from(keptList);
  const remap = new Int32Array(K).fill(-1);
  kept.forEach((old, i) => (remap[old] = i));
  const next = tf.tidy(() => tf.gather(tok.codebook, tf.tensor1d(kept, "int32")) as tf.Tensor2D);
  tok.decoder.setCodebook(next);
  return {
    before: K,
    after: kept.length,
    kept,
    remap,
    counts: Int32Array.from(kept, (k) => use[k]),
  };
}
