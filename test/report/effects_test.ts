import assert from "node:assert/strict";
import {
  accuracyIntervalTable,
  accuracyTable,
  EFFECTS,
  effectsDisplayTable,
  effectsTable,
  loadGridRuns,
  PAPER_RESULTS,
  studentTQuantile,
  welchInterval,
} from "@lib/report";

type Row = Record<string, number | string | null>;

Deno.test("effectsTable: the committed results/grid's differences of means, Welch intervals and the paper's gains", async () => {
  const runs = await loadGridRuns("results/grid/runs");
  const acc = accuracyTable(runs).objects() as Row[];
  const mean = (arm: string, budget: string) =>
    acc.find((r) => r.arm === arm && r.budget === budget)?.top1_mean as number;
  const rows = effectsTable(runs).objects() as Row[];
  // 4 storage effects x 3 budgets + ColorAdapt, TokenAdapt, both, and the two with MTM on
  // fm8-600, + both with MTM (SeiT++ vs SeiT+MTM) x 3 budgets (results/grid has no
  // identity-TokenAdapt arm, so those two rows are absent)
  assert.equal(rows.length, 12 + 5 + 3);
  assert.deepEqual(
    rows.filter((r) => r.effect === "augmentations_mtm").map((r) => `${r.arm}/${r.baseline}`),
    ["seitpp/seit_mtm", "seitpp/seit_mtm", "seitpp/seit_mtm"],
  );
  assert.ok(!rows.some((r) => r.arm === "ita" || r.baseline === "ita"));
  for (const r of rows) {
    const b = r.budget as string;
    assert.ok(
      Math.abs((r.diff as number) - (mean(r.arm as string, b) - mean(r.baseline as string, b))) <
        1e-9,
      `${r.effect} on ${b}: difference of the cell means`,
    );
    const v = (arm: string) =>
      runs.filter((x) => x.arm === arm && x.budget === b && x.finished).map((x) => 100 * x.top1!);
    const ci = welchInterval(v(r.baseline as string), v(r.arm as string));
    assert.equal(r.ci_low, ci.low);
    assert.ok(
      (r.ci_low as number) < (r.diff as number) && (r.diff as number) < (r.ci_high as number),
    );
  }
  // the paper's storage gains by rank: fm8-9600 <-> 1.4 GB ... fm8-600 <-> 0.3 GB
  const both = rows.filter((r) => r.effect === "seitpp").map((r) => [r.budget, r.paper_diff]);
  const p = PAPER_RESULTS.storage;
  assert.deepEqual(both, [
    ["fm8-9600", p[0].seitpp - p[0].seit],
    ["fm8-2400", p[1].seitpp - p[1].seit],
    ["fm8-600", p[2].seitpp - p[2].seit],
  ]);
  const ta = rows.find((r) => r.effect === "tokenadapt")!;
  assert.equal(ta.paper_diff, PAPER_RESULTS.ablation.tokenadapt - PAPER_RESULTS.ablation.seit);
  const shown = effectsDisplayTable(effectsTable(runs)).objects() as Row[];
  assert.equal(shown.length, rows.length);
  assert.ok(shown.every((r) => ["helps", "hurts", "not resolved"].includes(r.verdict as string)));
  assert.ok(EFFECTS.some((e) => e.arm === "ita"));
  // the oracle TokenAdapt arm against SeiT, and TokenAdapt against it
  assert.ok(EFFECTS.some((e) => e.arm === "ota" && e.baseline === "seit"));
  assert.ok(EFFECTS.some((e) => e.arm === "ta" && e.baseline === "ota"));
});

Deno.test("accuracyIntervalTable: each cell's mean with t(0.975, n - 1) s / sqrt(n)", async () => {
  const runs = await loadGridRuns("results/grid-long/runs");
  const acc = accuracyTable(runs).objects() as Row[];
  const cells = accuracyIntervalTable(runs).objects() as Row[];
  assert.equal(cells.length, acc.length);
  for (const c of cells) {
    const a = acc.find((r) => r.arm === c.arm && r.budget === c.budget)!;
    assert.ok(Math.abs((c.top1_mean as number) - (a.top1_mean as number)) < 1e-9);
    const half = studentTQuantile(0.975, (a.n as number) - 1) * (a.top1_std as number) /
      Math.sqrt(a.n as number);
    assert.ok(Math.abs((c.ci_high as number) - (c.top1_mean as number) - half) < 1e-9);
  }
  assert.equal(effectsTable([]).numRows(), 0);
});
