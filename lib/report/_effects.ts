/**
 * Private helpers of the effect tables (./effects.ts, ./variant_effects.ts): the finished,
 * scored runs, one cell's per-seed values, the budgets by stored bytes, and the wording of a
 * difference with its interval.
 *
 * @module
 */

import type { GridRunRecord } from "./paper_figures.ts";
import { welchInterval } from "./intervals.ts";

/** String or number order. */
export function cmp(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The finished fine-tuning and pixel runs with a final test top-1. */
export function finishedTop1(runs: readonly GridRunRecord[]): GridRunRecord[] {
  return runs.filter((r) => r.kind !== "pretrain" && r.finished && r.top1 !== null);
}

/**
 * The test top-1 (%) of one (arm, budget) cell, one value per run, by seed.
 * @param done finished runs ({@linkcode finishedTop1})
 * @param arm the arm id
 * @param budget the budget id
 * @returns the values (empty when the cell has no finished run)
 */
export function cellValues(done: readonly GridRunRecord[], arm: string, budget: string): number[] {
  return done.filter((r) => r.arm === arm && r.budget === budget).sort((a, b) => a.seed - b.seed)
    .map((r) => 100 * r.top1!);
}

/** The budgets of the runs with their stored bytes, the most bytes first (ties: by id). */
export function budgetsBySize(done: readonly GridRunRecord[]): [string, number][] {
  return [...new Map(done.map((r) => [r.budget, r.storageBytes]))]
    .sort((a, b) => b[1] - a[1] || cmp(a[0], b[0]));
}

/** The mean of a non-empty sample. */
export function mean(v: readonly number[]): number {
  return v.reduce((x, y) => x + y, 0) / v.length;
}

/** "+x.xx" / "-x.xx". */
export function signed(v: number): string {
  return `${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
}

/** "[low, high]" signed, or "(one seed)" when the interval could not be formed. */
export function intervalText(low: unknown, high: unknown): string {
  return typeof low === "number" && typeof high === "number"
    ? `[${signed(low)}, ${signed(high)}]`
    : "(one seed)";
}

/**
 * The verdict on a difference from its interval: "helps" (the interval is above 0), "hurts"
 * (below 0), "not resolved" (it holds 0), "" (no interval).
 */
export function verdict(low: unknown, high: unknown): string {
  return typeof low === "number" && typeof high === "number"
    ? (low > 0 ? "helps" : high < 0 ? "hurts" : "not resolved")
    : "";
}

/**
 * One effect's numbers, arm minus baseline, in the column order of the effect tables:
 * `n_arm`, `n_baseline`, `arm_mean`, `baseline_mean`, `diff`, `ci_low`, `ci_high` (Welch's t
 * interval; null when a side has one value), `df`.
 * @param baseline the baseline's values (non-empty)
 * @param arm the arm's values (non-empty)
 * @param level confidence level
 */
export function effectNumbers(
  baseline: readonly number[],
  arm: readonly number[],
  level: number,
): Record<string, number | null> {
  const ci = welchInterval(baseline, arm, level);
  return {
    n_arm: arm.length,
    n_baseline: baseline.length,
    arm_mean: mean(arm),
    baseline_mean: mean(baseline),
    diff: ci.estimate,
    ci_low: ci.low,
    ci_high: ci.high,
    df: ci.df,
  };
}

/** "xx.xx (n=k)": a mean of k values. */
export function meanText(m: unknown, n: unknown): string {
  return `${(m as number).toFixed(2)} (n=${n})`;
}
