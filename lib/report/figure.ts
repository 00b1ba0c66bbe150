/**
 * Typed helpers that build Plotly figure specs for the project's plots (lines with error
 * bars, log-x axes, scatter points, heatmaps, histograms, bars) and a {@linkcode Figure} that
 * displays itself in Jupyter. Not a plotting library: the output is plain Plotly JSON.
 *
 * @module
 */

import { $display, escapeHtml, type MimeBundle } from "./jupyter.ts";
import { plotlyJsScriptTag } from "./plotly_js.ts";

/** One Plotly trace (plain JSON); `type` is required, `uid` is filled in by {@linkcode Figure}. */
export interface PlotlyTrace {
  /** Plotly trace type: "scatter", "heatmap", "histogram", "bar", ... */
  type: string;
  /** Stable trace id (Plotly invents a random one when absent). */
  uid?: string;
  /** Legend name. */
  name?: string;
  /** Any other Plotly trace attribute. */
  [key: string]: unknown;
}

/** Plotly layout (plain JSON). */
export type PlotlyLayout = Record<string, unknown>;

/** A complete Plotly figure: traces and layout, plain JSON. */
export interface FigureSpec {
  /** The traces, drawn in order. */
  data: PlotlyTrace[];
  /** The layout. */
  layout: PlotlyLayout;
}

/** Default figure size in pixels, used by static export and the HTML container. */
export const DEFAULT_FIGURE_SIZE: { width: number; height: number } = { width: 700, height: 450 };

function checkNumbers(what: string, values: ArrayLike<number>): number[] {
  const out = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== "number") {
      throw new TypeError(`Cannot plot ${what}: element ${i} is ${typeof v}, expected a number`);
    }
    // NaN/Infinity become gaps (null), as Plotly draws them.
    out[i] = v;
  }
  return out;
}

function checkSameLength(what: string, a: ArrayLike<unknown>, b: ArrayLike<unknown>): void {
  if (a.length !== b.length) {
    throw new RangeError(`Cannot plot ${what}: x has ${a.length} values, y has ${b.length}`);
  }
}

/** Options for {@linkcode lineTrace}. */
export interface LineTraceOptions {
  /** Legend name. */
  name?: string;
  /** Symmetric error bars (one per point, same length as y), e.g. std over seeds. */
  yErr?: ArrayLike<number>;
  /** Draw markers too. @default false */
  markers?: boolean;
  /** Line dash: "solid", "dash", "dot", "dashdot". @default "solid" */
  dash?: "solid" | "dash" | "dot" | "dashdot";
  /** Line colour (any CSS colour); Plotly's palette when absent. */
  color?: string;
}

/**
 * A line trace (scatter with mode "lines"), optionally with symmetric y error bars.
 *
 * @param x X values (e.g. steps, epochs, storage in GB).
 * @param y Y values, same length as x; NaN draws a gap.
 * @param options Name, error bars, markers, dash, colour.
 * @returns A Plotly scatter trace.
 * @throws TypeError when a value is not a number; RangeError when lengths differ.
 * @example
 * ```ts
 * import { lineTrace } from "@lib/report";
 * const t = lineTrace([1, 2, 3], [0.5, 0.6, 0.7], { name: "acc", yErr: [0.01, 0.02, 0.01] });
 * console.log(t.type, t.mode); // scatter lines
 * ```
 */
export function lineTrace(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  options: LineTraceOptions = {},
): PlotlyTrace {
  checkSameLength(`line "${options.name ?? ""}"`, x, y);
  const trace: PlotlyTrace = {
    type: "scatter",
    mode: options.markers ? "lines+markers" : "lines",
    x: checkNumbers("line x", x),
    y: checkNumbers("line y", y),
  };
  if (options.name !== undefined) trace.name = options.name;
  const line: Record<string, unknown> = {};
  if (options.dash !== undefined) line.dash = options.dash;
  if (options.color !== undefined) line.color = options.color;
  if (Object.keys(line).length > 0) trace.line = line;
  if (options.color !== undefined && options.markers) trace.marker = { color: options.color };
  if (options.yErr !== undefined) {
    if (options.yErr.length !== y.length) {
      throw new RangeError(
        `Cannot plot error bars of "${options.name ?? ""}": ${options.yErr.length} values for ` +
          `${y.length} points`,
      );
    }
    trace.error_y = { type: "data", array: checkNumbers("yErr", options.yErr), visible: true };
  }
  return trace;
}

/** Options for {@linkcode scatterTrace}. */
export interface ScatterTraceOptions {
  /** Legend name. */
  name?: string;
  /** Hover text (one per point) or labels. */
  text?: string[];
  /** Show `text` as labels next to the points. @default false */
  showText?: boolean;
  /** Marker size in px. @default 8 */
  size?: number;
  /** Marker colour (CSS), or one number per point for a colour scale. */
  color?: string | ArrayLike<number>;
  /** Marker symbol ("circle", "square", "diamond", "x", ...). @default "circle" */
  symbol?: string;
}

/**
 * A scatter trace of points (mode "markers"), e.g. accuracy versus storage, one point per run.
 *
 * @param x X values.
 * @param y Y values, same length as x.
 * @param options Name, hover/label text, marker size, colour and symbol.
 * @returns A Plotly scatter trace.
 * @throws TypeError when a value is not a number; RangeError when lengths differ.
 */
export function scatterTrace(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  options: ScatterTraceOptions = {},
): PlotlyTrace {
  checkSameLength(`scatter "${options.name ?? ""}"`, x, y);
  if (options.text !== undefined && options.text.length !== x.length) {
    throw new RangeError(
      `Cannot plot scatter "${options.name ?? ""}": ${options.text.length} labels for ` +
        `${x.length} points`,
    );
  }
  const marker: Record<string, unknown> = { size: options.size ?? 8 };
  if (options.symbol !== undefined) marker.symbol = options.symbol;
  if (typeof options.color === "string") marker.color = options.color;
  else if (options.color !== undefined) {
    checkSameLength("scatter colours", x, options.color);
    marker.color = checkNumbers("scatter colour", options.color);
    marker.showscale = true;
  }
  const trace: PlotlyTrace = {
    type: "scatter",
    mode: options.showText ? "markers+text" : "markers",
    x: checkNumbers("scatter x", x),
    y: checkNumbers("scatter y", y),
    marker,
  };
  if (options.name !== undefined) trace.name = options.name;
  if (options.text !== undefined) {
    trace.text = [...options.text];
    if (options.showText) trace.textposition = "top center";
  }
  return trace;
}

/** Options for {@linkcode heatmapTrace}. */
export interface HeatmapTraceOptions {
  /** Column labels or coordinates (length = columns of z). */
  x?: Array<number | string>;
  /** Row labels or coordinates (length = rows of z). */
  y?: Array<number | string>;
  /** Plotly colour scale name ("Viridis", "Greys", "RdBu", ...). @default "Viridis" */
  colorscale?: string;
  /** Lower end of the colour range; data minimum when absent. */
  zmin?: number;
  /** Upper end of the colour range; data maximum when absent. */
  zmax?: number;
  /** Show the colour bar. @default true */
  showScale?: boolean;
  /** Legend/hover name. */
  name?: string;
}

/**
 * A heatmap trace, e.g. a confusion matrix or an attention map. Row 0 of `z` is drawn at the
 * bottom (Plotly's convention); set `layout.yaxis.autorange = "reversed"` for image order.
 *
 * @param z Rows of values, all rows the same length.
 * @param options Axis labels, colour scale and range.
 * @returns A Plotly heatmap trace.
 * @throws RangeError when rows differ in length or labels do not match the shape.
 */
export function heatmapTrace(
  z: ArrayLike<ArrayLike<number>>,
  options: HeatmapTraceOptions = {},
): PlotlyTrace {
  const rows = z.length;
  const cols = rows > 0 ? z[0].length : 0;
  const zz: number[][] = [];
  for (let r = 0; r < rows; r++) {
    if (z[r].length !== cols) {
      throw new RangeError(
        `Cannot plot heatmap: row ${r} has ${z[r].length} values, row 0 has ${cols}`,
      );
    }
    zz.push(checkNumbers(`heatmap row ${r}`, z[r]));
  }
  if (options.x !== undefined && options.x.length !== cols) {
    throw new RangeError(`Cannot plot heatmap: ${options.x.length} x labels for ${cols} columns`);
  }
  if (options.y !== undefined && options.y.length !== rows) {
    throw new RangeError(`Cannot plot heatmap: ${options.y.length} y labels for ${rows} rows`);
  }
  const trace: PlotlyTrace = {
    type: "heatmap",
    z: zz,
    colorscale: options.colorscale ?? "Viridis",
    showscale: options.showScale ?? true,
  };
  if (options.x !== undefined) trace.x = [...options.x];
  if (options.y !== undefined) trace.y = [...options.y];
  if (options.zmin !== undefined) trace.zmin = options.zmin;
  if (options.zmax !== undefined) trace.zmax = options.zmax;
  if (options.name !== undefined) trace.name = options.name;
  return trace;
}

/** Options for {@linkcode histogramTrace}. */
export interface HistogramTraceOptions {
  /** Legend name. */
  name?: string;
  /** Maximum number of bins (Plotly picks nice bin edges). */
  nbins?: number;
  /** Normalisation: "" (counts), "percent", "probability", "density". @default "" */
  histnorm?: "" | "percent" | "probability" | "density" | "probability density";
  /** Opacity, useful for overlaid histograms. @default 1 */
  opacity?: number;
}

/**
 * A histogram trace of raw values (binned by Plotly), e.g. token frequencies or mask ratios.
 *
 * @param values The samples.
 * @param options Name, bin count, normalisation, opacity.
 * @returns A Plotly histogram trace.
 * @throws TypeError when a value is not a number; RangeError when nbins < 1.
 */
export function histogramTrace(
  values: ArrayLike<number>,
  options: HistogramTraceOptions = {},
): PlotlyTrace {
  const trace: PlotlyTrace = { type: "histogram", x: checkNumbers("histogram", values) };
  if (options.name !== undefined) trace.name = options.name;
  if (options.nbins !== undefined) {
    if (!(options.nbins >= 1)) {
      throw new RangeError(`Cannot bin a histogram into ${options.nbins} bins`);
    }
    trace.nbinsx = options.nbins;
  }
  if (options.histnorm !== undefined) trace.histnorm = options.histnorm;
  if (options.opacity !== undefined) trace.opacity = options.opacity;
  return trace;
}

/** Options for {@linkcode barTrace}. */
export interface BarTraceOptions {
  /** Legend name. */
  name?: string;
  /** Symmetric error bars, one per bar. */
  yErr?: ArrayLike<number>;
  /** Bar colour (CSS). */
  color?: string;
  /** Bar value labels: "auto" prints the y values on the bars. */
  text?: string[] | "auto";
}

/**
 * A bar trace, e.g. top-1 accuracy per method.
 *
 * @param x Categories (strings) or positions.
 * @param y Bar heights, same length as x.
 * @param options Name, error bars, colour, labels.
 * @returns A Plotly bar trace.
 * @throws TypeError when a height is not a number; RangeError when lengths differ.
 */
export function barTrace(
  x: Array<string | number>,
  y: ArrayLike<number>,
  options: BarTraceOptions = {},
): PlotlyTrace {
  checkSameLength(`bar "${options.name ?? ""}"`, x, y);
  const yy = checkNumbers("bar y", y);
  const trace: PlotlyTrace = { type: "bar", x: [...x], y: yy };
  if (options.name !== undefined) trace.name = options.name;
  if (options.color !== undefined) trace.marker = { color: options.color };
  if (options.yErr !== undefined) {
    checkSameLength("bar error bars", x, options.yErr);
    trace.error_y = { type: "data", array: checkNumbers("bar yErr", options.yErr), visible: true };
  }
  if (options.text === "auto") {
    trace.text = yy.map((v) => String(Number(v.toPrecision(4))));
    trace.textposition = "auto";
  } else if (options.text !== undefined) {
    checkSameLength("bar labels", x, options.text);
    trace.text = [...options.text];
  }
  return trace;
}

/** Options for {@linkcode figure}. */
export interface FigureOptions {
  /** Figure title. */
  title?: string;
  /** X axis title. */
  xTitle?: string;
  /** Y axis title. */
  yTitle?: string;
  /** Logarithmic x axis. @default false */
  logX?: boolean;
  /** Logarithmic y axis. @default false */
  logY?: boolean;
  /** Width in px for static export (the notebook view fills the cell width). @default 700 */
  width?: number;
  /** Height in px. @default 450 */
  height?: number;
  /** How bars/histograms share an axis: "group", "overlay", "stack". */
  barmode?: "group" | "overlay" | "stack";
  /** Extra layout attributes merged last (top-level keys replace). */
  layout?: PlotlyLayout;
}

/**
 * Builds a {@linkcode Figure} from traces and common layout options.
 *
 * @param traces The traces ({@linkcode lineTrace}, {@linkcode scatterTrace}, ...).
 * @param options Titles, log axes, size and extra layout.
 * @returns A figure that displays itself in Jupyter and exports to SVG/PNG/HTML.
 * @throws TypeError when a trace has no type; RangeError for a non-positive size.
 * @example
 * ```ts
 * import { figure, lineTrace } from "@lib/report";
 * const fig = figure([lineTrace([1, 10, 100], [2.1, 1.4, 0.9], { name: "loss" })], {
 *   title: "MTM loss", xTitle: "step", yTitle: "loss", logX: true,
 * });
 * console.log(String(fig));
 * ```
 */
export function figure(traces: PlotlyTrace[], options: FigureOptions = {}): Figure {
  const axis = (title: string | undefined, log: boolean | undefined) => {
    const a: Record<string, unknown> = {};
    if (title !== undefined) a.title = { text: title };
    if (log) a.type = "log";
    return a;
  };
  const layout: PlotlyLayout = {
    xaxis: axis(options.xTitle, options.logX),
    yaxis: axis(options.yTitle, options.logY),
    width: options.width ?? DEFAULT_FIGURE_SIZE.width,
    height: options.height ?? DEFAULT_FIGURE_SIZE.height,
    template: "plotly_white",
  };
  if (options.title !== undefined) layout.title = { text: options.title };
  if (options.barmode !== undefined) layout.barmode = options.barmode;
  Object.assign(layout, options.layout ?? {});
  return new Figure({ data: traces, layout });
}

/** How the text/html of a figure carries plotly.js. */
export type PlotlyEmbedding = "every" | "once";

let embedding: PlotlyEmbedding = "once";
let embedded = false;
let divCounter = 0;

/**
 * Chooses how figures displayed in a notebook carry plotly.js in their text/html:
 * - "once" (default): the first figure displayed in this process inlines plotly.js (4.8 MB),
 *   later ones wait for `window.Plotly` (outputs share one page in JupyterLab, Notebook and VS
 *   Code). Keeps notebooks small. If that first output is cleared and the page reloaded,
 *   call `setPlotlyEmbedding("once")` again and re-run a figure cell.
 * - "every": every figure inlines plotly.js (self-contained, 4.8 MB per figure).
 * Calling it also resets the "already inlined" state.
 *
 * @param mode The embedding mode.
 * @throws TypeError for an unknown mode.
 */
export function setPlotlyEmbedding(mode: PlotlyEmbedding): void {
  if (mode !== "every" && mode !== "once") {
    throw new TypeError(`Unknown plotly embedding "${mode}": expected "every" or "once"`);
  }
  embedding = mode;
  embedded = false;
}

/** Options for {@linkcode Figure.toHtml}. */
export interface FigureHtmlOptions {
  /**
   * Whether the fragment carries plotly.js: true inlines it (guarded: loaded once per page),
   * false expects `window.Plotly` from elsewhere in the page (waits up to 60 s for it).
   * @default true
   */
  includePlotlyJs?: boolean;
  /** The id of the container div. @default a fresh "seitpp-fig-N" */
  divId?: string;
}

function jsonForScript(value: unknown): string {
  // Safe inside <script>: no "</script>", no HTML comment openers, no U+2028/9 surprises.
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e")
    .replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/**
 * A Plotly figure: a validated {@linkcode FigureSpec} with stable trace uids, shown in Jupyter
 * as `application/vnd.plotly.v1+json` + `text/html` (plotly.js inlined, no CDN) + `text/plain`,
 * and as a text summary elsewhere.
 */
export class Figure {
  /** The figure's Plotly JSON (traces with uids "t0", "t1", ... unless given). */
  readonly spec: FigureSpec;

  /**
   * Wraps a Plotly spec. The spec is deep-copied through JSON (so NaN becomes null: a gap).
   *
   * @param spec Traces and layout.
   * @throws TypeError when `data` is not an array or a trace has no string `type`.
   */
  constructor(spec: FigureSpec) {
    if (spec === null || typeof spec !== "object" || !Array.isArray(spec.data)) {
      throw new TypeError("Cannot build a figure: spec.data must be an array of traces");
    }
    const copy = JSON.parse(JSON.stringify({ data: spec.data, layout: spec.layout ?? {} }));
    copy.data.forEach((t: PlotlyTrace, i: number) => {
      if (t === null || typeof t !== "object" || typeof t.type !== "string") {
        throw new TypeError(`Cannot build a figure: trace ${i} has no string "type"`);
      }
      if (t.uid === undefined) t.uid = `t${i}`;
    });
    this.spec = copy;
  }

  /** Static-export width in px (layout.width or 700). */
  get width(): number {
    const w = this.spec.layout.width;
    return typeof w === "number" ? w : DEFAULT_FIGURE_SIZE.width;
  }

  /** Height in px (layout.height or 450). */
  get height(): number {
    const h = this.spec.layout.height;
    return typeof h === "number" ? h : DEFAULT_FIGURE_SIZE.height;
  }

  /**
   * The spec as JSON (for `JSON.stringify` and the plotly mime type).
   *
   * @returns The plain spec.
   */
  toJSON(): FigureSpec {
    return this.spec;
  }

  /**
   * An HTML fragment that draws the figure: a div plus scripts (plotly.js optionally inlined).
   * The notebook view is responsive (fills the cell width, keeps the height).
   *
   * @param options Whether to inline plotly.js, container id.
   * @returns HTML text.
   */
  toHtml(options: FigureHtmlOptions = {}): string {
    const id = options.divId ?? `seitpp-fig-${++divCounter}`;
    const layout = { ...this.spec.layout };
    delete layout.width; // fill the cell width
    const spec = { data: this.spec.data, layout };
    const lib = options.includePlotlyJs ?? true ? plotlyJsScriptTag() : "";
    const draw = `<script type="text/javascript">(function () {
  var spec = ${jsonForScript(spec)};
  var tries = 0;
  function draw() {
    var el = document.getElementById(${jsonForScript(id)});
    if (!el) return;
    if (window.Plotly) {
      window.Plotly.newPlot(el, spec.data, spec.layout, { responsive: true, displaylogo: false });
    } else if (++tries < 1200) {
      setTimeout(draw, 50);
    } else {
      el.textContent = "plotly.js is not loaded in this page: re-run a figure cell after " +
        "setPlotlyEmbedding(\\"once\\") or use setPlotlyEmbedding(\\"every\\").";
    }
  }
  draw();
})();</script>`;
    return `<div id="${
      escapeHtml(id)
    }" class="seitpp-figure" style="width:100%;height:${this.height}px;"></div>\n` +
      lib + "\n" + draw;
  }

  /**
   * The Jupyter mimebundle. With the "once" embedding (see {@linkcode setPlotlyEmbedding}) only
   * the first figure of the process inlines plotly.js.
   *
   * @returns `application/vnd.plotly.v1+json`, `text/html`, `text/plain`.
   */
  [$display](): MimeBundle {
    const include = embedding === "every" || !embedded;
    embedded = true;
    return {
      "application/vnd.plotly.v1+json": this.spec,
      "text/html": this.toHtml({ includePlotlyJs: include }),
      "text/plain": this.toString(),
    };
  }

  /**
   * A text summary: title, axes and one line per trace with its size and value range.
   *
   * @returns Multi-line text.
   */
  toString(): string {
    const layout = this.spec.layout;
    const title = textOf(layout.title);
    const axes: string[] = [];
    for (const ax of ["xaxis", "yaxis"] as const) {
      const a = layout[ax] as Record<string, unknown> | undefined;
      if (!a) continue;
      const t = textOf(a.title);
      const log = a.type === "log" ? " (log)" : "";
      if (t || log) axes.push(`${ax[0]}: ${t ?? ""}${log}`);
    }
    const head = `Figure${title ? ` "${title}"` : ""}` +
      (axes.length ? ` [${axes.join(", ")}]` : "");
    const lines = this.spec.data.map((t) => "  " + traceSummary(t));
    return [head, ...lines].join("\n");
  }
}

function textOf(title: unknown): string | undefined {
  if (typeof title === "string") return title;
  if (
    title && typeof title === "object" && typeof (title as { text?: unknown }).text === "string"
  ) {
    return (title as { text: string }).text;
  }
  return undefined;
}

function range(values: unknown): string {
  if (!Array.isArray(values) || values.length === 0) return "";
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (typeof v === "number" && Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo > hi) return "";
  const f = (v: number) => String(Number(v.toPrecision(4)));
  return `${f(lo)}..${f(hi)}`;
}

function traceSummary(t: PlotlyTrace): string {
  const name = t.name !== undefined ? ` "${t.name}"` : "";
  if (t.type === "heatmap" && Array.isArray(t.z)) {
    const z = t.z as number[][];
    return `heatmap${name} ${z.length}x${z[0]?.length ?? 0}, z ${range(z.flat())}`;
  }
  if (t.type === "histogram") {
    return `histogram${name} ${(t.x as unknown[] | undefined)?.length ?? 0} values, ${range(t.x)}`;
  }
  const n = Array.isArray(t.y) ? t.y.length : 0;
  const mode = typeof t.mode === "string" ? ` ${t.mode}` : "";
  const xr = range(t.x), yr = range(t.y);
  return `${t.type}${mode}${name} ${n} points` + (xr ? `, x ${xr}` : "") + (yr ? `, y ${yr}` : "");
}
