/**
 * Locating and inlining the pinned plotly.js bundle (`plotly.js-dist-min` from the import map,
 * read from node_modules: no CDN, no network).
 *
 * @module
 */

import { fileURLToPath } from "node:url";

let cachedSource: string | undefined;

/**
 * The file path of the pinned `plotly.min.js` in node_modules.
 *
 * @returns Absolute path of plotly.min.js.
 * @throws Error when the package cannot be resolved to a local file (run `deno install`, and
 *   keep `"nodeModulesDir": "auto"` in deno.json).
 */
export function plotlyJsPath(): string {
  let url: string;
  try {
    url = import.meta.resolve("plotly.js-dist-min");
  } catch (e) {
    throw new Error(`Cannot resolve "plotly.js-dist-min" from the import map: ${e}`);
  }
  if (!url.startsWith("file:")) {
    throw new Error(
      `Cannot find plotly.js on disk: "plotly.js-dist-min" resolved to ${url}; ` +
        `run \`deno install\` with "nodeModulesDir": "auto" in deno.json`,
    );
  }
  return fileURLToPath(url);
}

/**
 * The source text of the pinned plotly.js (about 4.8 MB), read once and cached.
 *
 * @returns JavaScript source that defines `window.Plotly` in a browser.
 * @throws Error as {@linkcode plotlyJsPath}, or when the file cannot be read.
 */
export function plotlyJsSource(): string {
  if (cachedSource === undefined) cachedSource = Deno.readTextFileSync(plotlyJsPath());
  return cachedSource;
}

/**
 * The version of the pinned plotly.js, read from its banner.
 *
 * @returns A version string such as "3.7.0".
 * @throws SyntaxError when the banner has no version.
 */
export function plotlyJsVersion(): string {
  const m = /plotly\.js v(\d+\.\d+\.\d+)/.exec(plotlyJsSource().slice(0, 200));
  if (!m) throw new SyntaxError(`Cannot read the plotly.js version from "${plotlyJsPath()}"`);
  return m[1];
}

/**
 * An inline `<script>` element holding plotly.js, guarded so that a page that already has
 * `window.Plotly` does not load it twice, and shielded from AMD/CommonJS loaders (classic
 * Jupyter's require.js) so it always sets `window.Plotly`.
 *
 * @returns HTML text of one `<script>` element (about 4.8 MB).
 */
export function plotlyJsScriptTag(): string {
  const src = plotlyJsSource().replace(/<\/script/gi, "<\\/script");
  return `<script type="text/javascript">if (!window.Plotly) { (function (module, define) {\n` +
    `${src}\n}).call(window, undefined, undefined); }</script>`;
}
