import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "@lib/backend";
import {
  ablationBudgets,
  accuracyTable,
  accuracyVsStorageFigure,
  loadGridRuns,
  storageGainsTable,
  storageTable,
  writePaperFigures,
} from "@lib/report";
import {
  applyGridOverrides,
  expandGrid,
  inProcessExecutor,
  prepareBudgets,
  readConfigFile,
  resolveGridConfig,
  runGrid,
} from "@lib/train";

await initBackend({ backend: "wasm" });

// deno-lint-ignore no-explicit-any
type Any = any;

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) out.push(e.name);
  return out.sort();
}

/** Parse a CSV written by arquero (no quoted commas in our tables except "seeds"). */
function parseCsv(text: string): Record<string, string>[] {
  const [head, ...rows] = text.trim().split("\n");
  const names = head.split(",");
  return rows.map((r) => {
    const cells = r.match(/("[^"]*"|[^,]*)(,|$)/g)!.map((c) =>
      c.replace(/,$/, "").replace(/^"|"$/g, "")
    );
    return Object.fromEntries(names.map((n, i) => [n, cells[i]]));
  });
}

function meanStd(v: number[]): [number, number | null] {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  if (v.length < 2) return [m, null];
  return [m, Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1))];
}

Deno.test("paper figures from a tiny grid run", async (t) => {
  const tmp = await Deno.makeTempDir();
  try {
    const g = applyGridOverrides(
      resolveGridConfig(await readConfigFile("configs/grid_tiny.json"), "grid_tiny.json"),
      [
        [
          "cells",
          JSON.stringify([
            {
              budgets: ["fm8-40"],
              arms: ["seit", "seit_mtm", "seitpp_nomtm", "seitpp", "ca", "ta"],
            },
            { budgets: ["fm8-80"], arms: ["seit", "seitpp_nomtm"] },
            { budgets: ["px14-40"], arms: ["pixel"] },
          ]),
        ],
      ],
    );
    const specs = expandGrid(g, await prepareBudgets(g, join(tmp, "data")), {
      runsDir: join(tmp, "runs"),
    });
    const results = await runGrid(specs, {
      execute: inProcessExecutor({ print: () => {} }),
      print: () => {},
    });
    assert.ok(results.every((r) => r.status === "ran"));
    const runsDir = join(tmp, "runs");

    await t.step("same run folders twice: byte-identical SVG, CSV, markdown and HTML", async () => {
      const a = await writePaperFigures({
        runs: runsDir,
        out: join(tmp, "figA"),
        formats: ["svg"],
      });
      const b = await writePaperFigures({
        runs: runsDir,
        out: join(tmp, "figB"),
        formats: ["svg"],
      });
      assert.deepEqual(a.files, b.files);
      for (
        const want of [
          "accuracy_vs_storage.svg",
          "accuracy_table.csv",
          "ablation.csv",
          "ablation.md",
          "curves_loss_fm8-40.svg",
          "curves_top1_px14-40.svg",
          "pretrain_loss_fm8-40.svg",
          "report.html",
        ]
      ) {
        assert.ok(a.files.includes(want), `${want} written`);
      }
      for (const f of a.files) {
        assert.deepEqual(
          await Deno.readFile(join(tmp, "figB", f)),
          await Deno.readFile(join(tmp, "figA", f)),
          `${f} identical`,
        );
      }
    });

    await t.step("the tables hold what the run folders' metrics.json say", async () => {
      const byCell = new Map<string, number[]>();
      for (const s of specs) {
        if (s.kind === "pretrain") continue;
        const m = JSON.parse(await Deno.readTextFile(join(s.dir, "metrics.json")));
        const key = `${s.config.grid.arm}/${s.config.grid.budget}`;
        byCell.set(key, [...(byCell.get(key) ?? []), 100 * m.eval.top1]);
      }
      const rows = parseCsv(await Deno.readTextFile(join(tmp, "figA", "accuracy_table.csv")));
      assert.equal(rows.length, byCell.size);
      for (const r of rows) {
        const v = byCell.get(`${r.arm}/${r.budget}`)!;
        const [m, s] = meanStd(v);
        assert.equal(Number(r.n), v.length);
        assert.ok(Math.abs(Number(r.top1_mean) - m) < 1e-9, `${r.arm}/${r.budget} mean`);
        assert.ok(Math.abs(Number(r.top1_std) - s!) < 1e-9, `${r.arm}/${r.budget} std`);
        assert.equal(r.seeds, "0 1");
      }
      const ab = parseCsv(await Deno.readTextFile(join(tmp, "figA", "ablation.csv")));
      const arm = {
        "none (SeiT augmentations)": "seit",
        ColorAdapt: "ca",
        TokenAdapt: "ta",
        both: "seitpp_nomtm",
      } as Record<string, string>;
      const armMtm = { "none (SeiT augmentations)": "seit_mtm", both: "seitpp" } as Record<
        string,
        string
      >;
      assert.equal(ab.length, 6, "4 components without MTM, 2 with");
      for (const r of ab) {
        const name = r.mtm === "yes" ? armMtm[r.components] : arm[r.components];
        const [m] = meanStd(byCell.get(`${name}/fm8-40`)!);
        assert.ok(Math.abs(Number(r.top1_mean) - m) < 1e-9, `${r.components} ${r.mtm}`);
      }
      const md = await Deno.readTextFile(join(tmp, "figA", "ablation.md"));
      assert.match(md, /\|components\|no MTM\|MTM\|paper \(ViT-S, IN-100\)\|/);
      assert.match(md, /\|TokenAdapt\|\d+\.\d\d ± \d+\.\d\d \(n=2\)\|\|80\.4\|/);
    });

    await t.step(
      "accuracy vs storage: log x in MB, a line per method with std error bars, pixels as points",
      async () => {
        const runs = await loadGridRuns(runsDir);
        assert.deepEqual(ablationBudgets(runs), ["fm8-40"]);
        const fig = accuracyVsStorageFigure(runs);
        const layout = fig.spec.layout as Any;
        assert.equal(layout.xaxis.type, "log");
        assert.match(layout.xaxis.title.text, /MB/);
        assert.match(layout.yaxis.title.text, /top-1/);
        const names = fig.spec.data.map((tr) => tr.name);
        assert.deepEqual(names, [
          "SeiT",
          "SeiT+MTM",
          "SeiT++ w/o MTM",
          "SeiT++",
          "Pixels 14x14 (ViT)",
        ]);
        const seit = fig.spec.data[0] as Any;
        const bytes = [...new Set(runs.filter((r) => r.arm === "seit").map((r) => r.storageBytes))]
          .sort((a, b) => a - b);
        assert.deepEqual(seit.x, bytes.map((b) => b / 1e6));
        const v40 = runs.filter((r) => r.arm === "seit" && r.budget === "fm8-40").map((r) =>
          100 * r.top1!
        );
        const [m, s] = meanStd(v40);
        assert.ok(Math.abs(seit.y[0] - m) < 1e-9 && Math.abs(seit.error_y.array[0] - s!) < 1e-9);
        assert.equal((fig.spec.data[4] as Any).mode, "markers");
      },
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadGridRuns: after a resume the last record of a step wins; unfinished and pre-training runs are not scored", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const grid = {
      grid: "x",
      kind: "finetune",
      arm: "seit",
      method: "SeiT",
      augment: "none",
      mtm: false,
      budget: "b",
      source: "fmnist8",
      gridSide: 8,
      records: 10,
      storageBytes: 100,
      labelBytes: 20,
      seed: 0,
      pretrain: null,
    };
    const write = async (id: string, log: object[], metrics: object | null) => {
      await Deno.mkdir(join(tmp, id));
      await Deno.writeTextFile(
        join(tmp, id, "config.json"),
        JSON.stringify({ grid: { ...grid, id } }),
      );
      await Deno.writeTextFile(
        join(tmp, id, "log.jsonl"),
        log.map((r) => JSON.stringify(r)).join("\n") + "\n",
      );
      if (metrics) await Deno.writeTextFile(join(tmp, id, "metrics.json"), JSON.stringify(metrics));
    };
    await write("r1", [
      { type: "step", step: 1, loss: 3 },
      { type: "step", step: 2, loss: 2.5 },
      { type: "resume", step: 1 },
      { type: "step", step: 2, loss: 2.4 },
      { type: "eval", step: 2, top1: 0.5 },
    ], { steps: 2, eval: { top1: 0.5, top5: 0.9, n: 50 } });
    await write("r0", [{ type: "step", step: 1, loss: 3 }], null);
    await Deno.mkdir(join(tmp, "not-a-grid-run"));
    const runs = await loadGridRuns(tmp);
    assert.deepEqual(runs.map((r) => r.id), ["r0", "r1"]);
    assert.deepEqual(runs[1].loss, [[1, 3], [2, 2.4]]);
    assert.deepEqual(runs[1].evals, [[2, 0.5]]);
    assert.equal(runs[0].finished, false);
    await assert.rejects(
      () => writePaperFigures({ runs: join(tmp, "r0"), out: join(tmp, "o"), formats: [] }),
      { name: "RangeError", message: /holds no finished grid run/ },
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

// results/grid-v2 is still running: its figures are made from the finished run folders (those
// with metrics.json, the ones committed: `deno task figures --finished`), so the test reads those
// only (`finishedOnly`; every run of the other grids is finished); results/grid-v2-length
// holds the two SeiT runs its length was chosen from; results/grid-v2-sincos is grid v2's
// no-MTM ablation with the sin-cos position-table start, drawn with `--baseline
// results/grid-v2/runs` (its variant_effects table).
// `min`: the fewest svg/csv/md files the grid's committed runs honestly give: every grid writes
// accuracy_table, accuracy_ci and effects (csv + md) and accuracy_vs_storage.svg (7), then a
// curves_loss and a curves_top1 figure per budget (a one-budget grid: 9), the ablation (csv, md,
// svg) once all four components have finished, pre-training curves, and variant_effects and
// variant_mtm_effects (csv + md each) with a baseline
const GRIDS: { grid: string; baseline?: string; min: number }[] = [
  { grid: "results/grid", min: 8 },
  { grid: "results/grid-long", min: 8 },
  { grid: "results/grid-v2", min: 8 },
  { grid: "results/grid-v2-length/L1500", min: 9 },
  { grid: "results/grid-v2-length/L3000", min: 9 },
  { grid: "results/grid-v2-sincos", baseline: "results/grid-v2/runs", min: 13 },
];
for (const { grid, baseline, min } of GRIDS) {
  Deno.test(`the committed ${grid} figures and tables regenerate byte-identically from the committed run logs`, async () => {
    const tmp = await Deno.makeTempDir();
    try {
      const committed = `${grid}/figures`;
      const out = join(tmp, "figures");
      const r = await writePaperFigures({
        runs: `${grid}/runs`,
        out,
        finishedOnly: true,
        formats: ["svg"],
        html: false,
        baseline,
      });
      const compared = (await listFiles(committed)).filter((f) => /\.(svg|csv|md)$/.test(f));
      assert.deepEqual(
        r.files.filter((f) => /\.(svg|csv|md)$/.test(f)),
        compared,
        "the same set of figures and tables",
      );
      assert.ok(compared.length >= min, `${compared.length} files, expected at least ${min}`);
      for (const f of ["accuracy_table.csv", "effects.csv", "accuracy_vs_storage.svg"]) {
        assert.ok(compared.includes(f), `${f} committed`);
      }
      assert.equal(compared.includes("variant_effects.csv"), baseline !== undefined);
      assert.equal(compared.includes("variant_mtm_effects.csv"), baseline !== undefined);
      for (const f of compared) {
        assert.ok(
          (await Deno.readTextFile(join(out, f))) === (await Deno.readTextFile(join(committed, f))),
          `${f} regenerates identically`,
        );
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });
}

Deno.test("storageTable and storageGainsTable: the committed grid's budgets and gains over SeiT; the paper's gains", async () => {
  const acc = accuracyTable(await loadGridRuns("results/grid/runs"));
  const storage = storageTable(acc).objects() as Record<string, number | string>[];
  const fm8 = storage.filter((r) => r.source === "fmnist8");
  assert.deepEqual(fm8.map((r) => r.budget), ["fm8-600", "fm8-2400", "fm8-9600"]);
  for (const r of storage) {
    assert.equal(r.bytes_per_image, (r.storage_bytes as number) / (r.records as number));
  }
  const gains = storageGainsTable(acc).objects() as Record<string, number | string>[];
  assert.deepEqual(gains.map((r) => r.budget), ["fm8-9600", "fm8-2400", "fm8-600"]);
  const mean = (arm: string, budget: string) =>
    (acc.objects() as Record<string, number | string>[])
      .find((r) => r.arm === arm && r.budget === budget)!.top1_mean as number;
  for (const g of gains) {
    const b = g.budget as string;
    assert.equal(g.seit, mean("seit", b));
    assert.equal(g.gain_mtm, mean("seit_mtm", b) - mean("seit", b));
    assert.equal(g.gain_augmentations, mean("seitpp_nomtm", b) - mean("seit", b));
    assert.equal(g.gain_both, mean("seitpp", b) - mean("seit", b));
  }
  const paper = storageGainsTable(null, { published: true }).objects() as Record<string, number>[];
  assert.deepEqual(paper.map((r) => Number(r.gain_both.toFixed(1))), [3.8, 7.8, 13.4]);
  assert.equal(storageGainsTable(accuracyTable([])).numRows(), 0);
});
