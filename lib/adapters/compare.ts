/**
 * Naive token augmentation versus TokenAdapt on a few images, sample by sample: the tokens
 * each way produces for one drawn augmentation A, next to the augmented image A(x) and the
 * tokenizer's own tokens of it, `T(A(x))` (the target both ways try to reproduce). The
 * per-sample view behind `evaluateTokenAdapt`'s averages.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";
import type { CodeQuantizer } from "../tokens/mod.ts";
import {
  applyGeometric,
  drawGeometricParams,
  type GeometricAugConfig,
  type GeometricParams,
  resolveGeometricAugConfig,
} from "./geometric.ts";
import type { TokenAdapt } from "./tokenadapt.ts";
import { imageBatch } from "./_images.ts";
import { augmentPixels, type PairTokenizer } from "./tokenadapt_train.ts";

/** What {@linkcode compareTokenAdapt} returns (host arrays; nothing to dispose). */
export interface TokenAdaptComparison {
  /** The drawn augmentation A (one per sample; see `drawGeometricParams`). */
  params: GeometricParams;
  /** The augmented images A(x), uint8 `[B, s, s, C]` (display layout). */
  augmented: HostTensor<"uint8">;
  /** `T(x)`: the tokens of the original images, `[B, n, n]` int32. */
  original: HostTensor<"int32">;
  /** `T(A(x))`: the tokenizer on the augmented images (the target), `[B, n, n]` int32. */
  target: HostTensor<"int32">;
  /** Naive: A applied to the `n x n` embedding map, re-quantized, `[B, n, n]` int32. */
  naive: HostTensor<"int32">;
  /** TokenAdapt: `g(A(f(emb(T(x)))))`, `[B, n, n]` int32. */
  tokenAdapt: HostTensor<"int32">;
  /** Per sample: fraction of positions where each way equals the target. */
  agreement: { naive: Float64Array; tokenAdapt: Float64Array; unchanged: Float64Array };
}

function host(t: tf.Tensor3D): HostTensor<"int32"> {
  return { dtype: "int32", shape: [...t.shape], data: Int32Array.from(t.dataSync()) };
}

/**
 * Draw one A per sample, tokenize x and A(x), and augment the tokens of x both ways.
 *
 * @param model TokenAdapt (its grids must equal the tokenizer's)
 * @param images a few images, `[B, s, s]` or `[B, C, s, s]`, uint8 (0..255) or float32 (0..1)
 * @param tok the whole tokenizer as a PairTokenizer (`pairTokenizer` of `@lib/tokenizer`)
 * @param quantizer its codebook
 * @param geometric the augmentation A (e.g. the settings TokenAdapt was trained with)
 * @param rng the generator for A
 * @returns codes of every way, the augmented pixels and per-sample agreements
 * @throws {TypeError} when the images do not fit the tokenizer, or the grids differ
 * @example
 * ```ts ignore
 * const cmp = compareTokenAdapt(ta, takeImages(test.images, 8), pairTokenizer(tok), quantizer, {}, new Rng(0));
 * console.log(cmp.agreement.tokenAdapt, cmp.agreement.naive);
 * ```
 */
export function compareTokenAdapt(
  model: TokenAdapt,
  images: HostTensor,
  tok: PairTokenizer,
  quantizer: CodeQuantizer,
  geometric: GeometricAugConfig,
  rng: Rng,
): TokenAdaptComparison {
  const n = model.config.inputGrid;
  if (n !== tok.gridSize || model.config.outputGrid !== tok.gridSize) {
    throw new TypeError(
      `Cannot compare TokenAdapt ${n} -> ${model.config.outputGrid} on ${tok.gridSize}x${tok.gridSize} tokens`,
    );
  }
  const g = resolveGeometricAugConfig(geometric);
  const x = imageBatch(images, null, tok, "compare on");
  try {
    const B = x.shape[0], C = tok.channels, s = tok.imageSize;
    const params = drawGeometricParams([B, model.config.codeDim, 2 * n, 2 * n], 2 * n, g, rng);
    const t = tf.tidy(() => {
      const codes = tok.encode(x);
      const emb = quantizer.embed(codes);
      const aug = augmentPixels(x, params, tok);
      return {
        codes,
        target: tok.encode(aug),
        naive: quantizer.toCodes(applyGeometric(emb, params)),
        ta: model.invert(applyGeometric(model.convert(emb), params)),
        pixels: aug.transpose([0, 2, 3, 1]).mul(255).round().clipByValue(0, 255),
      };
    });
    let out;
    try {
      out = {
        original: host(t.codes),
        target: host(t.target),
        naive: host(t.naive),
        tokenAdapt: host(t.ta),
        pixels: Uint8Array.from(t.pixels.dataSync()),
      };
    } finally {
      tf.dispose(t);
    }
    const nn = n * n;
    const agree = (a: HostTensor<"int32">) => {
      const r = new Float64Array(B);
      for (let b = 0; b < B; b++) {
        let hit = 0;
        for (let i = b * nn; i < (b + 1) * nn; i++) if (a.data[i] === out.target.data[i]) hit++;
        r[b] = hit / nn;
      }
      return r;
    };
    return {
      params,
      augmented: { dtype: "uint8", shape: [B, s, s, C], data: out.pixels },
      original: out.original,
      target: out.target,
      naive: out.naive,
      tokenAdapt: out.tokenAdapt,
      agreement: {
        naive: agree(out.naive),
        tokenAdapt: agree(out.tokenAdapt),
        unchanged: agree(out.original),
      },
    };
  } finally {
    x.dispose();
  }
}
