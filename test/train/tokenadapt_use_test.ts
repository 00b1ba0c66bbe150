/**
 * TokenAdapt trains on the augmentation it is used with: the TokenAdapt half of the grid's
 * pre-training and fine-tuning runs. The settings `deno task tokenadapt:train` resolves from
 * `usedWith` must be the ones `deno task recipe` prints for those runs (the same path the
 * training runs take), crop range included.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { ResolvedGeometricAugConfig } from "@lib/adapters";
import {
  gridRecipes,
  plannedBudgets,
  readConfigFile,
  resolveGridConfig,
  tokenAdaptUses,
} from "@lib/train";
import {
  REFERENCE_GEOMETRY,
  resolveTrainGeometry,
  tokenAdaptTrainDefaults,
  TRAIN_GROUP_SIZE,
} from "../../tasks/tokenadapt_train.ts";

const GRID = "configs/grid_fmnist.json";

async function grid() {
  const g = resolveGridConfig(await readConfigFile(GRID), GRID);
  return { g, budgets: await plannedBudgets(g, join("results", g.name, "data")) };
}

Deno.test("tokenAdaptUses: the TokenAdapt half of each phase, as `deno task recipe` prints it", async () => {
  const { g, budgets } = await grid();
  const uses = tokenAdaptUses(g, budgets);
  assert.deepEqual(uses.map((u) => u.phase), ["pretrain", "finetune"]);
  const [r] = gridRecipes(g, budgets, "seitpp");
  for (const u of uses) {
    const d = u.phase === "pretrain" ? r.pretrain! : r.finetune!;
    const half = d.tokenAdaptHalf;
    assert.ok(half.used && half.geometry === "augment", u.phase);
    assert.deepEqual(u.geometric.cropScale, half.cropScale, `${u.phase} crop area`);
    assert.deepEqual(u.geometric.cropRatio, half.cropRatio, `${u.phase} crop aspect`);
    assert.equal(u.geometric.flipProb, half.flip);
    assert.equal(u.geometric.chainProb, half.affine.p);
    assert.equal(u.geometric.stepProb, half.affine.stepP);
    assert.equal(u.geometric.degrees, half.affine.degrees);
    assert.deepEqual(u.geometric.translate, half.affine.translate);
    // both halves of a run crop with one range (REFERENCE.md section 6)
    assert.deepEqual(u.geometric.cropScale, d.baseHalf.cropScale, `${u.phase}: both halves`);
  }
  // the numbers, so that a change of the grid's recipe shows here
  assert.deepEqual(uses.map((u) => u.geometric.cropScale), [[0.2, 1], [0.35, 1]]);
  assert.throws(() => tokenAdaptUses(g, budgets, "seit"), /no TokenAdapt half/);
  assert.throws(() => tokenAdaptUses(g, budgets, "nope"), /runs no fine-tuning arm "nope"/);
});

Deno.test("tokenadapt:train trains on the grid's TokenAdapt halves by default; reference on request", async () => {
  const { g, budgets } = await grid();
  const uses = tokenAdaptUses(g, budgets);
  const cfg = await resolveTrainGeometry(tokenAdaptTrainDefaults());
  assert.equal(cfg.usedWith, GRID);
  assert.deepEqual(cfg.uses.map((u) => u.phase), ["pretrain", "finetune"]);
  const list = cfg.train.geometric as ResolvedGeometricAugConfig[];
  assert.equal(list.length, 2);
  list.forEach((t, i) => {
    // the same draw distribution per sample; only the samples sharing a flip/chain draw differ
    assert.deepEqual({ ...t, groupSize: 0 }, { ...uses[i].geometric, groupSize: 0 });
    assert.equal(t.groupSize, TRAIN_GROUP_SIZE);
  });
  const ref = await resolveTrainGeometry({ ...tokenAdaptTrainDefaults(), usedWith: "reference" });
  assert.deepEqual(ref.train.geometric, [REFERENCE_GEOMETRY]);
  assert.deepEqual(ref.uses, [{ phase: "reference", run: null }]);
  const custom = { ...tokenAdaptTrainDefaults() };
  custom.train = { ...custom.train, geometric: { ...REFERENCE_GEOMETRY, cropScale: [0.5, 1] } };
  await assert.rejects(() => resolveTrainGeometry(custom), /pass --usedWith=reference/);
});
