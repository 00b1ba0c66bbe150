/**
 * The paper's questions as effects with 95% intervals over seeds: for each component (MTM,
 * ColorAdapt, TokenAdapt, identity-TokenAdapt, oracle TokenAdapt, both) and each budget, the
 * difference of mean test top-1 between the arm with the component and its baseline arm,
 * with Welch's t
 * interval (./intervals.ts), next to the paper's difference (REFERENCE.md section 7); and
 * every (method, budget) cell's mean with its t interval. Only finished runs count.
 *
 * @module
 */

import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import type { GridRunRecord } from "./paper_figures.ts";
import { PAPER_RESULTS } from "./paper_results.ts";
import { tInterval } from "./intervals.ts";
import {
  budgetsBySize,
  cellValues,
  cmp,
  effectNumbers,
  finishedTop1,
  intervalText,
  signed,
  verdict,
} from "./_effects.ts";

/** One comparison: `arm` minus `baseline`, on every budget where both finished. */
export interface EffectSpec {
  /** Short id (`mtm`, `coloradapt`, ...). */
  id: string;
  /** What is compared, for reading. */
  label: string;
  /** The arm with the component. */
  arm: string;
  /** The arm without it. */
  baseline: string;
  /**
   * The paper's difference for the grid's storage rank (0 = largest of three budgets of
   * the main token set), or null where the paper has none.
   */
  paper: (rank: number | null) => { value: number; setting: string } | null;
}

function storagePaper(
  key: "seit_mtm" | "seitpp_nomtm" | "seitpp",
  base: "seit" | "seitpp_nomtm",
): EffectSpec["paper"] {
  return (rank) => {
    if (rank === null || rank >= PAPER_RESULTS.storage.length) return null;
    const p = PAPER_RESULTS.storage[rank];
    return { value: p[key] - p[base], setting: `ViT-B, IN-1k, ${p.storage}` };
  };
}

function ablationPaper(key: "coloradapt" | "tokenadapt" | "seitpp"): EffectSpec["paper"] {
  const a = PAPER_RESULTS.ablation;
  return () => ({ value: a[key] - a.seit, setting: "ViT-S, IN-100" });
}

/** The comparisons of the tables, in display order. */
export const EFFECTS: readonly EffectSpec[] = [
  {
    id: "mtm",
    label: "MTM (SeiT+MTM vs SeiT)",
    arm: "seit_mtm",
    baseline: "seit",
    paper: storagePaper("seit_mtm", "seit"),
  },
  {
    id: "augmentations",
    label: "TokenAdapt+ColorAdapt (SeiT++ w/o MTM vs SeiT)",
    arm: "seitpp_nomtm",
    baseline: "seit",
    paper: storagePaper("seitpp_nomtm", "seit"),
  },
  {
    id: "seitpp",
    label: "SeiT++ vs SeiT",
    arm: "seitpp",
    baseline: "seit",
    paper: storagePaper("seitpp", "seit"),
  },
  {
    id: "mtm_on_seitpp",
    label: "MTM on the SeiT++ augmentations (SeiT++ vs SeiT++ w/o MTM)",
    arm: "seitpp",
    baseline: "seitpp_nomtm",
    paper: storagePaper("seitpp", "seitpp_nomtm"),
  },
  {
    id: "coloradapt",
    label: "ColorAdapt (ColorAdapt only vs SeiT)",
    arm: "ca",
    baseline: "seit",
    paper: ablationPaper("coloradapt"),
  },
  {
    id: "tokenadapt",
    label: "TokenAdapt (TokenAdapt only vs SeiT)",
    arm: "ta",
    baseline: "seit",
    paper: ablationPaper("tokenadapt"),
  },
  {
    id: "identity_tokenadapt",
    label: "identity TokenAdapt, f -> g only (vs SeiT)",
    arm: "ita",
    baseline: "seit",
    paper: () => null,
  },
  {
    id: "tokenadapt_vs_identity",
    label: "TokenAdapt's augmentation beyond f -> g (TokenAdapt only vs identity)",
    arm: "ta",
    baseline: "ita",
    paper: () => null,
  },
  {
    id: "oracle_tokenadapt",
    label: "oracle TokenAdapt, T(Mix(A(x))) from pixels (vs SeiT)",
    arm: "ota",
    baseline: "seit",
    paper: () => null,
  },
  {
    id: "tokenadapt_vs_oracle",
    label: "TokenAdapt vs oracle (TokenAdapt only vs oracle TokenAdapt)",
    arm: "ta",
    baseline: "ota",
    paper: () => null,
  },
  {
    id: "both_ablation",
    label: "both components (ablation: SeiT++ w/o MTM vs SeiT)",
    arm: "seitpp_nomtm",
    baseline: "seit",
    paper: ablationPaper("seitpp"),
  },
  {
    id: "coloradapt_mtm",
    label: "ColorAdapt with MTM (ColorAdapt only + MTM vs SeiT+MTM)",
    arm: "ca_mtm",
    baseline: "seit_mtm",
    paper: () => null,
  },
  {
    id: "tokenadapt_mtm",
    label: "TokenAdapt with MTM (TokenAdapt only + MTM vs SeiT+MTM)",
    arm: "ta_mtm",
    baseline: "seit_mtm",
    paper: () => null,
  },
  {
    id: "augmentations_mtm",
    label: "TokenAdapt+ColorAdapt with MTM (SeiT++ vs SeiT+MTM)",
    arm: "seitpp",
    baseline: "seit_mtm",
    paper: () => null,
  },
];

const ABLATION_ONLY = new Set(["both_ablation"]);

/**
 * The storage rank of each budget of the main token set (the token source with the most
 * budgets; 0 = the most stored bytes), when it has exactly as many budgets as the paper's
 * storage study (three); otherwise every rank is null.
 */
function storageRanks(runs: readonly GridRunRecord[]): Map<string, number | null> {
  const bySource = new Map<string, Map<string, number>>();
  for (const r of runs) {
    if (r.arm === "pixel") continue;
    const m = bySource.get(r.source) ?? new Map<string, number>();
    m.set(r.budget, r.storageBytes);
    bySource.set(r.source, m);
  }
  const sources = [...bySource].sort((a, b) => b[1].size - a[1].size || cmp(a[0], b[0]));
  const out = new Map<string, number | null>();
  const main = sources[0];
  if (main === undefined) return out;
  const ordered = [...main[1]].sort((a, b) => b[1] - a[1] || cmp(a[0], b[0]));
  const paperRanks = ordered.length === PAPER_RESULTS.storage.length;
  ordered.forEach(([b], i) => out.set(b, paperRanks ? i : null));
  return out;
}

/**
 * Every effect of {@linkcode EFFECTS} on every budget where both of its arms have finished
 * runs: columns `effect`, `label`, `budget`, `storage_bytes`, `arm`, `baseline`, `n_arm`,
 * `n_baseline`, `arm_mean`, `baseline_mean`, `diff`, `ci_low`, `ci_high` (Welch's 95% t
 * interval of the difference, percentage points; empty when a side has one seed), `df`,
 * `paper_diff`, `paper_setting`. Rows by effect, then stored bytes (largest first). The
 * "both components" row of the ablation is given only on budgets where the ColorAdapt-only
 * arm ran (elsewhere it is the `augmentations` row).
 *
 * @param runs loaded runs (`loadGridRuns`)
 * @param level confidence level @default {0.95}
 * @returns an arquero table
 */
export function effectsTable(runs: readonly GridRunRecord[], level = 0.95): ColumnTable {
  const done = finishedTop1(runs);
  const ranks = storageRanks(done);
  const values = (arm: string, budget: string) => cellValues(done, arm, budget);
  const budgets = budgetsBySize(done);
  const rows: Record<string, unknown>[] = [];
  for (const e of EFFECTS) {
    for (const [budget, bytes] of budgets) {
      if (ABLATION_ONLY.has(e.id) && values("ca", budget).length === 0) continue;
      const a = values(e.baseline, budget), b = values(e.arm, budget);
      if (a.length === 0 || b.length === 0) continue;
      const paper = e.paper(ranks.get(budget) ?? null);
      rows.push({
        effect: e.id,
        label: e.label,
        budget,
        storage_bytes: bytes,
        arm: e.arm,
        baseline: e.baseline,
        ...effectNumbers(a, b, level),
        paper_diff: paper?.value ?? null,
        paper_setting: paper?.setting ?? null,
      });
    }
  }
  return rows.length ? aq.from(rows) : aq.table({ effect: [] });
}

/**
 * The effects for reading: component, budget, the difference "+x.xx [low, high]" with the
 * seeds per side, whether the interval excludes 0, and the paper's difference.
 * @param table {@linkcode effectsTable}'s table
 * @returns an arquero table of strings
 */
export function effectsDisplayTable(table: ColumnTable): ColumnTable {
  const rows = (table.objects() as Record<string, unknown>[]).map((r) => {
    const lo = r.ci_low, hi = r.ci_high;
    return {
      component: r.label,
      budget: r.budget,
      "effect (points)": signed(r.diff as number),
      "95% CI (Welch t)": intervalText(lo, hi),
      "seeds (arm/base)": `${r.n_arm}/${r.n_baseline}`,
      verdict: verdict(lo, hi),
      paper: typeof r.paper_diff === "number" ? `${signed(r.paper_diff)} (${r.paper_setting})` : "",
    };
  });
  return rows.length ? aq.from(rows) : aq.table({ component: [] });
}

/**
 * Every (method, budget) cell's mean test top-1 with its 95% t interval over seeds
 * (n - 1 degrees of freedom): columns `method`, `arm`, `budget`, `storage_bytes`, `n`,
 * `top1_mean`, `ci_low`, `ci_high` (empty for one seed), `seeds`. Rows as the accuracy table.
 * @param runs loaded runs
 * @param level confidence level @default {0.95}
 * @returns an arquero table
 */
export function accuracyIntervalTable(runs: readonly GridRunRecord[], level = 0.95): ColumnTable {
  const done = finishedTop1(runs);
  const keys = new Map<string, GridRunRecord[]>();
  for (const r of done) {
    const k = `${r.arm}\u0000${r.budget}`;
    keys.set(k, [...(keys.get(k) ?? []), r]);
  }
  const order = ["seit", "seit_mtm", "seitpp_nomtm", "seitpp", "ca", "ca_mtm", "ta", "ta_mtm"];
  const rank = (arm: string) => {
    const i = order.indexOf(arm);
    return i < 0 ? order.length + (arm === "pixel" ? 1 : 0) : i;
  };
  const groups = [...keys.values()].sort((x, y) =>
    rank(x[0].arm) - rank(y[0].arm) || cmp(x[0].arm, y[0].arm) ||
    x[0].storageBytes - y[0].storageBytes || cmp(x[0].budget, y[0].budget)
  );
  const rows = groups.map((g) => {
    const sel = [...g].sort((a, b) => a.seed - b.seed);
    const ci = tInterval(sel.map((r) => 100 * r.top1!), level);
    return {
      method: sel[0].method,
      arm: sel[0].arm,
      budget: sel[0].budget,
      storage_bytes: sel[0].storageBytes,
      n: sel.length,
      top1_mean: ci.estimate,
      ci_low: ci.low,
      ci_high: ci.high,
      seeds: sel.map((r) => r.seed).join(" "),
    };
  });
  return rows.length ? aq.from(rows) : aq.table({ method: [] });
}

/**
 * The cell intervals for reading: "mean [low, high] (n)" ("mean (n=1)" for one seed).
 * @param table {@linkcode accuracyIntervalTable}'s table
 * @returns an arquero table of strings and numbers
 */
export function accuracyIntervalDisplayTable(table: ColumnTable): ColumnTable {
  const rows = (table.objects() as Record<string, unknown>[]).map((r) => ({
    method: r.method,
    budget: r.budget,
    "stored kB": Number(((r.storage_bytes as number) / 1000).toFixed(1)),
    "test top-1 (%) [95% t interval]": `${(r.top1_mean as number).toFixed(2)}${
      typeof r.ci_low === "number"
        ? ` [${r.ci_low.toFixed(2)}, ${(r.ci_high as number).toFixed(2)}]`
        : ""
    } (n=${r.n})`,
    seeds: r.seeds,
  }));
  return rows.length ? aq.from(rows) : aq.table({ method: [] });
}
