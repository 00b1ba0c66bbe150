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
 * `identity-tokenadapt` = f -> g with no geometric change; pre-training `seit` = token RRC
 * only, `seitpp` = with the TokenAdapt half (the reference's SeiT++ pre-training). `null`
 * keeps the recipe's plain crop with hard labels.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { TokenAdapt } from "../../adapters/mod.ts";
import { CodeQuantizer, loadCodebook } from "../../tokens/mod.ts";
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
}

/** Defaults of {@linkcode RunAugmentKeys}: no augmentation step. */
export const RUN_AUGMENT_DEFAULTS: RunAugmentKeys = {
  recipe: RECIPE_VERSION,
  augment: null,
  augmentSettings: {},
  codebook: null,
  tokenAdaptWeights: null,
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
    nullable: { codebook: "string", tokenAdaptWeights: "string" },
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

function checkTokenAdaptWeights(step: ResolvedAugmentStepConfig, weights: string | null): void {
  if (step.tokenAdapt && weights === null) {
    throw new TypeError(
      `Config key "tokenAdaptWeights": the augmentation step uses TokenAdapt, so it needs ` +
        `TokenAdapt weights (e.g. results/tokenadapt/fmnist8/tokenadapt.safetensors for ` +
        `data/fmnist8; deno task tokenadapt:train makes them for other tokens)`,
    );
  }
}

/**
 * Check a run's augmentation keys without loading anything: the preset exists for the
 * recipe, the settings are valid, TokenAdapt weights are named when the step uses them.
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
  return step;
}

/** An augmentation step with the codebook and TokenAdapt it holds. */
export interface OpenedAugmentStep {
  /** The step (`step.hook` is what `pretrain` / `finetune` take as `augment`). */
  readonly step: AugmentStep;
  /** Release the quantizer's and TokenAdapt's tensors. */
  dispose(): void;
}

/**
 * Build an augmentation step: load the codebook (checked against the model's size) and,
 * when the step uses TokenAdapt, its weights.
 *
 * @param config the step settings
 * @param files `codebook`, `tokenAdaptWeights`, the model's `codebookSize`
 * @returns the step and its disposer
 * @throws {TypeError} when TokenAdapt is on and no weights are given (key named)
 */
export async function openAugmentStep(
  config: AugmentStepConfig,
  files: { codebook: string; tokenAdaptWeights: string | null; codebookSize: number },
  trace?: (record: AugmentStepRecord) => void,
): Promise<OpenedAugmentStep> {
  const resolved = resolveAugmentStepConfig(config);
  checkTokenAdaptWeights(resolved, files.tokenAdaptWeights);
  const quantizer = CodeQuantizer.from(
    await loadCodebook(files.codebook, { size: files.codebookSize }),
  );
  let ta: TokenAdapt | null = null;
  try {
    if (resolved.tokenAdapt) ta = (await TokenAdapt.load(files.tokenAdaptWeights!)).model;
    const step = createAugmentStep(resolved, { quantizer, tokenAdapt: ta, trace });
    return {
      step,
      dispose() {
        ta?.dispose();
        quantizer.dispose();
      },
    };
  } catch (e) {
    ta?.dispose();
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
 * @returns the opened step, or null
 */
export async function openRunAugment(
  kind: "pretrain" | "finetune",
  config: RunAugmentKeys & {
    data: { train: string };
    model: { gridSide?: unknown; codebookSize?: unknown; numClasses?: unknown };
  },
  trace?: (record: AugmentStepRecord) => void,
): Promise<OpenedAugmentStep | null> {
  const step = checkRunAugment(kind, config);
  if (step === null) return null;
  const m = config.model;
  return await openAugmentStep(step, {
    codebook: config.codebook ?? join(dirname(config.data.train), "codebook.safetensors"),
    tokenAdaptWeights: config.tokenAdaptWeights,
    codebookSize: m.codebookSize as number,
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
