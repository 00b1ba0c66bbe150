/**
 * A static HTML page of an executed notebook (sources and outputs, scripts kept, so Plotly
 * figures draw), for reading results without Jupyter and for checking outputs in a browser.
 *
 * @module
 */

import { escapeHtml } from "./jupyter.ts";
import { cellSource, type Notebook } from "./notebooks.ts";

function inline(text: string): string {
  return escapeHtml(text)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<b>$1</b>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<i>$2</i>");
}

/**
 * A small markdown subset to HTML: ATX headings, paragraphs, "-"/"*" lists, fenced code,
 * inline code, bold and italics. Everything else is shown as text (escaped).
 *
 * @param md Markdown text.
 * @returns HTML text.
 */
export function markdownToHtml(md: string): string {
  const out: string[] = [];
  let para: string[] = [];
  let list: string[] = [];
  let fence: string[] | undefined;
  const flush = () => {
    if (para.length) out.push(`<p>${inline(para.join(" "))}</p>`);
    if (list.length) out.push(`<ul>${list.map((l) => `<li>${inline(l)}</li>`).join("")}</ul>`);
    para = [];
    list = [];
  };
  for (const line of md.split("\n")) {
    if (fence) {
      if (line.trim().startsWith("```")) {
        out.push(`<pre><code>${escapeHtml(fence.join("\n"))}</code></pre>`);
        fence = undefined;
      } else fence.push(line);
      continue;
    }
    if (line.trim().startsWith("```")) {
      flush();
      fence = [];
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    const li = /^\s*[-*]\s+(.*)$/.exec(line);
    if (h) {
      flush();
      out.push(`<h${h[1].length}>${inline(h[2])}</h${h[1].length}>`);
    } else if (li) {
      if (para.length) flush();
      list.push(li[1]);
    } else if (line.trim() === "") {
      flush();
    } else if (list.length && /^\s+/.test(line)) {
      list[list.length - 1] += " " + line.trim();
    } else {
      if (list.length) flush();
      para.push(line.trim());
    }
  }
  if (fence) out.push(`<pre><code>${escapeHtml(fence.join("\n"))}</code></pre>`);
  flush();
  return out.join("\n");
}

function outputHtml(o: Record<string, unknown>): string {
  const type = o.output_type;
  if (type === "stream") {
    return `<pre class="stream ${o.name === "stderr" ? "stderr" : "stdout"}">${
      escapeHtml(String(o.text ?? ""))
    }</pre>`;
  }
  if (type === "error") {
    const tb = Array.isArray(o.traceback) ? (o.traceback as string[]).join("\n") : "";
    // deno-lint-ignore no-control-regex
    const clean = tb.replace(/\x1b\[[0-9;]*m/g, "");
    return `<pre class="error">${escapeHtml(`${o.ename}: ${o.evalue}\n${clean}`)}</pre>`;
  }
  const data = (o.data ?? {}) as Record<string, unknown>;
  if (typeof data["text/html"] === "string") {
    return `<div class="output html">${data["text/html"]}</div>`;
  }
  if (typeof data["image/png"] === "string") {
    return `<div class="output"><img src="data:image/png;base64,${data["image/png"]}"/></div>`;
  }
  if (typeof data["image/svg+xml"] === "string") {
    return `<div class="output">${data["image/svg+xml"]}</div>`;
  }
  const text = data["text/markdown"] ?? data["text/plain"];
  if (typeof text === "string") return `<pre class="output">${escapeHtml(text)}</pre>`;
  return "";
}

/**
 * Renders an (executed) notebook as one HTML page, outputs in order, HTML outputs verbatim
 * (their scripts run, as in Jupyter: the first Plotly figure carries plotly.js for the rest).
 *
 * @param nb The notebook.
 * @param options Page title.
 * @returns A complete HTML document.
 */
export function notebookHtml(nb: Notebook, options: { title?: string } = {}): string {
  const title = options.title ?? "notebook";
  const parts: string[] = [];
  for (const cell of nb.cells) {
    const src = cellSource(cell);
    if (cell.cell_type === "markdown") {
      parts.push(`<section class="markdown">${markdownToHtml(src)}</section>`);
    } else if (cell.cell_type === "code") {
      const count = cell.execution_count ?? " ";
      const outs = (cell.outputs ?? []).map(outputHtml).join("\n");
      parts.push(
        `<section class="code"><pre class="source"><span class="count">[${count}]</span> ${
          escapeHtml(src)
        }</pre>\n${outs}</section>`,
      );
    }
  }
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: sans-serif; max-width: 1000px; margin: 1.5em auto; padding: 0 1em; color: #222; }
pre { white-space: pre-wrap; margin: 0.4em 0; }
pre.source { background: #f5f5f5; padding: 0.5em; border-left: 3px solid #4c78a8; }
pre.stderr { background: #fff3f3; }
pre.error { background: #fdd; padding: 0.5em; }
.count { color: #888; }
section { margin: 1em 0; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; }
</style>
</head>
<body>
${parts.join("\n")}
</body>
</html>
`;
}
