/**
 * Image sets for the tokenizer: loading (idx files, folders of PNGs), checking, and
 * batching host images into tensors.
 *
 * An image set is a `HostTensor` `[N, H, W]` (gray) or `[N, C, H, W]`, uint8 0..255 or
 * float32 0..1.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, readIdxFile, readPngFile } from "../io/mod.ts";

/**
 * Check that a host tensor is an image set.
 *
 * @param images the candidate
 * @param source the file it came from, for messages
 * @returns `[N, C, H, W]` (C = 1 for `[N, H, W]`)
 * @throws {TypeError} for another rank or dtype
 */
export function imageSetDims(
  images: HostTensor,
  source = "<images>",
): [number, number, number, number] {
  if (images.dtype !== "uint8" && images.dtype !== "float32") {
    throw new TypeError(
      `Cannot use "${source}" as images: dtype ${images.dtype}, expected uint8 (0..255) or float32 (0..1)`,
    );
  }
  const s = images.shape;
  if (s.length === 3) return [s[0], 1, s[1], s[2]];
  if (s.length === 4) return [s[0], s[1], s[2], s[3]];
  throw new TypeError(
    `Cannot use "${source}" as images: shape [${s}], expected [N, H, W] or [N, C, H, W]`,
  );
}

/**
 * Copy some images of a set into a tensor the tokenizer takes.
 *
 * @param images `[N, H, W]` or `[N, C, H, W]`, uint8 or float32
 * @param indices which images, in order
 * @returns `[B, H, W]` or `[B, C, H, W]`: int32 (0..255) for uint8 sets, float32 otherwise;
 *   the caller owns it
 * @throws {TypeError} for a bad image set
 * @throws {RangeError} for an index outside [0, N)
 */
export function imageBatch(images: HostTensor, indices: ArrayLike<number>): tf.Tensor {
  const [N, C, H, W] = imageSetDims(images);
  const size = C * H * W;
  const B = indices.length;
  const isU8 = images.dtype === "uint8";
  const out = isU8 ? new Int32Array(B * size) : new Float32Array(B * size);
  const src = images.data as Uint8Array | Float32Array;
  for (let b = 0; b < B; b++) {
    const i = indices[b];
    if (!(Number.isInteger(i) && i >= 0 && i < N)) {
      throw new RangeError(`Cannot take image ${i} of a set of ${N}`);
    }
    out.set(src.subarray(i * size, (i + 1) * size), b * size);
  }
  const shape = images.shape.length === 3 ? [B, H, W] : [B, C, H, W];
  return tf.tensor(out, shape, isU8 ? "int32" : "float32");
}

/**
 * Stack same-size 8-bit images (e.g. decoded PNGs) into an image set.
 *
 * @param images `[H, W, C]` or `[H, W]` uint8 images
 * @param names one name per image, for messages
 * @returns `[N, H, W]` when every image is gray, else `[N, C, H, W]` (C from image 0;
 *   gray+alpha and RGBA drop alpha)
 * @throws {TypeError} for no images, or an image whose size or channel count differs
 *   from image 0, e.g. `Cannot stack image 3 "d.png": 30x30, expected 28x28 as image 0 "a.png"`
 */
export function stackImages(images: HostTensor[], names: string[]): HostTensor<"uint8"> {
  if (images.length === 0) throw new TypeError("Cannot stack 0 images");
  const dims = (t: HostTensor, i: number): [number, number, number] => {
    if (t.dtype !== "uint8" || (t.shape.length !== 2 && t.shape.length !== 3)) {
      throw new TypeError(
        `Cannot stack image ${i} "${names[i]}": ${t.dtype} [${t.shape}], expected uint8 [H, W, C]`,
      );
    }
    const c = t.shape[2] ?? 1;
    return [t.shape[0], t.shape[1], c === 2 ? 1 : c === 4 ? 3 : c];
  };
  const [H, W, C] = dims(images[0], 0);
  const out = new Uint8Array(images.length * C * H * W);
  images.forEach((t, i) => {
    const [h, w, c] = dims(t, i);
    if (h !== H || w !== W) {
      throw new TypeError(
        `Cannot stack image ${i} "${names[i]}": ${h}x${w}, expected ${H}x${W} as image 0 "${
          names[0]
        }"`,
      );
    }
    if (c !== C) {
      throw new TypeError(
        `Cannot stack image ${i} "${names[i]}": ${c} channel(s), expected ${C} as image 0 "${
          names[0]
        }"`,
      );
    }
    const stride = t.shape[2] ?? 1;
    const d = t.data as Uint8Array;
    const base = i * C * H * W;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const p = (y * W + x) * stride;
        for (let ch = 0; ch < C; ch++) out[base + ch * H * W + y * W + x] = d[p + ch];
      }
    }
  });
  return {
    dtype: "uint8",
    shape: C === 1 ? [images.length, H, W] : [images.length, C, H, W],
    data: out,
  };
}

/** What {@linkcode loadImages} read. */
export interface LoadedImages {
  /** The image set, uint8. */
  images: HostTensor<"uint8">;
  /** One name per image (file names for a PNG folder, `path#i` for an idx file). */
  names: (i: number) => string;
  /** The path that was read. */
  source: string;
}

/**
 * Load an image set: an idx file (`*-images-idx3-ubyte[.gz]`, uint8 `[N, H, W]` or
 * `[N, C, H, W]`) or a folder of PNG files (sorted by name; all the same size).
 *
 * @param path an idx file or a folder
 * @returns the images and their names
 * @throws {Deno.errors.NotFound} when the path does not exist
 * @throws {SyntaxError} for an unreadable idx file or PNG (the message names the file and,
 *   for a folder, the image index), e.g. `Cannot read image 4 of "imgs": Cannot decode PNG ...`
 * @throws {TypeError} for an idx file that is not a uint8 image array, an empty folder, or
 *   PNGs of different sizes (named)
 */
export async function loadImages(path: string): Promise<LoadedImages> {
  const stat = await Deno.stat(path);
  if (stat.isDirectory) {
    const files: string[] = [];
    for await (const e of Deno.readDir(path)) {
      if (e.isFile && e.name.toLowerCase().endsWith(".png")) files.push(e.name);
    }
    files.sort();
    if (files.length === 0) throw new TypeError(`Cannot load images from "${path}": no .png files`);
    const names = files.map((f) => `${path}/${f}`);
    const decoded: HostTensor[] = [];
    for (let i = 0; i < names.length; i++) {
      try {
        decoded.push(await readPngFile(names[i]));
      } catch (e) {
        if (e instanceof SyntaxError) {
          throw new SyntaxError(`Cannot read image ${i} of "${path}": ${e.message}`);
        }
        throw e;
      }
    }
    return { images: stackImages(decoded, names), names: (i) => names[i], source: path };
  }
  const t = await readIdxFile(path);
  if (t.dtype !== "uint8" || (t.shape.length !== 3 && t.shape.length !== 4)) {
    throw new TypeError(
      `Cannot use idx "${path}" as images: ${t.dtype} [${t.shape}], expected uint8 [N, H, W] or [N, C, H, W]`,
    );
  }
  return { images: t as HostTensor<"uint8">, names: (i) => `${path}#${i}`, source: path };
}

/**
 * The first `count` images of a set (a view, no copy).
 *
 * @param images an image set
 * @param count how many (clamped to N)
 * @returns the subset
 */
export function takeImages<T extends HostTensor>(images: T, count: number): T {
  const [N, C, H, W] = imageSetDims(images);
  const n = Math.max(0, Math.min(N, Math.floor(count)));
  const size = C * H * W;
  return {
    ...images,
    shape: [n, ...images.shape.slice(1)],
    data: (images.data as Uint8Array).subarray(0, n * size),
  } as T;
}
