/**
 * Fixed 2-D sine-cosine position tables (the MAE construction), as TokenAdapt's
 * `de_pos_embedding` / `en_pos_embedding` hold them.
 *
 * @module
 */

/**
 * The 2-D sin-cos table for a `gridH x gridW` grid, positions in row-major order
 * (`h * gridW + w`). Channel layout for width D (a multiple of 4), with `q = D / 4` and
 * `omega_k = 10000^(-k / q)`: `[sin(w omega), cos(w omega), sin(h omega), cos(h omega)]`,
 * each block q wide: the first half of the channels encodes the column, the second the row.
 * Evaluated in double precision and rounded to float32 (the official tables agree to 1.9e-6:
 * they were evaluated in float32).
 *
 * @param gridH rows
 * @param gridW columns
 * @param dim channels D
 * @returns `[gridH * gridW, D]` float32, row-major
 * @throws {RangeError} for non-positive sizes or D not a multiple of 4
 *
 * @example
 * ```ts
 * import { sinCosTable2d } from "@lib/adapters";
 * const t = sinCosTable2d(2, 3, 8); // position (h=1, w=2) is row 5
 * console.assert(Math.abs(t[5 * 8 + 0] - Math.sin(2)) < 1e-7 && Math.abs(t[5 * 8 + 4] - Math.sin(1)) < 1e-7);
 * ```
 */
export function sinCosTable2d(gridH: number, gridW: number, dim: number): Float32Array {
  if (![gridH, gridW, dim].every((v) => Number.isInteger(v) && v >= 1) || dim % 4 !== 0) {
    throw new RangeError(
      `Cannot build a sin-cos table for a ${gridH}x${gridW} grid of width ${dim}: ` +
        "expected positive integers and a width divisible by 4",
    );
  }
  const q = dim / 4;
  const omega = Array.from({ length: q }, (_, k) => 1 / Math.pow(10000, k / q));
  const out = new Float32Array(gridH * gridW * dim);
  for (let h = 0; h < gridH; h++) {
    for (let w = 0; w < gridW; w++) {
      const o = (h * gridW + w) * dim;
      for (let k = 0; k < q; k++) {
        out[o + k] = Math.sin(w * omega[k]);
        out[o + q + k] = Math.cos(w * omega[k]);
        out[o + 2 * q + k] = Math.sin(h * omega[k]);
        out[o + 3 * q + k] = Math.cos(h * omega[k]);
      }
    }
  }
  return out;
}
