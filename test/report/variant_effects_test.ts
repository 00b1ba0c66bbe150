import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import {
  accuracyTable,
  type GridRunRecord,
  loadGridRuns,
  studentTQuantile,
  variantEffectsDisplayTable,
  variantEffectsTable,
  variantMtmEffectsDisplayTable,
  variantMtmEffectsTable,
  welchInterval,
  writePaperFigures,
} from "@lib/report";

type Row = Record<string, number | string | null>;

function run(
  grid: string,
  arm: string,
  budget: string,
  seed: number,
  top1: number | null,
  more: Partial<GridRunRecord> = {},
): GridRunRecord {
  return {
    grid,
    id: `ft-${arm}-${budget}-s${seed}`,
    kind: "finetune",
    arm,
    method: arm.toUpperCase(),
    augment: "seit",
    mtm: false,
    pretrain: null,
    budget,
    source: "fmnist8",
    gridSide: 8,
    records: budget === "big" ? 2400 : 600,
    storageBytes: budget === "big" ? 140000 : 35000,
    labelBytes: 1200,
    seed,
    dir: "",
    finished: top1 !== null,
    steps: top1 === null ? null : 100,
    top1,
    top5: top1 === null ? null : 0.99,
    testImages: top1 === null ? null : 5000,
    loss: [],
    evals: [],
    ...more,
  } as GridRunRecord;
}

Deno.test("variantEffectsTable: a hand-computed Welch interval (and scipy's) of variant minus base", () => {
  // base 60, 62, 64: mean 62, s^2 = 4; variant 70, 71, 72: mean 71, s^2 = 1.
  // se^2 = 4/3 + 1/3 = 5/3; df = (5/3)^2 / ((4/3)^2 / 2 + (1/3)^2 / 2) = 50/17;
  // half = t(0.975, 50/17) * sqrt(5/3)
  const base = [60, 62, 64].map((v, s) => run("base", "seit", "small", s, v / 100));
  const variant = [70, 71, 72].map((v, s) => run("variant", "seit", "small", s, v / 100));
  const [r] = variantEffectsTable(base, variant).objects() as Row[];
  assert.equal(r.arm, "seit");
  assert.equal(r.n_base, 3);
  assert.equal(r.n_variant, 3);
  assert.ok(Math.abs((r.base_mean as number) - 62) < 1e-9);
  assert.ok(Math.abs((r.variant_mean as number) - 71) < 1e-9);
  assert.ok(Math.abs((r.diff as number) - 9) < 1e-9);
  assert.ok(Math.abs((r.df as number) - 50 / 17) < 1e-9);
  const half = studentTQuantile(0.975, 50 / 17) * Math.sqrt(5 / 3);
  assert.ok(Math.abs((r.ci_low as number) - (9 - half)) < 1e-9);
  // python3 -c "from scipy import stats; r = stats.ttest_ind([70,71,72], [60,62,64],
  //   equal_var=False); print(r.df, r.confidence_interval(0.95))"  (scipy 1.17.1)
  assert.ok(Math.abs((r.ci_low as number) - 4.8446004968174945) < 1e-6);
  assert.ok(Math.abs((r.ci_high as number) - 13.155399503182505) < 1e-6);
  // unequal seeds and a variant below its base: scipy, as above with
  // [60.1, 62.5, 61.9, 60.7] vs [61.2, 63.0]
  const b2 = [61.2, 63.0].map((v, s) => run("base", "ta", "small", s, v / 100));
  const v2 = [60.1, 62.5, 61.9, 60.7].map((v, s) => run("variant", "ta", "small", s, v / 100));
  const [q] = variantEffectsTable(b2, v2).objects() as Row[];
  assert.ok(Math.abs((q.df as number) - 1.7958023611718419) < 1e-6);
  assert.ok(Math.abs((q.ci_low as number) - -5.864745816775) < 1e-6);
  assert.ok(Math.abs((q.ci_high as number) - 4.264745816774991) < 1e-6);
  const [shown] = variantEffectsDisplayTable(variantEffectsTable(b2, v2)).objects() as Row[];
  assert.deepEqual(shown, {
    arm: "TA (ta)",
    budget: "small",
    "base mean (n)": "62.10 (n=2)",
    "variant mean (n)": "61.30 (n=4)",
    "difference (points)": "-0.80",
    "95% CI (Welch t)": "[-5.86, +4.26]",
    verdict: "not resolved",
  });
});

Deno.test("variantEffectsTable: cells finished in both only, by arm then the largest budget first; one seed has no interval", () => {
  const base = [
    run("base", "ta", "small", 0, 0.60),
    run("base", "ta", "small", 1, 0.62),
    run("base", "seit", "small", 0, 0.60),
    run("base", "seit", "small", 1, 0.61),
    run("base", "seit", "big", 0, 0.70),
    run("base", "seit", "big", 1, 0.72),
    run("base", "ca", "small", 0, 0.60), // the variant has no ca run
    run("base", "pixel", "small", 0, 0.5),
  ];
  const variant = [
    run("variant", "ta", "small", 0, 0.50),
    run("variant", "ta", "small", 1, 0.51),
    run("variant", "ta", "small", 2, null), // unfinished: not counted
    run("variant", "seit", "small", 0, 0.66),
    run("variant", "seit", "small", 1, 0.68),
    run("variant", "seit", "big", 0, 0.71),
    run("variant", "seit", "big", 1, 0.74),
    run("variant", "ita", "small", 0, 0.66), // the base has no ita run
    run("variant", "pixel", "small", 0, 0.55), // one seed each
    run("variant", "mtm", "small", 0, null, { kind: "pretrain" }),
  ];
  const t = variantEffectsTable(base, variant);
  const rows = t.objects() as Row[];
  assert.deepEqual(rows.map((r) => `${r.arm}/${r.budget}`), [
    "seit/big",
    "seit/small",
    "ta/small",
    "pixel/small",
  ]);
  const ta = rows.find((r) => r.arm === "ta")!;
  assert.equal(ta.n_variant, 2);
  const ci = welchInterval([60, 62], [50, 51]);
  assert.equal(ta.ci_low, ci.low);
  assert.equal(ta.ci_high, ci.high);
  const shown = variantEffectsDisplayTable(t).objects() as Row[];
  assert.equal(shown[2].verdict, "hurts");
  const pixel = rows.find((r) => r.arm === "pixel")!;
  assert.equal(pixel.ci_low, null);
  assert.ok(Math.abs((pixel.diff as number) - 5) < 1e-9);
  assert.equal(shown[3]["95% CI (Welch t)"], "(one seed)");
  assert.equal(shown[3].verdict, "");
  assert.equal(variantEffectsTable(base, []).numRows(), 0);
  assert.equal(variantEffectsDisplayTable(variantEffectsTable([], variant)).numRows(), 0);
});

Deno.test("variantEffectsTable: a budget id naming another stored set in the variant is refused", () => {
  const base = [run("base", "seit", "small", 0, 0.6)];
  const variant = [run("variant", "seit", "small", 0, 0.7, { storageBytes: 35001 })];
  assert.throws(() => variantEffectsTable(base, variant), {
    name: "RangeError",
    message: 'Cannot compare budget "small" of the variant with the base: the base\'s runs ' +
      "train on fmnist8, 600 records, 35000 bytes, the variant's ft-seit-small-s0 on fmnist8, " +
      "600 records, 35001 bytes",
  });
});

Deno.test("variantEffectsTable: results/grid-v2-sincos against results/grid-v2, the cells' means and Welch intervals", async () => {
  const base = await loadGridRuns("results/grid-v2/runs");
  const variant = await loadGridRuns("results/grid-v2-sincos/runs");
  const mean = (runs: GridRunRecord[], arm: string, budget: string) =>
    (accuracyTable(runs).objects() as Row[]).find((r) => r.arm === arm && r.budget === budget)
      ?.top1_mean as number;
  const rows = variantEffectsTable(base, variant).objects() as Row[];
  assert.ok(rows.length >= 1, "the sin-cos variant's SeiT runs have finished");
  // every (arm, budget) cell with finished runs on both sides, no other
  const cells = (runs: GridRunRecord[]) =>
    new Set(
      runs.filter((x) => x.kind !== "pretrain" && x.finished).map((x) => `${x.arm} ${x.budget}`),
    );
  const both = [...cells(variant)].filter((c) => cells(base).has(c)).sort();
  assert.deepEqual(rows.map((r) => `${r.arm} ${r.budget}`).sort(), both);
  assert.ok(both.includes("seit fm8-600") && both.includes("seit fm8-9600"), both.join(", "));
  for (const r of rows) {
    const arm = r.arm as string, budget = r.budget as string;
    assert.ok(
      Math.abs((r.diff as number) - (mean(variant, arm, budget) - mean(base, arm, budget))) < 1e-9,
    );
    const v = (runs: GridRunRecord[]) =>
      runs.filter((x) => x.arm === arm && x.budget === budget && x.finished)
        .sort((a, b) => a.seed - b.seed).map((x) => 100 * x.top1!);
    const ci = welchInterval(v(base), v(variant));
    assert.equal(r.ci_low, ci.low ?? null);
    assert.equal(r.ci_high, ci.high ?? null);
  }
});

Deno.test("variantMtmEffectsTable: the base's MTM arms against the variant's from-scratch baselines, scipy's Welch interval", () => {
  const mtm = { mtm: true, pretrain: "pt" };
  const base = [
    ...[70, 71, 72].map((v, s) => run("base", "seit_mtm", "small", s, v / 100, mtm)),
    ...[66, 67].map((v, s) => run("base", "seitpp", "small", s, v / 100, mtm)),
    run("base", "seitpp", "big", 0, 0.8, mtm),
    run("base", "ca_mtm", "small", 0, 0.7, mtm), // its baseline seit_mtm is an MTM arm
    run("base", "seit", "small", 0, 0.5), // a base baseline is never used
    run("base", "seit_mtm", "big", 0, null, mtm), // unfinished
  ];
  const variant = [
    ...[60, 62, 64].map((v, s) => run("variant", "seit", "small", s, v / 100)),
    run("variant", "seit", "big", 0, 0.75),
    run("variant", "seit", "big", 1, null), // unfinished
    run("variant", "ca", "small", 0, 0.6), // no effect has ca as its baseline
  ];
  const t = variantMtmEffectsTable(base, variant);
  const rows = t.objects() as Row[];
  assert.deepEqual(rows.map((r) => `${r.effect} ${r.arm}/${r.baseline} ${r.budget}`), [
    "mtm seit_mtm/seit small",
    "seitpp seitpp/seit big",
    "seitpp seitpp/seit small",
  ]);
  // seit_mtm 70, 71, 72 (base) minus seit 60, 62, 64 (variant): scipy as in the first test
  const [m] = rows;
  assert.equal(m.n_arm, 3);
  assert.equal(m.n_baseline, 3);
  assert.ok(Math.abs((m.arm_mean as number) - 71) < 1e-9);
  assert.ok(Math.abs((m.baseline_mean as number) - 62) < 1e-9);
  assert.ok(Math.abs((m.diff as number) - 9) < 1e-9);
  assert.ok(Math.abs((m.ci_low as number) - 4.8446004968174945) < 1e-6);
  assert.ok(Math.abs((m.ci_high as number) - 13.155399503182505) < 1e-6);
  assert.equal(rows[1].ci_low, null); // one seed a side
  assert.ok(Math.abs((rows[1].diff as number) - 5) < 1e-9);
  const shown = variantMtmEffectsDisplayTable(t).objects() as Row[];
  assert.deepEqual(shown[0], {
    component: "MTM (SeiT+MTM vs SeiT)",
    budget: "small",
    "arm mean, base (n)": "71.00 (n=3)",
    "baseline mean, variant (n)": "62.00 (n=3)",
    "effect (points)": "+9.00",
    "95% CI (Welch t)": "[+4.84, +13.16]",
    verdict: "helps",
  });
  assert.equal(shown[1]["95% CI (Welch t)"], "(one seed)");
  // the same arm id run without MTM in the base (a grid without pre-training) gives no row
  const plain = [70, 71].map((v, s) => run("base", "seitpp", "small", s, v / 100));
  assert.equal(variantMtmEffectsTable(plain, variant).numRows(), 0);
  assert.equal(variantMtmEffectsDisplayTable(variantMtmEffectsTable(base, [])).numRows(), 0);
  assert.throws(
    () =>
      variantMtmEffectsTable(base, [run("variant", "seit", "small", 0, 0.7, { storageBytes: 1 })]),
    { name: "RangeError", message: /Cannot compare budget "small"/ },
  );
});

Deno.test("variantMtmEffectsTable: results/grid-v2's MTM arms against results/grid-v2-sincos's SeiT, from the committed metrics", async () => {
  const base = await loadGridRuns("results/grid-v2/runs");
  const variant = await loadGridRuns("results/grid-v2-sincos/runs");
  const rows = variantMtmEffectsTable(base, variant).objects() as Row[];
  // the sin-cos grid has SeiT on every 8x8 budget; the base has SeiT+MTM and SeiT++ on each
  for (const b of ["fm8-600", "fm8-2400", "fm8-9600"]) {
    for (const e of ["mtm", "seitpp"]) {
      assert.ok(rows.some((r) => r.effect === e && r.budget === b), `${e} on ${b}`);
    }
  }
  for (const r of rows) {
    // each finished run's test top-1 read from its metrics.json, by seed
    const top1 = async (grid: string, arm: string) => {
      const out: [number, number][] = [];
      for (const x of (grid === "base" ? base : variant)) {
        if (x.arm !== arm || x.budget !== r.budget || x.kind === "pretrain") continue;
        try {
          const m = JSON.parse(await Deno.readTextFile(join(x.dir, "metrics.json")));
          out.push([x.seed, 100 * m.eval.top1]);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
      return out.sort((p, q) => p[0] - q[0]).map((p) => p[1]);
    };
    const a = await top1("base", r.arm as string), s = await top1("variant", r.baseline as string);
    assert.equal(r.n_arm, a.length);
    assert.equal(r.n_baseline, s.length);
    const ci = welchInterval(s, a);
    assert.ok(Math.abs((r.diff as number) - ci.estimate) < 1e-9);
    assert.equal(r.ci_low, ci.low ?? null);
    assert.equal(r.ci_high, ci.high ?? null);
  }
});

Deno.test("writePaperFigures with a baseline: variant_effects.md's caption names both run folders from the root, however they are given", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const r = await writePaperFigures({
      runs: resolve("results/grid-v2-sincos/runs"),
      out: join(tmp, "figures"),
      finishedOnly: true,
      formats: [],
      html: false,
      baseline: resolve("results/grid-v2/runs"),
    });
    assert.ok(r.files.includes("variant_effects.csv") && r.files.includes("variant_effects.md"));
    assert.ok(r.files.includes("variant_mtm_effects.md"));
    assert.match(
      await Deno.readTextFile(join(tmp, "figures", "variant_mtm_effects.md")),
      /^The MTM arms of the base results\/grid-v2\/runs against the from-scratch baseline arms of the variant results\/grid-v2-sincos\/runs: /,
    );
    const md = await Deno.readTextFile(join(tmp, "figures", "variant_effects.md"));
    assert.match(
      md,
      /^Variant results\/grid-v2-sincos\/runs against its base results\/grid-v2\/runs: /,
    );
    assert.equal(md, await Deno.readTextFile("results/grid-v2-sincos/figures/variant_effects.md"));
    const plain = await writePaperFigures({
      runs: "results/grid-v2-sincos/runs",
      out: join(tmp, "plain"),
      finishedOnly: true,
      formats: [],
      html: false,
    });
    assert.ok(!plain.files.some((f) => f.startsWith("variant_effects")));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
