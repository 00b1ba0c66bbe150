/**
 * The augmentation step of one training run, named in its config: the keys the
 * `pretrain` / `finetune` tasks accept on top of the recipes (`augment`, `augmentSettings`,
 * `codebook`, `tokenAdaptWeights`), the step settings they stand for, and the loading of
 * the codebook and TokenAdapt weights the step needs. The experiment grid builds its runs'
 * steps through {@linkcode openAugmentStep} too.
 *
 * Presets are the augmentation arms of ./arms.ts (REFERENCE.md sections 2, 3 and 6):
 * fine-tuning `seit` = the SeiT augmentations (token RRC, CutMix, Emb-Noise), `coloradapt` /
 * `tokenadapt` = one SeiT++ component added, `seitpp` = both (the section-6 step),
 * `identity-tokenadapt` = f -> g with no geometric change, `oracle-tokenadapt` = the TokenAdapt
 * half's tokens re-tokenized from the records' pixels (./oracle.ts; keys `oracleImages`,
 * `oracleTokenizer`); pre-training `seit` = token RRC
 * only, `seitpp` = with the TokenAdapt half (the reference's SeiT++ pre-training). `null`
 * keeps the recipe's plain crop with hard labels.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { TokenAdapt } from "../../adapters/mod.ts";
import { CodeQuantizer, loadCodebook, openTokenDataset } from "../../tokens/mod.ts";
import type { TokenSource } from "../engine/loop.ts";
import { type OpenedOracle, openTokenAdaptOracle } from "./oracle.ts";
import { AUGMENT_ARMS, type AugmentArm, augmentStepForArm, PRETRAIN_AUGMENT_ARMS } from "./arms.ts";
import {
  type AugmentStep,
  type AugmentStepConfig,
  augmentStepFinetune,
  augmentStepPretrain,
  type AugmentStepRecord,
  createAugmentStep,
  resolveAugmentStepConfig,
  type ResolvedAugmentStepConfig,
} from "./augment_step.ts";
import type { ConfigSchema } from "../engine/config.ts";
import { RECIPE_VERSION } from "../experiments/run_config.ts";

/** The augmentation presets of a training run: the augmentation arms. */
export type RunAugmentPreset = AugmentArm;

/** The config keys a training task accepts for its augmentation step (and the recipe version). */
export interface RunAugmentKeys {
  /** The training-recipe version (`RECIPE_VERSION`; ../experiments/run_config.ts). */
  recipe: number;
  /** The preset, or null for no augmentation step (plain crop, hard labels). */
  augment: RunAugmentPreset | null;
  /** Step settings over the preset (keys of `AugmentStepConfig`, e.g. `noiseScale`). */
  augmentSettings: AugmentStepConfig;
  /** The codebook file; null = `codebook.safetensors` next to the training data. */
  codebook: string | null;
  /** TokenAdapt weights (`TokenAdapt.load`); needed by the presets that use TokenAdapt. */
  tokenAdaptWeights: string | null;
  /**
   * The oracle arm's pixel images: idx images of the full training set the tokens were made
   * from (a grid budget's `budget.json` next to `data.train` maps its records to them).
   */
  oracleImages: string | null;
  /** The oracle arm's tokenizer folder (`tokenizer.json` + `tokenizer.safetensors`). */
  oracleTokenizer: string | null;
}

/** Defaults of {@linkcode RunAugmentKeys}: no augmentation step. */
export const RUN_AUGMENT_DEFAULTS: RunAugmentKeys = {
  recipe: RECIPE_VERSION,
  augment: null,
  augmentSettings: {},
  codebook: null,
  tokenAdaptWeights: null,
  oracleImages: null,
  oracleTokenizer: null,
};

const FINETUNE_PRESETS: readonly RunAugmentPreset[] = AUGMENT_ARMS;
const PRETRAIN_PRESETS: readonly RunAugmentPreset[] = PRETRAIN_AUGMENT_ARMS;

/**
 * What a recipe's config schema needs for {@linkcode RunAugmentKeys}.
 * @param kind which recipe (pre-training has only `seit` and `seitpp`)
 * @returns schema entries to merge into the recipe's schema
 */
export function runAugmentSchema(kind: "pretrain" | "finetune"): ConfigSchema {
  return {
    nullable: {
      codebook: "string",
      tokenAdaptWeights: "string",
      oracleImages: "string",
      oracleTokenizer: "string",
    },
    choices: {
      augment: [null, ...(kind === "pretrain" ? PRETRAIN_PRESETS : FINETUNE_PRESETS)],
      recipe: [RECIPE_VERSION],
    },
    open: ["augmentSettings"],
  };
}

/**
 * The step settings a preset stands for.
 * @param kind which recipe
 * @param preset the preset
 * @param settings settings over the preset
 * @param model the model's `gridSide` (the crop size m) and, fine-tuning, `numClasses`
 * @param smoothing the recipe's label smoothing (fine-tuning `smoothing`): the step's soft
 *   targets use it unless `settings.labelSmoothing` is given
 * @returns the resolved step settings
 * @throws {TypeError} for an unknown setting
 * @throws {RangeError} for a preset the recipe does not have, or a setting out of range
 */
export function runAugmentStepConfig(
  kind: "pretrain" | "finetune",
  preset: RunAugmentPreset,
  settings: AugmentStepConfig,
  model: { gridSide: number; numClasses?: number },
  smoothing?: number,
): ResolvedAugmentStepConfig {
  if (kind === "pretrain") {
    if (!PRETRAIN_PRESETS.includes(preset)) {
      throw new RangeError(
        `Config key "augment": pre-training has the presets seit and seitpp, not "${preset}"`,
      );
    }
    return resolveAugmentStepConfig({
      ...augmentStepPretrain(model.gridSide),
      tokenAdapt: preset === "seitpp",
      ...settings,
    });
  }
  if (model.numClasses === undefined) {
    throw new TypeError("Cannot build a fine-tuning augmentation step without numClasses");
  }
  return augmentStepForArm(
    {
      ...augmentStepFinetune(model.numClasses, model.gridSide),
      ...(smoothing === undefined ? {} : { labelSmoothing: smoothing }),
      ...settings,
    },
    preset,
  );
}

/** Whether a step runs TokenAdapt's networks (its TokenAdapt half, not the oracle's). */
function usesTokenAdaptNets(step: ResolvedAugmentStepConfig): boolean {
  return step.tokenAdapt && step.tokenAdaptSource === "tokenadapt";
}

/** Whether a step's TokenAdapt half is the oracle. */
function usesOracle(step: ResolvedAugmentStepConfig): boolean {
  return step.tokenAdapt && step.tokenAdaptSource === "oracle";
}

function checkOracleFiles(
  step: ResolvedAugmentStepConfig,
  images: string | null | undefined,
  tokenizer: string | null | undefined,
): void {
  if (!usesOracle(step)) return;
  const missing = [
    ...(images == null ? ["oracleImages (the idx images the training tokens were made from)"] : []),
    ...(tokenizer == null ? ["oracleTokenizer (the tokenizer folder, e.g. data/fmnist8)"] : []),
  ];
  if (missing.length > 0) {
    throw new TypeError(
      `The oracle TokenAdapt half re-tokenizes the training records' pixel images, so it needs ` +
        `config key${missing.length > 1 ? "s" : ""} ${missing.join(" and ")}`,
    );
  }
}

function checkTokenAdaptWeights(step: ResolvedAugmentStepConfig, weights: string | null): void {
  if (usesTokenAdaptNets(step) && weights === null) {
    throw new TypeError(
      `Config key "tokenAdaptWeights": the augmentation step uses TokenAdapt, so it needs ` +
        `TokenAdapt weights (e.g. results/tokenadapt/fmnist8/tokenadapt.safetensors for ` +
        `data/fmnist8; deno task tokenadapt:train makes them for other tokens)`,
    );
  }
}

/**
 * Check a run's augmentation keys without loading anything: the preset exists for the
 * recipe, the settings are valid, TokenAdapt weights are named when the step uses them, the
 * oracle's images and tokenizer when its TokenAdapt half is the oracle.
 * @param kind which recipe
 * @param config the run config ({@linkcode RunAugmentKeys} and the resolved model)
 * @returns the step settings, or null when `augment` is null
 * @throws {TypeError | RangeError} naming the key or setting
 */
export function checkRunAugment(
  kind: "pretrain" | "finetune",
  config: RunAugmentKeys & {
    model: { gridSide?: unknown; numClasses?: unknown };
    smoothing?: unknown;
  },
): ResolvedAugmentStepConfig | null {
  if (config.augment === null) return null;
  const step = runAugmentStepConfig(
    kind,
    config.augment,
    config.augmentSettings,
    {
      gridSide: config.model.gridSide as number,
      numClasses: config.model.numClasses as number | undefined,
    },
    kind === "finetune" ? config.smoothing as number | undefined : undefined,
  );
  checkTokenAdaptWeights(step, config.tokenAdaptWeights);
  checkOracleFiles(step, config.oracleImages, config.oracleTokenizer);
  return step;
}

/** An augmentation step with the codebook and TokenAdapt it holds. */
export interface OpenedAugmentStep {
  /** The step (`step.hook` is what `pretrain` / `finetune` take as `augment`). */
  readonly step: AugmentStep;
  /** Release the quantizer's and TokenAdapt's tensors. */
  dispose(): void;
}

/** The files of an oracle TokenAdapt half and the training records it checks them against. */
export interface OracleInputs {
  /** Idx images of the full training set. */
  images: string | null;
  /** The tokenizer folder. */
  tokenizer: string | null;
  /** The training token file. */
  train: string;
  /** Its records (opened from `train` when not given). */
  data?: TokenSource;
}

/**
 * Build an augmentation step: load the codebook (checked against the model's size) and,
 * when the step uses TokenAdapt, its weights; when its TokenAdapt half is the oracle, the
 * training records' images and the tokenizer (checked against the stored tokens).
 *
 * @param config the step settings
 * @param files `codebook`, `tokenAdaptWeights`, the model's `codebookSize`, and `oracle`
 * @param trace called with every application's record
 * @returns the step and its disposer
 * @throws {TypeError} when TokenAdapt is on and no weights are given, or the oracle's files
 *   are not named (keys named)
 * @throws {OracleMismatchError} when the oracle's images are not the training tokens' images
 */
export async function openAugmentStep(
  config: AugmentStepConfig,
  files: {
    codebook: string;
    tokenAdaptWeights: string | null;
    codebookSize: number;
    oracle?: OracleInputs;
  },
  trace?: (record: AugmentStepRecord) => void,
): Promise<OpenedAugmentStep> {
  const resolved = resolveAugmentStepConfig(config);
  checkTokenAdaptWeights(resolved, files.tokenAdaptWeights);
  checkOracleFiles(resolved, files.oracle?.images, files.oracle?.tokenizer);
  if (usesOracle(resolved) && files.oracle === undefined) {
    throw new TypeError("Cannot open the oracle TokenAdapt half without its training data file");
  }
  const quantizer = CodeQuantizer.from(
    await loadCodebook(files.codebook, { size: files.codebookSize }),
  );
  let ta: TokenAdapt | null = null;
  let oracle: OpenedOracle | null = null;
  try {
    if (usesTokenAdaptNets(resolved)) {
      ta = (await TokenAdapt.load(files.tokenAdaptWeights!)).model;
    }
    if (usesOracle(resolved)) {
      const o = files.oracle!;
      const data = o.data ??
        await openTokenDataset(o.train, { codebookSize: files.codebookSize });
      oracle = await openTokenAdaptOracle(
        { images: o.images!, tokenizer: o.tokenizer!, train: o.train },
        data,
      );
    }
    const step = createAugmentStep(resolved, {
      quantizer,
      tokenAdapt: ta,
      oracle: oracle?.oracle ?? null,
      trace,
    });
    return {
      step,
      dispose() {
        ta?.dispose();
        oracle?.dispose();
        quantizer.dispose();
      },
    };
  } catch (e) {
    ta?.dispose();
    oracle?.dispose();
    quantizer.dispose();
    throw e;
  }
}

/**
 * The augmentation step a task's run config names, or null when `augment` is null.
 *
 * @param kind which recipe
 * @param config the run config: {@linkcode RunAugmentKeys}, `data.train`, the model's
 *   `gridSide`, `codebookSize` and (fine-tuning) `numClasses`
 * @param trace called with every application's record (draw traces)
 * @param data the training records when the caller opened them (the oracle checks its images
 *   against them; else it opens `data.train`)
 * @returns the opened step, or null
 */
export async function openRunAugment(
  kind: "pretrain" | "finetune",
  config: RunAugmentKeys & {
    data: { train: string };
    model: { gridSide?: unknown; codebookSize?: unknown; numClasses?: unknown };
  },
  trace?: (record: AugmentStepRecord) => void,
  data?: TokenSource,
): Promise<OpenedAugmentStep | null> {
  const step = checkRunAugment(kind, config);
  if (step === null) return null;
  const m = config.model;
  return await openAugmentStep(step, {
    codebook: config.codebook ?? join(dirname(config.data.train), "codebook.safetensors"),
    tokenAdaptWeights: config.tokenAdaptWeights,
    codebookSize: m.codebookSize as number,
    oracle: usesOracle(step)
      ? {
        images: config.oracleImages ?? null,
        tokenizer: config.oracleTokenizer ?? null,
        train: config.data.train,
        data,
      }
      : undefined,
  }, trace);
}

/**
 * The augmentation step a stored run config stands for, whatever wrote it: a recipe-2
 * config (`augment` an arm name, `augmentSettings`) through {@linkcode runAugmentStepConfig};
 * a recipe-1 grid config (`augment` the step object) read as step settings (its TokenAdapt
 * crop now follows `rrcScale`).
 *
 * @param config a run's `config.json`
 * @returns the resolved step settings, or null when the run has no augmentation step
 * @throws {TypeError | RangeError} for a config that names no valid step
 */
export function storedRunStep(config: Record<string, unknown>): ResolvedAugmentStepConfig | null {
  const a = config.augment;
  if (a === null || a === undefined) return null;
  if (typeof a === "object") return resolveAugmentStepConfig(a as AugmentStepConfig);
  const kind = config.kind === "pretrain" ? "pretrain" : "finetune";
  const model = config.model as { gridSide: number; numClasses?: number };
  return runAugmentStepConfig(
    kind,
    a as RunAugmentPreset,
    (config.augmentSettings ?? {}) as AugmentStepConfig,
    model,
    kind === "finetune" ? config.smoothing as number | undefined : undefined,
  );
}
