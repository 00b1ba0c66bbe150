/**
 * A resolved run config as the authors' launch line: `torchrun --nproc_per_node=N
 * main_mtm_pretrain.py ...` or `main_mtm_finetune.py ...` (naver-ai/seit, SeiT++), with
 * every argument that shapes training set explicitly to our config's value.
 *
 * What maps (argparse dest names; REFERENCE.md sections 2-6, recipe.json):
 * - model: the authors' model name for the architecture (only their official ViT-B names
 *   are known here: {@linkcode AUTHORS_MODELS}); every fixed part of their model (widths,
 *   dropouts, LayerNorm eps, pooling) must equal ours; `input_size` = 8 m (`token_patch_size` 8);
 * - batch: per-GPU `batch_size` x `accum_iter` x GPUs = our effective batch (batchSize x
 *   accumIter); lr: `--blr` when our lr rule is the script's (pre-training linear,
 *   fine-tuning sqrt), else the absolute `--lr` our rule gives; `epochs`, `warmup_epochs`
 *   (an integer there), `min_lr`, `weight_decay`, `layer_decay`, `smoothing`, `drop_path`,
 *   `clip_grad` (fine-tuning), the mask-ratio law and `bce_loss` (pre-training), `seed`;
 * - the augmentation step: `rrc_ratio` (base and TokenAdapt crops), the colour step's
 *   RandomChoice (`token_noise_prob`, `token_coloradapt_prob`), `token_noise_scale/std`,
 *   the base half's Mixup/CutMix (`mixup`, `cutmix`, `mixup_prob`, `mixup_switch_prob`);
 *   SeiT's synonym replacement and swap are off on both sides (`eda_rc_prob`, `eda_sc_prob` 0);
 * - files: token and label files, codebook, TokenAdapt weights, `--finetune` weights.
 *
 * Settings their scripts have no counterpart for are refused with an
 * {@linkcode UnmappableSettingError} naming the setting (a step budget, data limits, other
 * AdamW betas, a run without the TokenAdapt half, ...); bookkeeping that does not change
 * training (log and checkpoint cadence, workers, eval batch) is listed in `warnings`.
 *
 * @module
 */
import { resolveGeometricAugConfig } from "../adapters/mod.ts";
import { resolveClassifierConfig, resolveMtmConfig } from "../models/mod.ts";
import {
  colourChoice,
  type ConfigValue,
  RECIPE_VERSION,
  recipeVersionOf,
  type ResolvedAugmentStepConfig,
  scaleLr,
  storedRunStep,
} from "../train/mod.ts";

/** Which of the authors' two scripts. */
export type AuthorsPhase = "pretrain" | "finetune";

/** The authors' script of each phase. */
export const AUTHORS_SCRIPTS: Readonly<Record<AuthorsPhase, string>> = {
  pretrain: "main_mtm_pretrain.py",
  finetune: "main_mtm_finetune.py",
};

/**
 * The authors' model names this bridge knows, with the architecture each fixes (from
 * recipe.json `pretrain_model` and the README command lines; DeiT-B widths for the
 * classifier). Other architectures have no name to export to.
 */
export const AUTHORS_MODELS: Readonly<
  Record<AuthorsPhase, Readonly<Record<string, Readonly<Record<string, number>>>>>
> = {
  pretrain: {
    mae_token_vit_base_patch16_dec512d4b_k2s2_vitvqgan_32: {
      embedDim: 768,
      depth: 12,
      numHeads: 12,
      decoderEmbedDim: 512,
      decoderDepth: 4,
      decoderNumHeads: 16,
      patchSize: 2,
      tokenDim: 32,
      codebookSize: 391,
    },
  },
  finetune: {
    deit_base_token_32: {
      embedDim: 768,
      depth: 12,
      numHeads: 12,
      patchSize: 2,
      tokenDim: 32,
      codebookSize: 391,
      numClasses: 1000,
    },
  },
};

/** Their token grid: `input_size / token_patch_size` tokens a side. */
export const AUTHORS_TOKEN_PATCH_SIZE = 8;

/** A setting of ours that the authors' scripts cannot reproduce. */
export class UnmappableSettingError extends Error {
  /** The setting (config key), e.g. `maxSteps`, `augment.baseMix`. */
  readonly setting: string;

  /**
   * @param setting the config key
   * @param why what differs
   */
  constructor(setting: string, why: string) {
    super(`Cannot export "${setting}" to the authors' scripts: ${why}`);
    this.name = "UnmappableSettingError";
    this.setting = setting;
  }
}

/** A resolved run config of either recipe: a task's (augment preset) or a grid run's (step). */
export interface BridgeRunConfig {
  /** `pretrain` or `finetune`. */
  kind: AuthorsPhase;
  /** Every other key of the resolved config. */
  [key: string]: unknown;
}

/** The files the command names (as they will be found where it runs). */
export interface AuthorsFiles {
  /** The codebook (`--codebook-path`), a torch.save'd tensor. @default {"codebook.ckpt"} */
  codebook?: string;
  /** TokenAdapt weights (`--tokenadapt-path`). @default {"tokenadapt.ckpt"} */
  tokenAdapt?: string;
  /** Initial weights of fine-tuning (`--finetune`) when the config has `init`. @default {"pretrained.pth"} */
  finetune?: string;
  /**
   * Folder of the token and label files where the command runs: `null` keeps the config's
   * paths, `""` the bare file names. @default {null}
   */
  dataRoot?: string | null;
  /** `--output_dir`. @default {"out"} */
  outputDir?: string;
}

/** Options of {@linkcode authorsCommand}. */
export interface AuthorsCommandOptions {
  /** GPUs per node (`--nproc_per_node`). @default {8} */
  gpus?: number;
  /** Nodes (`--nnodes`): the world size is gpus x nodes. @default {1} */
  nodes?: number;
  /** Per-GPU batch; by default our micro-batch when it divides, else our accumIter is kept. */
  batchPerGpu?: number;
  /** File names in the command. */
  files?: AuthorsFiles;
}

/** A value of one of the authors' arguments. */
export type AuthorsArgValue = string | number | boolean;

/** The authors' launch line for one run. */
export interface AuthorsCommand {
  /** Which script. */
  phase: AuthorsPhase;
  /** `main_mtm_pretrain.py` or `main_mtm_finetune.py`. */
  script: string;
  /** GPUs per node. */
  gpus: number;
  /** Nodes. */
  nodes: number;
  /** Every mapped argument by argparse dest name, with its value. */
  args: Record<string, AuthorsArgValue>;
  /** The script's argv (option strings as their parser spells them, then values). */
  argv: string[];
  /** Settings of ours that do not change training and are not passed (one line each). */
  warnings: string[];
}

/** How their parsers spell each dest (the rest: `--<dest>`). */
const OPTION: Record<string, string> = {
  codebook_path: "--codebook-path",
  train_token_file: "--train-token-file",
  train_label_file: "--train-label-file",
  val_token_file: "--val-token-file",
  val_label_file: "--val-label-file",
  tokenadapt_path: "--tokenadapt-path",
  rrc_ratio: "--rrc-ratio",
  token_coloradapt_prob: "--token-coloradapt-prob",
  token_noise_prob: "--token-noise-prob",
  token_noise_scale: "--token-noise-scale",
  token_noise_std: "--token-noise-std",
  eda_rc_prob: "--eda-rc-prob",
  eda_sc_prob: "--eda-sc-prob",
  mixup_prob: "--mixup-prob",
  mixup_switch_prob: "--mixup-switch-prob",
  mixup_mode: "--mixup-mode",
};

/**
 * The option string of an argument of the authors' scripts.
 * @param dest the argparse dest (`rrc_ratio`)
 * @returns the option (`--rrc-ratio`)
 *
 * @example
 * ```ts
 * import { authorsOption } from "@lib/bridge";
 * console.assert(authorsOption("rrc_ratio") === "--rrc-ratio");
 * console.assert(authorsOption("batch_size") === "--batch_size");
 * ```
 */
export function authorsOption(dest: string): string {
  return OPTION[dest] ?? `--${dest}`;
}

/** The args that are paths (compared by file name when the folders differ). */
export const AUTHORS_PATH_ARGS: readonly string[] = [
  "codebook_path",
  "train_token_file",
  "train_label_file",
  "val_token_file",
  "val_label_file",
  "tokenadapt_path",
  "finetune",
  "output_dir",
];

const SCRIPT_LR_RULE = { pretrain: "linear", finetune: "sqrt" } as const;
const SCRIPT_BETAS = { pretrain: [0.9, 0.95], finetune: [0.9, 0.999] } as const;
const SCRIPT_EPS = 1e-8;

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/**
 * The label file the authors' loader expects next to a token file
 * (`NAME-token.data.bin.gz` -> `NAME-label.txt`).
 * @param tokenFile the token file
 * @param setting the config key it came from, for the message
 * @returns the label file
 * @throws {UnmappableSettingError} for a name not in the release's pattern
 *
 * @example
 * ```ts
 * import { labelFileOf } from "@lib/bridge";
 * console.assert(labelFileOf("t/in1k-train-token.data.bin.gz") === "t/in1k-train-label.txt");
 * ```
 */
export function labelFileOf(tokenFile: string, setting = "data.train"): string {
  const m = /^(.*)-token\.data\.bin\.gz$/.exec(tokenFile);
  if (m === null) {
    throw new UnmappableSettingError(
      setting,
      `${
        show(tokenFile)
      } is not named NAME-token.data.bin.gz (their loader finds NAME-label.txt by that name)`,
    );
  }
  return `${m[1]}-label.txt`;
}

function relocate(path: string, root: string | null): string {
  if (root === null) return path;
  const name = path.split("/").pop()!;
  return root === "" ? name : `${root.replace(/\/$/, "")}/${name}`;
}

/**
 * The augmentation step a resolved config runs, as the launch path resolves it
 * (`storedRunStep`: a task or recipe-2 run config's arm and settings, or a recipe-1 grid
 * run's step object).
 * @param config the run config
 * @returns the resolved step, or null for none
 */
export function runStepOf(config: BridgeRunConfig): ResolvedAugmentStepConfig | null {
  return storedRunStep(config as Record<string, unknown>);
}

function num(config: BridgeRunConfig, key: string): number {
  const v = config[key];
  if (typeof v !== "number") {
    throw new TypeError(`Config key "${key}": expected a number, got ${show(v)}`);
  }
  return v;
}

/**
 * Split an effective batch over `world` processes: per-GPU batch x accumulation.
 * @returns `[batch_size, accum_iter]`
 */
function splitBatch(
  effective: number,
  world: number,
  micro: number,
  accum: number,
  perGpu: number | undefined,
): [number, number] {
  const fits = (b: number) => Number.isInteger(b) && b >= 1 && effective % (b * world) === 0;
  if (perGpu !== undefined) {
    if (!fits(perGpu)) {
      throw new UnmappableSettingError(
        "batchSize",
        `the effective batch ${effective} is not ${perGpu} per GPU x ${world} GPUs x an integer accumulation`,
      );
    }
    return [perGpu, effective / (perGpu * world)];
  }
  if (fits(micro)) return [micro, effective / (micro * world)];
  if (effective % (accum * world) === 0) return [effective / (accum * world), accum];
  throw new UnmappableSettingError(
    "batchSize",
    `the effective batch ${effective} (batchSize ${micro} x accumIter ${accum}) does not split over ` +
      `${world} GPUs (choose --gpus or --batch-per-gpu so that batch x accumulation x GPUs = ${effective})`,
  );
}

function checkModel(
  phase: AuthorsPhase,
  model: Record<string, ConfigValue>,
  init: boolean,
  warnings: string[],
): { name: string; inputSize: number } {
  const known = AUTHORS_MODELS[phase];
  const geometry = Object.keys(Object.values(known)[0]);
  const name = Object.keys(known).find((n) =>
    Object.entries(known[n]).every(([k, v]) => model[k] === v)
  );
  if (name === undefined) {
    const ours = Object.fromEntries(geometry.map((k) => [k, model[k]]));
    throw new UnmappableSettingError(
      "model",
      `no model of ${AUTHORS_SCRIPTS[phase]} known here has ${show(ours)} (known: ${
        Object.entries(known).map(([n, g]) => `${n} ${show(g)}`).join("; ")
      })`,
    );
  }
  // what their model classes fix, which must be our defaults
  const defaults =
    (phase === "pretrain"
      ? resolveMtmConfig({})
      : resolveClassifierConfig({})) as unknown as Record<string, ConfigValue>;
  const fixed = phase === "pretrain"
    ? [
      "mlpRatio",
      "qkvBias",
      "normEps",
      "mlmNormEps",
      "embedDropout",
      "encoderDropout",
      "encoderAttnDropout",
      "decoderDropout",
      "decoderAttnDropout",
    ]
    : ["mlpRatio", "qkvBias", "normEps", "embedDropout", "dropout", "attnDropout", "globalPool"];
  for (const k of fixed) {
    if (!same(model[k], defaults[k])) {
      throw new UnmappableSettingError(
        `model.${k}`,
        `${name} has ${show(defaults[k])}, this run ${show(model[k])}`,
      );
    }
  }
  if (phase === "pretrain" && model.dropRatio !== model.maskRatioMin) {
    throw new UnmappableSettingError(
      "model.dropRatio",
      `their encoder drops mask_ratio_min of the patches (${model.maskRatioMin}), this run ${model.dropRatio}`,
    );
  }
  if (phase === "finetune" && init && model.headInitStd !== 2e-5) {
    warnings.push(
      `model.headInitStd ${model.headInitStd}: with --finetune their head starts from ` +
        `trunc-normal std 2e-5`,
    );
  }
  if (phase === "finetune" && !init) {
    if (model.linearInit !== "trunc_normal") {
      throw new UnmappableSettingError(
        "model.linearInit",
        `from scratch their model has timm's trunc-normal init, this run ${show(model.linearInit)}`,
      );
    }
    if (model.headInitStd !== 0.02) {
      warnings.push(
        `model.headInitStd ${model.headInitStd}: without --finetune their head keeps timm's init ` +
          `(trunc-normal std 0.02); the 2e-5 head init applies only with --finetune`,
      );
    }
  }
  const m = model.gridSide as number;
  return { name, inputSize: m * AUTHORS_TOKEN_PATCH_SIZE };
}

function checkStep(
  phase: AuthorsPhase,
  step: ResolvedAugmentStepConfig | null,
  smoothing: number | null,
): Record<string, AuthorsArgValue> {
  if (step === null) {
    throw new UnmappableSettingError(
      "augment",
      "this run has no augmentation step (a plain crop), and their scripts always run theirs " +
        "(base-half RRC + TokenAdapt half, engine_mtm.py); set augment to seitpp",
    );
  }
  const bad = (k: string, why: string) => new UnmappableSettingError(`augment.${k}`, why);
  if (!step.tokenAdapt) {
    throw bad(
      "tokenAdapt",
      "their scripts always send half of every batch through TokenAdapt (they load --tokenadapt-path unconditionally)",
    );
  }
  const [smin, smax] = step.rrcScale;
  if (smax !== 1) {
    throw bad("rrcScale", `their RRC area range is (rrc_ratio, 1), this run's ends at ${smax}`);
  }
  if (!same(step.rrcRatio, [3 / 4, 4 / 3])) {
    throw bad("rrcRatio", `their RRC aspect range is (3/4, 4/3), this run ${show(step.rrcRatio)}`);
  }
  const geo = resolveGeometricAugConfig({ cropScale: [smin, 1] }) as unknown as Record<
    string,
    unknown
  >;
  for (const [k, v] of Object.entries(step.geometric)) {
    if (!same(v, geo[k])) {
      throw bad(
        `geometric.${k}`,
        `their TokenAdapt-space augmentation has ${show(geo[k])}, this run ${show(v)}`,
      );
    }
  }
  const out: Record<string, AuthorsArgValue> = { rrc_ratio: smin };
  const colour = step.noise || step.colorAdapt;
  if (phase === "pretrain" && colour) {
    throw bad("noise", "their pre-training runs no colour step (Emb-Noise / ColorAdapt)");
  }
  if (step.noise && step.noiseProb !== 0.5) {
    throw bad("noiseProb", `their Emb-Noise touches half of the batch, this run ${step.noiseProb}`);
  }
  if (step.colorAdapt && step.colorAdaptProb !== 0.5) {
    throw bad(
      "colorAdaptProb",
      `their ColorAdapt replaces half of the batch, this run ${step.colorAdaptProb}`,
    );
  }
  // the colour RandomChoice as the step draws it (an op switched off leaves its share to identity)
  const choice = colourChoice(step) ?? { noise: 0, colorAdapt: 0, identity: 1 };
  out.token_noise_prob = choice.noise;
  out.token_coloradapt_prob = choice.colorAdapt;
  out.token_noise_scale = step.noiseScale;
  out.token_noise_std = step.noiseStd;
  out.eda_rc_prob = 0;
  out.eda_sc_prob = 0;
  if (phase === "pretrain") {
    if (step.baseMix !== null || step.tokenAdaptMix !== null) {
      throw bad("baseMix", "their pre-training mixes nothing");
    }
    return out;
  }
  const base = step.baseMix;
  if (base === null) {
    throw bad("baseMix", "their fine-tuning always mixes (Mixup/CutMix with soft targets)");
  }
  const ta = step.tokenAdaptMix;
  const wantTa = { ...base, mixupAlpha: 0.8 };
  if (ta === null || !same({ ...ta }, wantTa)) {
    throw bad(
      "tokenAdaptMix",
      `their TokenAdapt-space mixing is Mixup 0.8 with the base half's CutMix, prob and switch ` +
        `prob (${show(wantTa)}), this run ${show(ta)}`,
    );
  }
  if (smoothing !== null && step.labelSmoothing !== smoothing) {
    throw bad(
      "labelSmoothing",
      `their soft targets use --smoothing (${smoothing}), this run's step ${step.labelSmoothing}`,
    );
  }
  if (step.numClasses !== 1000) {
    throw bad("numClasses", `their classifier has 1000 classes, this step ${step.numClasses}`);
  }
  Object.assign(out, {
    mixup: base.mixupAlpha,
    cutmix: base.cutmixAlpha,
    mixup_prob: base.prob,
    mixup_switch_prob: base.switchProb,
    mixup_mode: "batch",
  });
  return out;
}

/**
 * Map a resolved run config to the authors' launch line (see the module doc).
 *
 * @param config the resolved config (`config.json` of a run folder, or a task's resolved config)
 * @param options GPUs, per-GPU batch, file names
 * @returns the command
 * @throws {UnmappableSettingError} naming the first setting without a counterpart
 * @throws {TypeError} for a config that is not a resolved pretrain/finetune config
 *
 * @example
 * ```ts ignore
 * import { authorsCommand, commandLine } from "@lib/bridge";
 * const cmd = authorsCommand(JSON.parse(await Deno.readTextFile("runs/x/config.json")), { gpus: 8 });
 * console.log(commandLine(cmd));
 * ```
 */
export function authorsCommand(
  config: BridgeRunConfig,
  options: AuthorsCommandOptions = {},
): AuthorsCommand {
  const phase = config.kind;
  if (phase !== "pretrain" && phase !== "finetune") {
    throw new TypeError(
      `Cannot export a run of kind ${show(phase)}: expected pretrain or finetune`,
    );
  }
  const gpus = options.gpus ?? 8;
  const nodes = options.nodes ?? 1;
  for (const [k, v] of [["gpus", gpus], ["nodes", nodes]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`--${k}: expected an integer >= 1, got ${v}`);
    }
  }
  const files = options.files ?? {};
  const warnings: string[] = [];
  const refuse = (k: string, why: string) => new UnmappableSettingError(k, why);
  const model = config.model as Record<string, ConfigValue>;
  if (model === null || typeof model !== "object") {
    throw new TypeError('Config key "model" is missing');
  }
  const init = phase === "finetune" && config.init !== null && config.init !== undefined;
  if (recipeVersionOf(config) !== RECIPE_VERSION) {
    warnings.push(
      `recipe ${recipeVersionOf(config)}: this run trained under an older recipe; the command ` +
        `runs the authors' step (recipe ${RECIPE_VERSION}), not the one it ran`,
    );
  }

  if (config.maxSteps !== null && config.maxSteps !== undefined) {
    throw refuse(
      "maxSteps",
      `their scripts run whole epochs (no step budget), this run stops at ${config.maxSteps}`,
    );
  }
  const data = config.data as Record<string, unknown>;
  for (const k of ["limitTrain", "limitTest"]) {
    if (data[k] !== null && data[k] !== undefined) {
      throw refuse(
        `data.${k}`,
        `their scripts read whole token files, this run uses the first ${data[k]} records`,
      );
    }
  }
  if (!same(config.betas, SCRIPT_BETAS[phase])) {
    throw refuse(
      "betas",
      `${AUTHORS_SCRIPTS[phase]} uses AdamW betas ${show(SCRIPT_BETAS[phase])}, this run ${
        show(config.betas)
      }`,
    );
  }
  if (config.eps !== SCRIPT_EPS) {
    throw refuse("eps", `their AdamW eps is ${SCRIPT_EPS}, this run ${config.eps}`);
  }
  const warmup = num(config, "warmupEpochs");
  if (!Number.isInteger(warmup)) {
    throw refuse("warmupEpochs", `their --warmup_epochs is an integer, this run ${warmup}`);
  }
  const { name, inputSize } = checkModel(phase, model, init, warnings);

  const micro = num(config, "batchSize"), accum = num(config, "accumIter");
  const effective = micro * accum;
  const [batch, accumIter] = splitBatch(effective, gpus * nodes, micro, accum, options.batchPerGpu);

  const args: Record<string, AuthorsArgValue> = {
    model: name,
    input_size: inputSize,
    token_patch_size: AUTHORS_TOKEN_PATCH_SIZE,
    batch_size: batch,
    accum_iter: accumIter,
    epochs: num(config, "epochs"),
  };
  const rule = config.lrScaling as string;
  if (config.lr !== null && config.lr !== undefined) {
    args.lr = num(config, "lr");
  } else if (rule === SCRIPT_LR_RULE[phase]) {
    args.blr = num(config, "blr");
  } else {
    args.lr = scaleLr(num(config, "blr"), effective, rule as never);
    warnings.push(
      `lrScaling "${rule}": their script scales blr by the ${SCRIPT_LR_RULE[phase]} rule, so the ` +
        `absolute lr ${args.lr} is passed as --lr`,
    );
  }
  args.min_lr = num(config, "minLr");
  args.warmup_epochs = warmup;
  args.weight_decay = num(config, "weightDecay");
  args.seed = num(config, "seed");

  if (phase === "pretrain") {
    if (config.gradClip !== null && config.gradClip !== undefined) {
      throw refuse("gradClip", "their pre-training parses --grad_clip but never clips");
    }
    Object.assign(args, {
      mask_ratio_min: model.maskRatioMin,
      mask_ratio_max: model.maskRatioMax,
      mask_ratio_mu: model.maskRatioMu,
      mask_ratio_std: model.maskRatioStd,
      smoothing: model.labelSmoothing,
    });
    if (model.bceLoss === true) args.bce_loss = true;
  } else {
    args.drop_path = model.dropPath as number;
    if (config.gradClip !== null && config.gradClip !== undefined) {
      args.clip_grad = num(config, "gradClip");
    }
    args.layer_decay = num(config, "layerDecay");
    args.smoothing = num(config, "smoothing");
  }
  Object.assign(
    args,
    checkStep(phase, runStepOf(config), phase === "finetune" ? num(config, "smoothing") : null),
  );

  const root = files.dataRoot ?? null;
  args.codebook_path = files.codebook ?? "codebook.ckpt";
  const train = String(data.train);
  args.train_token_file = relocate(train, root);
  args.train_label_file = relocate(labelFileOf(train), root);
  if (phase === "finetune") {
    if (typeof data.test !== "string") {
      throw refuse(
        "data.test",
        "their fine-tuning evaluates a validation token file every epoch; this run has none",
      );
    }
    args.val_token_file = relocate(data.test, root);
    args.val_label_file = relocate(labelFileOf(data.test, "data.test"), root);
  } else if (data.test !== null && data.test !== undefined) {
    warnings.push(`data.test ${show(data.test)}: their pre-training evaluates nothing`);
  }
  args.tokenadapt_path = files.tokenAdapt ?? "tokenadapt.ckpt";
  if (init) args.finetune = files.finetune ?? "pretrained.pth";
  args.output_dir = files.outputDir ?? "out";
  if (phase === "finetune") args.dist_eval = true;

  for (
    const k of [
      "logEvery",
      "checkpointEvery",
      "evalEvery",
      "keepCheckpoints",
      "workers",
      "evalBatchSize",
    ]
  ) {
    if (k in config) {
      warnings.push(
        `${k} ${show(config[k])}: bookkeeping, not passed (their scripts log and save per epoch)`,
      );
    }
  }
  const argv: string[] = [];
  for (const [k, v] of Object.entries(args)) {
    if (v === false) continue;
    argv.push(authorsOption(k));
    if (v !== true) argv.push(String(v));
  }
  return { phase, script: AUTHORS_SCRIPTS[phase], gpus, nodes, args, argv, warnings };
}

/** Quote one word for a POSIX shell when it needs it. */
function shellWord(w: string): string {
  return /^[A-Za-z0-9_./=:+-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`;
}

/**
 * The launch line: `torchrun --nproc_per_node=N SCRIPT ARGS`, one option a line; on M > 1
 * nodes with `--nnodes=M --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR --master_port=...`
 * (set per node in the environment).
 * @param cmd the command
 * @returns the shell text (no trailing newline)
 *
 * @example
 * ```ts
 * import { commandLine } from "@lib/bridge";
 * const sh = commandLine({
 *   phase: "finetune",
 *   script: "main_mtm_finetune.py",
 *   gpus: 8,
 *   nodes: 1,
 *   args: { epochs: 100, dist_eval: true },
 *   argv: ["--epochs", "100", "--dist_eval"],
 *   warnings: [],
 * });
 * console.assert(sh === "torchrun --nproc_per_node=8 main_mtm_finetune.py \\\n  --epochs 100 \\\n  --dist_eval");
 * ```
 */
export function commandLine(cmd: AuthorsCommand): string {
  const head = [`torchrun --nproc_per_node=${cmd.gpus}`];
  if (cmd.nodes > 1) {
    // each node runs the same line with its own NODE_RANK; MASTER_ADDR is node 0
    head.push(
      `--nnodes=${cmd.nodes}`,
      "--node_rank=$NODE_RANK",
      "--master_addr=$MASTER_ADDR",
      "--master_port=${MASTER_PORT:-29500}",
    );
  }
  const lines = [`${head.join(" ")} ${cmd.script}`];
  for (let i = 0; i < cmd.argv.length; i++) {
    const opt = cmd.argv[i];
    const next = cmd.argv[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      lines.push(`  ${opt} ${shellWord(next)}`);
      i++;
    } else {
      lines.push(`  ${opt}`);
    }
  }
  return lines.join(" \\\n");
}
