/**
 * Standalone HTML reports: several figures, tables, images and text sections in one file with
 * plotly.js inlined once (opens offline, no CDN).
 *
 * @module
 */

import { Figure } from "./figure.ts";
import { ImageView } from "./image.ts";
import { escapeHtml } from "./jupyter.ts";
import { plotlyJsScriptTag } from "./plotly_js.ts";
import { TableView } from "./table.ts";

/** A free-text section of a report: a heading and/or paragraphs (plain text, escaped). */
export interface TextSection {
  /** Section heading. */
  heading?: string;
  /** Paragraphs; blank lines separate paragraphs. */
  text?: string;
}

/** One item of a report. */
export type ReportItem = Figure | TableView | ImageView | TextSection;

/** Options for {@linkcode htmlReport}. */
export interface HtmlReportOptions {
  /** Page title and first heading. */
  title: string;
  /** A line under the title (e.g. date, commit, budget). */
  subtitle?: string;
}

/**
 * Builds one self-contained HTML page from figures, tables, images and text.
 *
 * @param items The report's content, in order.
 * @param options Title and subtitle.
 * @returns A complete HTML document (includes plotly.js when there is a figure, ~4.8 MB).
 * @throws TypeError for an item of another kind.
 * @example
 * ```ts ignore
 * import { figure, htmlReport, lineTrace } from "@lib/report";
 * const html = htmlReport([{ heading: "Loss" }, figure([lineTrace([1, 2], [2, 1])])], {
 *   title: "Pre-training",
 * });
 * await Deno.writeTextFile("out/report.html", html);
 * ```
 */
export function htmlReport(items: readonly ReportItem[], options: HtmlReportOptions): string {
  const body: string[] = [];
  let figures = 0;
  items.forEach((item, i) => {
    if (item instanceof Figure) {
      body.push(
        `<section class="figure">${
          item.toHtml({ includePlotlyJs: false, divId: `figure-${++figures}` })
        }</section>`,
      );
    } else if (item instanceof TableView) {
      body.push(`<section class="table">${item.toHtml()}</section>`);
    } else if (item instanceof ImageView) {
      body.push(`<section class="image">${item.toHtml()}</section>`);
    } else if (item !== null && typeof item === "object" && ("heading" in item || "text" in item)) {
      const parts: string[] = [];
      if (item.heading) parts.push(`<h2>${escapeHtml(item.heading)}</h2>`);
      for (const p of (item.text ?? "").split(/\n\s*\n/)) {
        if (p.trim()) parts.push(`<p>${escapeHtml(p.trim())}</p>`);
      }
      body.push(`<section class="text">${parts.join("\n")}</section>`);
    } else {
      throw new TypeError(
        `Cannot add report item ${i}: expected a Figure, TableView, ImageView or text section`,
      );
    }
  });
  const lib = figures > 0 ? plotlyJsScriptTag() : "";
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(options.title)}</title>
<style>
body { font-family: sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; }
section { margin: 1.5em 0; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; }
.subtitle { color: #666; }
</style>
${lib}
</head>
<body>
<h1>${escapeHtml(options.title)}</h1>
${options.subtitle ? `<p class="subtitle">${escapeHtml(options.subtitle)}</p>` : ""}
${body.join("\n")}
</body>
</html>
`;
}
