/**
 * Tinting grid cells of images: shows which tokens a mask hides or drops, or any other
 * per-token category, on top of the decoded pixels.
 *
 * @module
 */

import type { HostTensor } from "../io/mod.ts";

/** An RGB colour, each channel 0..255. */
export type Rgb = readonly [number, number, number];

/** Options for {@linkcode overlayCells}. */
export interface OverlayCellsOptions {
  /** Colour per cell value; values without a colour leave their pixels unchanged. */
  colors: Readonly<Record<number, Rgb>>;
  /** Weight of the colour in the blend (0 = image only, 1 = flat colour). @default 0.55 */
  alpha?: number;
  /**
   * Side in pixels of the square frame the cell grid covers, centred on the image (a
   * tokenizer that pads 28 -> 32 has frame 32: each of 8 cells covers 4 frame pixels).
   * @default the image side
   */
  frameSize?: number;
}

/**
 * Blend a colour into every pixel whose grid cell has a colour, e.g. masked tokens blue and
 * dropped tokens red over a decoded image.
 *
 * @param images uint8 `[N, H, W]` or `[N, H, W, C]` (C = 1 or 3), square (H = W)
 * @param cells int32 `[N, g, g]` cell values (e.g. `maskGrid` of `@lib/models`)
 * @param options colours, blend weight, frame
 * @returns uint8 `[N, H, W, 3]`, a new array
 * @throws {TypeError} for wrong dtypes/shapes or N mismatch; RangeError for alpha outside
 *   [0, 1] or a frame smaller than the image
 * @example
 * ```ts
 * import { overlayCells } from "@lib/report";
 * const img = { dtype: "uint8" as const, shape: [1, 4, 4], data: new Uint8Array(16).fill(100) };
 * const cells = { dtype: "int32" as const, shape: [1, 2, 2], data: new Int32Array([1, 0, 0, 0]) };
 * const out = overlayCells(img, cells, { colors: { 1: [255, 0, 0] }, alpha: 1 });
 * console.assert(out.data[0] === 255 && out.data[3 * 15] === 100);
 * ```
 */
export function overlayCells(
  images: HostTensor,
  cells: HostTensor,
  options: OverlayCellsOptions,
): HostTensor<"uint8"> {
  const s = images.shape;
  if (images.dtype !== "uint8" || (s.length !== 3 && s.length !== 4)) {
    throw new TypeError(
      `Cannot overlay cells on ${images.dtype} [${s}]: expected uint8 [N, H, W] or [N, H, W, C]`,
    );
  }
  const [N, H, W] = s;
  const C = s[3] ?? 1;
  if (H !== W || (C !== 1 && C !== 3)) {
    throw new TypeError(`Cannot overlay cells on images [${s}]: expected square, 1 or 3 channels`);
  }
  const g = cells.shape[1];
  if (
    cells.dtype !== "int32" || cells.shape.length !== 3 || cells.shape[0] !== N ||
    cells.shape[2] !== g
  ) {
    throw new TypeError(
      `Cannot overlay cells ${cells.dtype} [${cells.shape}] on ${N} images: expected int32 [${N}, g, g]`,
    );
  }
  const alpha = options.alpha ?? 0.55;
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`Cannot blend with alpha ${alpha}`);
  const frame = options.frameSize ?? H;
  if (!(frame >= H)) {
    throw new RangeError(`Cannot lay a ${frame}-pixel frame over ${H}-pixel images`);
  }
  const off = (frame - H) / 2;
  const cellOf = (p: number) => Math.min(g - 1, Math.max(0, Math.floor((p + off) * g / frame)));
  const src = images.data as Uint8Array;
  const cd = cells.data as Int32Array;
  const out = new Uint8Array(N * H * W * 3);
  for (let i = 0; i < N; i++) {
    for (let y = 0; y < H; y++) {
      const cy = cellOf(y);
      for (let x = 0; x < W; x++) {
        const color = options.colors[cd[(i * g + cy) * g + cellOf(x)]];
        const p = (i * H + y) * W + x;
        for (let c = 0; c < 3; c++) {
          const v = src[p * C + (C === 1 ? 0 : c)];
          out[p * 3 + c] = color === undefined ? v : Math.round((1 - alpha) * v + alpha * color[c]);
        }
      }
    }
  }
  return { dtype: "uint8", shape: [N, H, W, 3], data: out };
}
