/**
 * A grid variant against its base grid: for each (arm, budget) cell with finished runs in
 * both, the difference of mean test top-1 (variant minus base) with Welch's t interval
 * (./intervals.ts), e.g. grid v2 with the sin-cos position-table start
 * (`results/grid-v2-sincos`) against grid v2 (`results/grid-v2`). Each component's effect
 * within the variant is {@linkcode effectsTable} on the variant's runs alone. And
 * {@linkcode variantMtmEffectsTable}: the base grid's MTM arms against the variant's
 * from-scratch baselines (an MTM fine-tuning starts from its pre-trained encoder, so a variant
 * that changes only the from-scratch start leaves those arms as they are).
 *
 * @module
 */

import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { METHOD_ARM_IDS } from "../train/mod.ts";
import type { GridRunRecord } from "./paper_figures.ts";
import { welchInterval } from "./intervals.ts";
import { EFFECTS } from "./effects.ts";
import {
  budgetsBySize,
  cellValues,
  cmp,
  effectNumbers,
  finishedTop1,
  intervalText,
  mean,
  meanText,
  signed,
  verdict,
} from "./_effects.ts";

/** Options of {@linkcode variantEffectsTable}. */
export interface VariantEffectsOptions {
  /** Confidence level of the intervals. @default {0.95} */
  level?: number;
}

function armRank(arm: string): number {
  const i = (METHOD_ARM_IDS as readonly string[]).indexOf(arm);
  return i < 0 ? METHOD_ARM_IDS.length : i;
}

/** The same budget id must name the same stored training set in both grids. */
function checkBudgets(base: readonly GridRunRecord[], variant: readonly GridRunRecord[]): void {
  const set = (r: GridRunRecord) => `${r.source}, ${r.records} records, ${r.storageBytes} bytes`;
  const seen = new Map(base.map((r) => [r.budget, set(r)]));
  for (const r of variant) {
    const b = seen.get(r.budget);
    if (b !== undefined && b !== set(r)) {
      throw new RangeError(
        `Cannot compare budget "${r.budget}" of the variant with the base: the base's runs ` +
          `train on ${b}, the variant's ${r.id} on ${set(r)}`,
      );
    }
  }
}

/**
 * A variant grid's effect against its base grid, per (arm, budget) cell with finished runs on
 * both sides: columns `arm`, `method`, `budget`, `storage_bytes`, `n_base`, `n_variant`,
 * `base_mean`, `variant_mean` (mean test top-1, %), `diff` (variant minus base, percentage
 * points), `ci_low`, `ci_high` (Welch's two-sided t interval of the difference; empty when a
 * side has one seed), `df` (Welch-Satterthwaite). Rows by arm (the method arms' order), then
 * stored bytes (largest first). Pre-training and unfinished runs do not count.
 *
 * @param baseRuns the base grid's loaded runs (`loadGridRuns`)
 * @param variantRuns the variant's loaded runs
 * @param options `level`
 * @returns an arquero table (no rows when no cell has finished runs in both)
 * @throws {RangeError} when a budget id names different stored training sets in the two grids
 *
 * @example
 * ```ts
 * import { type GridRunRecord, variantEffectsTable } from "@lib/report";
 * const run = (grid: string, seed: number, top1: number): GridRunRecord => ({
 *   grid, id: `ft-seit-b-s${seed}`, kind: "finetune", arm: "seit", method: "SeiT",
 *   augment: "seit", mtm: false, pretrain: null, budget: "b", source: "t", gridSide: 8,
 *   records: 10, storageBytes: 100, labelBytes: 20, seed, dir: "", finished: true, steps: 1,
 *   top1, top5: 1, testImages: 50, loss: [], evals: [],
 * });
 * const t = variantEffectsTable(
 *   [run("base", 0, 0.60), run("base", 1, 0.62)],
 *   [run("variant", 0, 0.70), run("variant", 1, 0.72)],
 * );
 * console.assert(Math.abs((t.get("diff", 0) as number) - 10) < 1e-9);
 * ```
 */
export function variantEffectsTable(
  baseRuns: readonly GridRunRecord[],
  variantRuns: readonly GridRunRecord[],
  options: VariantEffectsOptions = {},
): ColumnTable {
  const level = options.level ?? 0.95;
  const base = finishedTop1(baseRuns), variant = finishedTop1(variantRuns);
  checkBudgets(base, variant);
  const cells = new Map<string, GridRunRecord>();
  for (const r of variant) {
    const k = `${r.arm}\u0000${r.budget}`;
    if (!cells.has(k)) cells.set(k, r);
  }
  const bytesRank = new Map(budgetsBySize(variant).map(([b], i) => [b, i]));
  const order = [...cells.values()].sort((x, y) =>
    armRank(x.arm) - armRank(y.arm) || cmp(x.arm, y.arm) ||
    bytesRank.get(x.budget)! - bytesRank.get(y.budget)!
  );
  const rows: Record<string, unknown>[] = [];
  for (const cell of order) {
    const a = cellValues(base, cell.arm, cell.budget);
    const b = cellValues(variant, cell.arm, cell.budget);
    if (a.length === 0) continue;
    const ci = welchInterval(a, b, level);
    rows.push({
      arm: cell.arm,
      method: cell.method,
      budget: cell.budget,
      storage_bytes: cell.storageBytes,
      n_base: a.length,
      n_variant: b.length,
      base_mean: mean(a),
      variant_mean: mean(b),
      diff: ci.estimate,
      ci_low: ci.low,
      ci_high: ci.high,
      df: ci.df,
    });
  }
  return rows.length ? aq.from(rows) : aq.table({ arm: [] });
}

/**
 * The variant's effects for reading: arm ("method (id)"), budget, both means as
 * "xx.xx (n=k)", the difference "+x.xx" (variant minus base), its interval "[low, high]"
 * ("(one seed)" without one), and the verdict of {@linkcode effectsDisplayTable}: "helps" /
 * "hurts" where the interval excludes 0 (the variant is above / below the base), "not
 * resolved" where it holds 0.
 * @param table {@linkcode variantEffectsTable}'s table
 * @returns an arquero table of strings
 */
export function variantEffectsDisplayTable(table: ColumnTable): ColumnTable {
  const rows = (table.objects() as Record<string, unknown>[]).map((r) => ({
    arm: `${r.method} (${r.arm})`,
    budget: r.budget,
    "base mean (n)": meanText(r.base_mean, r.n_base),
    "variant mean (n)": meanText(r.variant_mean, r.n_variant),
    "difference (points)": signed(r.diff as number),
    "95% CI (Welch t)": intervalText(r.ci_low, r.ci_high),
    verdict: verdict(r.ci_low, r.ci_high),
  }));
  return rows.length ? aq.from(rows) : aq.table({ arm: [] });
}

/**
 * The base grid's MTM arms against the variant's from-scratch baseline arms: every effect of
 * `EFFECTS` (./effects.ts) whose arm starts from an MTM pre-training and whose baseline does
 * not, with the arm's runs taken from the base grid and the baseline's from the variant, on
 * every budget where both have finished runs. An MTM fine-tuning starts from its pre-trained
 * encoder (the position table included), not from the classifier's from-scratch init, so
 * where the variant changes only that init (e.g. `results/grid-v2-sincos`: the sin-cos
 * position table) its MTM arms would be the base's, and this is MTM's effect measured
 * against a baseline with the variant's start. Columns as `effectsTable`'s without the
 * paper's: `effect`, `label`, `budget`, `storage_bytes`, `arm`, `baseline`, `n_arm`,
 * `n_baseline`, `arm_mean` (base), `baseline_mean` (variant), `diff` (arm minus baseline,
 * points), `ci_low`, `ci_high` (Welch's t interval; empty when a side has one seed), `df`.
 * Rows by effect, then stored bytes (largest first).
 *
 * @param baseRuns the base grid's loaded runs (`loadGridRuns`)
 * @param variantRuns the variant's loaded runs
 * @param options `level`
 * @returns an arquero table (no rows when no such pair has finished runs)
 * @throws {RangeError} when a budget id names different stored training sets in the two grids
 *
 * @example
 * ```ts
 * import { type GridRunRecord, variantMtmEffectsTable } from "@lib/report";
 * type Arm = GridRunRecord["arm"];
 * const run = (arm: Arm, mtm: boolean, seed: number, top1: number): GridRunRecord => ({
 *   grid: "g", id: `ft-${arm}-b-s${seed}`, kind: "finetune", arm, method: arm,
 *   augment: "seit", mtm, pretrain: mtm ? `pt-b-s${seed}` : null, budget: "b", source: "t",
 *   gridSide: 8, records: 10, storageBytes: 100, labelBytes: 20, seed, dir: "",
 *   finished: true, steps: 1, top1, top5: 1, testImages: 50, loss: [], evals: [],
 * });
 * const t = variantMtmEffectsTable(
 *   [run("seit_mtm", true, 0, 0.80), run("seit_mtm", true, 1, 0.82)],
 *   [run("seit", false, 0, 0.70), run("seit", false, 1, 0.72)],
 * );
 * console.assert(t.get("effect", 0) === "mtm");
 * console.assert(Math.abs((t.get("diff", 0) as number) - 10) < 1e-9);
 * ```
 */
export function variantMtmEffectsTable(
  baseRuns: readonly GridRunRecord[],
  variantRuns: readonly GridRunRecord[],
  options: VariantEffectsOptions = {},
): ColumnTable {
  const level = options.level ?? 0.95;
  const base = finishedTop1(baseRuns), variant = finishedTop1(variantRuns);
  checkBudgets(base, variant);
  const budgets = budgetsBySize([...base, ...variant]);
  const rows: Record<string, unknown>[] = [];
  for (const e of EFFECTS) {
    for (const [budget, bytes] of budgets) {
      const arm = base.filter((r) => r.arm === e.arm && r.budget === budget);
      const baseline = variant.filter((r) => r.arm === e.baseline && r.budget === budget);
      if (arm.length === 0 || baseline.length === 0) continue;
      if (!arm.every((r) => r.mtm) || baseline.some((r) => r.mtm)) continue;
      rows.push({
        effect: e.id,
        label: e.label,
        budget,
        storage_bytes: bytes,
        arm: e.arm,
        baseline: e.baseline,
        ...effectNumbers(
          cellValues(baseline, e.baseline, budget),
          cellValues(arm, e.arm, budget),
          level,
        ),
      });
    }
  }
  return rows.length ? aq.from(rows) : aq.table({ effect: [] });
}

/**
 * {@linkcode variantMtmEffectsTable}'s rows for reading: component, budget, each side's mean
 * "xx.xx (n=k)" (the arm's from the base, the baseline's from the variant), the difference
 * "+x.xx", its interval "[low, high]" ("(one seed)" without one) and the verdict ("helps" /
 * "hurts" / "not resolved").
 * @param table {@linkcode variantMtmEffectsTable}'s table
 * @returns an arquero table of strings
 */
export function variantMtmEffectsDisplayTable(table: ColumnTable): ColumnTable {
  const rows = (table.objects() as Record<string, unknown>[]).map((r) => ({
    component: r.label,
    budget: r.budget,
    "arm mean, base (n)": meanText(r.arm_mean, r.n_arm),
    "baseline mean, variant (n)": meanText(r.baseline_mean, r.n_baseline),
    "effect (points)": signed(r.diff as number),
    "95% CI (Welch t)": intervalText(r.ci_low, r.ci_high),
    verdict: verdict(r.ci_low, r.ci_high),
  }));
  return rows.length ? aq.from(rows) : aq.table({ component: [] });
}
