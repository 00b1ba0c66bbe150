/**
 * The one launch path: build a run from a resolved run config (./run_config.ts) and train
 * it. The `pretrain` / `finetune` tasks and the grid both come here, so that a config
 * trains the same step wherever it was written.
 *
 * Where things happen, one hop from here: the augmentation step (colour choice, the two
 * halves, where TokenAdapt enters) is built by `openRunAugment` (../augment/augment_run.ts ->
 * ../augment/augment_step.ts); the MTM loss and the mask draw are in
 * ../recipes/objectives.ts (`drawMtmMask`, `mtmObjective`, called by `pretrain`); the
 * classification loss likewise (`classifierObjective`, called by `finetune` and the pixel
 * baseline of ../recipes/pixel.ts).
 *
 * @module
 */
import { MtmModel, PixelVit, TokenClassifier } from "../../models/mod.ts";
import { Rng } from "../../random/mod.ts";
import { openTokenDataset, type TokenDataset } from "../../tokens/mod.ts";
import { openRunAugment, type RunAugmentKeys } from "../augment/augment_run.ts";
import type { AugmentStepRecord } from "../augment/augment_step.ts";
import type { LoadedCheckpoint } from "../engine/checkpoint.ts";
import { finetune, type FinetuneConfig } from "../recipes/finetune.ts";
import { type PixelBaselineConfig, trainPixelBaseline } from "../recipes/pixel.ts";
import { pretrain, type PretrainConfig } from "../recipes/pretrain.ts";
import type { RunSummary } from "../engine/runner.ts";
import { checkRecipeVersion } from "./run_config.ts";

/** What {@linkcode launchRun} needs besides the config. */
export interface LaunchOptions {
  /** The run folder. */
  runDir: string;
  /** The checkpoint to resume from, or null. */
  resume?: LoadedCheckpoint | null;
  /** Show the progress line. @default {true} */
  progress?: boolean;
  /** Where human-readable lines go. @default {console.error} */
  print?: (line: string) => void;
  /** Asked after every step: true stops the run with a checkpoint. */
  stop?: () => boolean;
  /** The training data when the caller opened it already (else opened from the config). */
  data?: TokenDataset;
  /** Extra keys of the run log's start record. */
  startInfo?: Record<string, unknown>;
  /** Called with every augmentation-step record (a `DrawTracer`'s `record`; ../augment/draw_trace.ts). */
  trace?: (record: AugmentStepRecord) => void;
}

/** A token run's config: the recipe's and the augmentation keys. */
export type TokenRunConfig<C> = C & RunAugmentKeys & { recipe?: number };

/**
 * Train one run from its resolved config: open the data, the augmentation step (codebook
 * and TokenAdapt), the model, and call the recipe.
 *
 * @param kind which recipe
 * @param config the resolved run config (as `config.json` holds it)
 * @param options run folder, resume, output
 * @returns the run summary
 * @throws {LegacyRecipeError} when resuming a run written under another recipe version
 */
export async function launchRun(
  kind: "pretrain" | "finetune" | "pixel",
  config: Record<string, unknown>,
  options: LaunchOptions,
): Promise<RunSummary> {
  if (options.resume) checkRecipeVersion(options.resume.state.config, options.runDir);
  const common = {
    runDir: options.runDir,
    resume: options.resume ?? null,
    progress: options.progress,
    print: options.print,
    stop: options.stop,
  };
  const seed = config.seed as number;
  if (kind === "pixel") {
    const c = config as unknown as PixelBaselineConfig;
    const model = new PixelVit(c.model, new Rng(seed).fork("init"));
    try {
      return await trainPixelBaseline({ ...common, config: c, model });
    } finally {
      model.dispose();
    }
  }
  const c = config as unknown as TokenRunConfig<PretrainConfig | FinetuneConfig>;
  const K = (c.model as { codebookSize: number }).codebookSize;
  // a classifier's labels are checked against its classes when the data opens
  const numClasses = kind === "finetune"
    ? (c.model as { numClasses: number }).numClasses
    : undefined;
  const data = options.data ??
    await openTokenDataset(c.data.train, { codebookSize: K, numClasses });
  const augment = await openRunAugment(kind, c, options.trace, data);
  try {
    if (kind === "pretrain") {
      const pc = c as TokenRunConfig<PretrainConfig>;
      const model = new MtmModel(pc.model as never, new Rng(seed).fork("init"));
      try {
        return await pretrain({
          ...common,
          config: pc,
          model,
          data,
          augment: augment?.step.hook,
          startInfo: { records: data.length, gridSide: data.gridSide, ...options.startInfo },
        });
      } finally {
        model.dispose();
      }
    }
    const fc = c as TokenRunConfig<FinetuneConfig>;
    const test = fc.data.test === null
      ? null
      : await openTokenDataset(fc.data.test, { codebookSize: K, numClasses });
    const model = new TokenClassifier(fc.model as never, new Rng(seed).fork("init"));
    try {
      return await finetune({
        ...common,
        config: fc,
        model,
        data,
        test,
        augment: augment?.step.hook,
      });
    } finally {
      model.dispose();
    }
  } finally {
    augment?.dispose();
  }
}
