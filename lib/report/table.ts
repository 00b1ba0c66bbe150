/**
 * arquero tables in notebooks (text/html, text/markdown, text/plain) and on disk (CSV +
 * markdown).
 *
 * @module
 */

import type { ColumnTable } from "arquero";
import { $display, escapeHtml, type MimeBundle } from "./jupyter.ts";

/** Options for {@linkcode tableView}. */
export interface TableViewOptions {
  /** Rows shown (the rest are counted in a footer). @default 50 */
  limit?: number;
  /** Fractional digits of numbers >= 1, significant digits of smaller ones. @default 4 */
  maxdigits?: number;
  /** A caption shown above the table. */
  caption?: string;
}

/**
 * A displayable view of an arquero table: HTML and markdown in Jupyter, aligned text elsewhere.
 */
export class TableView {
  /** The table shown. */
  readonly table: ColumnTable;
  /** The options in force. */
  readonly options: Required<Omit<TableViewOptions, "caption">> & { caption?: string };

  /**
   * @param table An arquero table.
   * @param options Row limit, number digits, caption.
   * @throws RangeError when limit < 0 or maxdigits is outside 0..20.
   */
  constructor(table: ColumnTable, options: TableViewOptions = {}) {
    const limit = options.limit ?? 50;
    const maxdigits = options.maxdigits ?? 4;
    if (!(limit >= 0)) throw new RangeError(`Cannot show ${limit} table rows`);
    if (!(maxdigits >= 0 && maxdigits <= 20)) {
      throw new RangeError(`Cannot show numbers with ${maxdigits} fractional digits (0..20)`);
    }
    this.table = table;
    this.options = { limit, maxdigits, caption: options.caption };
  }

  #footer(): string {
    const n = this.table.numRows();
    return n > this.options.limit ? `${n - this.options.limit} more rows (${n} in all)` : "";
  }

  /**
   * The table as an HTML fragment (arquero's toHTML) with caption and a "more rows" footer.
   *
   * @returns HTML text.
   */
  toHtml(): string {
    const { limit, maxdigits, caption } = this.options;
    const parts: string[] = [];
    if (caption) parts.push(`<p><b>${escapeHtml(caption)}</b></p>`);
    parts.push(this.table.toHTML({ limit, maxdigits }));
    const footer = this.#footer();
    if (footer) parts.push(`<p><i>${escapeHtml(footer)}</i></p>`);
    return parts.join("\n");
  }

  /**
   * The table as GitHub markdown (arquero's toMarkdown) with caption and footer.
   *
   * @returns Markdown text.
   */
  toMarkdown(): string {
    const { limit, maxdigits, caption } = this.options;
    const parts: string[] = [];
    if (caption) parts.push(`**${caption}**\n`);
    parts.push(this.table.toMarkdown({ limit, maxdigits }).trimEnd());
    const footer = this.#footer();
    if (footer) parts.push(`\n_${footer}_`);
    return parts.join("\n");
  }

  /**
   * The table as aligned plain text (numbers right-aligned).
   *
   * @returns Multi-line text.
   */
  toString(): string {
    const { limit, maxdigits, caption } = this.options;
    const names = this.table.columnNames();
    const rows = this.table.objects({ limit }) as Record<string, unknown>[];
    const cells = rows.map((r) => names.map((n) => formatCell(r[n], maxdigits)));
    const numeric = names.map((n) => rows.every((r) => r[n] == null || typeof r[n] === "number"));
    const widths = names.map((n, j) => Math.max(n.length, ...cells.map((c) => c[j].length)));
    const pad = (s: string, j: number) => numeric[j] ? s.padStart(widths[j]) : s.padEnd(widths[j]);
    const lines: string[] = [];
    if (caption) lines.push(caption);
    lines.push(names.map(pad).join("  ").trimEnd());
    lines.push(widths.map((w) => "-".repeat(w)).join("  "));
    for (const c of cells) lines.push(c.map(pad).join("  ").trimEnd());
    const footer = this.#footer();
    if (footer) lines.push(`... ${footer}`);
    return lines.join("\n");
  }

  /**
   * The Jupyter mimebundle.
   *
   * @returns `text/html`, `text/markdown`, `text/plain`.
   */
  [$display](): MimeBundle {
    return {
      "text/html": this.toHtml(),
      "text/markdown": this.toMarkdown(),
      "text/plain": this.toString(),
    };
  }
}

function formatCell(v: unknown, maxdigits: number): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    // Fixed digits for |v| >= 1, significant digits below (learning rates stay readable).
    return String(
      Number(Math.abs(v) >= 1 ? v.toFixed(maxdigits) : v.toPrecision(Math.max(1, maxdigits))),
    );
  }
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/**
 * Wraps an arquero table for display.
 *
 * @param table An arquero table.
 * @param options Row limit, number digits, caption.
 * @returns A {@linkcode TableView}.
 * @throws RangeError as the {@linkcode TableView} constructor.
 * @example
 * ```ts
 * import * as aq from "arquero";
 * import { tableView } from "@lib/report";
 * console.log(String(tableView(aq.table({ method: ["SeiT", "SeiT++"], acc: [74.0, 77.8] }))));
 * ```
 */
export function tableView(table: ColumnTable, options: TableViewOptions = {}): TableView {
  return new TableView(table, options);
}

/**
 * Writes a table as `<base>.csv` (all rows, full precision) and `<base>.md` (markdown, all
 * rows, `maxdigits` digits).
 *
 * @param table An arquero table.
 * @param base Output path without extension; the folder must exist.
 * @param options `maxdigits` for the markdown file (default 4).
 * @returns The two paths written.
 */
export async function saveTable(
  table: ColumnTable,
  base: string,
  options: { maxdigits?: number } = {},
): Promise<{ csv: string; md: string }> {
  const csv = `${base}.csv`, md = `${base}.md`;
  await Deno.writeTextFile(csv, table.toCSV());
  await Deno.writeTextFile(md, table.toMarkdown({ maxdigits: options.maxdigits ?? 4 }));
  return { csv, md };
}
