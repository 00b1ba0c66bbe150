/**
 * The run-config shape and recipe version: timm's from-scratch init in the tasks' resolution,
 * recipe-1 folders refused for resuming (with how to re-run them) but still described, and
 * the committed grid folders recognised as recipe 1 by the grid.
 */
import assert from "node:assert/strict";
import { initBackend } from "@lib/backend";
import { TokenClassifier } from "@lib/models";
import { Rng } from "@lib/random";
import {
  checkRecipeVersion,
  describeRecipe,
  expandGrid,
  GridConflictError,
  gridRunState,
  launchRun,
  LegacyRecipeError,
  plannedBudgets,
  readConfigFile,
  RECIPE_VERSION,
  recipeVersionOf,
  resolveGridConfig,
} from "@lib/train";
import { resolveRun } from "../../tasks/_train_cli.ts";

const args = (overrides: [string, string][], init?: string) => ({
  config: "configs/finetune_demo.json",
  help: false,
  overrides,
  ...(init === undefined ? {} : { init }),
});

Deno.test("finetune from scratch starts from timm's init; from a checkpoint from the MAE head; explicit keys win", async () => {
  const scratch = (await resolveRun("finetune", args([]))).config;
  assert.equal(scratch.init, null);
  assert.equal(scratch.recipe, RECIPE_VERSION);
  assert.deepEqual(
    [scratch.model.headInitStd, (scratch.model as { posEmbedInit?: string }).posEmbedInit],
    [0.02, "trunc_normal"],
  );
  const warm = (await resolveRun("finetune", args([], "runs/some-pretrain"))).config;
  assert.deepEqual(
    [warm.model.headInitStd, (warm.model as { posEmbedInit?: string }).posEmbedInit],
    [2e-5, "sincos"],
  );
  const explicit = (await resolveRun("finetune", args([["model.headInitStd", "0.001"]]))).config;
  assert.equal(explicit.model.headInitStd, 0.001);
  assert.equal((explicit.model as { posEmbedInit?: string }).posEmbedInit, "trunc_normal");
  assert.throws(() => checkRecipeVersion({ recipe: 1 }, "x"), LegacyRecipeError);
});

Deno.test("TokenClassifier posEmbedInit: sin-cos table or trunc-normal 0.02", async () => {
  await initBackend({ backend: "cpu" });
  const cfg = {
    gridSide: 4,
    patchSize: 1,
    codebookSize: 16,
    tokenDim: 8,
    numClasses: 3,
    embedDim: 32,
    depth: 1,
    numHeads: 2,
  };
  const a = new TokenClassifier({ ...cfg, posEmbedInit: "trunc_normal" }, new Rng(0));
  const b = new TokenClassifier(cfg, new Rng(0));
  const pa = await a.params.get("pos_embed").data() as Float32Array;
  const pb = await b.params.get("pos_embed").data() as Float32Array;
  const std = Math.sqrt(pa.reduce((s, x) => s + x * x, 0) / pa.length);
  assert.ok(std > 0.012 && std < 0.025, `trunc-normal std ${std}`);
  assert.equal(pb[pb.length - 1] !== 0 || pb[1] !== 0, true);
  assert.ok(Math.max(...pb) > 0.5, "the sin-cos table has values near 1");
  a.dispose();
  b.dispose();
});

Deno.test("a recipe-1 run folder: described as it ran, refused for resuming with how to re-run it", async () => {
  const dir = "results/grid/runs/ft-ta-fm8-600-s0";
  const stored = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  assert.equal(recipeVersionOf(stored), 1);
  const r = describeRecipe(stored);
  assert.equal(r.recipe, 1);
  assert.equal(r.halfOrder, "TokenAdapt first");
  assert.deepEqual(
    r.tokenAdaptHalf.cropScale,
    [0.08, 1],
    "recipe 1 cropped the TokenAdapt half with 0.08",
  );
  assert.deepEqual(r.baseHalf.cropScale, [0.35, 1]);
  assert.equal(r.colour.noise, 1, "recipe 1: Emb-Noise on every batch with ColorAdapt off");
  await assert.rejects(
    () =>
      launchRun("finetune", stored, {
        runDir: dir,
        resume: { state: { config: stored } } as never,
      }),
    { name: "LegacyRecipeError", message: /training recipe 1.*cannot be resumed.*new run/s },
  );
});

Deno.test("the grid recognises the committed recipe-1 folders and says how to re-run them", async () => {
  const g = resolveGridConfig(await readConfigFile("configs/grid_fmnist.json"), "grid_fmnist.json");
  const specs = expandGrid(g, await plannedBudgets(g, "results/grid/data"), {
    runsDir: "results/grid/runs",
  });
  const spec = specs.find((s) => s.id === "ft-seit-fm8-600-s0")!;
  await assert.rejects(() => gridRunState(spec), (e: unknown) => {
    assert.ok(e instanceof GridConflictError);
    assert.match(e.message, /training recipe 1/);
    assert.match(e.message, /another --out/);
    return true;
  });
});

Deno.test("a grid run's config.json re-runs with --config: the grid block is dropped, every setting kept, overrides apply", async () => {
  const path = "results/grid-v2/runs/ft-seit-fm8-600-s0/config.json";
  const file = JSON.parse(await Deno.readTextFile(path));
  const logged: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => logged.push(a.join(" "));
  let c;
  try {
    c = (await resolveRun("finetune", {
      config: path,
      help: false,
      overrides: [["model.posEmbedInit", "sincos"], ["model.headInitStd", "2e-5"]],
    })).config;
  } finally {
    console.log = log;
  }
  assert.ok(!("grid" in c));
  assert.match(logged.join("\n"), /grid run ft-seit-fm8-600-s0.*not carried/);
  const { grid: _grid, ...settings } = file;
  // every setting of the file kept (keys added since the run was made take their defaults)
  const kept = { ...c, model: { ...c.model, posEmbedInit: "trunc_normal", headInitStd: 0.02 } };
  assert.deepEqual(
    Object.fromEntries(Object.keys(settings).map((k) => [k, (kept as Record<string, unknown>)[k]])),
    settings,
  );
  assert.deepEqual([c.model.posEmbedInit, c.model.headInitStd], ["sincos", 2e-5]);
});
