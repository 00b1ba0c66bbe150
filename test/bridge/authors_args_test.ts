import assert from "node:assert/strict";
import {
  AUTHORS_PATH_ARGS,
  type AuthorsCommand,
  authorsCommand,
  authorsOption,
  type BridgeRunConfig,
  commandLine,
  UnmappableSettingError,
} from "@lib/bridge";
import { scaleLr } from "@lib/train";
import { resolveRun } from "../../tasks/_train_cli.ts";
import { parityPath } from "../_support/fixtures.ts";

type Phase = "pretrain" | "finetune";
const recipe = JSON.parse(await Deno.readTextFile(parityPath("recipe.json")));
const base = (p: string) => p.split("/").pop();

/** A resolved config: the task's defaults, a config file, then overrides. */
async function resolved(kind: Phase, file: string, overrides: [string, string][] = []) {
  const { config } = await resolveRun(kind as "pretrain", {
    config: file,
    overrides,
    help: false,
  });
  return config as unknown as BridgeRunConfig;
}

/** Every mapped value that differs from the authors' resolved args (paths by file name). */
function differences(cmd: AuthorsCommand, phase: Phase): string[] {
  const want = recipe.phases[phase].args;
  const out: string[] = [];
  for (const [k, v] of Object.entries(cmd.args)) {
    if (!(k in want)) {
      out.push(`${k}: not an argument of their ${phase} script`);
      continue;
    }
    const w = want[k];
    const equal = AUTHORS_PATH_ARGS.includes(k) ? base(String(v)) === base(String(w)) : v === w;
    if (!equal) out.push(`${k}: ours ${JSON.stringify(v)}, theirs ${JSON.stringify(w)}`);
  }
  return out;
}

/** argv parsed back as their argparse would (dest names, typed like `args`). */
function parseArgv(cmd: AuthorsCommand): Record<string, unknown> {
  const dests = new Map(Object.keys(cmd.args).map((k) => [authorsOption(k), k]));
  const out: Record<string, unknown> = {};
  for (let i = 0; i < cmd.argv.length; i++) {
    const dest = dests.get(cmd.argv[i]);
    assert.ok(dest !== undefined, `unknown option ${cmd.argv[i]}`);
    const v = cmd.args[dest];
    if (typeof v === "boolean") out[dest] = true;
    else {
      const text = cmd.argv[++i];
      out[dest] = typeof v === "number" ? Number(text) : text;
    }
  }
  return out;
}

const MAPPED = {
  pretrain: [
    "model",
    "input_size",
    "batch_size",
    "accum_iter",
    "blr",
    "epochs",
    "warmup_epochs",
    "min_lr",
    "weight_decay",
    "mask_ratio_min",
    "mask_ratio_max",
    "mask_ratio_mu",
    "mask_ratio_std",
    "smoothing",
    "rrc_ratio",
    "token_noise_prob",
    "token_coloradapt_prob",
    "codebook_path",
    "train_token_file",
    "train_label_file",
    "tokenadapt_path",
  ],
  finetune: [
    "model",
    "input_size",
    "batch_size",
    "accum_iter",
    "blr",
    "epochs",
    "warmup_epochs",
    "min_lr",
    "weight_decay",
    "layer_decay",
    "drop_path",
    "smoothing",
    "mixup",
    "cutmix",
    "mixup_prob",
    "mixup_switch_prob",
    "rrc_ratio",
    "token_noise_prob",
    "token_coloradapt_prob",
    "token_noise_scale",
    "token_noise_std",
    "codebook_path",
    "train_token_file",
    "val_token_file",
    "val_label_file",
    "tokenadapt_path",
    "finetune",
    "dist_eval",
  ],
};

for (const phase of ["pretrain", "finetune"] as const) {
  Deno.test(`official ${phase} config exports to the authors' argv with no difference in any mapped value`, async () => {
    const config = await resolved(phase, `configs/${phase}_official.json`);
    let diffs: string[];
    try {
      // the per-GPU batch is the cluster's choice; batch x accumulation x GPUs must match
      const cmd = authorsCommand(config, {
        gpus: recipe.gpus,
        batchPerGpu: recipe.phases[phase].args.batch_size,
        files: { dataRoot: "" },
      });
      diffs = differences(cmd, phase);
      for (const k of MAPPED[phase]) if (!(k in cmd.args)) diffs.push(`${k}: not mapped`);
    } catch (e) {
      if (!(e instanceof UnmappableSettingError)) throw e;
      diffs = [`refused: ${e.message}`];
    }
    assert.deepEqual(diffs, []);
  });
}

/** The recipe's values in our config (what the official configs hold once they match it). */
const RECIPE_OVERRIDES: Record<Phase, [string, string][]> = {
  pretrain: [
    ["model.decoderDepth", "4"],
    ["batchSize", "128"],
    ["accumIter", "32"],
    ["augment", "seitpp"],
    ["tokenAdaptWeights", "tokens/tokenadapt.ckpt"],
  ],
  finetune: [
    ["augment", "seitpp"],
    ["tokenAdaptWeights", "tokens/tokenadapt.ckpt"],
    ["init", "runs/pretrain-official"],
  ],
};

for (const phase of ["pretrain", "finetune"] as const) {
  Deno.test(`the recipe's ${phase} values export to exactly the authors' resolved args, and argv says the same`, async () => {
    const config = await resolved(phase, `configs/${phase}_official.json`, RECIPE_OVERRIDES[phase]);
    const cmd = authorsCommand(config, { gpus: recipe.gpus, files: { dataRoot: "" } });
    assert.deepEqual(differences(cmd, phase), []);
    for (const k of MAPPED[phase]) assert.ok(k in cmd.args, `${k} is mapped`);
    assert.deepEqual(parseArgv(cmd), cmd.args);
    assert.equal(
      cmd.args.batch_size as number * (cmd.args.accum_iter as number) * recipe.gpus,
      recipe.phases[phase].effective_batch,
    );
    // the lr their script derives equals ours
    const eff = recipe.phases[phase].effective_batch;
    const theirs = phase === "pretrain"
      ? (cmd.args.blr as number) * eff / 256
      : (cmd.args.blr as number) * Math.sqrt(eff) / 8;
    assert.equal(theirs, scaleLr(config.blr as number, eff, config.lrScaling as never));
    assert.ok(
      commandLine(cmd).startsWith(`torchrun --nproc_per_node=8 ${cmd.script} \\\n  --model `),
    );
  });
}

Deno.test("the batch splits over other GPU counts, or is refused naming batchSize", async () => {
  const config = await resolved(
    "pretrain",
    "configs/pretrain_official.json",
    RECIPE_OVERRIDES.pretrain,
  );
  const four = authorsCommand(config, { gpus: 4 });
  assert.deepEqual([four.args.batch_size, four.args.accum_iter], [128, 8]);
  const nodes = authorsCommand(config, { gpus: 8, nodes: 4 });
  assert.deepEqual([nodes.args.batch_size, nodes.args.accum_iter], [128, 1]);
  assert.match(
    commandLine(nodes),
    /--nproc_per_node=8 --nnodes=4 --node_rank=\$NODE_RANK --master_addr=\$MASTER_ADDR --master_port=\$\{MASTER_PORT:-29500\} main_mtm_pretrain\.py/,
  );
  const per = authorsCommand(config, { gpus: 8, batchPerGpu: 256 });
  assert.deepEqual([per.args.batch_size, per.args.accum_iter], [256, 2]);
  assert.throws(
    () => authorsCommand(config, { gpus: 3 }),
    (e) => e instanceof UnmappableSettingError && e.setting === "batchSize",
  );
});

Deno.test("another lr rule is passed as the absolute --lr it gives", async () => {
  const config = await resolved("finetune", "configs/finetune_official.json", [
    ...RECIPE_OVERRIDES.finetune,
    ["lrScaling", "linear"],
  ]);
  const cmd = authorsCommand(config);
  assert.equal(cmd.args.blr, undefined);
  assert.equal(cmd.args.lr, scaleLr(1e-3, 1024, "linear"));
  assert.ok(cmd.warnings.some((w) => w.startsWith('lrScaling "linear"')));
});

Deno.test("settings without a counterpart are refused with the setting named", async () => {
  const cases: [Phase, [string, string][], string][] = [
    ["pretrain", [["maxSteps", "100"]], "maxSteps"],
    ["pretrain", [["data.limitTrain", "10"]], "data.limitTrain"],
    ["pretrain", [["betas", "[0.9,0.999]"]], "betas"],
    ["pretrain", [["gradClip", "3"]], "gradClip"],
    ["pretrain", [["warmupEpochs", "2.5"]], "warmupEpochs"],
    ["pretrain", [["model.depth", "6"]], "model"],
    ["pretrain", [["model.decoderDropout", "0"]], "model.decoderDropout"],
    ["pretrain", [["augment", "null"]], "augment"],
    ["pretrain", [["augment", "seit"]], "augment.tokenAdapt"],
    ["pretrain", [["augmentSettings", '{"noise":true}']], "augment.noise"],
    ["finetune", [["augmentSettings", '{"noiseProb":0.25}']], "augment.noiseProb"],
    ["finetune", [["augmentSettings", '{"rrcRatio":[0.5,2]}']], "augment.rrcRatio"],
    [
      "finetune",
      [["augmentSettings", '{"geometric":{"degrees":10}}']],
      "augment.geometric.degrees",
    ],
    ["finetune", [["augmentSettings", '{"labelSmoothing":0.2}']], "augment.labelSmoothing"],
    [
      "finetune",
      [["augmentSettings", '{"tokenAdaptMix":{"mixupAlpha":0.2}}']],
      "augment.tokenAdaptMix",
    ],
    ["finetune", [["model.globalPool", "false"]], "model.globalPool"],
    ["finetune", [["model.numClasses", "10"]], "model"],
    ["finetune", [["data.test", "null"]], "data.test"],
  ];
  for (const [phase, extra, setting] of cases) {
    const config = await resolved(phase, `configs/${phase}_official.json`, [
      ...RECIPE_OVERRIDES[phase],
      ...extra,
    ]);
    assert.throws(
      () => authorsCommand(config),
      (e) => {
        assert.ok(e instanceof UnmappableSettingError, String(e));
        assert.equal(e.setting, setting, e.message);
        assert.ok(e.message.includes(`"${setting}"`));
        return true;
      },
    );
  }
});

Deno.test("bookkeeping settings are warnings, colour-step presets map to their RandomChoice", async () => {
  const config = await resolved("finetune", "configs/finetune_official.json", [
    ...RECIPE_OVERRIDES.finetune,
    ["augment", "tokenadapt"], // ColorAdapt off: Noise 0.75, identity 0.25 (the reference's)
  ]);
  const cmd = authorsCommand(config);
  assert.deepEqual([cmd.args.token_noise_prob, cmd.args.token_coloradapt_prob], [0.75, 0]);
  assert.ok(cmd.warnings.some((w) => w.startsWith("logEvery ")));
  const ca = authorsCommand(
    await resolved("finetune", "configs/finetune_official.json", [
      ...RECIPE_OVERRIDES.finetune,
      ["augmentSettings", '{"noise":false}'],
    ]),
  );
  // Noise off: ColorAdapt keeps its 0.25, identity takes the rest
  assert.deepEqual([ca.args.token_noise_prob, ca.args.token_coloradapt_prob], [0, 0.25]);
});

Deno.test("a grid run folder's config (resolved step object) exports, with its paths kept", async () => {
  const config = JSON.parse(
    await Deno.readTextFile("results/grid/runs/ft-seit-fm8-600-s0/config.json"),
  ) as BridgeRunConfig;
  // the grid evaluates on the first 5000 test records; their scripts read whole files
  assert.throws(
    () => authorsCommand(config),
    (e) => e instanceof UnmappableSettingError && e.setting === "data.limitTest",
  );
  const vitB = {
    ...config,
    warmupEpochs: 3,
    data: { ...config.data as object, limitTest: null },
    model: {
      ...config.model as object,
      gridSide: 28,
      patchSize: 2,
      codebookSize: 391,
      numClasses: 1000,
      embedDim: 768,
      depth: 12,
      numHeads: 12,
    },
    augment: {
      ...config.augment as object,
      size: 28,
      tokenAdapt: true,
      numClasses: 1000,
      geometric: { ...(config.augment as { geometric: object }).geometric, cropScale: [0.35, 1] },
    },
  };
  const cmd = authorsCommand(vitB as BridgeRunConfig, { gpus: 1 });
  assert.equal(
    cmd.args.train_token_file,
    "results/grid/data/fm8-600/fmnist-train-token.data.bin.gz",
  );
  assert.equal(cmd.args.train_label_file, "results/grid/data/fm8-600/fmnist-train-label.txt");
  assert.equal(cmd.args.rrc_ratio, 0.35);
  assert.equal(cmd.args.token_noise_scale, 0.18);
  assert.deepEqual([cmd.args.batch_size, cmd.args.accum_iter], [64, 1]);
});
