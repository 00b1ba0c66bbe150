/**
 * The draw trace of the augmentation step, run as a run builds it: the config resolved by the
 * task's `resolveRun` (a task config) or written by `expandGrid` (a grid config), the step
 * opened by `openRunAugment` (what `launchRun` calls) with a tracer, fed batches of the
 * embedded Fashion-MNIST tokens. The empirical frequencies and ranges are checked against
 * ../shared/parity/public/recipe.json (the authors' pipelines) and the arm's own settings.
 *
 * Tolerance: a frequency f of an event of probability p over n independent draws must satisfy
 * |f - p| <= 5 sqrt(p (1 - p) / n) + 1 / n. A correct step violates that with probability
 * below 1e-6 for any seed; the seeds here are fixed, so the test is deterministic and cannot
 * flake. Ranges are exact: every accepted crop's area and aspect lie in the configured range.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Rng } from "@lib/random";
import { openTokenDataset } from "@lib/tokens";
import {
  createDrawTracer,
  expandGrid,
  type GridRunSpec,
  openRunAugment,
  plannedBudgets,
  readConfigFile,
  resolveGridConfig,
  summarizeTrace,
  type TraceSummary,
} from "@lib/train";
import { resolveRun } from "../../tasks/_train_cli.ts";
import { parityPath } from "../_support/fixtures.ts";

await initBackend({ backend: "wasm" });

const RECIPE = JSON.parse(await Deno.readTextFile(parityPath("recipe.json")));
const TA = "results/tokenadapt/fmnist8/tokenadapt.safetensors";
const TRAIN = "data/fmnist8/fmnist-train-token.data.bin.gz";

function near(f: number, p: number, n: number, what: string) {
  const tol = 5 * Math.sqrt(p * (1 - p) / n) + 1 / n;
  assert.ok(
    Math.abs(f - p) <= tol,
    `${what}: ${f} vs ${p} (n = ${n}, tolerance ${tol.toFixed(4)})`,
  );
}

function within(r: [number, number], range: readonly number[], what: string) {
  assert.ok(r[0] >= range[0] && r[1] <= range[1], `${what}: [${r}] outside [${range}]`);
}

/** Run the step of a resolved run config over `batches` batches of `B` records. */
async function trace(
  kind: "pretrain" | "finetune",
  config: Record<string, unknown>,
  batches: number,
  B: number,
): Promise<TraceSummary> {
  const tracer = createDrawTracer();
  const opened = (await openRunAugment(kind, config as never, tracer.record))!;
  const ds = await openTokenDataset(TRAIN, { codebookSize: 256 });
  const rng = new Rng(7).fork("augment");
  try {
    for (let i = 0; i < batches; i++) {
      const idx = Array.from({ length: B }, (_, j) => (i * B + j) % ds.length);
      const codes = ds.readBatchTensor(idx);
      const out = opened.step.hook({
        codes,
        labels: kind === "finetune" ? ds.labelsOf(idx) : null,
        epoch: 0,
        step: i,
      }, rng);
      tf.dispose([codes, out.codes, ...(out.targets ? [out.targets] : [])]);
    }
  } finally {
    opened.dispose();
  }
  assert.equal(tracer.batches.length, batches, "one trace per batch");
  return summarizeTrace(tracer.batches);
}

/** The checks of the TokenAdapt half's geometry against recipe.json's tokenadapt_half. */
function checkTokenAdaptHalf(s: TraceSummary, phase: Record<string, unknown>, rrc: number[]) {
  const ta = (phase.tokenadapt_half as { children: Record<string, unknown>[] }).children;
  const n = s.batches; // one flip / chain decision per batch (torchvision on the batch tensor)
  near(s.flip!, ta[0].p as number, n, "TokenAdapt flip");
  const pChain = ta[1].p as number;
  const ops = ta[1].children as { p: number }[];
  near(
    s.affineAny!,
    pChain * (1 - ops.reduce((a, o) => a * (1 - o.p), 1)),
    n,
    "affine chain fired",
  );
  for (const [i, op] of ["rotate", "translateX", "translateY", "shearX", "shearY"].entries()) {
    near(s.affineOps[op], pChain * ops[i].p, n, `affine ${op}`);
  }
  within(s.affineRanges.rotate, [-30, 30], "rotate degrees");
  within(s.affineRanges.translateX, [-0.2, 0.2], "translateX fraction");
  within(s.affineRanges.shearX, [0, 15], "shearX degrees");
  within(s.tokenAdaptCrops!.area, rrc, "TokenAdapt crop area");
  within(
    s.tokenAdaptCrops!.aspect,
    (ta[2].ratio as number[]).map((x) => Math.fround(x)),
    "TokenAdapt crop aspect",
  );
  assert.ok(s.tokenAdaptLast, "the TokenAdapt half is the second half");
  assert.deepEqual(s.tokenAdaptFraction, [0.5, 0.5]);
}

Deno.test("draw trace, task config (finetune --augment=seitpp), 2000 batches: colour RandomChoice 0.75/0.25/0, both halves' crops, TokenAdapt geometry and mixing as recipe.json", async () => {
  const phase = RECIPE.phases.finetune;
  const { config } = await resolveRun("finetune", {
    config: "configs/finetune_demo.json",
    help: false,
    overrides: [
      ["augment", "seitpp"],
      ["tokenAdaptWeights", TA],
      ["batchSize", "4"],
      ["augmentSettings.rrcScale", `[${phase.args.rrc_ratio},1]`],
    ],
  });
  const n = 2000;
  const s = await trace("finetune", config as never, n, 4);
  const [pNoise, pCa, pId] = phase.colour_step.p;
  assert.equal(s.colour.drawn, n, "one colour choice per batch");
  near(s.colour.noise, pNoise, n, "Emb-Noise batches");
  near(s.colour.coloradapt, pCa, n, "ColorAdapt batches");
  near(s.colour.none, pId, n, "identity batches");
  // the colour op touches floor(B x prob) samples: 0.5 of the batch for both ops
  assert.deepEqual(s.colourFraction, [0.5, 0.5]);
  const rrc = [phase.args.rrc_ratio, 1];
  within(s.baseCrops.area, rrc, "base crop area");
  assert.ok(s.baseCrops.area[0] < rrc[0] + 0.02, "the base crops reach the bottom of the range");
  within(s.baseCrops.aspect, [0.75, 4 / 3].map(Math.fround), "base crop aspect");
  checkTokenAdaptHalf(s, phase, rrc);
  // base half: CutMix only (mixup 0, cutmix 1, prob 1); TokenAdapt half: switch 0.5
  assert.equal(s.mix.base!.cutmix, 1);
  near(s.mix.tokenAdapt!.cutmix, phase.mixup_tokenadapt.switch_prob, n, "TokenAdapt CutMix share");
  within(s.mix.base!.lam, [0, 1], "base lambda");
  within(s.mix.tokenAdapt!.lam, [0, 1], "TokenAdapt lambda");
});

async function gridSpecs(): Promise<GridRunSpec[]> {
  const g = resolveGridConfig(await readConfigFile("configs/grid_fmnist.json"), "grid_fmnist.json");
  return expandGrid(g, await plannedBudgets(g, "results/grid/data"), { runsDir: "runs" });
}

Deno.test("draw trace, grid config (grid_fmnist arms seit and ca), 2000 batches each: ColorAdapt off leaves a quarter of the batches alone; the grid's crop range", async () => {
  const specs = await gridSpecs();
  const n = 2000;
  for (const [id, pCa] of [["ft-seit-fm8-600-s0", 0], ["ft-ca-fm8-600-s0", 0.25]] as const) {
    const spec = specs.find((s) => s.id === id)!;
    const s = await trace("finetune", { ...spec.config, batchSize: 4 }, n, 4);
    near(s.colour.noise, 0.75, n, `${id} Emb-Noise`);
    near(s.colour.coloradapt, pCa, n, `${id} ColorAdapt`);
    near(s.colour.none, 0.25 - pCa, n, `${id} identity`);
    assert.deepEqual(s.tokenAdaptFraction, [0, 0], `${id}: no TokenAdapt half`);
    within(s.baseCrops.area, [0.35, 1], `${id} crop area (the grid's rrcScale)`);
    assert.equal(s.mix.base!.cutmix, 1);
  }
});

Deno.test("draw trace, grid TokenAdapt arms (ta, ita, and the TokenAdapt pre-training), 200 batches each: TokenAdapt half second with the grid's crop range; identity geometry draws nothing", async () => {
  const specs = await gridSpecs();
  const n = 200;
  const ta = specs.find((s) => s.id === "ft-ta-fm8-600-s0")!;
  const s = await trace("finetune", { ...ta.config, batchSize: 4 }, n, 4);
  assert.equal(s.colour.coloradapt, 0, "ta: no ColorAdapt");
  near(s.colour.none, 0.25, n, "ta identity");
  checkTokenAdaptHalf(s, RECIPE.phases.finetune, [0.35, 1]);
  within(s.baseCrops.area, [0.35, 1], "ta base crop area");
  // the identity-TokenAdapt arm (grid arm ita, not in the committed grid's cells)
  const ita = { ...ta.config, augment: "identity-tokenadapt", batchSize: 4 };
  const si = await trace("finetune", ita, n, 4);
  assert.equal(si.flip, 0);
  assert.equal(si.affineAny, 0);
  assert.deepEqual(si.tokenAdaptCrops!.area, [1, 1], "the whole grid");
  assert.equal(si.mix.tokenAdapt!.cutmix, 1, "mixed as the base half (CutMix only)");
  // SeiT++ pre-training: half of every batch through TokenAdapt, crop 0.2, no colour step
  const g = resolveGridConfig(
    {
      ...(await readConfigFile("configs/grid_fmnist.json") as object),
      cells: [{ budgets: ["fm8-600"], arms: ["seitpp"] }],
    },
    "grid",
  );
  const pt = expandGrid(g, await plannedBudgets(g, "results/grid/data"), { runsDir: "runs" })
    .find((x) => x.kind === "pretrain")!;
  assert.equal(pt.id, "pt-ta-fm8-600-s0");
  const sp = await trace("pretrain", { ...pt.config, batchSize: 2 }, n, 2);
  assert.equal(sp.colour.drawn, 0, "no colour step in pre-training");
  checkTokenAdaptHalf(sp, RECIPE.phases.pretrain, [RECIPE.phases.pretrain.args.rrc_ratio, 1]);
  within(sp.baseCrops.area, [0.2, 1], "pre-training base crop area");
  assert.equal(sp.mix.base, null);
});
