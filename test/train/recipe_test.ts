/**
 * The official configs against the authors' resolved recipes (../shared/parity/public/
 * recipe.json): every argparse value of both phases is either mapped to our resolved config
 * (through the launch path: `resolveRun` then `describeRecipe`, as `deno task recipe` prints
 * it) and asserted equal, or listed here with the reason it has no counterpart. A new
 * argument in recipe.json that is neither fails the test.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { describeRecipe, type RecipeDescription, storedRunStep } from "@lib/train";
import { resolveRun } from "../../tasks/_train_cli.ts";
import { recipeOf } from "../../tasks/recipe.ts";
import { parityPath } from "../_support/fixtures.ts";

const RECIPE = JSON.parse(await Deno.readTextFile(parityPath("recipe.json")));
const GPUS: number = RECIPE.gpus;

type Cfg = Record<string, unknown> & { model: Record<string, unknown> };

async function official(kind: "pretrain" | "finetune") {
  const { config } = await resolveRun(kind as "finetune", {
    config: `configs/${kind}_official.json`,
    help: false,
    overrides: [],
  });
  const c = config as unknown as Cfg;
  return { c, r: describeRecipe(c), step: storedRunStep(c)! };
}

/** Runtime, I/O and distributed-launch arguments: nothing of the training step. */
const RUNTIME = {
  output_dir: "run folders are created by the task (--out)",
  device: "the tensor backend is chosen with --backend",
  resume: "--resume <run dir> (a run folder, not a file)",
  save_periods: "checkpoints: checkpointEvery / keepCheckpoints; the final model.safetensors",
  start_epoch: "resumed from checkpoint.json",
  num_workers: "data loading runs in the main thread",
  pin_mem: "no pinned memory in this runtime",
  world_size: "one process (data-parallel workers on one machine: the workers key)",
  local_rank: "one process",
  dist_on_itp: "one process",
  dist_url: "one process",
  print_freq: "logEvery (a logging interval, not part of the step)",
  dist_eval: "evaluation runs over the whole test split in one process",
  eval: "false in the command line (training, not evaluation only)",
  train_label_file: "labels are read from NAME-label.txt next to the data file (data.train)",
  val_label_file: "labels are read from NAME-label.txt next to the data file (data.test)",
};

/** SeiT's token-EDA augmentations: all off (probability 0) in both of the authors' command lines. */
const EDA = {
  src:
    "SeiT's extra token augmentation flag, off in the command line (the pipelines built: base_half)",
  rrc: "SeiT's legacy RRC flag, off (the RRC that runs is base_half's, checked below)",
  flip: "SeiT's base-half flip flag, off (base_half has no flip)",
  affine: "SeiT's base-half affine flag, off (base_half has no affine)",
  eda_rc_prob: "token EDA random-code replacement, probability 0",
  eda_sc_prob: "token EDA swap-code, probability 0",
  token_synonym_dict: "only used by the EDA replacements (probability 0)",
  token_synonym_thres: "only used by the EDA replacements (probability 0)",
  replace_token_prob: "only used by the EDA replacements (probability 0)",
  swap_token_scale: "only used by the EDA swap (probability 0)",
};

function checkCovered(
  args: Record<string, unknown>,
  mapped: Record<string, unknown>,
  unmapped: Record<string, string>,
) {
  for (const k of Object.keys(args)) {
    assert.ok(
      k in mapped || k in unmapped,
      `recipe.json argument "${k}" is neither mapped to our config nor listed with a reason`,
    );
  }
}

function approx(a: number, b: number, what: string) {
  assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
}

function checkHalves(phase: Record<string, unknown>, r: RecipeDescription, gridSide: number) {
  const base = (phase.base_half as { children: Record<string, unknown>[] }).children;
  assert.equal(base.length, 1);
  assert.equal(base[0].class, "RRC");
  assert.deepEqual(r.baseHalf.cropScale, base[0].scale);
  assert.deepEqual(r.baseHalf.cropRatio, base[0].ratio);
  assert.deepEqual(base[0].size, [gridSide, gridSide]);
  const ta = (phase.tokenadapt_half as { children: Record<string, unknown>[] }).children;
  assert.equal(r.tokenAdaptHalf.used, phase.tokenadapt_half_used);
  assert.equal(ta[0].class, "RandomHorizontalFlip");
  assert.equal(r.tokenAdaptHalf.flip, ta[0].p);
  assert.equal(ta[1].class, "RandomApply");
  assert.equal(r.tokenAdaptHalf.affine.p, ta[1].p);
  const ops = ta[1].children as { class: string; p: number }[];
  assert.deepEqual(
    ops.map((o) => o.class),
    ["Rotate", "TranslateX", "TranslateY", "ShearX", "ShearY"],
  );
  assert.deepEqual(
    r.tokenAdaptHalf.affine.ops,
    ["rotate", "translateX", "translateY", "shearX", "shearY"],
  );
  for (const o of ops) assert.equal(r.tokenAdaptHalf.affine.stepP, o.p);
  assert.equal(ta[2].class, "RRC");
  assert.deepEqual(r.tokenAdaptHalf.cropScale, ta[2].scale);
  assert.deepEqual(r.tokenAdaptHalf.cropRatio, ta[2].ratio);
  assert.deepEqual(ta[2].size, [2 * gridSide, 2 * gridSide], "TokenAdapt space is 2m x 2m");
  assert.equal(r.halfOrder, "base first");
  assert.match(phase.split as string, /first half base, second half TokenAdapt/);
}

Deno.test("configs/pretrain_official.json resolves to the authors' pre-training recipe (recipe.json), argument by argument", async () => {
  const phase = RECIPE.phases.pretrain;
  const a = phase.args;
  const pm = RECIPE.pretrain_model;
  const { c, r, step } = await official("pretrain");
  const m = c.model;
  const mapped: Record<string, unknown> = {
    batch_size: assert.equal(c.batchSize, a.batch_size * GPUS),
    epochs: assert.equal(c.epochs, a.epochs),
    accum_iter: assert.equal(c.accumIter, a.accum_iter),
    model: [
      assert.equal(m.embedDim, pm.embed_dim),
      assert.equal(m.depth, pm.depth),
      assert.equal(m.numHeads, pm.num_heads),
      assert.equal(m.decoderEmbedDim, pm.decoder_embed_dim),
      assert.equal(m.decoderDepth, pm.decoder_depth),
      assert.equal(m.decoderNumHeads, pm.decoder_num_heads),
      assert.equal(m.codebookSize, pm.codebook_size),
      assert.equal(m.tokenDim, pm.token_embed_dim),
    ],
    input_size: assert.equal(m.gridSide, a.input_size / a.token_patch_size),
    token_patch_size: assert.equal(m.gridSide, a.input_size / a.token_patch_size),
    weight_decay: assert.equal(c.weightDecay, a.weight_decay),
    lr: assert.equal(c.lr, a.lr),
    blr: assert.equal(c.blr, a.blr),
    min_lr: assert.equal(c.minLr, a.min_lr),
    warmup_epochs: assert.equal(c.warmupEpochs, a.warmup_epochs),
    mask_ratio_min: assert.equal(m.maskRatioMin, a.mask_ratio_min),
    mask_ratio_max: assert.equal(m.maskRatioMax, a.mask_ratio_max),
    mask_ratio_mu: assert.equal(m.maskRatioMu, a.mask_ratio_mu),
    mask_ratio_std: assert.equal(m.maskRatioStd, a.mask_ratio_std),
    codebook_path: assert.equal(basename(c.codebook as string), a.codebook_path),
    train_token_file: assert.equal(
      basename((c.data as { train: string }).train),
      a.train_token_file,
    ),
    tokenadapt_path: assert.equal(basename(c.tokenAdaptWeights as string), a.tokenadapt_path),
    rrc_ratio: [
      assert.deepEqual(r.baseHalf.cropScale, [a.rrc_ratio, 1]),
      assert.deepEqual(r.tokenAdaptHalf.cropScale, [a.rrc_ratio, 1]),
    ],
    token_coloradapt_prob: assert.equal(r.colour.colorAdapt, a.token_coloradapt_prob),
    token_noise_prob: assert.equal(r.colour.noise, a.token_noise_prob),
    token_noise_scale: assert.equal(step.noiseScale, a.token_noise_scale),
    token_noise_std: assert.equal(step.noiseStd, a.token_noise_std),
    seed: assert.equal(c.seed, a.seed),
  };
  const unmapped: Record<string, string> = {
    ...RUNTIME,
    ...EDA,
    grad_clip: "parsed but never applied by the reference (REFERENCE.md section 8): gradClip null",
    smoothing: "the MTM loss has no label smoothing here (the reference's default 0.0)",
    bce_loss: "false: the MTM loss is the K-way cross-entropy (bceWithLogitsOneHot exists, off)",
  };
  checkCovered(a, mapped, unmapped);
  assert.equal(c.gradClip, null);
  // derived values
  assert.equal(r.effectiveBatch, phase.effective_batch);
  approx(r.lr, phase.lr, "lr = blr x 4096 / 256");
  assert.equal(r.colour.applied, phase.colour_step_applied);
  assert.equal(phase.colour_step, null);
  checkHalves(phase, r, m.gridSide as number);
});

Deno.test("configs/finetune_official.json resolves to the authors' fine-tuning recipe (recipe.json), argument by argument", async () => {
  const phase = RECIPE.phases.finetune;
  const a = phase.args;
  const { c, r, step } = await official("finetune");
  const m = c.model;
  const mb = phase.mixup_base, mt = phase.mixup_tokenadapt;
  const mapped: Record<string, unknown> = {
    batch_size: assert.equal(c.batchSize, a.batch_size * GPUS),
    epochs: assert.equal(c.epochs, a.epochs),
    accum_iter: assert.equal(c.accumIter, a.accum_iter),
    // deit_base_token_32: ViT-B on the 32-d token embeddings
    model: [
      assert.equal(m.embedDim, 768),
      assert.equal(m.depth, 12),
      assert.equal(m.numHeads, 12),
      assert.equal(m.tokenDim, 32),
    ],
    input_size: assert.equal(m.gridSide, a.input_size / a.token_patch_size),
    token_patch_size: assert.equal(m.gridSide, a.input_size / a.token_patch_size),
    drop_path: assert.equal(m.dropPath, a.drop_path),
    clip_grad: assert.equal(c.gradClip, a.clip_grad),
    weight_decay: assert.equal(c.weightDecay, a.weight_decay),
    lr: assert.equal(c.lr, a.lr),
    blr: assert.equal(c.blr, a.blr),
    layer_decay: assert.equal(c.layerDecay, a.layer_decay),
    min_lr: assert.equal(c.minLr, a.min_lr),
    warmup_epochs: assert.equal(c.warmupEpochs, a.warmup_epochs),
    smoothing: [
      assert.equal(c.smoothing, a.smoothing),
      assert.equal(r.mixup.labelSmoothing, a.smoothing),
    ],
    mixup: assert.equal(r.mixup.base!.mixupAlpha, a.mixup),
    cutmix: [
      assert.equal(r.mixup.base!.cutmixAlpha, a.cutmix),
      assert.equal(r.mixup.tokenAdapt!.cutmixAlpha, a.cutmix),
    ],
    mixup_prob: [
      assert.equal(r.mixup.base!.prob, a.mixup_prob),
      assert.equal(r.mixup.tokenAdapt!.prob, a.mixup_prob),
    ],
    mixup_switch_prob: [
      assert.equal(r.mixup.base!.switchProb, a.mixup_switch_prob),
      assert.equal(r.mixup.tokenAdapt!.switchProb, a.mixup_switch_prob),
    ],
    mixup_mode: [
      assert.equal(r.mixup.base!.mode, a.mixup_mode),
      assert.equal(r.mixup.tokenAdapt!.mode, a.mixup_mode),
    ],
    // fine-tuning from a checkpoint: the 2e-5 head (from scratch would be timm's 0.02)
    finetune: [assert.notEqual(c.init, null), assert.equal(m.headInitStd, 2e-5)],
    codebook_path: assert.equal(basename(c.codebook as string), a.codebook_path),
    train_token_file: assert.equal(
      basename((c.data as { train: string }).train),
      a.train_token_file,
    ),
    val_token_file: assert.equal(basename((c.data as { test: string }).test), a.val_token_file),
    tokenadapt_path: assert.equal(
      basename(c.tokenAdaptWeights as string),
      basename(a.tokenadapt_path),
    ),
    rrc_ratio: [
      assert.deepEqual(r.baseHalf.cropScale, [a.rrc_ratio, 1]),
      assert.deepEqual(r.tokenAdaptHalf.cropScale, [a.rrc_ratio, 1]),
    ],
    token_coloradapt_prob: assert.equal(r.colour.colorAdapt, a.token_coloradapt_prob),
    token_noise_prob: assert.equal(r.colour.noise, a.token_noise_prob),
    token_noise_scale: assert.equal(step.noiseScale, a.token_noise_scale),
    token_noise_std: assert.equal(step.noiseStd, a.token_noise_std),
    seed: assert.equal(c.seed, a.seed),
  };
  const unmapped: Record<string, string> = {
    ...RUNTIME,
    ...EDA,
    cutmix_minmax:
      "null in the command line: CutMix boxes from lambda (the only mode the step runs)",
    global_pool: "not read by the authors' deit_base_token_32 builder; the classifier pools the " +
      "non-CLS outputs as REFERENCE.md section 5 describes (globalPool true)",
  };
  checkCovered(a, mapped, unmapped);
  // derived values
  assert.equal(r.effectiveBatch, phase.effective_batch);
  assert.match(phase.lr_rule_source, /args\.blr \* math\.sqrt\(eff_batch_size\) \/ 8/);
  approx(r.lr, a.blr * Math.sqrt(phase.effective_batch) / 8, "lr = blr x sqrt(1024) / 8");
  // the colour step: RandomChoice(Noise, ColorAdapt, Identity) with p = [0.75, 0.25, 0]
  const cs = phase.colour_step;
  assert.equal(cs.class, "RandomChoice");
  assert.deepEqual([r.colour.noise, r.colour.colorAdapt, r.colour.identity], cs.p);
  assert.equal(r.colour.noiseFraction, cs.children[0].prob);
  assert.equal(r.colour.noiseScale, cs.children[0].scale);
  assert.equal(r.colour.noiseStd, cs.children[0].std);
  assert.equal(r.colour.colorAdaptFraction, cs.children[1].prob);
  // the two halves' mixing
  assert.deepEqual(
    [r.mixup.base!.mixupAlpha, r.mixup.base!.cutmixAlpha, r.mixup.base!.prob],
    [mb.mixup_alpha, mb.cutmix_alpha, mb.prob],
  );
  assert.deepEqual(
    [r.mixup.tokenAdapt!.mixupAlpha, r.mixup.tokenAdapt!.cutmixAlpha, r.mixup.tokenAdapt!.prob],
    [mt.mixup_alpha, mt.cutmix_alpha, mt.prob],
  );
  assert.equal(r.mixup.labelSmoothing, mt.label_smoothing);
  checkHalves(phase, r, m.gridSide as number);
});

Deno.test("deno task recipe's resolution of the official configs is describeRecipe of resolveRun (one path)", async () => {
  for (const kind of ["pretrain", "finetune"] as const) {
    const viaTask = await recipeOf({ file: `configs/${kind}_official.json` });
    assert.deepEqual(viaTask, (await official(kind)).r);
  }
});
