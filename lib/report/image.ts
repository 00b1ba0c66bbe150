/**
 * Images and image grids in notebooks (image/png, and text/html scaled up with crisp pixels
 * for small images such as 28x28 decoded tokens), with a text fallback.
 *
 * @module
 */

import { encodePng, type HostTensor, tileImages, type TileImagesOptions } from "../io/mod.ts";
import { $display, escapeHtml, type MimeBundle } from "./jupyter.ts";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * Base64 of bytes (standard alphabet, padded).
 *
 * @param bytes Any bytes.
 * @returns The base64 text.
 */
export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    bin += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(bin);
}

function pngSize(png: Uint8Array): { width: number; height: number } {
  const ok = png.length >= 24 && PNG_SIGNATURE.every((b, i) => png[i] === b) &&
    String.fromCharCode(...png.subarray(12, 16)) === "IHDR";
  if (!ok) {
    throw new TypeError("Cannot display image: the bytes are not a PNG file (bad signature)");
  }
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return { width: dv.getUint32(16), height: dv.getUint32(20) };
}

/** Options for {@linkcode ImageView}. */
export interface ImageViewOptions {
  /**
   * Display magnification in the HTML view (pixels stay crisp). @default the smallest integer
   * that makes the image at least 320 px wide, at most 8
   */
  scale?: number;
  /** A caption shown under the image and in the text view. */
  caption?: string;
}

/** A PNG image that displays itself: image/png and scaled text/html in Jupyter, text elsewhere. */
export class ImageView {
  /** The PNG file's bytes. */
  readonly png: Uint8Array;
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** Display magnification of the HTML view. */
  readonly scale: number;
  /** Caption, if any. */
  readonly caption?: string;

  /**
   * @param image PNG bytes, or a uint8 HostTensor `[H, W]` / `[H, W, C]` (C in 1..4; use
   *   `toUint8Image` from `@lib/io` for float images).
   * @param options Scale and caption.
   * @throws TypeError for bytes that are not PNG or a tensor that is not a uint8 image;
   *   RangeError for a scale outside 1..64.
   */
  constructor(image: Uint8Array | HostTensor, options: ImageViewOptions = {}) {
    this.png = image instanceof Uint8Array ? image : encodePng(image);
    const { width, height } = pngSize(this.png);
    this.width = width;
    this.height = height;
    const scale = options.scale ?? Math.min(8, Math.max(1, Math.ceil(320 / Math.max(1, width))));
    if (!(Number.isFinite(scale) && scale >= 1 && scale <= 64)) {
      throw new RangeError(`Cannot display an image at scale ${scale} (allowed 1..64)`);
    }
    this.scale = scale;
    this.caption = options.caption;
  }

  /**
   * An `<img>` element with the PNG inlined as a data URL, scaled with crisp pixels.
   *
   * @returns HTML text.
   */
  toHtml(): string {
    const w = Math.round(this.width * this.scale), h = Math.round(this.height * this.scale);
    const img =
      `<img src="data:image/png;base64,${toBase64(this.png)}" width="${w}" height="${h}"` +
      ` style="image-rendering:pixelated;image-rendering:crisp-edges;"` +
      ` alt="${escapeHtml(this.caption ?? `image ${this.width}x${this.height}`)}"/>`;
    if (!this.caption) return img;
    return `<figure style="margin:0;display:inline-block;">${img}` +
      `<figcaption style="font-size:12px;">${escapeHtml(this.caption)}</figcaption></figure>`;
  }

  /**
   * A text description: size and PNG byte count.
   *
   * @returns Text.
   */
  toString(): string {
    const c = this.caption ? `"${this.caption}" ` : "";
    return `Image ${c}${this.width}x${this.height} (PNG, ${this.png.length} bytes)`;
  }

  /**
   * The Jupyter mimebundle.
   *
   * @returns `image/png` (base64), `text/html`, `text/plain`.
   */
  [$display](): MimeBundle {
    return {
      "image/png": toBase64(this.png),
      "text/html": this.toHtml(),
      "text/plain": this.toString(),
    };
  }
}

/**
 * Displays one image.
 *
 * @param image PNG bytes or a uint8 `[H, W]` / `[H, W, C]` HostTensor.
 * @param options Scale and caption.
 * @returns An {@linkcode ImageView}.
 * @throws As the {@linkcode ImageView} constructor.
 * @example
 * ```ts
 * import { imageView } from "@lib/report";
 * const img = { dtype: "uint8" as const, shape: [2, 2], data: new Uint8Array([0, 255, 255, 0]) };
 * console.log(String(imageView(img))); // Image 2x2 (PNG, ... bytes)
 * ```
 */
export function imageView(
  image: Uint8Array | HostTensor,
  options: ImageViewOptions = {},
): ImageView {
  return new ImageView(image, options);
}

/**
 * Tiles same-size uint8 images into one grid (`tileImages` of `@lib/io`) and displays it.
 *
 * @param images uint8 images `[H, W]` / `[H, W, C]`, or one batch `[N, H, W]` / `[N, H, W, C]`.
 * @param options Grid layout (columns, padding, background) and display (scale, caption).
 * @returns An {@linkcode ImageView} of the grid.
 * @throws TypeError for no images, mixed shapes or a non-uint8 dtype; RangeError for bad
 *   layout values.
 */
export function imageGrid(
  images: HostTensor[] | HostTensor,
  options: TileImagesOptions & ImageViewOptions = {},
): ImageView {
  const first = Array.isArray(images) ? images[0] : images;
  if (first !== undefined && first.dtype !== "uint8") {
    throw new TypeError(
      `Cannot display a ${first.dtype} image grid: expected uint8 (map with toUint8Image of @lib/io)`,
    );
  }
  const grid = tileImages(images, options);
  return new ImageView(grid, { scale: options.scale, caption: options.caption });
}
