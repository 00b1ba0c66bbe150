/**
 * Augmentations on code grids (host int32 `[B, H, W]`): synonym replacement and code swap,
 * the SeiT token-space counterparts of color jitter and patch shuffling.
 *
 * @module
 */
import type { Rng } from "../random/mod.ts";
import type { Synonyms } from "./synonyms.ts";
import {
  checkCodeGrids,
  checkProb,
  type CodeGrids,
  describeValue,
  type Transform,
  uniformFloat32,
} from "./transform_core.ts";

// ---------------------------------------------------------------------------------------------
// Synonym replacement

/**
 * Synonyms per code, most similar first: a {@linkcode Synonyms} dictionary (`lists`), an
 * array indexed by code, or the object form of `synonyms.json` (`{ "17": [3, 250, ...] }`).
 */
export type SynonymSource =
  | Pick<Synonyms, "lists">
  | ReadonlyArray<ArrayLike<number>>
  | Readonly<Record<string, ArrayLike<number>>>;

/** Options of {@linkcode replaceSynonyms}. */
export interface ReplaceSynonymsOptions {
  /**
   * Per-code probability of replacement.
   * @default {0.25}
   */
  prob?: number;
  /**
   * How many of the most similar synonyms are eligible (`thres` in the reference).
   * @default {5}
   */
  top?: number;
  /**
   * Probability that a sample is augmented at all (`eda_rc_prob`); unchosen samples make
   * no per-code draws.
   * @default {1}
   */
  sampleProb?: number;
}

/**
 * Parameters of one synonym replacement: for every code, the index into its eligible
 * synonyms that replaces it, or -1 to keep it. `[B, H, W]` row-major.
 */
export interface SynonymParams {
  /** Index into `synonyms[code][:top]`, -1 where the code is kept. */
  choice: Int32Array;
}

/** A synonym table flattened for fast lookups. */
interface SynonymTable {
  /** `[K, top]` synonyms. */
  table: Int32Array;
  /** How many of the `top` slots of each code are filled. */
  count: Int32Array;
  top: number;
}

function buildTable(synonyms: SynonymSource, top: number): SynonymTable {
  let entries: [number, ArrayLike<number>][];
  if (
    synonyms !== null && typeof synonyms === "object" && !Array.isArray(synonyms) &&
    Array.isArray((synonyms as { lists?: unknown }).lists)
  ) {
    entries = (synonyms as { lists: ArrayLike<number>[] }).lists.map((s, c) => [c, s]);
  } else if (Array.isArray(synonyms)) {
    entries = (synonyms as ReadonlyArray<ArrayLike<number>>).map((s, c) => [c, s]);
  } else if (synonyms !== null && typeof synonyms === "object") {
    entries = Object.entries(synonyms as Record<string, ArrayLike<number>>).map(([k, v]) => {
      const c = Number(k);
      if (!Number.isInteger(c) || c < 0) {
        throw new TypeError(`Cannot use synonym key ${JSON.stringify(k)}: expected a code`);
      }
      return [c, v];
    });
  } else {
    throw new TypeError(
      `Cannot use synonyms: expected an array or object, got ${describeValue(synonyms)}`,
    );
  }
  const K = entries.reduce((m, [c]) => Math.max(m, c + 1), 0);
  const table = new Int32Array(K * top).fill(-1);
  const count = new Int32Array(K);
  for (const [c, list] of entries) {
    if (list === null || typeof list !== "object" || typeof list.length !== "number") {
      throw new TypeError(`Cannot use the synonyms of code ${c}: expected a list of codes`);
    }
    const n = Math.min(top, list.length);
    for (let k = 0; k < n; k++) {
      const s = list[k];
      if (!Number.isInteger(s) || s < 0) {
        throw new TypeError(`Cannot use synonym ${s} of code ${c}: expected a code`);
      }
      table[c * top + k] = s;
    }
    count[c] = n;
  }
  return { table, count, top };
}

/**
 * Synonym replacement (the reference's `ReplaceSynonym`): each code independently, with
 * probability `prob`, becomes a uniformly chosen one of its `top` most similar codes; a
 * sample is augmented at all with probability `sampleProb`.
 *
 * Draw order per chosen sample: for each code in row-major order, `u = rng.uniform()`;
 * when `u < prob`, the synonym index `rng.int(0, n)` (n = eligible synonyms of that code).
 *
 * @param synonyms the synonym table (every code that occurs needs at least one synonym)
 * @param options probabilities and `top`
 * @returns the transform on `[B, H, W]` int32 host grids
 * @throws {TypeError} for a malformed synonym table
 * @throws {RangeError} for a probability outside [0, 1] or `top` < 1
 *
 * @example
 * ```ts
 * import { Rng } from "@lib/random";
 * import { replaceSynonyms, runTransform } from "@lib/tokens";
 * const t = replaceSynonyms([[1], [0]], { prob: 1 });
 * const grid = { dtype: "int32" as const, shape: [1, 1, 2], data: new Int32Array([0, 1]) };
 * console.assert(runTransform(t, grid, new Rng(0)).output.data.join() === "1,0");
 * ```
 */
export function replaceSynonyms(
  synonyms: SynonymSource,
  options: ReplaceSynonymsOptions = {},
): Transform<CodeGrids, SynonymParams> {
  const prob = checkProb(options.prob ?? 0.25, "replaceSynonyms prob");
  const sampleProb = checkProb(options.sampleProb ?? 1, "replaceSynonyms sampleProb");
  const top = options.top ?? 5;
  if (!Number.isInteger(top) || top < 1) {
    throw new RangeError(`Cannot use replaceSynonyms top = ${top}: expected an integer >= 1`);
  }
  const syn = buildTable(synonyms, top);
  const K = syn.count.length;
  const eligible = (code: number, at: number): number => {
    const n = code < K ? syn.count[code] : 0;
    if (n === 0) {
      throw new RangeError(
        `Cannot replace code ${code} at flat index ${at}: it has no synonyms in the table`,
      );
    }
    return n;
  };
  return {
    description: `synonym(p=${prob}, top${top}${
      sampleProb === 1 ? "" : `, sample_p=${sampleProb}`
    })`,
    draw(input: CodeGrids, rng: Rng): SynonymParams {
      const [B, H, W] = checkCodeGrids(input, "replaceSynonyms input");
      const L = H * W;
      const choice = new Int32Array(B * L).fill(-1);
      for (let b = 0; b < B; b++) {
        if (sampleProb < 1 && !(rng.uniform() < sampleProb)) continue;
        for (let i = b * L; i < (b + 1) * L; i++) {
          if (rng.uniform() < prob) choice[i] = rng.int(0, eligible(input.data[i], i));
        }
      }
      return { choice };
    },
    apply(input: CodeGrids, params: SynonymParams): CodeGrids {
      const [B, H, W] = checkCodeGrids(input, "replaceSynonyms input");
      const c = params?.choice;
      if (!(c instanceof Int32Array) || c.length !== input.data.length) {
        throw new TypeError(
          `Cannot apply synonym choices: expected an Int32Array of ${input.data.length}, got ${
            describeValue(c)
          }${c instanceof Int32Array ? ` of length ${c.length}` : ""}`,
        );
      }
      const out = new Int32Array(input.data);
      for (let i = 0; i < out.length; i++) {
        const k = c[i];
        if (k < 0) continue;
        const code = input.data[i];
        const n = eligible(code, i);
        if (k >= n) {
          throw new RangeError(
            `Cannot pick synonym ${k} of code ${code} at flat index ${i}: it has ${n} eligible`,
          );
        }
        out[i] = syn.table[code * top + k];
      }
      return { dtype: "int32", shape: [B, H, W], data: out };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Code swap

/** Options of {@linkcode swapCodes}. */
export interface SwapCodesOptions {
  /**
   * Range of the square's side as a fraction of min(H, W): `ps = floor(min(H, W) * U(lo, hi))`.
   * @default {[0, 0.25]}
   */
  patchScale?: readonly [number, number];
}

/** Parameters of one swap: `[ps, y0, x0, y1, x1]` per sample. */
export type SwapParams = [number, number, number, number, number][];

/**
 * Swap two squares of codes (the reference's `SwapCode`): side
 * `ps = floor(min(H, W) * U(patchScale))` (float32 draw); top-left corners
 * `y0, x0, y1, x1` uniform in `0..H-ps-1` (rows) / `0..W-ps-1` (columns), the reference's
 * inclusive-high `randint`, redrawn until the corners are more than `ps` apart (Euclidean).
 * Both copies read the original grid; where the squares overlap the second copy
 * (square 0 written into square 1) wins, as in the reference.
 *
 * @param options the side range
 * @returns the transform on `[B, H, W]` int32 host grids, one draw per sample
 * @throws {RangeError} for a scale range outside [0, 1)
 *
 * @example
 * ```ts
 * import { swapCodes } from "@lib/tokens";
 * const grid = { dtype: "int32" as const, shape: [1, 4, 4], data: Int32Array.from({ length: 16 }, (_, i) => i) };
 * const out = swapCodes().apply(grid, [[1, 0, 0, 2, 3]]);
 * console.assert(out.data[0] === 11 && out.data[11] === 0);
 * ```
 */
export function swapCodes(options: SwapCodesOptions = {}): Transform<CodeGrids, SwapParams> {
  const [lo, hi] = options.patchScale ?? [0, 0.25];
  if (!(lo >= 0 && hi >= lo && hi < 1)) {
    throw new RangeError(
      `Cannot use swapCodes patchScale [${lo}, ${hi}]: expected 0 <= lo <= hi < 1`,
    );
  }
  return {
    description: `swap(scale<=${hi}${lo > 0 ? `, scale>=${lo}` : ""})`,
    draw(input: CodeGrids, rng: Rng): SwapParams {
      const [B, H, W] = checkCodeGrids(input, "swapCodes input");
      const n = Math.min(H, W);
      const out: SwapParams = [];
      for (let b = 0; b < B; b++) {
        const ps = Math.floor(n * uniformFloat32(rng, lo, hi));
        const maxY = H - ps - 1, maxX = W - ps - 1;
        if (Math.hypot(maxY, maxX) <= ps) {
          throw new RangeError(
            `Cannot place two ${ps}x${ps} squares more than ${ps} apart in a ${H}x${W} grid`,
          );
        }
        let y0: number, x0: number, y1: number, x1: number;
        do {
          y0 = rng.int(0, maxY + 1);
          x0 = rng.int(0, maxX + 1);
          y1 = rng.int(0, maxY + 1);
          x1 = rng.int(0, maxX + 1);
        } while (!(Math.sqrt((y1 - y0) ** 2 + (x1 - x0) ** 2) > ps));
        out.push([ps, y0, x0, y1, x1]);
      }
      return out;
    },
    apply(input: CodeGrids, params: SwapParams): CodeGrids {
      const [B, H, W] = checkCodeGrids(input, "swapCodes input");
      if (!Array.isArray(params) || params.length !== B) {
        throw new TypeError(
          `Cannot apply swap parameters: expected ${B} [ps, y0, x0, y1, x1] rows, got ${
            describeValue(params)
          }${Array.isArray(params) ? ` of length ${params.length}` : ""}`,
        );
      }
      const src = input.data;
      const out = new Int32Array(src);
      const L = H * W;
      params.forEach((p, b) => {
        const [ps, y0, x0, y1, x1] = p;
        const fits = (y: number, x: number) =>
          Number.isInteger(y) && Number.isInteger(x) && y >= 0 && x >= 0 && y + ps <= H &&
          x + ps <= W;
        if (!Number.isInteger(ps) || ps < 0 || !fits(y0, x0) || !fits(y1, x1)) {
          throw new RangeError(
            `Cannot apply swap [${p}] to sample ${b}: the squares leave the ${H}x${W} grid`,
          );
        }
        const base = b * L;
        const copy = (ty: number, tx: number, sy: number, sx: number) => {
          for (let r = 0; r < ps; r++) {
            const t = base + (ty + r) * W + tx, s = base + (sy + r) * W + sx;
            out.set(src.subarray(s, s + ps), t);
          }
        };
        copy(y0, x0, y1, x1);
        copy(y1, x1, y0, x0);
      });
      return { dtype: "int32", shape: [B, H, W], data: out };
    },
  };
}
