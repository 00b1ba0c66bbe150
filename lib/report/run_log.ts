/**
 * Run folders (`config.json`, `log.jsonl`, `metrics.json`, as written by `@lib/train`'s
 * `RunLog`) loaded into arquero tables for notebooks and figures.
 *
 * @module
 */

import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { join } from "node:path";
import { type LogRecord, readRunLog } from "../train/mod.ts";
import { readJsonObject } from "../io/mod.ts";

/**
 * Builds a table from objects whose keys may differ (train rows, eval rows, ...): the columns
 * are the union of keys in first-seen order, missing values are null; nested objects and
 * arrays stay as values.
 *
 * @param rows Plain objects.
 * @returns A new arquero table.
 * @example
 * ```ts
 * import { rowsToTable } from "@lib/report";
 * const t = rowsToTable([{ step: 1, loss: 2 }, { step: 1, acc: 0.5 }]);
 * console.log(t.columnNames()); // ["step", "loss", "acc"]
 * ```
 */
export function rowsToTable(rows: readonly Record<string, unknown>[]): ColumnTable {
  const names: string[] = [];
  const seen = new Set<string>();
  for (const r of rows) {
    for (const k of Object.keys(r)) {
      if (!seen.has(k)) seen.add(k), names.push(k);
    }
  }
  const cols: Record<string, unknown[]> = {};
  for (const n of names) cols[n] = rows.map((r) => r[n] ?? null);
  return aq.table(cols);
}

/**
 * The records of one type from a run log as a table, e.g. the "step" records for a loss
 * curve (the `type` column is dropped when filtering).
 *
 * @param records Log records (from `readRunLog` of `@lib/train`, or {@linkcode RunRecord.records}).
 * @param type Keep only records with this `type`; all records when absent.
 * @returns A new arquero table.
 */
export function recordsTable(
  records: readonly LogRecord[],
  type?: string,
): ColumnTable {
  if (type === undefined) return rowsToTable(records);
  return rowsToTable(records.filter((r) => r.type === type).map(({ type: _t, ...rest }) => rest));
}

/** A run folder loaded for analysis. */
export interface RunRecord {
  /** The folder. */
  dir: string;
  /** config.json (the resolved config), or null when absent. */
  config: Record<string, unknown> | null;
  /** The records of log.jsonl, in order (empty when absent). */
  records: LogRecord[];
  /** log.jsonl as one table, all record types, columns unioned (empty when absent). */
  log: ColumnTable;
  /** metrics.json (final metrics), or null when absent. */
  metrics: Record<string, unknown> | null;
}

/**
 * Loads a run folder: `config.json`, `log.jsonl` and `metrics.json`, each optional, but at least
 * one must exist.
 *
 * @param dir The run folder.
 * @returns The run's config, log table and final metrics.
 * @throws Deno.errors.NotFound when the folder has none of the three files; SyntaxError naming
 *   the file (and line) for bad JSON.
 */
export async function loadRun(dir: string): Promise<RunRecord> {
  const config = await readJsonObject(join(dir, "config.json"));
  const metrics = await readJsonObject(join(dir, "metrics.json"));
  let records: LogRecord[] = [];
  let hasLog = true;
  try {
    records = await readRunLog(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    hasLog = false;
  }
  if (!config && !metrics && !hasLog) {
    throw new Deno.errors.NotFound(
      `Cannot load run "${dir}": none of config.json, log.jsonl, metrics.json exists`,
    );
  }
  return { dir, config, records, log: rowsToTable(records), metrics };
}

/**
 * Loads several run folders and stacks their logs into one table with a `run` column (the
 * folder's last path component, or the given label).
 *
 * @param runs Folders, or `{ dir, label }` pairs.
 * @param type Keep only records of this type (e.g. "step"), dropping the `type` column.
 * @returns The stacked log table (columns: run, then the union of log columns).
 * @throws As {@linkcode loadRun}.
 */
export async function loadRunLogs(
  runs: ReadonlyArray<string | { dir: string; label: string }>,
  type?: string,
): Promise<ColumnTable> {
  const rows: Record<string, unknown>[] = [];
  for (const r of runs) {
    const dir = typeof r === "string" ? r : r.dir;
    const label = typeof r === "string" ? dir.replace(/\/+$/, "").split("/").pop() ?? dir : r.label;
    const rec = await loadRun(dir);
    for (const r of rec.records) {
      if (type !== undefined && r.type !== type) continue;
      const { type: t, ...rest } = r;
      rows.push(type === undefined ? { run: label, type: t, ...rest } : { run: label, ...rest });
    }
  }
  return rowsToTable(rows);
}
