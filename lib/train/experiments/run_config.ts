/**
 * The shape of a run's `config.json`, wherever it was written (the `pretrain` / `finetune`
 * tasks, the grid): the recipe's resolved config (`PretrainConfig`, `FinetuneConfig` or the
 * pixel baseline's) plus
 *
 * - `recipe`: the training-recipe version ({@linkcode RECIPE_VERSION});
 * - `augment`: the augmentation arm (../augment/arms.ts) or `null` for no augmentation step;
 * - `augmentSettings`: step settings over the arm's preset (`AugmentStepConfig` keys);
 * - `codebook`, `tokenAdaptWeights`: the files the step loads;
 * - for grid runs, `grid` (`GridRunInfo`).
 *
 * The augmentation step a config stands for is resolved by ONE function,
 * `runAugmentStepConfig` (../augment/augment_run.ts); `describeRecipe` (./recipe.ts) prints it.
 *
 * Recipe versions: 1 = run folders written before issue #10 (TokenAdapt half first and
 * cropped with the fine-tuning preset's range, Emb-Noise on every batch with ColorAdapt off,
 * no TokenAdapt in pre-training, sin-cos/2e-5 init from scratch; grid folders hold the
 * resolved step object under `augment`). 2 = the reference's step (REFERENCE.md section 6).
 * Version-1 folders still load for figures and tables; resuming them is refused
 * ({@linkcode checkRecipeVersion}) with the way to re-run them.
 *
 * @module
 */
import type { ResolvedClassifierConfig } from "../../models/mod.ts";

/** The current training-recipe version written into every run's `config.json`. */
export const RECIPE_VERSION = 2;

/** A run config written under an older recipe cannot continue under this one. */
export class LegacyRecipeError extends Error {
  /** The run folder or config source. */
  readonly source: string;

  /**
   * @param source the run folder or file
   * @param version the version it holds
   */
  constructor(source: string, version: number) {
    super(
      `"${source}" was written under training recipe ${version}; this runtime trains recipe ` +
        `${RECIPE_VERSION} (the reference's step: one crop range for both halves, base half ` +
        `first, the colour RandomChoice with identity, TokenAdapt in SeiT++ pre-training, ` +
        `timm's from-scratch init). It cannot be resumed. To convert: start a new run with ` +
        `the same recipe keys (e.g. deno task finetune --config <your config file> --out ` +
        `<new dir>), or for a grid, run the grid with another --out; the old folder's logs ` +
        `and figures stay readable`,
    );
    this.name = "LegacyRecipeError";
    this.source = source;
  }
}

/**
 * The recipe version a stored config holds (1 when it has no `recipe` key).
 * @param config a stored run config
 * @returns the version
 */
export function recipeVersionOf(config: unknown): number {
  const v = (config as { recipe?: unknown } | null)?.recipe;
  return typeof v === "number" ? v : 1;
}

/**
 * Refuse a stored config of another recipe version.
 * @param config a stored run config
 * @param source where it came from, for the message
 * @throws {LegacyRecipeError} when its version is not {@linkcode RECIPE_VERSION}
 */
export function checkRecipeVersion(config: unknown, source: string): void {
  const v = recipeVersionOf(config);
  if (v !== RECIPE_VERSION) throw new LegacyRecipeError(source, v);
}

/**
 * A classifier config with timm's from-scratch init (REFERENCE.md section 5): position table
 * and head trunc-normal std 0.02. The 2e-5 head and the sin-cos table apply only when
 * fine-tuning from a checkpoint (whose position table replaces the init anyway).
 * @param model a resolved classifier config
 * @returns a copy with `headInitStd` 0.02 and `posEmbedInit` `trunc_normal`
 */
export function scratchInitModel<T extends Partial<ResolvedClassifierConfig>>(model: T): T {
  return { ...model, headInitStd: 0.02, posEmbedInit: "trunc_normal" };
}

/** The values {@linkcode scratchInitModel} sets (what a config file may override). */
export const SCRATCH_INIT = { headInitStd: 0.02, posEmbedInit: "trunc_normal" } as const;

/**
 * The augmentation arm a grid run's `grid.augment` names, reading recipe-1 names (`none` =
 * `seit`, `both` = `seitpp`).
 * @param v the stored value
 * @returns the arm, or null
 */
export function gridAugmentArm(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  if (v === "none") return "seit";
  if (v === "both") return "seitpp";
  return String(v);
}
