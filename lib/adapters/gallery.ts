/**
 * The augmentation gallery: a few token grids, each augmentation of the SeiT++ training
 * step applied to them, everything decoded back to pixels by a tokenizer decoder and tiled
 * into one labelled image (rows: samples; columns: augmentations).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";
import { type CodeQuantizer, randomResizedCrop } from "../tokens/mod.ts";
import { colorAdapt } from "./color_adapt.ts";
import { embNoise } from "./emb_noise.ts";
import { createMixup } from "./mixup.ts";
import { applyGeometric, drawGeometricParams, resolveGeometricAugConfig } from "./geometric.ts";
import type { TokenAdapt } from "./tokenadapt.ts";
import { drawText, GLYPH_H, GLYPH_W } from "./_font.ts";

/** One column of the gallery: a label and the codes of every row after the augmentation. */
export interface GalleryColumn {
  /** Short upper-case label; `\n` splits it over two lines. */
  label: string;
  /** What the column shows, one sentence (for logs and captions). */
  description: string;
  /** `[R, m, m]` int32 codes, owned by the column (dispose with {@linkcode disposeColumns}). */
  codes: tf.Tensor3D;
}

/** What {@linkcode galleryColumns} needs. */
export interface GalleryOptions {
  /** The codebook the codes index. */
  quantizer: CodeQuantizer;
  /** A TokenAdapt matching the codebook and grid, or null to leave its columns out. */
  tokenAdapt: TokenAdapt | null;
  /** The generator for every draw. */
  rng: Rng;
  /** RRC area range. @default {[0.2, 1]} */
  rrcScale?: [number, number];
}

/**
 * Compute the gallery's columns for a batch of code grids (the grid is kept: RRC and
 * TokenAdapt resample to the input's own size, so every column decodes alike).
 *
 * Columns: original; horizontal flip; token RRC; an affine chain (rotate, translate, shear)
 * applied to the embedding map directly then re-quantized (naive); the same draw through
 * TokenAdapt; TokenAdapt's round trip with no augmentation; ColorAdapt; Emb-Noise; CutMix;
 * Mixup in TokenAdapt space.
 *
 * @param codes `[R, n, n]` int32 (R even; not disposed)
 * @param options codebook, TokenAdapt, generator
 * @returns the columns (the caller disposes their codes)
 * @throws {TypeError} when R is odd or TokenAdapt does not fit `n`
 */
export function galleryColumns(codes: tf.Tensor3D, options: GalleryOptions): GalleryColumn[] {
  const [R, n] = codes.shape;
  if (R % 2 !== 0) {
    throw new TypeError(`Cannot build a gallery of ${R} rows: mixing needs an even count`);
  }
  const q = options.quantizer, ta = options.tokenAdapt, rng = options.rng;
  if (ta !== null && (ta.config.inputGrid !== n || ta.config.outputGrid !== n)) {
    throw new TypeError(
      `Cannot show TokenAdapt ${ta.config.inputGrid} -> ${ta.config.outputGrid} on ${n}x${n} codes`,
    );
  }
  const cols: GalleryColumn[] = [];
  const add = (label: string, description: string, c: tf.Tensor3D) =>
    cols.push({ label, description, codes: c });
  const emb = q.embed(codes);
  try {
    add("ORIGINAL", "the stored tokens", tf.clone(codes));
    add("FLIP", "horizontal flip of the token grid", tf.reverse(codes, 2));
    const rrc = randomResizedCrop(n, { scale: options.rrcScale ?? [0.2, 1] });
    add(
      "TOKEN\nRRC",
      "random resized crop of the embeddings (bicubic), re-quantized",
      tf.tidy(() => q.toCodes(rrc.apply(emb, rrc.draw(emb, rng)))),
    );
    // one affine chain per row, no flip and no crop: the comparison naive vs TokenAdapt
    const geo = resolveGeometricAugConfig({
      flipProb: 0,
      chainProb: 1,
      stepProb: 0.6,
      cropScale: [1, 1],
      cropRatio: [1, 1],
      groupSize: 1,
    });
    const p = drawGeometricParams([R, q.dim, 2 * n, 2 * n], 2 * n, geo, rng);
    add(
      "NAIVE\nAFFINE",
      "the affine chain on the n x n embedding map, re-quantized",
      tf.tidy(() => q.toCodes(applyGeometric(emb, p))),
    );
    if (ta !== null) {
      add(
        "TOKEN\nADAPT",
        "the same chain through TokenAdapt: g(A(f(emb)))",
        tf.tidy(() => ta.invert(applyGeometric(ta.convert(emb), p))),
      );
      add(
        "TA ROUND\nTRIP",
        "TokenAdapt without augmentation: g(f(emb))",
        tf.tidy(() => ta.invert(ta.convert(emb))),
      );
    }
    const ca = colorAdapt({ prob: 1 });
    add(
      "COLOR\nADAPT",
      "ColorAdapt on every row (statistics of the reversed batch)",
      tf.tidy(() => q.toCodes(ca.apply(emb, ca.draw(emb, rng)))),
    );
    const noise = embNoise({ prob: 1 });
    add(
      "EMB\nNOISE",
      "Emb-Noise on every row (scale 1, std 1)",
      tf.tidy(() => q.toCodes(noise.apply(emb, noise.draw(emb, rng)))),
    );
    const labels = new Int32Array(R);
    const cut = createMixup({ numClasses: 1, mixupAlpha: 0, cutmixAlpha: 1, labelSmoothing: 0 });
    add(
      "CUTMIX",
      "CutMix with the reversed batch on the embeddings",
      tf.tidy(() => {
        const r = cut.run(emb, labels, rng);
        r.targets.dispose();
        return q.toCodes(r.x);
      }),
    );
    if (ta !== null) {
      const mix = createMixup({
        numClasses: 1,
        mixupAlpha: 0.8,
        cutmixAlpha: 0,
        labelSmoothing: 0,
      });
      add(
        "TA\nMIXUP",
        "Mixup (alpha 0.8) in TokenAdapt space, then g",
        tf.tidy(() => {
          const r = mix.run(ta.convert(emb), labels, rng);
          r.targets.dispose();
          return ta.invert(r.x);
        }),
      );
    }
  } catch (e) {
    disposeColumns(cols);
    throw e;
  } finally {
    emb.dispose();
  }
  return cols;
}

/**
 * Dispose every column's codes.
 * @param columns from {@linkcode galleryColumns}
 */
export function disposeColumns(columns: GalleryColumn[]): void {
  tf.dispose(columns.map((c) => c.codes));
}

/** Options of {@linkcode renderGallery}. */
export interface RenderGalleryOptions {
  /** Integer upscaling of every decoded image. @default {3} */
  scale?: number;
  /** Pixels between cells. @default {4} */
  padding?: number;
}

/**
 * Decode every column and tile them with a label above each column.
 *
 * @param columns the columns (codes `[R, m, m]` each, same R and m)
 * @param decode codes `[R, m, m]` -> images `[R, C, H, W]` float32 in [0, 1] (C = 1 or 3)
 * @param options scale and padding
 * @returns `[height, width, C]` uint8 image
 * @throws {TypeError} for no columns or columns of different shapes
 */
export function renderGallery(
  columns: GalleryColumn[],
  decode: (codes: tf.Tensor3D) => tf.Tensor4D,
  options: RenderGalleryOptions = {},
): HostTensor<"uint8"> {
  if (columns.length === 0) throw new TypeError("Cannot render a gallery without columns");
  const shape = columns[0].codes.shape.join();
  if (columns.some((c) => c.codes.shape.join() !== shape)) {
    throw new TypeError("Cannot render a gallery whose columns have different shapes");
  }
  const s = options.scale ?? 3, pad = options.padding ?? 4;
  const images = columns.map((c) => {
    const img = decode(c.codes);
    try {
      return { data: img.dataSync() as Float32Array, shape: img.shape };
    } finally {
      img.dispose();
    }
  });
  const [R, C, H, W] = images[0].shape;
  const cellW = W * s, cellH = H * s;
  const fontScale = Math.max(1, Math.floor(cellW / (GLYPH_W * 9)));
  const lines = Math.max(...columns.map((c) => c.label.split("\n").length));
  const header = lines * (GLYPH_H + 2) * fontScale + pad;
  const width = columns.length * (cellW + pad) + pad;
  const height = header + R * (cellH + pad) + pad;
  const out = new Uint8Array(width * height * C).fill(40);
  const gray = new Uint8Array(width * height).fill(0);
  columns.forEach((col, k) => {
    col.label.split("\n").forEach((line, l) => {
      const x0 = pad + k * (cellW + pad) +
        Math.max(0, Math.floor((cellW - line.length * GLYPH_W * fontScale) / 2));
      drawText(gray, width, line, x0, pad + l * (GLYPH_H + 2) * fontScale, fontScale);
    });
  });
  for (let i = 0; i < width * height; i++) {
    if (gray[i] > 0) { for (let c = 0; c < C; c++) out[i * C + c] = gray[i]; }
  }
  images.forEach((im, k) => {
    for (let r = 0; r < R; r++) {
      const y0 = header + r * (cellH + pad), x0 = pad + k * (cellW + pad);
      for (let y = 0; y < cellH; y++) {
        for (let x = 0; x < cellW; x++) {
          for (let c = 0; c < C; c++) {
            const v = im.data[((r * C + c) * H + Math.floor(y / s)) * W + Math.floor(x / s)];
            out[((y0 + y) * width + x0 + x) * C + c] = Math.round(
              Math.min(1, Math.max(0, v)) * 255,
            );
          }
        }
      }
    }
  });
  return { dtype: "uint8", shape: [height, width, C], data: out };
}
