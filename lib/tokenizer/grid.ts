/**
 * Token records back to pixels, as a PNG grid: what `deno task decode` writes and what a
 * notebook shows.
 *
 * @module
 */
import { encodePng, type HostTensor, tileImages, toUint8Image } from "../io/mod.ts";
import type { TokenDataset } from "../tokens/mod.ts";
import { gridSize } from "./config.ts";
import { decodeCodes } from "./bulk.ts";
import type { VqDecoder } from "./model.ts";

/** Options of {@linkcode renderTokenGrid}. */
export interface TokenGridOptions {
  /** The records to show, in order. @default {the first `count`} */
  indices?: ArrayLike<number>;
  /** How many records from the start, when `indices` is left out. @default {64} */
  count?: number;
  /** Images per row. @default {ceil(sqrt(records))} */
  columns?: number;
  /** Pixels between images and around the border. @default {2} */
  padding?: number;
  /** Integer upscaling (nearest neighbour) of the finished grid. @default {1} */
  scale?: number;
}

/** A decoded grid: the image, its PNG bytes, and which records it shows. */
export interface TokenGrid {
  /** `[H, W, C]` uint8 (C = 1 gray or 3 RGB). */
  image: HostTensor<"uint8">;
  /** The PNG file of `image`. */
  png: Uint8Array;
  /** The records shown, row by row. */
  indices: Int32Array;
}

function upscale(img: HostTensor<"uint8">, s: number): HostTensor<"uint8"> {
  if (s === 1) return img;
  const [h, w, c] = img.shape;
  const out = new Uint8Array(h * s * w * s * c);
  for (let y = 0; y < h * s; y++) {
    for (let x = 0; x < w * s; x++) {
      const src = ((Math.floor(y / s) * w) + Math.floor(x / s)) * c;
      const dst = (y * w * s + x) * c;
      for (let ch = 0; ch < c; ch++) out[dst + ch] = img.data[src + ch];
    }
  }
  return { dtype: "uint8", shape: [h * s, w * s, c], data: out };
}

/**
 * Decode records of a token dataset and tile them into one PNG.
 *
 * @param decoder the decoder whose codebook the records index
 * @param dataset the token dataset
 * @param options which records, layout, scale
 * @returns the grid image, its PNG bytes, and the record indices
 * @throws {RangeError} for a record index outside the dataset, a code outside the codebook,
 *   or a bad count/scale
 * @throws {TypeError} when the dataset's grid side differs from the decoder's
 *
 * @example
 * ```ts ignore
 * import { loadDecoder, renderTokenGrid } from "@lib/tokenizer";
 * import { openTokenDataset } from "@lib/tokens";
 * const dec = await loadDecoder("data/fmnist8");
 * const ds = await openTokenDataset("data/fmnist8/fmnist-test-token.data.bin.gz");
 * const { png } = renderTokenGrid(dec, ds, { count: 16, scale: 2 });
 * dec.dispose();
 * ```
 */
export function renderTokenGrid(
  decoder: VqDecoder,
  dataset: TokenDataset,
  options: TokenGridOptions = {},
): TokenGrid {
  const n = gridSize(decoder.config);
  if (dataset.gridSide !== n) {
    throw new TypeError(
      `Cannot decode "${dataset.dataPath}": its records are ${dataset.gridSide}x${dataset.gridSide} ` +
        `codes, the decoder takes ${n}x${n}`,
    );
  }
  let indices: Int32Array;
  if (options.indices !== undefined) {
    indices = Int32Array.from(options.indices);
  } else {
    const count = options.count ?? 64;
    if (!(Number.isInteger(count) && count >= 1)) {
      throw new RangeError(`Cannot decode ${count} records: expected a positive integer`);
    }
    indices = new Int32Array(Math.min(count, dataset.length));
    for (let i = 0; i < indices.length; i++) indices[i] = i;
  }
  if (indices.length === 0) {
    throw new RangeError(`Cannot decode 0 records of "${dataset.dataPath}"`);
  }
  for (const i of indices) {
    if (!(i >= 0 && i < dataset.length)) {
      throw new RangeError(
        `Cannot decode record ${i} of "${dataset.dataPath}": it holds ${dataset.length} records`,
      );
    }
  }
  const scale = options.scale ?? 1;
  if (!(Number.isInteger(scale) && scale >= 1)) {
    throw new RangeError(`Cannot upscale by ${scale}: expected a positive integer`);
  }
  const K = decoder.codebookSize;
  const codes = dataset.readBatch(indices);
  for (let j = 0; j < codes.length; j++) {
    if (codes[j] >= K) {
      throw new RangeError(
        `Cannot decode record ${indices[Math.floor(j / (n * n))]} of "${dataset.dataPath}": ` +
          `code ${codes[j]} is outside the ${K}-code codebook`,
      );
    }
  }
  const decoded = decodeCodes(decoder, codes);
  const [N, C, H, W] = decoded.shape;
  // [N, C, H, W] -> [N, H, W, C] uint8
  const u8 = toUint8Image(decoded);
  const nhwc = new Uint8Array(u8.data.length);
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      for (let p = 0; p < H * W; p++) {
        nhwc[(i * H * W + p) * C + c] = u8.data[(i * C + c) * H * W + p];
      }
    }
  }
  const tiled = tileImages(
    { dtype: "uint8", shape: [N, H, W, C], data: nhwc },
    { columns: options.columns, padding: options.padding ?? 2 },
  ) as HostTensor<"uint8">;
  const image = upscale(tiled, scale);
  return { image, png: encodePng(image), indices };
}
