/**
 * A 2-D grid of numbers (a token grid, a confusion matrix, a mask) as an arquero table: one
 * row per grid row, one column per grid column, for `tableView`.
 *
 * @module
 */

import * as aq from "arquero";
import type { ColumnTable } from "arquero";

/** Options for {@linkcode gridTable}. */
export interface GridTableOptions {
  /** Name of the first column, which holds the row index; null leaves it out. @default "row" */
  rowColumn?: string | null;
  /** Prefix of the value columns' names (`c0`, `c1`, ...). @default "c" */
  columnPrefix?: string;
}

/**
 * Lays out row-major values as a table of `values.length / width` rows and `width` columns.
 *
 * @param values Row-major numbers, e.g. one record's codes.
 * @param width Values per row (the grid side n).
 * @param options Row-index column and column names.
 * @returns A new arquero table.
 * @throws RangeError when width is not a positive integer dividing the value count.
 * @example
 * ```ts
 * import { gridTable } from "@lib/report";
 * const t = gridTable([1, 2, 3, 4], 2);
 * console.log(t.columnNames()); // ["row", "c0", "c1"]
 * ```
 */
export function gridTable(
  values: ArrayLike<number>,
  width: number,
  options: GridTableOptions = {},
): ColumnTable {
  if (!(Number.isInteger(width) && width >= 1 && values.length % width === 0)) {
    throw new RangeError(`Cannot lay out ${values.length} values in rows of ${width}`);
  }
  const rows = values.length / width;
  const prefix = options.columnPrefix ?? "c";
  const rowColumn = options.rowColumn === undefined ? "row" : options.rowColumn;
  const cols: Record<string, number[]> = {};
  if (rowColumn !== null) cols[rowColumn] = Array.from({ length: rows }, (_, r) => r);
  for (let c = 0; c < width; c++) {
    cols[`${prefix}${c}`] = Array.from({ length: rows }, (_, r) => Number(values[r * width + c]));
  }
  return aq.table(cols);
}
