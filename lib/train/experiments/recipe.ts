/**
 * What a run of a config will execute, as the launch path resolves it
 * ({@linkcode describeRecipe}; `deno task recipe`): model widths and depths, effective batch,
 * lr, and per half of the training step what happens with which probability and range.
 * Grids are described per method arm from the same run configs `expandGrid` writes
 * ({@linkcode gridRecipes}).
 *
 * @module
 */
import { join } from "node:path";
import { openTokenDataset } from "../../tokens/mod.ts";
import type { MethodArm } from "../augment/arms.ts";
import { storedRunStep } from "../augment/augment_run.ts";
import {
  colourChoice,
  identityGeometry,
  type ResolvedAugmentStepConfig,
} from "../augment/augment_step.ts";
import { expandGrid, type GridConfig, type GridRunSpec, type MeasuredBudget } from "./grid.ts";
import { type LrScaling, scaleLr } from "../engine/schedule.ts";

/** Mixing of one half, as the step runs it. */
export interface RecipeMix {
  /** Mixup's Beta alpha (0: none). */
  mixupAlpha: number;
  /** CutMix's Beta alpha (0: none). */
  cutmixAlpha: number;
  /** Probability that the half is mixed. */
  prob: number;
  /** With both alphas > 0: probability of CutMix. */
  switchProb: number;
  /** One lambda per batch (timm `mode="batch"`). */
  mode: "batch";
}

/** The training step of one run, resolved (plain JSON; what `deno task recipe --json` prints). */
export interface RecipeDescription {
  /** `pretrain` or `finetune`. */
  phase: "pretrain" | "finetune";
  /** The augmentation arm, or null (no augmentation step). */
  arm: string | null;
  /** The training-recipe version. */
  recipe: number;
  /** Which half comes first in the batch (recipe 1 ran TokenAdapt first). */
  halfOrder: "base first" | "TokenAdapt first";
  /** Samples per optimizer step: `batchSize x accumIter` (all GPUs of the reference together). */
  effectiveBatch: number;
  /** Samples per forward pass (the reference's per-GPU batch x GPUs). */
  batchSize: number;
  /** Gradient accumulation. */
  accumIter: number;
  /** The peak lr. */
  lr: number;
  /** How it was computed. */
  lrRule: string;
  /** Epochs, warmup epochs, min lr, weight decay, betas, layer decay (fine-tuning). */
  schedule: Record<string, unknown>;
  /** The model's widths, depths and init. */
  model: Record<string, unknown>;
  /** The colour step: one RandomChoice per batch; `applied` false = no colour step at all. */
  colour:
    & { applied: boolean; noise: number; colorAdapt: number; identity: number }
    & Record<
      string,
      unknown
    >;
  /** The base half (the first `ceil(B/2)` samples; all of them without TokenAdapt). */
  baseHalf: { fraction: number; cropScale: [number, number]; cropRatio: [number, number] };
  /** The TokenAdapt half (the last `floor(B/2)` samples). */
  tokenAdaptHalf: {
    used: boolean;
    fraction: number;
    geometry: "augment" | "identity";
    /**
     * Where its tokens come from: `tokenadapt`, `g(Mix(A(f(t))))`; `oracle`, the tokenizer's
     * codes of the records' pixel images under the same A and mixing, `T(Mix(A(x)))`.
     */
    source: "tokenadapt" | "oracle";
    /** The oracle's images and tokenizer (null unless `source` is `oracle`). */
    oracle: { images: string | null; tokenizer: string | null } | null;
    cropScale: [number, number];
    cropRatio: [number, number];
    flip: number;
    affine: { p: number; stepP: number; ops: string[]; degrees: number; translate: number[] };
  };
  /** Mixing and label smoothing of both halves (null halves: not mixed). */
  mixup: { base: RecipeMix | null; tokenAdapt: RecipeMix | null; labelSmoothing: number | null };
}

function mix(m: ResolvedAugmentStepConfig["baseMix"], targets: boolean): RecipeMix | null {
  if (m === null || !targets) return null;
  return {
    mixupAlpha: m.mixupAlpha,
    cutmixAlpha: m.cutmixAlpha,
    prob: m.prob,
    switchProb: m.switchProb,
    mode: "batch",
  };
}

/**
 * Describe the step a resolved run config trains.
 * @param config a resolved run config (a task's resolved config, or a run's `config.json`)
 * @returns the description
 * @throws {TypeError | RangeError} for a config that does not resolve
 */
export function describeRecipe(config: Record<string, unknown>): RecipeDescription {
  const phase: "pretrain" | "finetune" = config.kind === "pretrain" ? "pretrain" : "finetune";
  const batchSize = config.batchSize as number, accumIter = config.accumIter as number;
  const eff = batchSize * accumIter;
  const scaling = config.lrScaling as LrScaling;
  const lr = (config.lr as number | null) ?? scaleLr(config.blr as number, eff, scaling);
  const lrRule = config.lr !== null
    ? "lr given"
    : scaling === "linear"
    ? `blr x effectiveBatch / 256 = ${config.blr} x ${eff} / 256`
    : scaling === "sqrt"
    ? `blr x sqrt(effectiveBatch) / 8 = ${config.blr} x sqrt(${eff}) / 8`
    : "blr";
  const m = config.model as Record<string, unknown>;
  const model: Record<string, unknown> = {};
  for (
    const k of [
      "gridSide",
      "patchSize",
      "codebookSize",
      "tokenDim",
      "numClasses",
      "embedDim",
      "depth",
      "numHeads",
      "decoderEmbedDim",
      "decoderDepth",
      "decoderNumHeads",
      "maskRatioMin",
      "maskRatioMax",
      "maskRatioMu",
      "maskRatioStd",
      "dropPath",
      "globalPool",
      "headInitStd",
      "posEmbedInit",
    ]
  ) if (m[k] !== undefined) model[k] = m[k];
  if (phase === "finetune") model.init = config.init ?? null;
  const schedule: Record<string, unknown> = {
    epochs: config.epochs,
    warmupEpochs: config.warmupEpochs,
    minLr: config.minLr,
    weightDecay: config.weightDecay,
    betas: config.betas,
    gradClip: config.gradClip,
  };
  if (phase === "finetune") schedule.layerDecay = config.layerDecay;
  const step = storedRunStep(config);
  // a recipe-1 grid folder holds the step object it ran: read it with recipe 1's rules
  const legacy = typeof config.augment === "object" && config.augment !== null
    ? config.augment as Record<string, unknown>
    : null;
  const none = {
    phase,
    arm: null,
    recipe: (config.recipe as number | undefined) ?? 1,
    halfOrder: legacy !== null ? "TokenAdapt first" as const : "base first" as const,
    effectiveBatch: eff,
    batchSize,
    accumIter,
    lr,
    lrRule,
    schedule,
    model,
  };
  if (step === null) {
    return {
      ...none,
      colour: { applied: false, noise: 0, colorAdapt: 0, identity: 1 },
      baseHalf: { fraction: 1, cropScale: [1, 1], cropRatio: [1, 1] },
      tokenAdaptHalf: {
        used: false,
        fraction: 0,
        geometry: "augment",
        source: "tokenadapt",
        oracle: null,
        cropScale: [1, 1],
        cropRatio: [1, 1],
        flip: 0,
        affine: { p: 0, stepP: 0, ops: [], degrees: 0, translate: [0, 0] },
      },
      mixup: { base: null, tokenAdapt: null, labelSmoothing: null },
    };
  }
  let choice = colourChoice(step);
  let g = step.tokenAdaptGeometry === "identity"
    ? identityGeometry(step.geometric)
    : step.geometric;
  if (legacy !== null) {
    // recipe 1: Noise p / ColorAdapt 1 - p with both on, else the one that is on, every batch;
    // the TokenAdapt crop from its own geometric settings
    const pn = step.noise ? (step.colorAdapt ? step.noiseChoice : 1) : 0;
    const pc = step.colorAdapt ? 1 - pn : 0;
    choice = step.noise || step.colorAdapt ? { noise: pn, colorAdapt: pc, identity: 0 } : null;
    const lg = legacy.geometric as { cropScale?: [number, number]; cropRatio?: [number, number] };
    g = { ...g, cropScale: lg?.cropScale ?? g.cropScale, cropRatio: lg?.cropRatio ?? g.cropRatio };
  }
  const targets = step.numClasses !== null;
  return {
    ...none,
    arm: typeof config.augment === "string"
      ? config.augment
      : (config.grid as { augment?: string } | undefined)?.augment ?? null,
    colour: {
      applied: choice !== null,
      noise: choice?.noise ?? 0,
      colorAdapt: choice?.colorAdapt ?? 0,
      identity: choice?.identity ?? 1,
      noiseFraction: step.noiseProb,
      noiseScale: step.noiseScale,
      noiseStd: step.noiseStd,
      colorAdaptFraction: step.colorAdaptProb,
    },
    baseHalf: {
      fraction: step.tokenAdapt ? 0.5 : 1,
      cropScale: step.rrcScale,
      cropRatio: step.rrcRatio,
    },
    tokenAdaptHalf: {
      used: step.tokenAdapt,
      fraction: step.tokenAdapt ? 0.5 : 0,
      geometry: step.tokenAdaptGeometry,
      source: step.tokenAdaptSource,
      oracle: step.tokenAdaptSource === "oracle"
        ? {
          images: (config.oracleImages as string | null | undefined) ?? null,
          tokenizer: (config.oracleTokenizer as string | null | undefined) ?? null,
        }
        : null,
      cropScale: g.cropScale,
      cropRatio: g.cropRatio,
      flip: g.flipProb,
      affine: {
        p: g.chainProb,
        stepP: g.stepProb,
        ops: ["rotate", "translateX", "translateY", "shearX", "shearY"],
        degrees: g.degrees,
        translate: g.translate,
      },
    },
    mixup: {
      base: mix(step.baseMix, targets),
      tokenAdapt: step.tokenAdapt ? mix(step.tokenAdaptMix, targets) : null,
      labelSmoothing: targets ? step.labelSmoothing : null,
    },
  };
}

/**
 * A grid's budgets as `expandGrid` needs them, without writing or measuring anything: the
 * paths `prepareBudgets` would write, the token grid read from the token set's header, and
 * 0 stored bytes (descriptions only).
 * @param g the resolved grid
 * @param dataDir where `prepareBudgets` writes (`<out>/data`)
 * @returns the planned budgets
 */
export async function plannedBudgets(g: GridConfig, dataDir: string): Promise<MeasuredBudget[]> {
  const out: MeasuredBudget[] = [];
  for (const b of g.budgets) {
    const dir = join(dataDir, b.id);
    const tokens = b.tokens ?? null;
    const gridSide = tokens !== null
      ? (await openTokenDataset(g.tokens[tokens].train, { verify: false })).gridSide
      : b.pixelSize!;
    out.push({
      id: b.id,
      kind: tokens !== null ? "tokens" : "pixels",
      source: tokens ?? `pixels${b.pixelSize}`,
      gridSide,
      records: b.records,
      train: join(
        dir,
        tokens !== null ? "fmnist-train-token.data.bin.gz" : "train-images-idx3-ubyte.gz",
      ),
      labels: join(dir, tokens !== null ? "fmnist-train-label.txt" : "train-labels-idx1-ubyte.gz"),
      storageBytes: 0,
      labelBytes: 0,
      indices: [],
    });
  }
  return out;
}

/** The recipe of one grid arm: its fine-tuning run and, for MTM arms, its pre-training run. */
export interface GridArmRecipe {
  /** The method arm. */
  arm: string;
  /** The first run of the arm (first seed, first budget). */
  run: string;
  /** Its pre-training run's recipe, or null. */
  pretrain: RecipeDescription | null;
  /** Its fine-tuning recipe (null for the pixel arm). */
  finetune: RecipeDescription | null;
}

/**
 * The recipes of a grid's arms, from the run specs `expandGrid` writes.
 * @param g the resolved grid
 * @param budgets planned or measured budgets
 * @param arm only this method arm (else every arm in the grid)
 * @returns one entry per arm
 * @throws {RangeError} for an arm the grid does not run
 */
export function gridRecipes(
  g: GridConfig,
  budgets: readonly MeasuredBudget[],
  arm?: MethodArm | string,
): GridArmRecipe[] {
  const specs = expandGrid(g, budgets, { runsDir: "runs" });
  const byId = new Map(specs.map((s) => [s.id, s]));
  const firstOf = new Map<string, GridRunSpec>();
  for (const s of specs) {
    if (s.kind === "pretrain") continue;
    const a = s.config.grid.arm as string;
    if (!firstOf.has(a)) firstOf.set(a, s);
  }
  if (arm !== undefined && !firstOf.has(arm)) {
    throw new RangeError(
      `The grid "${g.name}" runs no arm "${arm}"; its arms: ${[...firstOf.keys()].join(", ")}`,
    );
  }
  const out: GridArmRecipe[] = [];
  for (const [a, s] of firstOf) {
    if (arm !== undefined && a !== arm) continue;
    const pt = s.deps.length > 0 ? byId.get(s.deps[0]) ?? null : null;
    out.push({
      arm: a,
      run: s.id,
      pretrain: pt === null ? null : describeRecipe(pt.config),
      finetune: s.kind === "finetune" ? describeRecipe(s.config) : null,
    });
  }
  return out;
}
