/**
 * PNG images as host tensors (through fast-png), and image grids for galleries.
 *
 * Images are `HostTensor`s of shape `[H, W, C]` (C = 1 gray, 2 gray+alpha, 3 RGB,
 * 4 RGBA), row-major, uint8 for PNG I/O. `[H, W]` is accepted as gray wherever an image
 * is taken.
 *
 * @module
 */
import { inflateSync } from "node:zlib";
import { decode as fastPngDecode, encode as fastPngEncode } from "fast-png";
import { type DType, type DTypeArrays, type HostTensor, sizeOf } from "./host_tensor.ts";
import { readFileChecked, writeFileAtomic } from "./fs.ts";

/** Options of {@linkcode decodePng}. */
export interface PngReadOptions {
  /** The file name used in error messages. @default {"<bytes>"} */
  source?: string;
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CHANNELS_OF_COLOR_TYPE: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** deflate expands at most ~1032x; a claimed image larger than that cannot be in the file. */
const MAX_DEFLATE_RATIO = 1032;

function imageDims(t: HostTensor, what: string): [number, number, number] {
  const [h, w, c = 1] = t.shape;
  if ((t.shape.length !== 2 && t.shape.length !== 3) || c < 1 || c > 4) {
    throw new TypeError(
      `${what}: expected an image of shape [H, W] or [H, W, C] with C in 1..4, got [${t.shape}]`,
    );
  }
  if (t.data.length !== sizeOf(t.shape)) {
    throw new TypeError(`${what}: ${t.data.length} elements do not fill shape [${t.shape}]`);
  }
  return [h, w, c];
}

/**
 * Encode an 8-bit image as PNG (gray, gray+alpha, RGB or RGBA by the channel count).
 *
 * @param image uint8 `[H, W]` or `[H, W, C]`, C in 1..4, H and W at least 1
 * @returns the PNG file's bytes
 * @throws {TypeError} for another dtype, another shape, or an empty image
 *
 * @example
 * ```ts
 * import { decodePng, encodePng } from "@lib/io";
 * const img = { dtype: "uint8" as const, shape: [1, 2, 3], data: new Uint8Array([255, 0, 0, 0, 0, 255]) };
 * const back = decodePng(encodePng(img));
 * console.assert(back.shape.join() === "1,2,3" && back.data[5] === 255);
 * ```
 */
export function encodePng(image: HostTensor): Uint8Array {
  if (image.dtype !== "uint8") {
    throw new TypeError(`Cannot encode a ${image.dtype} image as PNG: expected uint8`);
  }
  const [height, width, channels] = imageDims(image, "Cannot encode PNG");
  if (height < 1 || width < 1) {
    throw new TypeError(`Cannot encode an empty ${height}x${width} image as PNG`);
  }
  return fastPngEncode({ width, height, channels, depth: 8, data: image.data as Uint8Array });
}

/**
 * Decode a PNG file to an 8-bit image. Every PNG colour type and bit depth is read:
 * palette images become RGB (RGBA when the palette has transparency), 1/2/4-bit gray is
 * scaled to 0..255, 16-bit samples are rounded to 8 bits (`round(v / 257)`). A tRNS colour
 * key of a gray or RGB image is ignored. Chunk CRCs are checked.
 *
 * @param bytes the PNG file's bytes
 * @param options source name for errors
 * @returns uint8 `[H, W, C]`, C = 1, 2, 3 or 4 (a new array, caller owns it)
 * @throws {SyntaxError} for anything that is not a readable PNG, e.g.
 *   `Cannot decode PNG "a.png": missing the PNG signature`; an image whose header claims
 *   more pixels than the file could hold is refused before anything is allocated, and
 *   image data that inflates past what the header's size needs is refused as soon as it
 *   passes it
 */
export function decodePng(bytes: Uint8Array, options: PngReadOptions = {}): HostTensor<"uint8"> {
  const source = options.source ?? "<bytes>";
  const bad = (what: string) => new SyntaxError(`Cannot decode PNG "${source}": ${what}`);
  if (bytes.length < 8 || SIGNATURE.some((s, i) => bytes[i] !== s)) {
    throw bad("missing the PNG signature");
  }
  // check IHDR ourselves so that a forged header cannot make the decoder allocate gigabytes
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8 + 8 + 13 || view.getUint32(8) !== 13 || view.getUint32(12) !== 0x49484452) {
    throw bad("the first chunk is not a 13-byte IHDR");
  }
  const width = view.getUint32(16), height = view.getUint32(20);
  const depth = bytes[24], colorType = bytes[25];
  const ch = CHANNELS_OF_COLOR_TYPE[colorType];
  if (ch === undefined) throw bad(`unknown colour type ${colorType}`);
  if (![1, 2, 4, 8, 16].includes(depth)) throw bad(`invalid bit depth ${depth}`);
  if (width < 1 || height < 1) throw bad(`empty ${width}x${height} image`);
  const rawBytes = height * (1 + Math.ceil((width * ch * depth) / 8));
  if (rawBytes > MAX_DEFLATE_RATIO * bytes.length || width * height * 4 > 2 ** 31) {
    throw bad(
      `header claims a ${width}x${height} image, more than the ${bytes.length}-byte file can hold`,
    );
  }
  const interlaced = bytes[28] === 1;
  const declared = interlaced ? adam7Bytes(width, height, ch * depth) : rawBytes;
  checkImageDataSize(bytes, declared, bad, `${width}x${height}`);
  let png;
  try {
    png = fastPngDecode(bytes, { checkCrc: true });
  } catch (e) {
    const err = e as Error;
    const cause = err?.cause instanceof Error ? ` ${err.cause.message}` : "";
    throw bad(`${err?.message ?? String(e)}${cause}`);
  }
  try {
    return toImage(png);
  } catch (e) {
    throw bad((e as Error).message);
  }
}

/** Bytes of the filtered scanlines of an Adam7-interlaced image (seven passes). */
function adam7Bytes(width: number, height: number, bitsPerPixel: number): number {
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  let total = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const w = Math.ceil((width - x0) / dx), h = Math.ceil((height - y0) / dy);
    if (w > 0 && h > 0) total += h * (1 + Math.ceil((w * bitsPerPixel) / 8));
  }
  return total;
}

/**
 * Inflate the IDAT stream with the header's size as a hard limit, so that a zlib bomb in
 * the image data stops there instead of reaching the decoder (which inflates everything).
 * Other inflate errors are left to the decoder to report.
 */
function checkImageDataSize(
  bytes: Uint8Array,
  declared: number,
  bad: (what: string) => SyntaxError,
  size: string,
): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let p = 8; p + 12 <= bytes.length;) {
    const len = view.getUint32(p);
    const type = view.getUint32(p + 4);
    if (p + 12 + len > bytes.length) break;
    if (type === 0x49444154) { // IDAT
      parts.push(bytes.subarray(p + 8, p + 8 + len));
      total += len;
    }
    p += 12 + len;
  }
  const idat = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    idat.set(part, at);
    at += part.length;
  }
  try {
    inflateSync(idat, { maxOutputLength: Math.max(1, declared) });
  } catch (e) {
    if ((e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw bad(`image data inflates past the ${declared} bytes a ${size} image needs`);
    }
  }
}

function toImage(png: ReturnType<typeof fastPngDecode>): HostTensor<"uint8"> {
  const { width, height, depth, channels } = png;
  const n = width * height;
  // unpack samples to one number each, row by row (sub-byte rows are padded to a byte)
  const samplesPerRow = width * channels;
  const samples = new Uint8Array(n * channels);
  const src = png.data;
  if (depth === 8) {
    if (src.length < samples.length) throw new Error("image data is too short");
    samples.set(src.subarray(0, samples.length));
  } else if (depth === 16) {
    if (src.length < samples.length) throw new Error("image data is too short");
    for (let i = 0; i < samples.length; i++) samples[i] = Math.round(src[i] / 257);
  } else {
    const rowBytes = Math.ceil((samplesPerRow * depth) / 8);
    if (src.length < rowBytes * height) throw new Error("image data is too short");
    const mask = (1 << depth) - 1;
    const scale = png.palette ? 1 : 255 / mask;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < samplesPerRow; x++) {
        const bit = x * depth;
        const byte = src[y * rowBytes + (bit >> 3)];
        const v = (byte >> (8 - depth - (bit & 7))) & mask;
        samples[y * samplesPerRow + x] = v * scale;
      }
    }
  }
  if (!png.palette) return { dtype: "uint8", shape: [height, width, channels], data: samples };
  const palette = png.palette;
  const pc = palette.some((c) => c.length === 4 && c[3] !== 255) ? 4 : 3;
  const out = new Uint8Array(n * pc);
  for (let i = 0; i < n; i++) {
    const c = palette[samples[i]];
    if (c === undefined) {
      throw new Error(`pixel ${i} uses palette index ${samples[i]} of ${palette.length}`);
    }
    out[i * pc] = c[0];
    out[i * pc + 1] = c[1];
    out[i * pc + 2] = c[2];
    if (pc === 4) out[i * pc + 3] = c[3] ?? 255;
  }
  return { dtype: "uint8", shape: [height, width, pc], data: out };
}

/**
 * Read a PNG file.
 * @param path file path
 * @returns uint8 `[H, W, C]`
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {SyntaxError} for an unreadable PNG (named in the message)
 */
export async function readPngFile(path: string): Promise<HostTensor<"uint8">> {
  return decodePng(await readFileChecked(path, { what: "PNG" }), { source: path });
}

/**
 * Write an 8-bit image as a PNG file, atomically.
 * @param path file path
 * @param image uint8 `[H, W]` or `[H, W, C]`, C in 1..4
 * @throws {TypeError} as {@linkcode encodePng}
 */
export async function writePngFile(path: string, image: HostTensor): Promise<void> {
  await writeFileAtomic(path, encodePng(image));
}

/** Options of {@linkcode toUint8Image}. */
export interface ToUint8ImageOptions {
  /** The value shown as 0. @default {0} */
  min?: number;
  /** The value shown as 255. @default {1} */
  max?: number;
}

/**
 * Map a numeric image linearly to uint8, clamping: `round(255 * (v - min) / (max - min))`.
 * NaN becomes 0.
 *
 * @param image any numeric dtype, any shape (kept)
 * @param options the value range shown
 * @returns a new uint8 tensor of the same shape
 * @throws {RangeError} when `max <= min`
 *
 * @example
 * ```ts
 * import { toUint8Image } from "@lib/io";
 * const u = toUint8Image({ dtype: "float32", shape: [3], data: new Float32Array([-1, 0.5, 2]) });
 * console.assert(u.data.join() === "0,128,255");
 * ```
 */
export function toUint8Image(image: HostTensor, options: ToUint8ImageOptions = {}): HostTensor<
  "uint8"
> {
  const min = options.min ?? 0, max = options.max ?? 1;
  if (!(max > min)) throw new RangeError(`Cannot map [${min}, ${max}] to uint8: max <= min`);
  const src = image.data;
  const n = src.length;
  const out = new Uint8Array(n);
  const k = 255 / (max - min);
  for (let i = 0; i < n; i++) {
    const v = (Number(src[i]) - min) * k;
    out[i] = v > 255 ? 255 : v > 0 ? Math.round(v) : 0;
  }
  return { dtype: "uint8", shape: [...image.shape], data: out };
}

/** Options of {@linkcode tileImages}. */
export interface TileImagesOptions {
  /** Images per row. @default {Math.ceil(Math.sqrt(N))} */
  columns?: number;
  /** Pixels between images and around the border. @default {2} */
  padding?: number;
  /** The value of padding pixels (every channel). @default {0} */
  background?: number;
}

/**
 * Compose same-size images into a grid, row by row, with padding between them and around
 * the border (like torchvision's `make_grid`). Unused cells of the last row are background.
 *
 * @param images N >= 1 images, all of the same dtype and shape `[H, W]` or `[H, W, C]`;
 *   or one batch tensor `[N, H, W]` / `[N, H, W, C]`
 * @param options columns, padding, background
 * @returns `[rows*H + (rows+1)*p, cols*W + (cols+1)*p, C]` of the input dtype (C = 1 for
 *   `[H, W]` inputs), a new array
 * @throws {TypeError} for no images, or images of different shapes or dtypes
 * @throws {RangeError} for a non-positive column count or negative padding
 *
 * @example
 * ```ts
 * import { tileImages } from "@lib/io";
 * const one = { dtype: "uint8" as const, shape: [2, 2], data: new Uint8Array(4).fill(9) };
 * const grid = tileImages([one, one, one], { padding: 1 });
 * console.assert(grid.shape.join() === "7,7,1");
 * ```
 */
export function tileImages(
  images: HostTensor[] | HostTensor,
  options: TileImagesOptions = {},
): HostTensor {
  const list = Array.isArray(images) ? images : unbatch(images);
  if (list.length === 0) throw new TypeError("Cannot tile 0 images");
  const first = list[0];
  const [h, w, c] = imageDims(first, "Cannot tile image 0");
  list.forEach((im, i) => {
    const [hi, wi, ci] = imageDims(im, `Cannot tile image ${i}`);
    if (im.dtype !== first.dtype || hi !== h || wi !== w || ci !== c) {
      throw new TypeError(
        `Cannot tile image ${i}: ${im.dtype} [${im.shape}] differs from image 0, ` +
          `${first.dtype} [${first.shape}]`,
      );
    }
  });
  const n = list.length;
  const cols = options.columns ?? Math.ceil(Math.sqrt(n));
  const pad = options.padding ?? 2;
  if (!Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`Cannot tile images in ${cols} columns`);
  }
  if (!Number.isInteger(pad) || pad < 0) throw new RangeError(`Cannot pad images by ${pad}`);
  const rows = Math.ceil(n / cols);
  const H = rows * h + (rows + 1) * pad, W = cols * w + (cols + 1) * pad;
  const out = newArray(first.dtype, H * W * c);
  const bg = options.background ?? 0;
  if (bg !== 0) {
    (out as { fill(v: unknown): unknown }).fill(first.dtype === "int64" ? BigInt(bg) : bg);
  }
  const rowLen = w * c;
  list.forEach((im, i) => {
    const y0 = pad + Math.floor(i / cols) * (h + pad);
    const x0 = pad + (i % cols) * (w + pad);
    for (let y = 0; y < h; y++) {
      const src = (im.data as Uint8Array).subarray(y * rowLen, (y + 1) * rowLen);
      (out as Uint8Array).set(src, ((y0 + y) * W + x0) * c);
    }
  });
  return { dtype: first.dtype, shape: [H, W, c], data: out };
}

function unbatch(batch: HostTensor): HostTensor[] {
  if (batch.shape.length !== 3 && batch.shape.length !== 4) {
    throw new TypeError(
      `Cannot tile a batch of shape [${batch.shape}]: expected [N, H, W] or [N, H, W, C]`,
    );
  }
  const [n, ...rest] = batch.shape;
  const size = sizeOf(rest);
  const out: HostTensor[] = [];
  for (let i = 0; i < n; i++) {
    const data = (batch.data as Uint8Array).subarray(i * size, (i + 1) * size);
    out.push({ dtype: batch.dtype, shape: rest, data } as HostTensor);
  }
  return out;
}

function newArray(dtype: DType, n: number): DTypeArrays[DType] {
  switch (dtype) {
    case "float64":
      return new Float64Array(n);
    case "float32":
      return new Float32Array(n);
    case "float16":
    case "bfloat16":
      return new Uint16Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "int32":
      return new Int32Array(n);
    case "int16":
      return new Int16Array(n);
    case "int8":
      return new Int8Array(n);
    default:
      return new Uint8Array(n);
  }
}
