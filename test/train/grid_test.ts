import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { readIdxImagesAndLabels } from "@lib/io";
import { openTokenDataset, tokenIndexPath } from "@lib/tokens";
import {
  applyGridOverrides,
  balancedSubset,
  downsampleImages,
  expandGrid,
  type GridConfig,
  GridConflictError,
  gridRunState,
  inProcessExecutor,
  prepareBudgets,
  readConfigFile,
  readRunLog,
  RECIPE_VERSION,
  resolveGridConfig,
  runGrid,
  runGridRun,
  RunStoppedError,
  storedRunStep,
} from "@lib/train";

await initBackend({ backend: "wasm" });

// deno-lint-ignore no-explicit-any
type Any = any;

/** configs/grid_tiny.json, optionally narrowed. */
async function tinyGrid(overrides: [string, string][] = []): Promise<GridConfig> {
  const g = resolveGridConfig(await readConfigFile("configs/grid_tiny.json"), "grid_tiny.json");
  return applyGridOverrides(g, overrides);
}

Deno.test("resolveGridConfig refuses unknown keys, arms and budgets, TokenAdapt arms without weights, unbalanced records", async () => {
  const base = await readConfigFile("configs/grid_tiny.json") as Record<string, unknown>;
  const bad = (patch: Record<string, unknown>) =>
    resolveGridConfig({ ...base, ...patch }, "x.json");
  assert.throws(() => bad({ finetuneStep: 3 }), {
    name: "TypeError",
    message: /Unknown config key "finetuneStep" \(in x\.json\)/,
  });
  assert.throws(() => bad({ cells: [{ budgets: ["fm8-40"], arms: ["seit+"] }] }), {
    name: "RangeError",
    message: /cells\[0\]: unknown arm "seit\+"/,
  });
  assert.throws(() => bad({ cells: [{ budgets: ["fm8-4000"], arms: ["seit"] }] }), {
    name: "RangeError",
    message: /unknown budget "fm8-4000"/,
  });
  assert.throws(() => bad({ cells: [{ budgets: ["fm16-40"], arms: ["seitpp"] }] }), {
    name: "RangeError",
    message: /arm "seitpp" uses TokenAdapt but token set "fmnist16" has no tokenAdapt weights/,
  });
  assert.throws(() => bad({ cells: [{ budgets: ["px28-40"], arms: ["seit"] }] }), {
    name: "RangeError",
    message: /arm "seit" cannot run on budget "px28-40"/,
  });
  assert.throws(
    () =>
      bad({
        budgets: [{ id: "a", tokens: "fmnist8", records: 45 }],
        cells: [{ budgets: ["a"], arms: ["seit"] }],
      }),
    { name: "RangeError", message: /records 45 must be a positive multiple of 10/ },
  );
  assert.throws(() => applyGridOverrides(resolveGridConfig(base), [["seeds", "[0,0]"]]), {
    name: "RangeError",
    message: /seeds \[0,0\] repeat/,
  });
  assert.throws(() => applyGridOverrides(resolveGridConfig(base), [["model.depth", "x"]]), {
    name: "TypeError",
    message: /model\.depth/,
  });
});

Deno.test("balancedSubset: class-balanced, nested across sizes, seeded; downsampleImages averages blocks", () => {
  const labels = Array.from({ length: 200 }, (_, i) => (i * 7) % 10);
  const a = balancedSubset(labels, 40, 3), b = balancedSubset(labels, 80, 3);
  assert.equal(a.length, 40);
  assert.deepEqual([...a].sort((x, y) => x - y), a, "ascending");
  for (let c = 0; c < 10; c++) assert.equal(a.filter((i) => labels[i] === c).length, 4);
  assert.ok(a.every((i) => b.includes(i)), "the smaller budget is inside the larger one");
  assert.notDeepEqual(balancedSubset(labels, 40, 4), a, "another seed, another subset");
  assert.throws(() => balancedSubset(labels, 300, 0), { name: "RangeError", message: /class 0/ });
  const img = Uint8Array.from([0, 2, 4, 6, 1, 3, 5, 7, 8, 8, 9, 9, 8, 8, 9, 255]);
  assert.deepEqual([...downsampleImages(img, [1, 4, 4], 2)], [2, 6, 8, 71]);
  assert.throws(() => downsampleImages(img, [1, 4, 4], 3), RangeError);
});

Deno.test("prepareBudgets writes official-format subsets and measures their stored bytes; pixels are the same images", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const g = await tinyGrid();
    const budgets = await prepareBudgets(g, join(tmp, "data"));
    assert.deepEqual(budgets.map((b) => b.id), [
      "fm8-40",
      "fm8-80",
      "fm16-40",
      "px28-40",
      "px14-40",
    ]);
    const fm8 = budgets[0];
    const ds = await openTokenDataset(fm8.train, { codebookSize: 256 });
    assert.equal(ds.length, 40);
    assert.equal(ds.gridSide, 8);
    for (let c = 0; c < 10; c++) assert.equal(ds.labels!.filter((l) => l === c).length, 4);
    const full = await openTokenDataset(g.tokens.fmnist8.train, { codebookSize: 256 });
    assert.deepEqual(ds.readBatch([5]), full.readBatch([fm8.indices[5]]), "records copied exactly");
    const bytes = (await Deno.stat(fm8.train)).size +
      (await Deno.stat(tokenIndexPath(fm8.train))).size;
    assert.equal(fm8.storageBytes, bytes, "storage = data + index bytes on disk");
    assert.ok(
      budgets[1].indices.length === 80 && fm8.indices.every((i) => budgets[1].indices.includes(i)),
    );
    assert.equal(budgets[2].gridSide, 16);
    const px = budgets[3];
    assert.deepEqual(px.indices, fm8.indices, "the pixel budget holds the same images");
    assert.equal(px.storageBytes, (await Deno.stat(px.train)).size);
    const img = await readIdxImagesAndLabels(px.train, px.labels);
    assert.deepEqual(img.images.shape, [40, 28, 28]);
    assert.deepEqual([...img.labels.data as Uint8Array], [...ds.labels!]);
    assert.deepEqual(
      (await readIdxImagesAndLabels(budgets[4].train, budgets[4].labels)).images.shape,
      [40, 14, 14],
    );
    assert.ok(budgets[4].storageBytes < px.storageBytes);
    // prepared again: measured, not rewritten
    const mtime = (await Deno.stat(fm8.train)).mtime!.getTime();
    const again = await prepareBudgets(g, join(tmp, "data"));
    assert.deepEqual(again, budgets);
    assert.equal((await Deno.stat(fm8.train)).mtime!.getTime(), mtime);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("expandGrid: arm x budget x seed fine-tunings, one shared MTM pre-training per budget x seed, pre-training first", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const g = await tinyGrid();
    const budgets = await prepareBudgets(g, join(tmp, "data"));
    const specs = expandGrid(g, budgets, { runsDir: join(tmp, "runs") });
    const ids = specs.map((s) => s.id);
    assert.equal(new Set(ids).size, ids.length, "unique ids");
    // 2 seeds x (2 fm8 budgets x 4 arms + 4 ablation arms + 2 fm16 arms + 2 pixel) = 32 runs,
    // plus pre-training per seed: without TokenAdapt for fm8-40, fm8-80, fm16-40 and with it
    // (the TokenAdapt arms' own pre-training, as the reference's SeiT++) for fm8-40, fm8-80 = 10
    assert.equal(specs.length, 42);
    const pre = specs.filter((s) => s.kind === "pretrain");
    assert.deepEqual(pre.map((s) => s.id), [
      "pt-fm8-40-s0",
      "pt-ta-fm8-40-s0",
      "pt-fm8-80-s0",
      "pt-ta-fm8-80-s0",
      "pt-fm16-40-s0",
      "pt-fm8-40-s1",
      "pt-ta-fm8-40-s1",
      "pt-fm8-80-s1",
      "pt-ta-fm8-80-s1",
      "pt-fm16-40-s1",
    ]);
    assert.ok(
      ids.indexOf("pt-fm16-40-s1") < ids.indexOf("ft-seit-fm8-40-s0"),
      "pre-training first",
    );
    assert.ok(ids.indexOf("px-px14-40-s0") < ids.indexOf("ft-seit-fm8-40-s1"), "seed by seed");
    const byId = new Map(specs.map((s) => [s.id, s]));
    const users = (pt: string) => specs.filter((s) => s.deps.includes(pt)).map((s) => s.id).sort();
    assert.deepEqual(users("pt-fm8-40-s0"), ["ft-ca_mtm-fm8-40-s0", "ft-seit_mtm-fm8-40-s0"]);
    assert.deepEqual(users("pt-ta-fm8-40-s0"), ["ft-seitpp-fm8-40-s0", "ft-ta_mtm-fm8-40-s0"]);
    const sp = byId.get("ft-seitpp-fm8-40-s0")!.config as Any;
    assert.equal(sp.init, join(tmp, "runs", "pt-ta-fm8-40-s0"));
    assert.equal(sp.recipe, RECIPE_VERSION);
    assert.equal(sp.augment, "seitpp");
    const spStep = storedRunStep(sp)!;
    assert.equal(spStep.tokenAdapt, true);
    assert.equal(spStep.colorAdapt, true);
    assert.equal(spStep.noiseStd, 0.18);
    // fine-tuned from a checkpoint: the MAE head init
    assert.equal(sp.model.headInitStd, 2e-5);
    assert.equal(sp.tokenAdaptWeights, g.tokens.fmnist8.tokenAdapt);
    assert.equal(sp.seed, 0);
    assert.equal(sp.grid.storageBytes, budgets[0].storageBytes);
    const seit = byId.get("ft-seit-fm8-40-s1")!.config as Any;
    const seitStep = storedRunStep(seit)!;
    assert.deepEqual([
      seit.init,
      seitStep.tokenAdapt,
      seitStep.colorAdapt,
      seitStep.noise,
    ], [
      null,
      false,
      false,
      true,
    ]);
    // from scratch: timm's init
    assert.deepEqual([seit.model.headInitStd, seit.model.posEmbedInit], [0.02, "trunc_normal"]);
    assert.equal(seit.tokenAdaptWeights, null);
    const ca = storedRunStep(byId.get("ft-ca-fm8-40-s0")!.config)!;
    const ta = storedRunStep(byId.get("ft-ta-fm8-40-s0")!.config)!;
    assert.deepEqual([
      ca.colorAdapt,
      ca.tokenAdapt,
      ta.colorAdapt,
      ta.tokenAdapt,
    ], [
      true,
      false,
      false,
      true,
    ]);
    // the schedule: epochs = round(steps / steps per epoch); 40 records / batch 8 = 5 per epoch
    assert.equal(seit.epochs, 1);
    assert.equal((byId.get("ft-seit-fm8-80-s0")!.config as Any).epochs, 1);
    const pt = byId.get("pt-fm8-40-s0")!.config as Any;
    assert.equal(storedRunStep(pt)!.tokenAdapt, false);
    assert.equal(pt.model.embedDim, 16);
    const ptTa = byId.get("pt-ta-fm8-40-s0")!.config as Any;
    assert.equal(storedRunStep(ptTa)!.tokenAdapt, true);
    assert.equal(ptTa.tokenAdaptWeights, g.tokens.fmnist8.tokenAdapt);
    const px = byId.get("px-px14-40-s0")!.config as Any;
    assert.deepEqual([px.model.imageSize, px.model.patchSize, px.data.imageSize], [14, 2, 14]);
    assert.equal(px.grid.arm, "pixel");
    // expansion is pure: the same inputs give the same specs
    assert.deepEqual(expandGrid(g, budgets, { runsDir: join(tmp, "runs") }), specs);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** A small grid: SeiT and SeiT+MTM on fm8-40 (one seed) and a 14x14 pixel run. */
async function miniSpecs(tmp: string, steps = "4") {
  const g = await tinyGrid([
    ["seeds", "[0]"],
    [
      "cells",
      JSON.stringify([
        { budgets: ["fm8-40"], arms: ["seit", "seit_mtm"] },
        { budgets: ["px14-40"], arms: ["pixel"] },
      ]),
    ],
    ["finetuneSteps", steps],
  ]);
  const budgets = await prepareBudgets(g, join(tmp, "data"));
  return expandGrid(g, budgets, { runsDir: join(tmp, "runs") });
}

Deno.test("runGrid runs every run once, then skips the finished ones; no tensors leak", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const specs = await miniSpecs(tmp);
    assert.deepEqual(specs.map((s) => s.id), [
      "pt-fm8-40-s0",
      "ft-seit-fm8-40-s0",
      "ft-seit_mtm-fm8-40-s0",
      "px-px14-40-s0",
    ]);
    const before = tf.memory().numTensors;
    const lines: string[] = [];
    const r1 = await runGrid(specs, {
      execute: inProcessExecutor({ print: () => {} }),
      print: (l) => lines.push(l),
    });
    assert.deepEqual(r1.map((r) => r.status), ["ran", "ran", "ran", "ran"]);
    assert.equal(tf.memory().numTensors, before);
    for (const s of specs) {
      assert.deepEqual(await gridRunState(s), { state: "done" });
      const cfg = JSON.parse(await Deno.readTextFile(join(s.dir, "config.json")));
      assert.deepEqual(cfg, s.config, "config.json is the spec's config");
    }
    assert.ok(r1.slice(1).every((r) => typeof r.top1 === "number"));
    const logs = await Promise.all(specs.map((s) => Deno.readTextFile(join(s.dir, "log.jsonl"))));
    const r2 = await runGrid(specs, {
      execute: () => Promise.reject(new Error("must not run")),
      print: () => {},
    });
    assert.deepEqual(r2.map((r) => r.status), ["skipped", "skipped", "skipped", "skipped"]);
    assert.deepEqual(r2.map((r) => r.top1), r1.map((r) => r.top1));
    const logs2 = await Promise.all(specs.map((s) => Deno.readTextFile(join(s.dir, "log.jsonl"))));
    assert.deepEqual(logs2, logs, "skipped runs are untouched");
    // a folder holding another configuration is refused before anything runs
    const cfgPath = join(specs[1].dir, "config.json");
    const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...cfg, blr: 1 }));
    await assert.rejects(
      () =>
        runGrid(specs, {
          execute: () => Promise.reject(new Error("must not run")),
          print: () => {},
        }),
      (e: Error) =>
        e instanceof GridConflictError && /blr/.test(e.message) && e.message.includes(specs[1].dir),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/**
 * Run folder `b` (interrupted and resumed) ended exactly as `a` (uninterrupted): the same loss
 * at every step, the same evaluation, byte-identical final weights. Returns `a`'s [step, loss].
 */
async function assertSameRun(a: string, b: string, id: string): Promise<unknown[][]> {
  const la = (await readRunLog(a)).filter((x) => x.type === "step").map((x) => [x.step, x.loss]);
  const lbAll = (await readRunLog(b)).filter((x) => x.type === "step");
  // after a resume the steps past the checkpoint are logged again: the last record of a step wins
  const lb = [...new Map(lbAll.map((x) => [x.step, x.loss])).entries()];
  assert.deepEqual(lb, la, `${id}: bit-identical losses`);
  const ma = JSON.parse(await Deno.readTextFile(join(a, "metrics.json")));
  const mb = JSON.parse(await Deno.readTextFile(join(b, "metrics.json")));
  assert.deepEqual(mb.eval, ma.eval, `${id}: same evaluation`);
  assert.deepEqual(
    await Deno.readFile(join(b, "model.safetensors")),
    await Deno.readFile(join(a, "model.safetensors")),
    `${id}: same final weights`,
  );
  return la;
}

Deno.test("an interrupted run resumes from its checkpoint and ends exactly as an uninterrupted one", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const specsA = await miniSpecs(join(tmp, "a"), "10");
    const specsB = await miniSpecs(join(tmp, "b"), "10");
    const quiet = { print: () => {} };
    // A: every run uninterrupted
    await runGrid(specsA, { execute: inProcessExecutor(quiet), print: () => {} });
    // B: the pre-training and one fine-tuning are stopped after 3 steps
    let steps = 0;
    const stopAt3 = () => ++steps >= 3;
    await assert.rejects(() => runGridRun(specsB[0], { ...quiet, stop: stopAt3 }), RunStoppedError);
    assert.deepEqual(await gridRunState(specsB[0]), { state: "resume", step: 3 });
    steps = 0;
    await assert.rejects(() => runGridRun(specsB[3], { ...quiet, stop: stopAt3 }), RunStoppedError);
    // the scheduler resumes both, waits for the pre-training, runs the rest
    const order: string[] = [];
    const r = await runGrid(specsB, {
      execute: (s, st) => {
        order.push(`${s.id}:${st.state}`);
        return inProcessExecutor(quiet)(s, st);
      },
      print: () => {},
    });
    assert.deepEqual(r.map((x) => x.status), ["resumed", "ran", "ran", "resumed"]);
    assert.deepEqual(order, [
      "pt-fm8-40-s0:resume",
      "ft-seit-fm8-40-s0:fresh",
      "ft-seit_mtm-fm8-40-s0:fresh",
      "px-px14-40-s0:resume",
    ]);
    for (let i = 0; i < specsA.length; i++) {
      await assertSameRun(specsA[i].dir, specsB[i].dir, specsA[i].id);
    }
    const types = (await readRunLog(specsB[0].dir)).map((x) => x.type);
    assert.deepEqual(types.filter((t) => ["start", "stopped", "resume", "end"].includes(t)), [
      "start",
      "stopped",
      "resume",
      "end",
    ]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("an interrupted SeiT++ fine-tuning (TokenAdapt half, ColorAdapt, Emb-Noise, Mixup/CutMix) resumes exactly", async () => {
  // the augmentations draw from their own streams: the checkpoint must carry them too (grid v2
  // resumed such runs, e.g. ft-seitpp_nomtm-fm8-9600-s2 from step 500)
  const tmp = await Deno.makeTempDir();
  try {
    const specs = async (dir: string) => {
      const g = await tinyGrid([
        ["seeds", "[0]"],
        ["cells", JSON.stringify([{ budgets: ["fm8-40"], arms: ["seitpp_nomtm"] }])],
        ["finetuneSteps", "10"],
      ]);
      return expandGrid(g, await prepareBudgets(g, join(dir, "data")), {
        runsDir: join(dir, "runs"),
      });
    };
    const [a] = await specs(join(tmp, "a")), [b] = await specs(join(tmp, "b"));
    assert.equal(a.id, "ft-seitpp_nomtm-fm8-40-s0");
    assert.equal(a.config.augment, "seitpp");
    assert.ok(a.config.tokenAdaptWeights);
    const quiet = { print: () => {} };
    await runGridRun(a, quiet);
    // stopped twice: after 3 steps, then 4 steps into the resumed run (at step 7)
    for (const [after, at] of [[3, 3], [4, 7]]) {
      let steps = 0;
      await assert.rejects(
        () => runGridRun(b, { ...quiet, stop: () => ++steps >= after }),
        RunStoppedError,
      );
      assert.deepEqual(await gridRunState(b), { state: "resume", step: at });
    }
    await runGridRun(b, quiet);
    assert.equal((await assertSameRun(a.dir, b.dir, a.id)).length, 10);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("runGrid: a failed pre-training blocks the runs that need it; the others run", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const specs = await miniSpecs(tmp);
    const r = await runGrid(specs, {
      jobs: 2,
      execute: (s) => s.kind === "pretrain" ? Promise.reject(new Error("boom")) : Promise.resolve(),
      print: () => {},
    });
    assert.deepEqual(r.map((x) => x.status), ["failed", "ran", "blocked", "ran"]);
    assert.equal(r[0].message, "boom");
    assert.match(r[2].message!, /needs pt-fm8-40-s0/);
    await assert.rejects(
      () => runGrid(specs, { jobs: 0, execute: () => Promise.resolve() }),
      RangeError,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("deno task ablate --jobs 2: runs in child processes, stops on SIGTERM with checkpoints, resumes", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const cells = JSON.stringify([
      { budgets: ["fm8-40"], arms: ["seit"] },
      { budgets: ["px14-40"], arms: ["pixel"] },
    ]);
    const args = [
      "run",
      "-A",
      "tasks/ablate.ts",
      "--grid",
      "configs/grid_tiny.json",
      "--out",
      tmp,
      "--jobs",
      "2",
      "--backend",
      "wasm",
      "--seeds=[0]",
      `--cells=${cells}`,
      "--finetuneSteps=400",
    ];
    const child = new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
      .spawn();
    // stop as soon as both runs have a checkpoint
    const ck = [
      join(tmp, "runs/ft-seit-fm8-40-s0/checkpoint.json"),
      join(tmp, "runs/px-px14-40-s0/checkpoint.json"),
    ];
    const t0 = Date.now();
    for (;;) {
      const have = await Promise.all(ck.map((p) => Deno.stat(p).then(() => true, () => false)));
      if (have.every((x) => x)) break;
      if (Date.now() - t0 > 60000) throw new Error("no checkpoints after 60 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGTERM");
    const out1 = await child.output();
    const err1 = new TextDecoder().decode(out1.stderr);
    assert.equal(out1.code, 1, err1);
    assert.match(err1, /ft-seit-fm8-40-s0: stopped/);
    assert.match(err1, /0 failed, 0 blocked, 2 stopped/);
    const out2 = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
      .output();
    const err2 = new TextDecoder().decode(out2.stderr);
    assert.equal(out2.code, 0, err2);
    assert.match(err2, /0 ran, 2 resumed, 0 skipped/);
    const summary = await Deno.readTextFile(join(tmp, "summary.md"));
    assert.match(summary, /\|SeiT\|fm8-40\|40\|2\.7\|\d+\.\d\d \(n=1\)\|0\|/);
    assert.match(await Deno.readTextFile(join(tmp, "summary.csv")), /^method,arm,budget,/);
    assert.match(new TextDecoder().decode(out2.stdout), /Pixels 14x14/);
    const log = await readRunLog(join(tmp, "runs/ft-seit-fm8-40-s0"));
    assert.ok(log.some((r) => r.type === "stopped") && log.some((r) => r.type === "resume"));
    assert.equal(log.at(-1)!.type, "end");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
