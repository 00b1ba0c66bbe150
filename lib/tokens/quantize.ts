/**
 * Between codes and the codebook's embedding space: `embedCodes` looks codes up in the
 * codebook, `convertToCodes` re-quantizes an embedding map to the nearest codebook row by
 * cosine similarity (the reference's `util.misc.convert_to_codes`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32, toInt32 } from "../io/mod.ts";
import { describeValue } from "./transform_core.ts";

/** Where a codebook may come from: a `[K, d]` float tensor, host tensor or a prepared quantizer. */
export type CodebookSource = tf.Tensor2D | HostTensor | CodeQuantizer;

/** Codes as accepted by {@linkcode embedCodes}: a `[B, H, W]` int32 tensor or an integer host tensor. */
export type CodesInput = tf.Tensor3D | HostTensor;

/** F.normalize's eps: a vector shorter than this is divided by eps instead of its length. */
const NORMALIZE_EPS = 1e-12;

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * A codebook prepared for repeated lookups and nearest-row searches: it holds the raw rows
 * and a `[d+1, K]` scoring matrix, the L2-normalized rows transposed with minus half their
 * squared norms as an extra row (one plain 2-D matMul scores every code, the fast case on
 * wasm).
 *
 * Create once per codebook, reuse for every batch, {@linkcode CodeQuantizer.dispose} at the end.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { CodeQuantizer } from "@lib/tokens";
 * const q = CodeQuantizer.from(tf.tensor2d([[1, 0], [0, 1], [-1, 0]]));
 * const codes = tf.tensor3d([[[0, 2]]], [1, 1, 2], "int32");
 * const emb = q.embed(codes); // [1, 2, 1, 2]
 * const back = q.toCodes(emb); // [[[0, 2]]]
 * console.assert(back.arraySync()[0][0][1] === 2);
 * tf.dispose([codes, emb, back]);
 * q.dispose();
 * ```
 */
export class CodeQuantizer {
  /** Number of codes K. */
  readonly size: number;
  /** Embedding width d. */
  readonly dim: number;
  /** The codebook rows `[K, d]` float32 (owned by this quantizer). */
  readonly weights: tf.Tensor2D;
  /** `[d+1, K]`: normalized rows transposed, then the row `-|c^_k|^2 / 2`. */
  readonly #scoring: tf.Tensor2D;
  /** The rows on the host, for embedding host codes without a gather kernel. */
  readonly #hostWeights: Float32Array;
  #disposed = false;

  private constructor(weights: tf.Tensor2D) {
    this.weights = weights;
    [this.size, this.dim] = weights.shape;
    this.#hostWeights = weights.dataSync() as Float32Array;
    this.#scoring = tf.tidy(() => {
      const n = normalizeRows(weights);
      const bias = n.square().sum(1).mul(-0.5).reshape([1, this.size]);
      return tf.concat([n.transpose(), bias], 0) as tf.Tensor2D;
    });
  }

  /**
   * Prepare a codebook.
   * @param codebook `[K, d]` float32 rows, as a tensor (copied; the caller keeps ownership) or a host tensor
   * @returns a quantizer that owns its tensors
   * @throws {TypeError} when the codebook is not a 2-D float tensor with K >= 1 and d >= 1
   */
  static from(codebook: tf.Tensor2D | HostTensor): CodeQuantizer {
    const shape = codebook.shape;
    if (shape.length !== 2 || shape[0] < 1 || shape[1] < 1) {
      throw new TypeError(`Cannot use a codebook of shape ${shapeText(shape)}: expected [K, d]`);
    }
    if (codebook instanceof tf.Tensor) {
      if (codebook.dtype !== "float32") {
        throw new TypeError(`Cannot use a ${codebook.dtype} codebook: expected float32`);
      }
      return new CodeQuantizer(tf.clone(codebook));
    }
    if (!codebook.dtype.startsWith("float") && codebook.dtype !== "bfloat16") {
      throw new TypeError(`Cannot use a ${codebook.dtype} codebook: expected a float dtype`);
    }
    return new CodeQuantizer(tf.tensor2d(toFloat32(codebook), [shape[0], shape[1]], "float32"));
  }

  #check(): void {
    if (this.#disposed) throw new TypeError("Cannot use a CodeQuantizer after dispose()");
  }

  /**
   * Look codes up in the codebook: `out[b, :, h, w] = codebook[codes[b, h, w]]`.
   *
   * @param codes `[B, H, W]` int32 tensor, or an int32/int64/uint8/int16 host tensor
   * @returns `[B, d, H, W]` float32, owned by the caller
   * @throws {TypeError} for a wrong rank or dtype
   * @throws {RangeError} for a host code outside `0..K-1` (tensor codes are not read back to check)
   */
  embed(codes: CodesInput): tf.Tensor4D {
    this.#check();
    const [B, H, W] = checkCodes(codes, this.size);
    const d = this.dim;
    if (!(codes instanceof tf.Tensor)) {
      // host codes: write the channels-first map directly (no gather, no transpose)
      const ids = toInt32(codes), cb = this.#hostWeights, L = H * W;
      const out = new Float32Array(B * d * L);
      for (let b = 0; b < B; b++) {
        for (let p = 0; p < L; p++) {
          const src = ids[b * L + p] * d, dst = b * d * L + p;
          for (let k = 0; k < d; k++) out[dst + k * L] = cb[src + k];
        }
      }
      return tf.tensor4d(out, [B, d, H, W]);
    }
    return tf.tidy(() =>
      tf.gather(this.weights, codes.reshape([B * H * W])).reshape([B, H, W, d])
        .transpose([0, 3, 1, 2])
    );
  }

  /**
   * Re-quantize an embedding map: each vector `x[b, :, h, w]` becomes the index of the
   * codebook row with the largest cosine similarity. Computed as the reference does,
   * `argmin_k |x^|^2 + |c^_k|^2 - 2 x^.c^_k` with `v^ = v / max(|v|, 1e-12)`, i.e.
   * `argmax_k x^.c^_k - |c^_k|^2 / 2` (the `|x^|^2` term is the same for every k), scored by
   * one matMul of `[x^, 1]` with the prepared `[d+1, K]` matrix; ties go to the lowest index.
   *
   * @param x `[B, d, H, W]` float32 (not disposed)
   * @returns codes `[B, H, W]` int32, owned by the caller
   * @throws {TypeError} for a wrong rank, dtype or channel count
   */
  toCodes(x: tf.Tensor4D): tf.Tensor3D {
    this.#check();
    if (!(x instanceof tf.Tensor) || x.rank !== 4 || x.dtype !== "float32") {
      throw new TypeError(
        `Cannot convert to codes: expected x as a [B, d, H, W] float32 tensor, got ${
          describeValue(x)
        }`,
      );
    }
    const [B, d, H, W] = x.shape;
    if (d !== this.dim) {
      throw new TypeError(
        `Cannot convert to codes: x ${
          shapeText(x.shape)
        } has ${d} channels, the codebook d = ${this.dim}`,
      );
    }
    return tf.tidy(() => {
      const N = B * H * W;
      const rows = normalizeRows(x.transpose([0, 2, 3, 1]).reshape([N, d]) as tf.Tensor2D);
      const score = tf.matMul(tf.concat([rows, tf.ones([N, 1])], 1), this.#scoring);
      return score.argMax(1).reshape([B, H, W]) as tf.Tensor3D;
    });
  }

  /** Release the tensors. Further calls throw. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    tf.dispose([this.weights, this.#scoring]);
  }
}

function normalizeRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => x.div(x.square().sum(1, true).sqrt().maximum(NORMALIZE_EPS)));
}

function checkCodes(codes: CodesInput, size: number): [number, number, number] {
  const bad = () =>
    new TypeError(
      `Cannot embed codes: expected a [B, H, W] int32 tensor or integer host tensor, got ${
        describeValue(codes)
      }`,
    );
  if (codes === null || typeof codes !== "object" || !("shape" in codes)) throw bad();
  if (codes.shape.length !== 3) throw bad();
  if (codes instanceof tf.Tensor) {
    if (codes.dtype !== "int32") throw bad();
  } else {
    if (!["int32", "int64", "int16", "int8", "uint8"].includes(codes.dtype)) throw bad();
    const data = codes.data as ArrayLike<number | bigint>;
    for (let i = 0; i < data.length; i++) {
      const c = Number(data[i]);
      if (!(c >= 0 && c < size)) {
        throw new RangeError(
          `Cannot embed code ${data[i]} at flat index ${i}: the codebook has codes 0..${size - 1}`,
        );
      }
    }
  }
  return [codes.shape[0], codes.shape[1], codes.shape[2]];
}

function withQuantizer<T>(codebook: CodebookSource, fn: (q: CodeQuantizer) => T): T {
  if (codebook instanceof CodeQuantizer) return fn(codebook);
  const q = CodeQuantizer.from(codebook);
  try {
    return fn(q);
  } finally {
    q.dispose();
  }
}

/**
 * Look codes up in a codebook (the reference's `Codebook(one_hot(ids))`).
 *
 * @param codes `[B, H, W]` int32 tensor or integer host tensor
 * @param codebook `[K, d]` rows, or a {@linkcode CodeQuantizer} (faster when reused)
 * @returns `[B, d, H, W]` float32, owned by the caller
 * @throws {TypeError} for a wrong rank or dtype of either argument
 * @throws {RangeError} for a host code outside `0..K-1`
 */
export function embedCodes(codes: CodesInput, codebook: CodebookSource): tf.Tensor4D {
  return withQuantizer(codebook, (q) => q.embed(codes));
}

/**
 * Nearest codebook row by cosine similarity for every position of an embedding map (the
 * reference's `convert_to_codes`); see {@linkcode CodeQuantizer.toCodes}.
 *
 * @param x `[B, d, H, W]` float32 (not disposed)
 * @param codebook `[K, d]` rows, or a {@linkcode CodeQuantizer} (faster when reused)
 * @returns codes `[B, H, W]` int32, owned by the caller
 * @throws {TypeError} for a wrong rank, dtype or channel count
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { convertToCodes } from "@lib/tokens";
 * const codebook = tf.tensor2d([[1, 0], [0, 1]]);
 * const x = tf.tensor4d([0.2, 3, 0.9, 0.1], [1, 2, 1, 2]); // vectors (0.2, 0.9) and (3, 0.1)
 * const codes = convertToCodes(x, codebook);
 * console.assert(codes.arraySync()[0][0].join() === "1,0");
 * tf.dispose([codebook, x, codes]);
 * ```
 */
export function convertToCodes(x: tf.Tensor4D, codebook: CodebookSource): tf.Tensor3D {
  return withQuantizer(codebook, (q) => q.toCodes(x));
}
