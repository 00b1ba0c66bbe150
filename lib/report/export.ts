/**
 * Static figure export (SVG, PNG) through headless Chromium with plotly.js loaded from
 * node_modules, many figures per browser session. The same spec gives byte-identical SVG:
 * trace uids are fixed by {@linkcode Figure}, the page's Math.random is reseeded before each
 * export (Plotly draws its clip-path ids from it) and attributes are put in name order (Plotly
 * sets them in a different order on a session's first render).
 *
 * @module
 */

import { dirname, extname } from "node:path";
import { pathToFileURL } from "node:url";
import { Chromium, type ChromiumOptions, type Page } from "./chromium.ts";
import { Figure, type FigureSpec } from "./figure.ts";
import { plotlyJsPath } from "./plotly_js.ts";

/** Options for one export. */
export interface ExportOptions {
  /** Width in px. @default the figure's layout.width or 700 */
  width?: number;
  /** Height in px. @default the figure's layout.height or 450 */
  height?: number;
  /** PNG pixel ratio (2 = twice the pixels). @default 1 */
  scale?: number;
}

// A small seeded generator (mulberry32) installed as Math.random before each export.
const RESEED = `(function () {
  var s = 0x5e17a5ee | 0;
  Math.random = function () {
    s = (s + 0x6d2b79f5) | 0;
    var t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
})();`;

/**
 * Puts every element's attributes in name order, so that SVG serialised by the browser does not
 * depend on the order in which Plotly happened to set them (which differs between the first and
 * later renders of a session). Attribute values must be double-quoted, as XMLSerializer writes
 * them.
 *
 * @param svg SVG (XML) text.
 * @returns The same document with sorted attributes.
 */
export function canonicalSvg(svg: string): string {
  return svg.replace(
    /<([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"]*")+)\s*(\/?)>/g,
    (_m, name: string, attrs: string, close: string) => {
      const list = attrs.match(/[\w:.-]+="[^"]*"/g) ?? [];
      list.sort((a, b) => {
        const ka = a.slice(0, a.indexOf("=")), kb = b.slice(0, b.indexOf("="));
        return ka < kb ? -1 : ka > kb ? 1 : 0;
      });
      return `<${name} ${list.join(" ")}${close}>`;
    },
  );
}

function asFigure(fig: Figure | FigureSpec): Figure {
  return fig instanceof Figure ? fig : new Figure(fig);
}

function checkSize(what: string, v: number, lo: number, hi: number): number {
  if (!(Number.isFinite(v) && v >= lo && v <= hi)) {
    throw new RangeError(`Cannot export a figure with ${what} ${v} (allowed ${lo}..${hi})`);
  }
  return v;
}

/**
 * Exports Plotly figures to SVG and PNG in one headless-Chromium session. Start once, export
 * many, close.
 *
 * @example
 * ```ts ignore
 * import { figure, FigureExporter, lineTrace } from "@lib/report";
 * const ex = await FigureExporter.start();
 * try {
 *   const svg = await ex.svg(figure([lineTrace([1, 2], [3, 4])]));
 *   await Deno.writeTextFile("fig.svg", svg);
 * } finally {
 *   await ex.close();
 * }
 * ```
 */
export class FigureExporter {
  readonly #browser: Chromium;
  readonly #page: Page;

  private constructor(browser: Chromium, page: Page) {
    this.#browser = browser;
    this.#page = page;
  }

  /**
   * Launches Chromium and loads plotly.js (file:// from node_modules, no network).
   *
   * @param options Browser executable and timeout.
   * @returns A ready exporter.
   * @throws ChromiumError when the browser cannot start; Error when plotly.js is not installed
   *   or does not load.
   */
  static async start(options: ChromiumOptions = {}): Promise<FigureExporter> {
    const browser = await Chromium.launch(options);
    try {
      const page = await browser.newPage();
      const lib = pathToFileURL(plotlyJsPath()).href;
      await page.setContent(
        `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>` +
          `<script src="${lib}"></script></body></html>`,
      );
      const ok = await page.evaluate<boolean>("typeof window.Plotly === 'object'");
      if (!ok) throw new Error(`plotly.js did not load from ${lib}`);
      return new FigureExporter(browser, page);
    } catch (e) {
      await browser.close();
      throw e;
    }
  }

  async #toImage(fig: Figure, format: "svg" | "png", options: ExportOptions): Promise<string> {
    const width = checkSize("width", options.width ?? fig.width, 10, 10000);
    const height = checkSize("height", options.height ?? fig.height, 10, 10000);
    const scale = checkSize("scale", options.scale ?? 1, 0.1, 10);
    const spec = { data: fig.spec.data, layout: { ...fig.spec.layout, width, height } };
    const opts = { format, width, height, scale };
    return await this.#page.evaluate<string>(
      `${RESEED}\nPlotly.toImage(${JSON.stringify(spec)}, ${JSON.stringify(opts)})`,
    );
  }

  /**
   * Renders a figure to SVG text. Same spec and size: byte-identical output.
   *
   * @param fig A {@linkcode Figure} or a plain spec.
   * @param options Size override.
   * @returns A standalone SVG document (UTF-8 text).
   * @throws RangeError for a bad size; PageScriptError when Plotly rejects the spec.
   */
  async svg(fig: Figure | FigureSpec, options: ExportOptions = {}): Promise<string> {
    const url = await this.#toImage(asFigure(fig), "svg", options);
    const prefix = "data:image/svg+xml,";
    if (!url.startsWith(prefix)) throw new Error(`Plotly returned an unexpected SVG URL prefix`);
    return canonicalSvg(decodeURIComponent(url.slice(prefix.length)));
  }

  /**
   * Renders a figure to PNG.
   *
   * @param fig A {@linkcode Figure} or a plain spec.
   * @param options Size and pixel ratio.
   * @returns PNG bytes.
   * @throws RangeError for a bad size; PageScriptError when Plotly rejects the spec.
   */
  async png(fig: Figure | FigureSpec, options: ExportOptions = {}): Promise<Uint8Array> {
    const url = await this.#toImage(asFigure(fig), "png", options);
    const prefix = "data:image/png;base64,";
    if (!url.startsWith(prefix)) throw new Error(`Plotly returned an unexpected PNG URL prefix`);
    return Uint8Array.from(atob(url.slice(prefix.length)), (c) => c.charCodeAt(0));
  }

  /**
   * Writes a figure to a file, the format chosen by the extension (.svg or .png); creates the
   * folder.
   *
   * @param fig A {@linkcode Figure} or a plain spec.
   * @param path Output path ending in .svg or .png.
   * @param options Size and pixel ratio.
   * @throws TypeError for another extension.
   */
  async write(fig: Figure | FigureSpec, path: string, options: ExportOptions = {}): Promise<void> {
    const ext = extname(path).toLowerCase();
    if (ext !== ".svg" && ext !== ".png") {
      throw new TypeError(`Cannot export a figure to "${path}": use a .svg or .png path`);
    }
    await Deno.mkdir(dirname(path), { recursive: true });
    if (ext === ".svg") await Deno.writeTextFile(path, await this.svg(fig, options));
    else await Deno.writeFile(path, await this.png(fig, options));
  }

  /** The browser (for checks that render other HTML in the same session). */
  get browser(): Chromium {
    return this.#browser;
  }

  /** Closes the browser. */
  async close(): Promise<void> {
    await this.#browser.close();
  }
}

/**
 * Exports many figures in one browser session.
 *
 * @param items Figures and output paths (.svg or .png).
 * @param options Browser options; per-item size in `items[i].options`.
 * @returns The paths written, in order.
 * @throws As {@linkcode FigureExporter.start} and {@linkcode FigureExporter.write}.
 */
export async function exportFigures(
  items: ReadonlyArray<{ figure: Figure | FigureSpec; path: string; options?: ExportOptions }>,
  options: ChromiumOptions = {},
): Promise<string[]> {
  const ex = await FigureExporter.start(options);
  try {
    for (const it of items) await ex.write(it.figure, it.path, it.options);
  } finally {
    await ex.close();
  }
  return items.map((it) => it.path);
}
