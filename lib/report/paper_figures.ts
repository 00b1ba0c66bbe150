/**
 * The paper's figures and tables (REFERENCE.md section 7) from grid run folders only: test
 * accuracy against stored bytes (one line per method, mean +- std over seeds, the pixel
 * baselines as points), the ablation {none, ColorAdapt, TokenAdapt, both} x {no MTM, MTM},
 * per-run loss and accuracy curves, and a standalone HTML report. Everything is derived from
 * each folder's `config.json` (its `grid` section), `log.jsonl` and `metrics.json`, in a fixed
 * order, so the same folders give byte-identical CSV and SVG.
 *
 * @module
 */

import * as aq from "arquero";
import type { ColumnTable } from "arquero";
import { join, relative, resolve, sep } from "node:path";
import type { AugmentArm, GridRunInfo, LogRecord } from "../train/mod.ts";
import {
  gridAugmentArm,
  METHOD_ARM_IDS,
  METHOD_ARMS,
  readRunLog,
  STORAGE_ARMS,
} from "../train/mod.ts";
import { readJsonObject } from "../io/mod.ts";
import { type ExportOptions, FigureExporter } from "./export.ts";
import { barTrace, type Figure, figure, lineTrace, type PlotlyTrace } from "./figure.ts";
import { htmlReport, type ReportItem } from "./html_report.ts";
import { imageView } from "./image.ts";
import { tableView } from "./table.ts";
import { PAPER_RESULTS } from "./paper_results.ts";
import {
  accuracyIntervalDisplayTable,
  accuracyIntervalTable,
  effectsDisplayTable,
  effectsTable,
} from "./effects.ts";
import {
  variantEffectsDisplayTable,
  variantEffectsTable,
  variantMtmEffectsDisplayTable,
  variantMtmEffectsTable,
} from "./variant_effects.ts";

export { PAPER_RESULTS } from "./paper_results.ts";

/** One grid run folder, loaded. */
export interface GridRunRecord extends GridRunInfo {
  /** The folder. */
  dir: string;
  /** Whether `metrics.json` exists (the run finished). */
  finished: boolean;
  /** Completed optimizer steps (metrics.json), or null. */
  steps: number | null;
  /** Final test top-1 in [0, 1], or null (pre-training, unfinished). */
  top1: number | null;
  /** Final test top-5, or null. */
  top5: number | null;
  /** Test images of the final evaluation, or null. */
  testImages: number | null;
  /** Training-loss curve: `[step, loss]`, one point per logged step (the last record of a step wins after a resume). */
  loss: [number, number][];
  /** Test top-1 curve: `[step, top1]`, one point per evaluation. */
  evals: [number, number][];
}

/** Arms in display order: the method arms (lib/train/augment/arms.ts), then the MTM pre-training runs. */
const ARM_ORDER: readonly string[] = [...METHOD_ARM_IDS, "mtm"];

const ARM_COLORS: Record<string, string> = {
  ...Object.fromEntries(METHOD_ARM_IDS.map((k) => [k, METHOD_ARMS[k].color])),
  mtm: "#17becf",
};

function cmp(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function armRank(arm: string): number {
  const i = ARM_ORDER.indexOf(arm);
  return i < 0 ? ARM_ORDER.length : i;
}

function curve(records: readonly LogRecord[], type: string, key: string): [number, number][] {
  const byStep = new Map<number, number>();
  for (const r of records) {
    if (r.type !== type || typeof r.step !== "number" || typeof r[key] !== "number") continue;
    byStep.set(r.step, r[key] as number);
  }
  return [...byStep].sort((a, b) => a[0] - b[0]);
}

/**
 * Load every grid run folder under `runsDir` (folders whose `config.json` has a `grid`
 * section; others are ignored), sorted by run id.
 *
 * @param runsDir the folder holding the run folders (`<out>/runs`)
 * @returns the runs
 * @throws {Deno.errors.NotFound} when `runsDir` does not exist
 * @throws {SyntaxError} for a malformed JSON file or log line (named)
 */
export async function loadGridRuns(runsDir: string): Promise<GridRunRecord[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(runsDir)) if (e.isDirectory) names.push(e.name);
  names.sort(cmp);
  const out: GridRunRecord[] = [];
  for (const name of names) {
    const dir = join(runsDir, name);
    const config = await readJsonObject(join(dir, "config.json"));
    const grid = config?.grid as GridRunInfo | undefined;
    if (grid === undefined || grid === null || typeof grid !== "object") continue;
    const metrics = await readJsonObject(join(dir, "metrics.json"));
    let records: LogRecord[] = [];
    try {
      records = await readRunLog(dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const ev = (metrics?.eval ?? null) as Record<string, number> | null;
    out.push({
      ...grid,
      // recipe-1 folders name the augmentation arms none / both
      augment: gridAugmentArm(grid.augment) as GridRunInfo["augment"],
      dir,
      finished: metrics !== null,
      steps: typeof metrics?.steps === "number" ? metrics.steps : null,
      top1: typeof ev?.top1 === "number" ? ev.top1 : null,
      top5: typeof ev?.top5 === "number" ? ev.top5 : null,
      testImages: typeof ev?.n === "number" ? ev.n : null,
      loss: curve(records, "step", "loss"),
      evals: curve(records, "eval", "top1"),
    });
  }
  return out.sort((a, b) => cmp(a.id, b.id));
}

function scored(runs: readonly GridRunRecord[]): GridRunRecord[] {
  return runs.filter((r) => r.kind !== "pretrain" && r.finished && r.top1 !== null);
}

/**
 * Test top-1 per (method, budget) over seeds, from finished runs: columns `method`, `arm`,
 * `budget`, `source`, `records`, `storage_bytes`, `n` (seeds), `top1_mean`, `top1_std`
 * (sample std, n - 1; empty for n = 1), `top1_min`, `top1_max` (percent), `seeds`, `steps`,
 * `test_images`. Rows by arm, then stored bytes.
 *
 * @param runs loaded runs ({@linkcode loadGridRuns})
 * @returns an arquero table
 */
export function accuracyTable(runs: readonly GridRunRecord[]): ColumnTable {
  const rows = scored(runs).map((r) => ({
    method: r.method,
    arm: r.arm,
    budget: r.budget,
    source: r.source,
    records: r.records,
    storage_bytes: r.storageBytes,
    rank: armRank(r.arm),
    seed: r.seed,
    top1: 100 * r.top1!,
    steps: r.steps,
    test_images: r.testImages,
  }));
  if (rows.length === 0) {
    return aq.table({
      method: [],
      arm: [],
      budget: [],
      source: [],
      records: [],
      storage_bytes: [],
      n: [],
      top1_mean: [],
      top1_std: [],
      top1_min: [],
      top1_max: [],
      seeds: [],
      steps: [],
      test_images: [],
    });
  }
  return aq.from(rows)
    .orderby("rank", "storage_bytes", "budget", "seed")
    .groupby("rank", "method", "arm", "budget", "source", "records", "storage_bytes")
    .rollup({
      n: aq.op.count(),
      top1_mean: aq.op.mean("top1"),
      top1_std: aq.op.stdev("top1"),
      top1_min: aq.op.min("top1"),
      top1_max: aq.op.max("top1"),
      seeds: aq.op.array_agg("seed"),
      steps: aq.op.max("steps"),
      test_images: aq.op.max("test_images"),
    })
    .orderby("rank", "storage_bytes", "budget")
    .derive({
      seeds: aq.escape((d: { seeds: number[] }) => d.seeds.join(" ")),
      top1_std: aq.escape((d: { top1_std?: number }) => d.top1_std ?? null),
    })
    .select(aq.not("rank"));
}

type Row = Record<string, unknown>;

function rowsOf(t: ColumnTable): Row[] {
  return t.objects() as Row[];
}

function fmtPm(mean: number, std: unknown, n: number): string {
  const s = typeof std === "number" && Number.isFinite(std) ? ` ± ${std.toFixed(2)}` : "";
  return `${mean.toFixed(2)}${s} (n=${n})`;
}

/**
 * The accuracy table for reading: one row per (method, budget) with `top-1 (%)` as
 * "mean ± std (n)" and the stored size in kB.
 * @param table {@linkcode accuracyTable}'s table
 * @returns an arquero table of strings and numbers
 */
export function accuracyDisplayTable(table: ColumnTable): ColumnTable {
  const rows = rowsOf(table).map((r) => ({
    method: r.method,
    budget: r.budget,
    records: r.records,
    "stored kB": Number(((r.storage_bytes as number) / 1000).toFixed(1)),
    "test top-1 (%)": fmtPm(r.top1_mean as number, r.top1_std, r.n as number),
    seeds: r.seeds,
  }));
  return rows.length ? aq.from(rows) : aq.table({ method: [] });
}

/** The main token set of a grid: the token source with the most budgets (ties: name order). */
function mainTokenSource(table: readonly Row[]): string {
  const sources = [
    ...new Set(table.filter((r) => r.arm !== "pixel").map((r) => r.source as string)),
  ];
  const count = (s: string) =>
    new Set(table.filter((r) => r.source === s).map((r) => r.budget)).size;
  sources.sort((a, b) => count(b) - count(a) || cmp(a, b));
  return sources[0] ?? "";
}

/**
 * The stored training sets of a grid: one row per budget with `budget`, `source`, `records`,
 * `storage_bytes` and `bytes_per_image`, by source then size.
 * @param table {@linkcode accuracyTable}'s table
 * @returns an arquero table
 */
export function storageTable(table: ColumnTable): ColumnTable {
  const seen = new Map<string, Row>();
  for (const r of rowsOf(table)) {
    if (seen.has(r.budget as string)) continue;
    seen.set(r.budget as string, {
      budget: r.budget,
      source: r.source,
      records: r.records,
      storage_bytes: r.storage_bytes,
      bytes_per_image: (r.storage_bytes as number) / (r.records as number),
    });
  }
  const rows = [...seen.values()].sort((a, b) =>
    cmp(a.source as string, b.source as string) ||
    (a.storage_bytes as number) - (b.storage_bytes as number)
  );
  return rows.length ? aq.from(rows) : aq.table({ budget: [] });
}

/** Top-1 of the four storage-study methods at one storage size, and the gains over SeiT. */
export interface StorageGainRow {
  /** The budget id (grid) or the stored size (paper). */
  budget: string;
  /** Stored bytes (grid) or null (paper, where `budget` says it). */
  storage_bytes: number | null;
  seit: number;
  seit_mtm: number;
  seitpp_nomtm: number;
  seitpp: number;
  /** SeiT + MTM minus SeiT. */
  gain_mtm: number;
  /** SeiT++ without MTM minus SeiT (TokenAdapt + ColorAdapt). */
  gain_augmentations: number;
  /** SeiT++ minus SeiT. */
  gain_both: number;
}

function withGains(
  r: Omit<StorageGainRow, "gain_mtm" | "gain_augmentations" | "gain_both">,
): StorageGainRow {
  return {
    ...r,
    gain_mtm: r.seit_mtm - r.seit,
    gain_augmentations: r.seitpp_nomtm - r.seit,
    gain_both: r.seitpp - r.seit,
  };
}

/**
 * The storage study as gains over SeiT: for each budget of the grid's main token set where
 * all four methods finished, their mean top-1 (%) and the three gains, largest budget first.
 * With `published`, the paper's rows (REFERENCE.md section 7) instead.
 * @param table {@linkcode accuracyTable}'s table (ignored with `published`)
 * @param options `published`: the paper's numbers
 * @returns an arquero table of {@linkcode StorageGainRow}
 */
export function storageGainsTable(
  table: ColumnTable | null,
  options: { published?: boolean } = {},
): ColumnTable {
  let rows: StorageGainRow[];
  if (options.published || table === null) {
    rows = PAPER_RESULTS.storage.map((p) =>
      withGains({
        budget: p.storage,
        storage_bytes: null,
        seit: p.seit,
        seit_mtm: p.seit_mtm,
        seitpp_nomtm: p.seitpp_nomtm,
        seitpp: p.seitpp,
      })
    );
  } else {
    const all = rowsOf(table);
    const main = mainTokenSource(all);
    const byBudget = new Map<string, Map<string, Row>>();
    for (const r of all) {
      if (r.source !== main) continue;
      const m = byBudget.get(r.budget as string) ?? new Map<string, Row>();
      m.set(r.arm as string, r);
      byBudget.set(r.budget as string, m);
    }
    rows = [];
    for (const [budget, arms] of byBudget) {
      const top1 = (arm: string) => arms.get(arm)?.top1_mean as number | undefined;
      const [a, b, c, d] = STORAGE_ARMS.map((arm) => top1(arm));
      if (a === undefined || b === undefined || c === undefined || d === undefined) continue;
      rows.push(withGains({
        budget,
        storage_bytes: arms.get("seit")!.storage_bytes as number,
        seit: a,
        seit_mtm: b,
        seitpp_nomtm: c,
        seitpp: d,
      }));
    }
    rows.sort((x, y) => (y.storage_bytes ?? 0) - (x.storage_bytes ?? 0));
  }
  return rows.length ? aq.from(rows) : aq.table({ budget: [] });
}

const COMPONENTS = [
  ["seit", "none (SeiT augmentations)"],
  ["coloradapt", "ColorAdapt"],
  ["tokenadapt", "TokenAdapt"],
  ["seitpp", "both"],
] as const satisfies readonly (readonly [AugmentArm, string])[];

/**
 * The budgets on which the ablation ran: token budgets with finished runs of all four
 * components without MTM (the "MTM" column is filled where those runs exist too).
 * @param runs loaded runs
 * @returns budget ids, sorted by stored bytes
 */
export function ablationBudgets(runs: readonly GridRunRecord[]): string[] {
  const byBudget = new Map<string, { bytes: number; comps: Set<string> }>();
  for (const r of scored(runs)) {
    if (r.augment === null) continue;
    const e = byBudget.get(r.budget) ?? { bytes: r.storageBytes, comps: new Set<string>() };
    e.comps.add(`${r.augment}/${r.mtm}`);
    byBudget.set(r.budget, e);
  }
  return [...byBudget].filter(([, e]) => COMPONENTS.every(([c]) => e.comps.has(`${c}/false`)))
    .sort((a, b) => a[1].bytes - b[1].bytes || cmp(a[0], b[0])).map(([b]) => b);
}

/**
 * The ablation {none, ColorAdapt, TokenAdapt, both} x {no MTM, MTM} on one budget, long
 * form: columns `budget`, `components`, `mtm` (`no` / `yes`), `n`, `top1_mean`, `top1_std`,
 * `seeds` (cells without runs are left out).
 *
 * @param runs loaded runs
 * @param budget the budget id
 * @returns an arquero table
 */
export function ablationTable(runs: readonly GridRunRecord[], budget: string): ColumnTable {
  const rows: Row[] = [];
  for (const [k, label] of COMPONENTS) {
    for (const mtm of [false, true]) {
      const sel = scored(runs).filter((r) =>
        r.budget === budget && r.augment === k && r.mtm === mtm
      ).sort((a, b) => a.seed - b.seed);
      if (sel.length === 0) continue;
      const v = sel.map((r) => 100 * r.top1!);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const std = v.length > 1
        ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1))
        : null;
      rows.push({
        budget,
        components: label,
        mtm: mtm ? "yes" : "no",
        n: v.length,
        top1_mean: mean,
        top1_std: std,
        seeds: sel.map((r) => r.seed).join(" "),
      });
    }
  }
  return aq.from(rows);
}

/**
 * The ablation for reading: rows = components, columns `no MTM` / `MTM` as
 * "mean ± std (n)", and the paper's number (ViT-S, ImageNet-100, as REFERENCE.md section 7
 * gives it, one number per component set).
 * @param long {@linkcode ablationTable}'s table
 * @returns an arquero table of strings
 */
export function ablationDisplayTable(long: ColumnTable): ColumnTable {
  const rows = rowsOf(long);
  return aq.from(COMPONENTS.map(([k, label]) => {
    const cell = (mtm: string) => {
      const r = rows.find((x) => x.components === label && x.mtm === mtm);
      return r ? fmtPm(r.top1_mean as number, r.top1_std, r.n as number) : "";
    };
    return {
      components: label,
      "no MTM": cell("no"),
      "MTM": cell("yes"),
      "paper (ViT-S, IN-100)": PAPER_RESULTS.ablation[k].toFixed(1),
    };
  }));
}

const FONT = { family: "DejaVu Sans, Arial, sans-serif", size: 14 };

/**
 * Test top-1 against stored training-set bytes (log x): one line per method of the storage
 * study over the budgets of its main token set, mean +- std over seeds as error bars; other
 * token resolutions and the pixel baselines as separate points.
 *
 * @param runs loaded runs
 * @returns the figure
 */
export function accuracyVsStorageFigure(runs: readonly GridRunRecord[]): Figure {
  const table = rowsOf(accuracyTable(runs));
  const tokenSources = [
    ...new Set(table.filter((r) => r.arm !== "pixel").map((r) => r.source as string)),
  ];
  const main = mainTokenSource(table);
  const traces: PlotlyTrace[] = [];
  const symbols = ["diamond", "square", "triangle-up", "cross"];
  for (const arm of STORAGE_ARMS) {
    tokenSources.forEach((src, si) => {
      const rows = table.filter((r) => r.arm === arm && r.source === src)
        .sort((a, b) => (a.storage_bytes as number) - (b.storage_bytes as number));
      if (rows.length === 0) return;
      const x = rows.map((r) => (r.storage_bytes as number) / 1e6);
      const y = rows.map((r) => r.top1_mean as number);
      const e = rows.map((r) => typeof r.top1_std === "number" ? r.top1_std : 0);
      const name = `${rows[0].method}${src === main ? "" : ` (${src} tokens)`}`;
      const t = lineTrace(x, y, { name, yErr: e, markers: true, color: ARM_COLORS[arm] });
      if (src !== main) {
        t.mode = "markers";
        t.marker = { color: ARM_COLORS[arm], symbol: symbols[(si - 1) % symbols.length], size: 11 };
      } else {
        t.marker = { color: ARM_COLORS[arm], size: 8 };
      }
      t.text = rows.map((r) => `${r.budget}: ${r.records} records, n=${r.n}`);
      traces.push(t);
    });
  }
  const pix = table.filter((r) => r.arm === "pixel")
    .sort((a, b) =>
      cmp(a.source as string, b.source as string) ||
      (a.storage_bytes as number) - (b.storage_bytes as number)
    );
  const pixSources = [...new Set(pix.map((r) => r.source as string))].sort((a, b) => {
    const na = Number(a.replace(/\D/g, "")), nb = Number(b.replace(/\D/g, ""));
    return nb - na;
  });
  pixSources.forEach((src, i) => {
    const rows = pix.filter((r) => r.source === src);
    const t = lineTrace(
      rows.map((r) => (r.storage_bytes as number) / 1e6),
      rows.map((r) => r.top1_mean as number),
      {
        name: rows[0].method as string,
        yErr: rows.map((r) => typeof r.top1_std === "number" ? r.top1_std : 0),
      },
    );
    t.mode = "markers";
    t.marker = {
      color: i === 0 ? "#444444" : "#9a9a9a",
      symbol: i === 0 ? "star" : "star-open",
      size: 13,
    };
    t.text = rows.map((r) => `${r.budget}: ${r.records} images, n=${r.n}`);
    traces.push(t);
  });
  return figure(traces, {
    title: `Test top-1 vs stored training data (Fashion-MNIST; lines: ${main} tokens)`,
    xTitle: "stored training set (MB, log scale)",
    yTitle: "test top-1 (%), mean ± std over seeds",
    logX: true,
    width: 960,
    height: 580,
    layout: {
      font: FONT,
      legend: { orientation: "v", x: 1.02, y: 1, xanchor: "left", font: { size: 13 } },
      margin: { l: 80, r: 20, t: 60, b: 70 },
    },
  });
}

/**
 * The ablation as grouped bars: components on x, one bar series for no MTM and one for MTM,
 * std error bars.
 * @param long {@linkcode ablationTable}'s table
 * @param budget the budget id (for the title)
 * @returns the figure
 */
export function ablationFigure(long: ColumnTable, budget: string): Figure {
  const rows = rowsOf(long);
  const traces: PlotlyTrace[] = [];
  for (const [mtm, name, color] of [["no", "no MTM", "#1f77b4"], ["yes", "MTM", "#d62728"]]) {
    const sel = COMPONENTS.map(([, label]) =>
      rows.find((r) => r.components === label && r.mtm === mtm)
    );
    if (sel.every((r) => r === undefined)) continue;
    traces.push(barTrace(
      COMPONENTS.map(([, label]) => label),
      sel.map((r) => (r ? r.top1_mean as number : NaN)),
      {
        name,
        color,
        yErr: sel.map((r) => (r && typeof r.top1_std === "number" ? r.top1_std : 0)),
        text: sel.map((r) => (r ? `${(r.top1_mean as number).toFixed(1)}` : "")),
      },
    ));
  }
  const values = rows.map((r) => r.top1_mean as number);
  const lo = values.length ? Math.floor(Math.min(...values) - 5) : 0;
  const hi = values.length ? Math.ceil(Math.max(...values) + 3) : 100;
  return figure(traces, {
    title: `Ablation of ColorAdapt and TokenAdapt (budget ${budget})`,
    xTitle: "augmentation components",
    yTitle: "test top-1 (%), mean ± std",
    barmode: "group",
    width: 820,
    height: 520,
    layout: {
      font: FONT,
      yaxis: { title: { text: "test top-1 (%), mean ± std" }, range: [lo, hi] },
    },
  });
}

/**
 * Training-loss or test-accuracy curves of every run on one budget: one line per run,
 * coloured by method (legend once per method; the seed in the hover text).
 * @param runs loaded runs
 * @param budget the budget id
 * @param what `loss` (training loss per logged step) or `top1` (test top-1 per evaluation)
 * @param kinds which runs (fine-tuning and pixel runs, or pre-training runs)
 * @returns the figure
 */
export function curvesFigure(
  runs: readonly GridRunRecord[],
  budget: string,
  what: "loss" | "top1",
  kinds: readonly string[] = ["finetune", "pixel"],
): Figure {
  const sel = runs.filter((r) => r.budget === budget && kinds.includes(r.kind))
    .sort((a, b) => armRank(a.arm) - armRank(b.arm) || a.seed - b.seed);
  const traces: PlotlyTrace[] = [];
  const shown = new Set<string>();
  for (const r of sel) {
    const pts = what === "loss"
      ? r.loss
      : r.evals.map(([s, v]) => [s, 100 * v] as [number, number]);
    if (pts.length === 0) continue;
    const t = lineTrace(pts.map((p) => p[0]), pts.map((p) => p[1]), {
      name: r.method,
      color: ARM_COLORS[r.arm] ?? "#333333",
      markers: what === "top1",
    });
    t.legendgroup = r.arm;
    t.showlegend = !shown.has(r.arm);
    t.hovertext = `${r.id} (seed ${r.seed})`;
    t.line = { ...(t.line as object), width: 1.5 };
    shown.add(r.arm);
    traces.push(t);
  }
  const pre = kinds.includes("pretrain");
  return figure(traces, {
    title: what === "loss"
      ? `${pre ? "MTM pre-training" : "Training"} loss, budget ${budget} (one line per run)`
      : `Test top-1 during training, budget ${budget} (one line per run)`,
    xTitle: "optimizer step",
    yTitle: what === "loss"
      ? (pre ? "masked-token loss" : "training loss (soft-target CE)")
      : "test top-1 (%)",
    width: 900,
    height: 520,
    layout: { font: FONT, legend: { x: 1.02, y: 1, xanchor: "left", font: { size: 13 } } },
  });
}

/**
 * Write a table as `<base>.csv` (the numbers, full precision) and `<base>.md` (a readable
 * view, e.g. "mean ± std (n)").
 * @param numbers the table of numbers
 * @param display the table for reading
 * @param base output path without extension
 * @param options `caption`: a line written above the markdown table (the CSV has none)
 * @returns the two paths
 */
export async function writeTableFiles(
  numbers: ColumnTable,
  display: ColumnTable,
  base: string,
  options: { caption?: string } = {},
): Promise<{ csv: string; md: string }> {
  const csv = `${base}.csv`, md = `${base}.md`;
  const head = options.caption === undefined ? "" : `${options.caption}\n\n`;
  await Deno.writeTextFile(csv, numbers.toCSV() + "\n");
  await Deno.writeTextFile(md, head + tableView(display, { limit: 100000 }).toMarkdown() + "\n");
  return { csv, md };
}

/** An extra image for the report (e.g. the augmentation gallery). */
export interface ReportImage {
  /** File name inside the output folder (`.png`). */
  file: string;
  /** PNG bytes. */
  png: Uint8Array;
  /** Caption. */
  caption: string;
}

/** Options of {@linkcode writePaperFigures}. */
export interface PaperFiguresOptions {
  /** The folder of run folders (`<out>/runs`). */
  runs: string;
  /** Where figures and tables go (created). */
  out: string;
  /** Static figure formats. @default {["svg", "png"]} */
  formats?: readonly ("svg" | "png")[];
  /** Write `report.html` (plotly.js inlined, ~5 MB). @default {true} */
  html?: boolean;
  /** Images to add (written as PNG and shown in the report). @default {[]} */
  images?: readonly ReportImage[];
  /** PNG pixel ratio. @default {2} */
  pngScale?: number;
  /**
   * Use only the finished runs (with `metrics.json`): the figures of a grid that is still
   * running, as a checkout that commits only finished run folders will regenerate them.
   * @default {false}
   */
  finishedOnly?: boolean;
  /**
   * The base grid's run folders when `runs` is a variant of it (the same cells with one
   * setting changed): adds `variant_effects.{csv,md}`, each (arm, budget) cell's mean top-1
   * in both and the difference (variant minus base) with Welch's 95% interval
   * (`variantEffectsTable`), and `variant_mtm_effects.{csv,md}`, the base's MTM arms against
   * the variant's from-scratch baselines (`variantMtmEffectsTable`); only finished runs
   * count. Without it nothing else changes.
   */
  baseline?: string;
  /**
   * The folder the caption of `variant_effects.md` names both run folders relative to.
   * @default {Deno.cwd()} (the repository root under `deno task` and `deno test`)
   */
  root?: string;
}

/** What {@linkcode writePaperFigures} wrote. */
export interface PaperFiguresResult {
  /** Every file written, relative to `out`, sorted. */
  files: string[];
  /** The runs the figures came from. */
  runs: number;
}

/**
 * Write every figure (SVG/PNG through headless Chromium) and table (CSV + markdown) of the
 * grid under `runs` into `out`, and `report.html`:
 * `accuracy_vs_storage`, `accuracy_table`, `accuracy_ci` (95% t intervals of the cells),
 * `effects` (each component's effect with Welch's 95% interval, next to the paper's),
 * `ablation[_<budget>]` (figure and table),
 * `curves_loss_<budget>`, `curves_top1_<budget>`, `pretrain_loss_<budget>`; with `baseline`,
 * `variant_effects` (this grid against its base grid, per cell) and `variant_mtm_effects` (the
 * base's MTM arms against this grid's from-scratch baselines).
 *
 * @param options runs folder, output folder, formats, base grid
 * @returns the files written
 * @throws {Deno.errors.NotFound} when `runs` (or `baseline`) does not exist
 * @throws {RangeError} when it holds no finished grid run, or a budget id names different
 *   stored sets in `runs` and `baseline`
 * @throws {ChromiumError} when the browser cannot start
 */
export async function writePaperFigures(options: PaperFiguresOptions): Promise<PaperFiguresResult> {
  const loaded = await loadGridRuns(options.runs);
  const runs = options.finishedOnly ? loaded.filter((r) => r.finished) : loaded;
  if (scored(runs).length === 0) {
    throw new RangeError(
      `Cannot draw figures from "${options.runs}": it holds no finished grid run`,
    );
  }
  const out = options.out;
  await Deno.mkdir(out, { recursive: true });
  const formats = options.formats ?? ["svg", "png"];
  const files: string[] = [];
  const figures: { name: string; fig: Figure }[] = [];
  const report: ReportItem[] = [];
  const table = accuracyTable(runs);
  await writeTableFiles(table, accuracyDisplayTable(table), join(out, "accuracy_table"));
  files.push("accuracy_table.csv", "accuracy_table.md");
  const cells = accuracyIntervalTable(runs);
  await writeTableFiles(cells, accuracyIntervalDisplayTable(cells), join(out, "accuracy_ci"));
  files.push("accuracy_ci.csv", "accuracy_ci.md");
  const effects = effectsTable(runs);
  await writeTableFiles(effects, effectsDisplayTable(effects), join(out, "effects"));
  files.push("effects.csv", "effects.md");
  const storageFig = accuracyVsStorageFigure(runs);
  figures.push({ name: "accuracy_vs_storage", fig: storageFig });
  report.push(
    {
      heading: "Accuracy vs storage",
      text: "Test top-1 of each method against the bytes of its stored training set " +
        "(token data + index, or gzipped idx pixels; labels not counted), mean ± sample std " +
        "over seeds. Lines: the main token resolution; other resolutions and the pixel ViT " +
        "baselines are points.",
    },
    storageFig,
    tableView(accuracyDisplayTable(table), { limit: 1000 }),
    {
      heading: "Effects with 95% intervals over seeds",
      text: "Difference of mean test top-1 (percentage points) between the arm with a " +
        "component and its baseline arm, per budget, with Welch's two-sided 95% t interval " +
        "(unpaired, Welch-Satterthwaite degrees of freedom), next to the paper's difference.",
    },
    tableView(effectsDisplayTable(effects), { limit: 1000 }),
  );
  if (options.baseline !== undefined) {
    const baseRuns = await loadGridRuns(options.baseline);
    const variant = variantEffectsTable(baseRuns, runs);
    const shown = variantEffectsDisplayTable(variant);
    const root = options.root ?? Deno.cwd();
    const name = (dir: string) => relative(root, resolve(dir)).split(sep).join("/") || ".";
    const caption = `Variant ${name(options.runs)} against its base ${name(options.baseline)}: ` +
      "mean test top-1 (%) of each (arm, budget) cell with finished runs in both, the " +
      "difference variant minus base (percentage points) with Welch's two-sided 95% t interval " +
      "over seeds (unpaired, Welch-Satterthwaite degrees of freedom).";
    await writeTableFiles(variant, shown, join(out, "variant_effects"), { caption });
    files.push("variant_effects.csv", "variant_effects.md");
    const mtm = variantMtmEffectsTable(baseRuns, runs);
    const mtmShown = variantMtmEffectsDisplayTable(mtm);
    const mtmCaption = `The MTM arms of the base ${name(options.baseline)} against the ` +
      `from-scratch baseline arms of the variant ${name(options.runs)}: an MTM fine-tuning ` +
      "starts from its pre-trained encoder, not from the from-scratch init, so where the " +
      "variant changes only that init this is MTM's effect against a baseline with the " +
      "variant's start. Mean test top-1 (%) of each side, the difference arm minus baseline " +
      "(percentage points) with Welch's two-sided 95% t interval over seeds (unpaired, " +
      "Welch-Satterthwaite degrees of freedom); only finished runs count.";
    await writeTableFiles(mtm, mtmShown, join(out, "variant_mtm_effects"), {
      caption: mtmCaption,
    });
    files.push("variant_mtm_effects.csv", "variant_mtm_effects.md");
    report.push(
      { heading: "The variant against its base grid", text: caption },
      tableView(shown, { limit: 1000 }),
      { heading: "The base grid's MTM arms against the variant's baselines", text: mtmCaption },
      tableView(mtmShown, { limit: 1000 }),
    );
  }
  const abBudgets = ablationBudgets(runs);
  for (const b of abBudgets) {
    const suffix = abBudgets.length === 1 ? "" : `_${b}`;
    const long = ablationTable(runs, b);
    const wide = ablationDisplayTable(long);
    await writeTableFiles(long, wide, join(out, `ablation${suffix}`));
    files.push(`ablation${suffix}.csv`, `ablation${suffix}.md`);
    const fig = ablationFigure(long, b);
    figures.push({ name: `ablation${suffix}`, fig });
    report.push(
      {
        heading: `Ablation on budget ${b}`,
        text: "Test top-1 with the fine-tuning augmentation step's components switched " +
          "(none = the SeiT augmentations: token RRC, CutMix, Emb-Noise), with and without MTM " +
          "pre-training. The paper's column: ViT-S on ImageNet-100.",
      },
      fig,
      tableView(wide),
    );
  }
  const budgets = [...new Map(runs.map((r) => [r.budget, r.storageBytes])).entries()]
    .sort((a, b) => cmp(a[0], b[0]));
  report.push({ heading: "Training curves", text: "One line per run, coloured by method." });
  for (const [b] of budgets) {
    const ft = runs.filter((r) => r.budget === b && r.kind !== "pretrain");
    if (ft.some((r) => r.loss.length > 0)) {
      const f = curvesFigure(runs, b, "loss");
      figures.push({ name: `curves_loss_${b}`, fig: f });
      report.push(f);
    }
    if (ft.some((r) => r.evals.length > 0)) {
      const f = curvesFigure(runs, b, "top1");
      figures.push({ name: `curves_top1_${b}`, fig: f });
      report.push(f);
    }
    if (runs.some((r) => r.budget === b && r.kind === "pretrain" && r.loss.length > 0)) {
      const f = curvesFigure(runs, b, "loss", ["pretrain"]);
      figures.push({ name: `pretrain_loss_${b}`, fig: f });
      report.push(f);
    }
  }
  for (const img of options.images ?? []) {
    await Deno.writeFile(join(out, img.file), img.png);
    files.push(img.file);
    report.push({ heading: img.caption }, imageView(img.png, { caption: img.caption, scale: 1 }));
  }
  if (formats.length > 0) {
    const ex = await FigureExporter.start();
    try {
      for (const { name, fig } of figures) {
        for (const f of formats) {
          const opts: ExportOptions = f === "png" ? { scale: options.pngScale ?? 2 } : {};
          await ex.write(fig, join(out, `${name}.${f}`), opts);
          files.push(`${name}.${f}`);
        }
      }
    } finally {
      await ex.close();
    }
  }
  if (options.html ?? true) {
    await Deno.writeTextFile(
      join(out, "report.html"),
      htmlReport(report, {
        title: "SeiT++ at small scale: storage study and ablation",
        subtitle: `${scored(runs).length} finished runs from ${options.runs}`,
      }),
    );
    files.push("report.html");
  }
  return { files: files.sort(cmp), runs: runs.length };
}
