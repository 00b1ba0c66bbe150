/**
 * What a dataset costs on disk: the token files of a split (data + index, labels apart) and,
 * for comparison, the same images as pixels (raw bytes, a gzipped idx file, one PNG per
 * image). The numbers behind the method's claim that tokens are small enough to ship.
 *
 * @module
 */
import { encodePng, type HostTensor } from "../io/mod.ts";
import { openTokenDataset, tokenIndexPath, tokenLabelsPath } from "./dataset.ts";

/** Bytes on disk of one token split (official release format). */
export interface TokenStorage {
  /** The data file (`NAME-token.data.bin.gz`). */
  dataPath: string;
  /** Records N. */
  records: number;
  /** Grid side n. */
  gridSide: number;
  /** Size of the gzipped byte stream. */
  dataBytes: number;
  /** Size of the gzipped `.npy` offsets. */
  indexBytes: number;
  /** Size of the label file (0 when there is none). */
  labelBytes: number;
  /** `(dataBytes + indexBytes) / records`: what an image costs as tokens. */
  bytesPerImage: number;
}

async function sizeOrZero(path: string | null): Promise<number> {
  if (path === null) return 0;
  try {
    return (await Deno.stat(path)).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return 0;
    throw e;
  }
}

/**
 * Measure a token split on disk (the files are stat'ed; the index is read for N).
 *
 * @param dataPath the `NAME-token.data.bin.gz` file (index and labels next to it)
 * @returns the sizes and bytes per image
 * @throws {Deno.errors.NotFound} when the data or index file is missing
 * @throws {TokenFileError} for a corrupt index or record (see `openTokenDataset`)
 * @example
 * ```ts ignore
 * import { tokenStorage } from "@lib/tokens";
 * const s = await tokenStorage("data/fmnist8/fmnist-test-token.data.bin.gz");
 * console.log(s.bytesPerImage.toFixed(1)); // 54.9
 * ```
 */
export async function tokenStorage(dataPath: string): Promise<TokenStorage> {
  const ds = await openTokenDataset(dataPath, { labelsPath: null, verify: false });
  const dataBytes = (await Deno.stat(dataPath)).size;
  const indexBytes = (await Deno.stat(tokenIndexPath(dataPath))).size;
  const labelBytes = await sizeOrZero(tokenLabelsPath(dataPath));
  return {
    dataPath,
    records: ds.length,
    gridSide: ds.gridSide,
    dataBytes,
    indexBytes,
    labelBytes,
    bytesPerImage: ds.length > 0 ? (dataBytes + indexBytes) / ds.length : 0,
  };
}

/** What {@linkcode pngBytesPerImage} measured. */
export interface PngStorage {
  /** Images encoded. */
  images: number;
  /** Their PNG files' total size. */
  bytes: number;
  /** `bytes / images`. */
  bytesPerImage: number;
}

/**
 * Encode images one PNG file each (`encodePng` of `@lib/io`, lossless) and measure them.
 *
 * @param images uint8 `[N, H, W]` (grayscale) or `[N, H, W, C]`
 * @param count encode only the first `count` images (a sample; the mean per image is
 *   reported). @default all
 * @returns count, total and mean bytes
 * @throws {TypeError} for a non-uint8 tensor or another rank
 * @throws {RangeError} for a count below 1
 * @example
 * ```ts
 * import { pngBytesPerImage } from "@lib/tokens";
 * const img = { dtype: "uint8" as const, shape: [2, 4, 4], data: new Uint8Array(32) };
 * console.assert(pngBytesPerImage(img).images === 2);
 * ```
 */
export function pngBytesPerImage(images: HostTensor, count?: number): PngStorage {
  if (images.dtype !== "uint8" || (images.shape.length !== 3 && images.shape.length !== 4)) {
    throw new TypeError(
      `Cannot encode ${images.dtype} [${images.shape}] as PNG files: expected uint8 [N, H, W] or [N, H, W, C]`,
    );
  }
  const [N, H, W] = images.shape;
  const C = images.shape[3] ?? 1;
  const n = count === undefined ? N : Math.min(N, count);
  if (!(Number.isInteger(n) && n >= 1)) {
    throw new RangeError(`Cannot measure PNG size on ${count} of ${N} images`);
  }
  const per = H * W * C;
  const data = images.data as Uint8Array;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const img = data.subarray(i * per, (i + 1) * per);
    bytes += encodePng({ dtype: "uint8", shape: C === 1 ? [H, W] : [H, W, C], data: img }).length;
  }
  return { images: n, bytes, bytesPerImage: bytes / n };
}
