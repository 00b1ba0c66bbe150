/**
 * The augmentation keys of the training tasks (`augment`, `augmentSettings`, `codebook`,
 * `tokenAdaptWeights`): presets, checks, and the step opened on the embedded data with the
 * committed TokenAdapt weights.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { Rng } from "@lib/random";
import { openTokenDataset } from "@lib/tokens";
import {
  AUGMENT_ARMS,
  augmentStepFinetune,
  augmentStepForArm,
  checkRunAugment,
  openRunAugment,
  parseTaskArgs,
  RUN_AUGMENT_DEFAULTS,
  runAugmentStepConfig,
} from "@lib/train";
import { resolveRun } from "../../tasks/_train_cli.ts";

const TRAIN = "data/fmnist8/fmnist-train-token.data.bin.gz";
const TA = "results/tokenadapt/fmnist8/tokenadapt.safetensors";
const MODEL = { gridSide: 8, numClasses: 10, codebookSize: 256 };

Deno.test("runAugmentStepConfig: the fine-tuning presets are the ablation arms of the grid; pre-training has seit and seitpp", () => {
  for (const arm of AUGMENT_ARMS) {
    assert.deepEqual(
      runAugmentStepConfig("finetune", arm, { noiseScale: 0.18 }, MODEL),
      augmentStepForArm({ ...augmentStepFinetune(10, 8), noiseScale: 0.18 }, arm),
    );
  }
  // one crop range: settings over the preset move both halves' crops (issue #10 item 1)
  const narrow = runAugmentStepConfig("finetune", "seitpp", { rrcScale: [0.35, 1] }, MODEL);
  assert.deepEqual(narrow.geometric.cropScale, [0.35, 1]);
  const ita = runAugmentStepConfig("finetune", "identity-tokenadapt", {}, MODEL);
  assert.equal(ita.tokenAdapt, true);
  assert.equal(ita.colorAdapt, false);
  assert.equal(ita.tokenAdaptGeometry, "identity");
  const seit = runAugmentStepConfig("finetune", "seit", {}, MODEL);
  assert.equal(seit.tokenAdapt, false);
  assert.equal(seit.colorAdapt, false);
  const pp = runAugmentStepConfig("finetune", "seitpp", {}, MODEL);
  assert.equal(pp.tokenAdapt, true);
  assert.equal(pp.colorAdapt, true);
  const pt = runAugmentStepConfig("pretrain", "seitpp", {}, { gridSide: 8 });
  assert.equal(pt.tokenAdapt, true);
  assert.equal(pt.colorAdapt, false);
  assert.equal(pt.numClasses, null);
  assert.equal(runAugmentStepConfig("pretrain", "seit", {}, { gridSide: 8 }).tokenAdapt, false);
  assert.throws(
    () => runAugmentStepConfig("pretrain", "coloradapt", {}, { gridSide: 8 }),
    { name: "RangeError", message: /pre-training has the presets seit and seitpp/ },
  );
});

Deno.test("checkRunAugment: bad settings and missing TokenAdapt weights are named before anything loads", () => {
  const base = { ...RUN_AUGMENT_DEFAULTS, model: MODEL };
  assert.equal(checkRunAugment("finetune", base), null);
  assert.throws(
    () => checkRunAugment("finetune", { ...base, augment: "tokenadapt" }),
    { name: "TypeError", message: /Config key "tokenAdaptWeights"/ },
  );
  assert.equal(checkRunAugment("finetune", { ...base, augment: "coloradapt" })!.tokenAdapt, false);
  assert.throws(
    () =>
      checkRunAugment("finetune", {
        ...base,
        augment: "seit",
        augmentSettings: { bogus: 1 } as never,
      }),
    { name: "TypeError", message: /Unknown augmentation step key "bogus"/ },
  );
});

Deno.test("the finetune task's config takes the augmentation keys from flags; unknown presets are refused", async () => {
  const args = parseTaskArgs([
    "--augment=seitpp",
    `--tokenAdaptWeights=${TA}`,
    "--augmentSettings.noiseScale=0.18",
  ]);
  const { config } = await resolveRun("finetune", args);
  assert.equal(config.augment, "seitpp");
  assert.equal(config.tokenAdaptWeights, TA);
  assert.deepEqual(config.augmentSettings, { noiseScale: 0.18 });
  assert.equal(config.codebook, null);
  const plain = await resolveRun("finetune", parseTaskArgs([]));
  assert.equal(plain.config.augment, null);
  await assert.rejects(
    () => resolveRun("finetune", parseTaskArgs(["--augment=cutout"])),
    { name: "RangeError", message: /Config key "augment".*"cutout" is not one of/ },
  );
  await assert.rejects(
    () => resolveRun("pretrain", parseTaskArgs(["--augment=seitpp"])),
    { name: "TypeError", message: /Config key "tokenAdaptWeights"/ },
  );
});

Deno.test("openRunAugment: the seitpp step on the embedded data (codebook found next to it), seeded, no leaks", async () => {
  await initBackend({ backend: "cpu" });
  const data = await openTokenDataset(TRAIN, { codebookSize: 256 });
  const config = {
    ...RUN_AUGMENT_DEFAULTS,
    augment: "seitpp" as const,
    augmentSettings: { noiseScale: 0.18, noiseStd: 0.18 },
    tokenAdaptWeights: TA,
    data: { train: TRAIN },
    model: MODEL,
  };
  const before = tf.memory().numTensors;
  const opened = await openRunAugment("finetune", config);
  assert.ok(opened !== null);
  const ids = [0, 1, 2, 3, 4, 5, 6, 7];
  const codes = data.readBatchTensor(ids) as tf.Tensor3D;
  const labels = data.labelsOf(ids);
  const run = (seed: number) => {
    const out = opened.step.hook({ codes, labels, epoch: 0, step: 0 }, new Rng(seed));
    const r = { codes: out.codes.arraySync(), targets: out.targets!.arraySync() };
    assert.deepEqual(out.codes.shape, [8, 8, 8]);
    assert.deepEqual(out.targets!.shape, [8, 10]);
    tf.dispose([out.codes, out.targets!]);
    return r;
  };
  const a = run(3), b = run(3), c = run(4);
  assert.deepEqual(a, b, "same seed, same batch");
  assert.notDeepEqual(a.codes, c.codes, "another seed, another batch");
  for (const row of a.targets) assert.ok(Math.abs(row.reduce((s, x) => s + x, 0) - 1) < 1e-5);
  for (const v of a.codes.flat(2)) assert.ok(Number.isInteger(v) && v >= 0 && v < 256);
  codes.dispose();
  opened.dispose();
  assert.equal(tf.memory().numTensors, before);
  assert.equal(await openRunAugment("finetune", { ...config, augment: null }), null);
});
