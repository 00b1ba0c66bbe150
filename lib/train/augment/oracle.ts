/**
 * The oracle TokenAdapt half (ablation arm `ota`, augmentation arm `oracle-tokenadapt`): what a
 * perfect TokenAdapt would hand the classifier. Instead of `g(Mix(A(f(t))))`, the TokenAdapt
 * half's tokens are the tokenizer's codes of the training records' pixel images under the
 * same drawn geometric transform A and the same mixing: `T(Mix(A(x)))`.
 *
 * Pixel space is where TokenAdapt training makes its targets (`augmentPixels`,
 * ../../adapters/tokenadapt_train.ts): the image is zero-padded to the tokenizer's frame,
 * A (drawn on the `2n x 2n` feature grid) is applied at frame resolution (translations are
 * fractions, crop boxes scale), the image is cropped back out and clipped to [0, 1]. Here the
 * mixing sits between the warp and the crop: Mixup blends the two warped frames with the
 * drawn lambda; CutMix pastes the drawn box, its corners scaled from the `2m` grid to the
 * frame. The soft targets come from the same lambda and labels, so they are the TokenAdapt
 * half's targets exactly. The colour step is drawn for the whole batch as in the `ta` arm; where
 * its op (Emb-Noise) touches a sample of this half, the step applies it, with the same draws, to
 * the oracle's embeddings of that sample (in `ta` it acts on f's input): a perfect,
 * equivariant TokenAdapt would carry the noisy map through A, and i.i.d. noise looks the same
 * after the warp. Every draw, in order, is the `ta` step's (tested).
 *
 * {@linkcode openTokenAdaptOracle} loads what it needs once per run: the idx images of the
 * full training set the tokens were made from, the tokenizer (encoder too), and which image
 * each training record is: a grid budget's `budget.json` next to the token file lists the
 * records' indices in the full set; without it record i is image i. It re-tokenizes every
 * record's image (at most {@linkcode ORACLE_VERIFY_RECORDS}, evenly spaced, for a larger set:
 * the full 60000-image training set would take minutes) and refuses
 * ({@linkcode OracleMismatchError}) when the codes do not match
 * the stored tokens (a float near-tie may flip a few codes: at least 99.5% of all positions
 * and 90% of every record's must agree; a wrong image agrees on about 8%).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import { type HostTensor, readJsonObject } from "../../io/mod.ts";
import {
  applyGeometric,
  type GeometricParams,
  type Mixup,
  type MixupParams,
  type PairTokenizer,
} from "../../adapters/mod.ts";
// the tokenizer's files directly: its mod.ts re-exports its trainer, which imports @lib/train
import { loadImages } from "../../tokenizer/images.ts";
import { loadTokenizer } from "../../tokenizer/io.ts";
import type { VqTokenizer } from "../../tokenizer/model.ts";
import { pairTokenizer } from "../../tokenizer/pair.ts";
import type { TokenSource } from "../engine/loop.ts";

/** The pixel images of a run's training records and the tokenizer that made their tokens. */
export interface TokenAdaptOracle {
  /** The tokenizer (frame, image size, grid side, encoder). */
  readonly tokenizer: PairTokenizer;
  /** Training records it has images for. */
  readonly records: number;
  /**
   * The images of some training records.
   * @param indices record indices of the training data
   * @returns `[B, C, s, s]` float32 in [0, 1], owned by the caller
   * @throws {RangeError} for an index outside the records
   */
  images(indices: ArrayLike<number>): tf.Tensor4D;
}

/** The stored tokens of a run's training data do not come from the oracle's images. */
export class OracleMismatchError extends Error {
  /** The images file. */
  readonly images: string;
  /** Fraction of positions where the re-tokenized codes equal the stored ones. */
  readonly agreement: number;

  /**
   * @param message what does not match
   * @param images the images file
   * @param agreement the measured agreement
   */
  constructor(message: string, images: string, agreement: number) {
    super(message);
    this.name = "OracleMismatchError";
    this.images = images;
    this.agreement = agreement;
  }
}

/**
 * An oracle over host images already in memory.
 * @param images `[N, s, s]` or `[N, C, s, s]`, uint8 (0..255) or float32 (0..1): one per record
 * @param tokenizer the tokenizer
 * @returns the oracle
 * @throws {TypeError} when the images do not have the tokenizer's size and channels
 */
export function createTokenAdaptOracle(
  images: HostTensor,
  tokenizer: PairTokenizer,
): TokenAdaptOracle {
  const s = tokenizer.imageSize, C = tokenizer.channels;
  const shape = images.shape;
  const ok = (shape.length === 3 && C === 1 && shape[1] === s && shape[2] === s) ||
    (shape.length === 4 && shape[1] === C && shape[2] === s && shape[3] === s);
  if (!ok || (images.dtype !== "uint8" && images.dtype !== "float32")) {
    throw new TypeError(
      `Cannot use ${images.dtype} images of shape [${shape}] for the oracle TokenAdapt half: ` +
        `the tokenizer takes ${C}x${s}x${s} images (uint8 or float32)`,
    );
  }
  const N = shape[0], per = C * s * s;
  const scale = images.dtype === "uint8" ? 1 / 255 : 1;
  const data = images.data as ArrayLike<number>;
  return {
    tokenizer,
    records: N,
    images(indices) {
      const B = indices.length;
      const out = new Float32Array(B * per);
      for (let b = 0; b < B; b++) {
        const k = indices[b];
        if (!(Number.isInteger(k) && k >= 0 && k < N)) {
          throw new RangeError(
            `Cannot take the image of training record ${k}: the oracle has images of ${N} records`,
          );
        }
        for (let i = 0; i < per; i++) out[b * per + i] = data[k * per + i] * scale;
      }
      return tf.tensor4d(out, [B, C, s, s]);
    },
  };
}

/**
 * Mixing parameters drawn on the `2m` grid, at another resolution: the CutMix box's corners
 * scaled by `factor` (Mixup and no mixing are resolution-free).
 * @param p the drawn parameters
 * @param factor target side / `2m` (an integer)
 * @returns the parameters at the target resolution
 */
export function scaleMixParams(p: MixupParams, factor: number): MixupParams {
  if (p.box === null) return p;
  const b = p.box;
  return {
    ...p,
    box: { yl: b.yl * factor, yh: b.yh * factor, xl: b.xl * factor, xh: b.xh * factor },
  };
}

/** What {@linkcode oracleTokens} returns (the caller owns the tensors). */
export interface OracleHalf {
  /** `T(Mix(A(x)))`: `[B, n, n]` int32. */
  codes: tf.Tensor3D;
  /** `[B, K]` soft targets of the mixing, when a mixer and labels were given. */
  targets: tf.Tensor2D | null;
}

/**
 * The oracle half: images -> frame -> A -> Mix -> crop -> clip -> the tokenizer's codes.
 *
 * @param images `[B, C, s, s]` float32 in [0, 1] (not disposed)
 * @param geometric A, drawn on the `2n x 2n` feature grid with output side `2m`
 * @param tok the tokenizer; its frame side must be an integer multiple of `2n`, and the output
 *   frame (`2m` scaled the same way) must equal it (m = n: the tokenizer's grid)
 * @param mix the mixer, its parameters (drawn on `2m x 2m`) and the labels, or null (no mixing)
 * @param options `fillMask` of the warp (default true)
 * @returns codes and targets
 * @throws {RangeError} when the geometry does not fit the tokenizer's frame
 */
export function oracleTokens(
  images: tf.Tensor4D,
  geometric: GeometricParams,
  tok: PairTokenizer,
  mix: { mixer: Mixup; params: MixupParams; labels: ArrayLike<number> } | null,
  options: { fillMask?: boolean } = {},
): OracleHalf {
  const S = tok.frameSize, s = tok.imageSize;
  const p = (S - s) / 2;
  const scale = S / geometric.grid[0];
  if (
    !Number.isInteger(scale) || geometric.grid[0] !== geometric.grid[1] ||
    geometric.size * scale !== S || !Number.isInteger(p)
  ) {
    throw new RangeError(
      `Cannot run the oracle TokenAdapt half: A was drawn on a ${geometric.grid.join("x")} grid ` +
        `with output side ${geometric.size}; the tokenizer's ${S}-pixel frame must be an integer ` +
        `multiple of that grid and the output must fill it (model grid = tokenizer grid ${tok.gridSize})`,
    );
  }
  const out = tf.tidy(() => {
    const framed = p > 0 ? images.pad([[0, 0], [0, 0], [p, p], [p, p]]) as tf.Tensor4D : images;
    let x = applyGeometric(framed, geometric, { fillMask: options.fillMask ?? true });
    let targets: tf.Tensor2D[] = [];
    if (mix !== null) {
      const r = mix.mixer.apply(x, mix.labels, scaleMixParams(mix.params, scale));
      x = r.x;
      targets = [r.targets];
    }
    const [B, C] = x.shape;
    const crop = p > 0 ? x.slice([0, 0, p, p], [B, C, s, s]) : x;
    return [tok.encode(crop.clipByValue(0, 1) as tf.Tensor4D), ...targets];
  });
  return { codes: out[0] as tf.Tensor3D, targets: (out[1] ?? null) as tf.Tensor2D | null };
}

/** Where an oracle's images, tokenizer and record mapping come from. */
export interface OracleFiles {
  /** Idx images of the full training set the tokens were made from (e.g. Fashion-MNIST train). */
  images: string;
  /** The tokenizer: a folder with `tokenizer.json` and `tokenizer.safetensors` (e.g. `data/fmnist8`). */
  tokenizer: string;
  /** The run's training token file (`budget.json` next to it maps its records to images). */
  train: string;
}

/** An opened oracle and its disposer. */
export interface OpenedOracle {
  /** The oracle. */
  readonly oracle: TokenAdaptOracle;
  /** Fraction of positions where the re-tokenized records matched the stored tokens. */
  readonly agreement: number;
  /** Release the tokenizer's tensors. */
  dispose(): void;
}

/** Records re-tokenized to check an oracle: all of them up to this many, else this many evenly spaced. */
export const ORACLE_VERIFY_RECORDS = 4096;

/** Minimum agreement of the re-tokenized records with the stored tokens, overall and per record. */
export const ORACLE_MIN_AGREEMENT = { overall: 0.995, record: 0.9 } as const;

async function budgetIndices(train: string): Promise<number[] | null> {
  const path = join(dirname(train), "budget.json");
  const m = await readJsonObject(path);
  if (m === null) return null;
  const idx = (m as { indices?: unknown })?.indices;
  if (!Array.isArray(idx) || !idx.every((v) => Number.isInteger(v) && v >= 0)) {
    throw new TypeError(`"${path}" has no "indices" list of record indices`);
  }
  return idx as number[];
}

/**
 * Load the oracle of a run: the images, the tokenizer and the record -> image mapping, then
 * re-tokenize every record's image and compare with the stored tokens.
 *
 * @param files images, tokenizer and the training token file
 * @param data the training records (the run's data)
 * @returns the oracle, the agreement, a disposer
 * @throws {Deno.errors.NotFound} when a file is missing (named)
 * @throws {RangeError} when the mapping names images the file does not have, or its length
 *   is not the records'
 * @throws {OracleMismatchError} when the re-tokenized images do not match the stored tokens
 */
export async function openTokenAdaptOracle(
  files: OracleFiles,
  data: TokenSource,
): Promise<OpenedOracle> {
  const notFound = (what: string, path: string, e: unknown) =>
    e instanceof Deno.errors.NotFound
      ? new Deno.errors.NotFound(
        `The oracle TokenAdapt half needs ${what}, "${path}" does not exist (config key ${
          what === "the pixel images" ? "oracleImages" : "oracleTokenizer"
        })`,
      )
      : e;
  let loaded: Awaited<ReturnType<typeof loadImages>>;
  try {
    loaded = await loadImages(files.images);
  } catch (e) {
    throw notFound("the pixel images", files.images, e);
  }
  let vq: VqTokenizer;
  try {
    vq = await loadTokenizer(files.tokenizer);
  } catch (e) {
    throw notFound("the tokenizer", files.tokenizer, e);
  }
  try {
    const tok = pairTokenizer(vq);
    if (tok.gridSize !== data.gridSide) {
      throw new RangeError(
        `Cannot use tokenizer "${files.tokenizer}" (${tok.gridSize}x${tok.gridSize} codes) for the ` +
          `oracle of "${files.train}" (${data.gridSide}x${data.gridSide} records)`,
      );
    }
    const all = loaded.images;
    const N = all.shape[0];
    const idx = await budgetIndices(files.train) ??
      Array.from({ length: data.length }, (_, i) => i);
    if (idx.length !== data.length) {
      throw new RangeError(
        `Cannot map the ${data.length} records of "${files.train}" to images: its budget.json lists ${idx.length}`,
      );
    }
    const bad = idx.findIndex((i) => i >= N);
    if (bad >= 0) {
      throw new RangeError(
        `Cannot map record ${bad} of "${files.train}" to image ${
          idx[bad]
        }: "${files.images}" has ${N} images`,
      );
    }
    const per = all.data.length / N;
    const Ctor = all.data.constructor as { new (n: number): Uint8Array | Float32Array };
    const chosen = new Ctor(idx.length * per);
    idx.forEach((i, k) => chosen.set(all.data.subarray(i * per, (i + 1) * per), k * per));
    const oracle = createTokenAdaptOracle(
      { dtype: all.dtype, shape: [idx.length, ...all.shape.slice(1)], data: chosen } as HostTensor,
      tok,
    );
    const agreement = await verifyOracle(oracle, data, files);
    return { oracle, agreement, dispose: () => vq.dispose() };
  } catch (e) {
    vq.dispose();
    throw e;
  }
}

/**
 * Re-tokenize the records' images (all, or {@linkcode ORACLE_VERIFY_RECORDS} evenly spaced)
 * and compare with the stored codes.
 * @param oracle the oracle
 * @param data the stored records
 * @param files for the messages
 * @returns the agreement over all positions
 * @throws {OracleMismatchError} below {@linkcode ORACLE_MIN_AGREEMENT}
 */
export async function verifyOracle(
  oracle: TokenAdaptOracle,
  data: TokenSource,
  files: { images: string; train: string },
): Promise<number> {
  const n = data.gridSide, L = n * n;
  const count = Math.min(data.length, ORACLE_VERIFY_RECORDS);
  const records = Array.from({ length: count }, (_, i) => Math.floor(i * data.length / count));
  let same = 0, worst = { record: -1, agree: 1 };
  for (let start = 0; start < count; start += 256) {
    const idx = records.slice(start, start + 256);
    const stored = data.readBatch(idx);
    const x = oracle.images(idx);
    const codes = oracle.tokenizer.encode(x);
    const got = await codes.data() as Int32Array;
    tf.dispose([x, codes]);
    for (let b = 0; b < idx.length; b++) {
      let s = 0;
      for (let k = b * L; k < (b + 1) * L; k++) if (got[k] === stored[k]) s++;
      same += s;
      if (s / L < worst.agree) worst = { record: idx[b], agree: s / L };
    }
  }
  const agreement = same / (count * L);
  if (agreement < ORACLE_MIN_AGREEMENT.overall || worst.agree < ORACLE_MIN_AGREEMENT.record) {
    throw new OracleMismatchError(
      `The images of "${files.images}" do not match the tokens of "${files.train}": ` +
        `re-tokenized, ${
          (100 * agreement).toFixed(2)
        }% of the codes agree (record ${worst.record}: ` +
        `${(100 * worst.agree).toFixed(1)}%); the oracle needs >= ${
          100 * ORACLE_MIN_AGREEMENT.overall
        }% overall and >= ${
          100 * ORACLE_MIN_AGREEMENT.record
        }% per record. Are these the images the tokens were made from, in the order of budget.json (or of the records)?`,
      files.images,
      agreement,
    );
  }
  return agreement;
}
