/**
 * Labelled image columns: the same rows (samples) under several treatments side by side, e.g.
 * "original | augmented | decoded" or "truth | mask | prediction". Shown in Jupyter as an HTML
 * table (column labels, optional row labels, crisp upscaled pixels), with the tiled grid as
 * image/png and a text summary as fallbacks.
 *
 * @module
 */

import { encodePng, type HostTensor, tileImages } from "../io/mod.ts";
import { toBase64 } from "./image.ts";
import { $display, escapeHtml, type MimeBundle } from "./jupyter.ts";

/** One column: a label and one image per row. */
export interface ImageColumn {
  /** The column's heading. */
  label: string;
  /** uint8 `[N, H, W]` or `[N, H, W, C]` (C = 1 or 3): row i shows image i. */
  images: HostTensor;
}

/** Options for {@linkcode imageColumns}. */
export interface ImageColumnsOptions {
  /** Display magnification of every image (crisp pixels). @default 3 */
  scale?: number;
  /** A caption above the table. */
  caption?: string;
  /** One label per row, shown in a first column. */
  rowLabels?: string[];
  /** A note under each column label (same length as the columns), e.g. a metric. */
  notes?: string[];
}

function toRgb(images: HostTensor<"uint8">, N: number, H: number, W: number): HostTensor<"uint8"> {
  const C = images.shape[3] ?? 1;
  if (C === 3) return images;
  const out = new Uint8Array(N * H * W * 3);
  for (let p = 0; p < N * H * W; p++) {
    const v = images.data[p];
    out[3 * p] = v, out[3 * p + 1] = v, out[3 * p + 2] = v;
  }
  return { dtype: "uint8", shape: [N, H, W, 3], data: out };
}

/** A displayable table of labelled image columns; build it with {@linkcode imageColumns}. */
export class ImageColumnsView {
  /** The columns, all with the same N, H, W. */
  readonly columns: readonly ImageColumn[];
  /** Rows N. */
  readonly rows: number;
  /** Image height. */
  readonly height: number;
  /** Image width. */
  readonly width: number;
  /** Display magnification. */
  readonly scale: number;
  /** The options in force. */
  readonly options: ImageColumnsOptions;

  /**
   * Checks the columns and options.
   *
   * @param columns labelled uint8 batches of the same N, H and W
   * @param options scale, caption, row labels, notes
   * @throws TypeError for no columns, a non-uint8 batch, mismatched shapes, or label counts
   *   that do not match; RangeError for a scale outside 1..16
   */
  constructor(columns: readonly ImageColumn[], options: ImageColumnsOptions = {}) {
    if (columns.length === 0) throw new TypeError("Cannot show image columns: no columns");
    const [N, H, W] = columns[0].images.shape;
    columns.forEach((c, k) => {
      const s = c.images.shape;
      const C = s[3] ?? 1;
      if (
        c.images.dtype !== "uint8" || (s.length !== 3 && s.length !== 4) ||
        (C !== 1 && C !== 3)
      ) {
        throw new TypeError(
          `Cannot show column ${k} "${c.label}": ${c.images.dtype} [${s}], expected uint8 ` +
            `[N, H, W] or [N, H, W, C] with C 1 or 3`,
        );
      }
      if (s[0] !== N || s[1] !== H || s[2] !== W) {
        throw new TypeError(
          `Cannot show column ${k} "${c.label}": [${s}] does not match column 0 [${N}, ${H}, ${W}]`,
        );
      }
    });
    if (options.rowLabels !== undefined && options.rowLabels.length !== N) {
      throw new TypeError(`Cannot show ${options.rowLabels.length} row labels for ${N} rows`);
    }
    if (options.notes !== undefined && options.notes.length !== columns.length) {
      throw new TypeError(
        `Cannot show ${options.notes.length} column notes for ${columns.length} columns`,
      );
    }
    const scale = options.scale ?? 3;
    if (!(Number.isInteger(scale) && scale >= 1 && scale <= 16)) {
      throw new RangeError(`Cannot show images at scale ${scale} (integers 1..16)`);
    }
    this.columns = columns;
    this.rows = N;
    this.height = H;
    this.width = W;
    this.scale = scale;
    this.options = options;
  }

  #cell(images: HostTensor, i: number): Uint8Array {
    const C = images.shape[3] ?? 1;
    const per = this.height * this.width * C;
    const data = (images.data as Uint8Array).subarray(i * per, (i + 1) * per);
    return encodePng({
      dtype: "uint8",
      shape: C === 1 ? [this.height, this.width] : [this.height, this.width, C],
      data,
    });
  }

  /**
   * The table as HTML: a heading row of labels (and notes), one row per sample.
   *
   * @returns HTML text.
   */
  toHtml(): string {
    const { caption, rowLabels, notes } = this.options;
    const w = this.width * this.scale, h = this.height * this.scale;
    const td = "padding:2px;text-align:center;border:none;";
    const head = (rowLabels ? `<th style="${td}"></th>` : "") +
      this.columns.map((c, k) =>
        `<th style="${td}font-size:12px;max-width:${Math.max(w, 60)}px;">${escapeHtml(c.label)}${
          notes
            ? `<br><span style="font-weight:normal;color:#555;">${escapeHtml(notes[k])}</span>`
            : ""
        }</th>`
      ).join("");
    const body: string[] = [];
    for (let i = 0; i < this.rows; i++) {
      const label = rowLabels
        ? `<td style="${td}font-size:12px;text-align:right;">${escapeHtml(rowLabels[i])}</td>`
        : "";
      const cells = this.columns.map((c) =>
        `<td style="${td}"><img src="data:image/png;base64,${
          toBase64(this.#cell(c.images, i))
        }" width="${w}" height="${h}" style="image-rendering:pixelated;image-rendering:crisp-edges;"/></td>`
      ).join("");
      body.push(`<tr>${label}${cells}</tr>`);
    }
    const cap = caption ? `<p><b>${escapeHtml(caption)}</b></p>` : "";
    return `${cap}<table style="border-collapse:collapse;background:#fff;">` +
      `<tr>${head}</tr>${body.join("")}</table>`;
  }

  /**
   * The columns tiled into one image (row i of the grid = sample i), without labels.
   *
   * @returns uint8 `[height, width, C]`.
   */
  grid(): HostTensor<"uint8"> {
    const N = this.rows, H = this.height, W = this.width, K = this.columns.length;
    const rgb = this.columns.some((c) => (c.images.shape[3] ?? 1) === 3);
    const batches = this.columns.map((c) =>
      rgb ? toRgb(c.images as HostTensor<"uint8">, N, H, W) : c.images as HostTensor<"uint8">
    );
    const C = rgb ? 3 : 1;
    const per = H * W * C;
    const images: HostTensor<"uint8">[] = [];
    for (let i = 0; i < N; i++) {
      for (const b of batches) {
        images.push({
          dtype: "uint8",
          shape: C === 1 ? [H, W] : [H, W, C],
          data: b.data.subarray(i * per, (i + 1) * per),
        });
      }
    }
    return tileImages(images, { columns: K, padding: 2 }) as HostTensor<"uint8">;
  }

  /**
   * A text summary: caption, size and the column labels.
   *
   * @returns Text.
   */
  toString(): string {
    const cap = this.options.caption ? `"${this.options.caption}" ` : "";
    return `Image columns ${cap}(${this.rows} rows of ${this.width}x${this.height}): ` +
      this.columns.map((c) => c.label).join(" | ");
  }

  /**
   * The Jupyter mimebundle.
   *
   * @returns `text/html`, `image/png` (the tiled grid), `text/plain`.
   */
  [$display](): MimeBundle {
    return {
      "text/html": this.toHtml(),
      "image/png": toBase64(encodePng(this.grid())),
      "text/plain": this.toString(),
    };
  }
}

/**
 * Shows samples under several treatments side by side, one labelled column per treatment.
 *
 * @param columns labelled uint8 batches `[N, H, W]` / `[N, H, W, C]` of the same N, H, W
 * @param options scale, caption, row labels, notes under the column labels
 * @returns A displayable {@linkcode ImageColumnsView}.
 * @throws As the {@linkcode ImageColumnsView} constructor.
 * @example
 * ```ts
 * import { imageColumns } from "@lib/report";
 * const a = { dtype: "uint8" as const, shape: [2, 4, 4], data: new Uint8Array(32) };
 * const b = { dtype: "uint8" as const, shape: [2, 4, 4], data: new Uint8Array(32).fill(255) };
 * console.log(String(imageColumns([{ label: "black", images: a }, { label: "white", images: b }])));
 * ```
 */
export function imageColumns(
  columns: readonly ImageColumn[],
  options: ImageColumnsOptions = {},
): ImageColumnsView {
  return new ImageColumnsView(columns, options);
}
