/**
 * Experiment grids (the storage study and the ablation of REFERENCE.md section 7 at small
 * scale): a typed grid config, storage budgets written as real datasets and measured in
 * stored bytes, and the expansion of method arm x storage budget x seed into run specs,
 * with the MTM pre-training runs shared by the fine-tunings that need them.
 *
 * A grid run folder (`<out>/runs/<id>/`) is an ordinary run folder (`config.json`,
 * `log.jsonl`, `metrics.json`, checkpoints, `model.safetensors`); its `config.json` carries
 * a `grid` section ({@linkcode GridRunInfo}: arm, budget, stored bytes, seed...) so that
 * tables and figures can be made from the run folders alone.
 *
 * Storage budgets: class-balanced subsets of the training set (nested: a smaller budget's
 * records are a subset of a larger one's of the same source), written in the official token
 * format (data + index; `NAME-label.txt` next to them) or, for the pixel baselines, as idx
 * ubyte images (the Fashion-MNIST release format), gzip-compressed. A budget's storage is
 * the bytes of its stored payload files: token data + index, or gzipped pixel images. Labels
 * are needed by every method alike and are counted separately (`labelBytes`).
 *
 * @module
 */
import { join } from "node:path";
import { gzip, readIdxImagesAndLabels, writeFileAtomic, writeIdx } from "../../io/mod.ts";
import { classifierFashion, mtmFashion, resolvePixelVitConfig } from "../../models/mod.ts";
import { Rng } from "../../random/mod.ts";
import {
  openTokenDataset,
  tokenIndexPath,
  tokenLabelsPath,
  writeTokenDataset,
} from "../../tokens/mod.ts";
import {
  type AugmentArm,
  augmentArmSwitches,
  METHOD_ARMS,
  type MethodArm,
  type MethodArmSpec,
  pretrainArmOf,
} from "../augment/arms.ts";
import { runAugmentStepConfig } from "../augment/augment_run.ts";
import { RECIPE_VERSION, scratchInitModel } from "./run_config.ts";
import {
  applyOverrides,
  type ConfigSchema,
  mergeConfig,
  withAddedRunKeys,
} from "../engine/config.ts";
import { FINETUNE_DEFAULTS, FINETUNE_SCHEMA, type FinetuneConfig } from "../recipes/finetune.ts";
import { epochPlan } from "../engine/loop.ts";
import {
  checkRunConfig,
  PRETRAIN_DEFAULTS,
  PRETRAIN_SCHEMA,
  type PretrainConfig,
} from "../recipes/pretrain.ts";
import {
  downsampleImages,
  PIXEL_DEFAULTS,
  PIXEL_SCHEMA,
  type PixelBaselineConfig,
} from "../recipes/pixel.ts";

/** What one method arm of the grid trains (the vocabulary of ../augment/arms.ts). */
export type GridArmSpec = MethodArmSpec;

/** The grid's method arms: {@linkcode METHOD_ARMS}. */
export const GRID_ARMS = METHOD_ARMS;

/** A method arm's name. */
export type GridArm = MethodArm;

/** One token release the grid draws budgets from. */
export interface GridTokenSet {
  /** Official-format training data file. */
  train: string;
  /** Official-format test data file. */
  test: string;
  /** The release codebook (`.npy` / `.safetensors`). */
  codebook: string;
  /** TokenAdapt weights for this grid side, or `null` (arms with TokenAdapt then refuse it). */
  tokenAdapt: string | null;
  /**
   * Idx images of the full training set `train` was tokenized from, in record order (the
   * oracle TokenAdapt arm `ota` re-tokenizes them), or `null`/absent (`ota` then refuses it).
   */
  images?: string | null;
  /** The tokenizer folder that made `train` (encoder too; `ota` needs it), or `null`/absent. */
  tokenizer?: string | null;
}

/** The raw pixels (idx ubyte, as released) for the pixel baselines. */
export interface GridPixelSet {
  /** Training images. */
  train: string;
  /** Training labels. */
  trainLabels: string;
  /** Test images. */
  test: string;
  /** Test labels. */
  testLabels: string;
}

/** One storage budget: a class-balanced subset of a token release or of the pixels. */
export interface GridBudget {
  /** Short unique id (`fm8-600`); used in run ids and folder names. */
  id: string;
  /** The token set's name (a key of `tokens`), or `null` for pixels. */
  tokens: string | null;
  /** Pixel side (28 = raw; a divisor of 28 = box-downsampled), or `null` for tokens. */
  pixelSize: number | null;
  /** Training records (a multiple of the class count). */
  records: number;
}

/** A block of the grid: every arm on every budget (times every seed). */
export interface GridCellBlock {
  /** Budget ids. */
  budgets: string[];
  /** Arm names. */
  arms: GridArm[];
}

/** Model widths shared by every run of the grid (geometry comes from the data). */
export interface GridModelConfig {
  /** Encoder / classifier width. */
  embedDim: number;
  /** Blocks. */
  depth: number;
  /** Heads. */
  numHeads: number;
  /** MTM decoder width. */
  decoderEmbedDim: number;
  /** MTM decoder blocks. */
  decoderDepth: number;
  /** MTM decoder heads. */
  decoderNumHeads: number;
  /** Stochastic depth of the classifiers. */
  dropPath: number;
}

/** A grid config (a `configs/grid_*.json` file merged over {@linkcode GRID_DEFAULTS}). */
export interface GridConfig {
  /** The grid's name (recorded in every run). */
  name: string;
  /** Seeds of every run (model init, data order, augmentation). */
  seeds: number[];
  /** Seed of the subset choice (fixed: a budget is one stored dataset for every run seed). */
  subsetSeed: number;
  /** Token releases by name. */
  tokens: Record<string, GridTokenSet>;
  /** The pixels of the pixel baselines. */
  pixels: GridPixelSet;
  /** Storage budgets. */
  budgets: GridBudget[];
  /** Which arms run on which budgets. */
  cells: GridCellBlock[];
  /**
   * Optimizer steps of a fine-tuning run, the same for every budget: the epochs are
   * `max(1, round(steps / stepsPerEpoch))`, so the cosine schedule always completes and the
   * actual count is within half an epoch of this.
   */
  finetuneSteps: number;
  /** Optimizer steps of an MTM pre-training run (same rule). */
  pretrainSteps: number;
  /** Evaluations per fine-tuning run, the last one at the end (every `ceil(epochs / evals)` epochs). */
  evals: number;
  /** Warmup as a fraction of the epochs. */
  warmupFraction: number;
  /** Save a checkpoint every this many steps (and at epoch ends): what an interruption loses. */
  checkpointEvery: number;
  /** Model widths. */
  model: GridModelConfig;
  /** Overrides of the fine-tuning recipe (`FINETUNE_DEFAULTS` keys; data, seed, epochs, init are set per run). */
  finetune: Record<string, unknown>;
  /** Overrides of the pre-training recipe (`PRETRAIN_DEFAULTS` keys). */
  pretrain: Record<string, unknown>;
  /** Overrides of the pixel-baseline recipe (`PIXEL_DEFAULTS` keys). */
  pixel: Record<string, unknown>;
  /** Settings of the fine-tuning augmentation step (`AugmentStepConfig` keys), before the arm's switches. */
  augment: Record<string, unknown>;
  /**
   * MTM pre-training follows the arm (the reference): arms with TokenAdapt start from a run
   * pre-trained with the TokenAdapt half (`pt-ta-<budget>-s<seed>`), the others from one
   * without it (`pt-<budget>-s<seed>`). `false`: every MTM arm shares the run without it.
   */
  pretrainTokenAdapt: boolean;
}

/** The built-in grid defaults: the embedded Fashion-MNIST data, small widths. */
export const GRID_DEFAULTS: GridConfig = {
  name: "grid",
  seeds: [0],
  subsetSeed: 0,
  tokens: {
    fmnist8: {
      train: "data/fmnist8/fmnist-train-token.data.bin.gz",
      test: "data/fmnist8/fmnist-test-token.data.bin.gz",
      codebook: "data/fmnist8/codebook.npy",
      tokenAdapt: "results/tokenadapt/fmnist8/tokenadapt.safetensors",
      images: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
      tokenizer: "data/fmnist8",
    },
    fmnist16: {
      train: "data/fmnist16/fmnist-train-token.data.bin.gz",
      test: "data/fmnist16/fmnist-test-token.data.bin.gz",
      codebook: "data/fmnist16/codebook.npy",
      tokenAdapt: null,
      images: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
      tokenizer: "data/fmnist16",
    },
  },
  pixels: {
    train: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
    trainLabels: "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
    test: "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
    testLabels: "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
  },
  budgets: [],
  cells: [],
  finetuneSteps: 200,
  pretrainSteps: 200,
  evals: 2,
  warmupFraction: 0.1,
  checkpointEvery: 50,
  model: {
    embedDim: 64,
    depth: 3,
    numHeads: 2,
    decoderEmbedDim: 32,
    decoderDepth: 1,
    decoderNumHeads: 2,
    dropPath: 0.1,
  },
  finetune: {},
  pretrain: {},
  pixel: {},
  augment: {},
  pretrainTokenAdapt: true,
};

/** What the defaults cannot say about {@linkcode GridConfig} (for merging and overrides). */
export const GRID_SCHEMA: ConfigSchema = {
  integers: [
    "subsetSeed",
    "finetuneSteps",
    "pretrainSteps",
    "evals",
    "checkpointEvery",
    "model.embedDim",
    "model.depth",
    "model.numHeads",
    "model.decoderEmbedDim",
    "model.decoderDepth",
    "model.decoderNumHeads",
  ],
  open: ["tokens", "finetune", "pretrain", "pixel", "augment"],
  nullable: Object.fromEntries(
    ["fmnist8", "fmnist16"].flatMap((t) =>
      ["tokenAdapt", "images", "tokenizer"].map((k) => [`tokens.${t}.${k}`, "string" as const])
    ),
  ),
};

const CLASSES = 10;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * Merge a grid config file's JSON over {@linkcode GRID_DEFAULTS} and check it.
 *
 * @param partial the parsed JSON (partial config)
 * @param source where it came from, for messages
 * @returns the resolved config
 * @throws {TypeError} for an unknown key or a value of the wrong type (naming the key)
 * @throws {RangeError} for an unknown arm or budget, a duplicate id, records that are not a
 *   multiple of the class count, an arm with TokenAdapt on a token set without weights, a
 *   pixel arm on a token budget (or the reverse), or a non-positive step count
 */
export function resolveGridConfig(partial: unknown, source = "<grid>"): GridConfig {
  if (partial === null || typeof partial !== "object" || Array.isArray(partial)) {
    throw new TypeError(`Grid config ${source}: expected a JSON object`);
  }
  // the lists (any length) are taken as given; the rest is merged and type-checked by key
  const lists: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(partial)) (LIST_KEYS.includes(k) ? lists : rest)[k] = v;
  const base: Record<string, unknown> = { ...GRID_DEFAULTS };
  for (const k of LIST_KEYS) delete base[k];
  const g = {
    ...mergeConfig(base, rest, GRID_SCHEMA, source),
    seeds: lists.seeds ?? [...GRID_DEFAULTS.seeds],
    budgets: lists.budgets ?? [],
    cells: lists.cells ?? [],
  } as GridConfig;
  checkGridConfig(g, source);
  return g;
}

/** The keys of {@linkcode GridConfig} that hold lists of any length. */
const LIST_KEYS = ["seeds", "budgets", "cells"];

/**
 * Apply `--key=value` overrides to a grid config (`--seeds=[0,1]`, `--budgets=...`,
 * `--cells=...` take JSON lists of any length; other keys as `applyOverrides`), then check it.
 *
 * @param g the resolved config (not modified)
 * @param overrides `[key, text]` pairs in order
 * @param source where the config came from, for messages
 * @returns a new config
 * @throws {TypeError | RangeError | SyntaxError} naming the key
 */
export function applyGridOverrides(
  g: GridConfig,
  overrides: readonly (readonly [string, string])[],
  source = "<grid>",
): GridConfig {
  let out: GridConfig = structuredClone(g);
  for (const [key, text] of overrides) {
    if (LIST_KEYS.includes(key)) {
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        throw new SyntaxError(
          `Grid override --${key}: expected a JSON list, got ${JSON.stringify(text)}`,
        );
      }
      if (!Array.isArray(v)) {
        throw new TypeError(
          `Grid override --${key}: expected a JSON list, got ${JSON.stringify(text)}`,
        );
      }
      (out as unknown as Record<string, unknown>)[key] = v;
    } else {
      const rest: Record<string, unknown> = { ...out };
      for (const k of LIST_KEYS) delete rest[k];
      out = {
        ...applyOverrides(rest, [[key, text]], GRID_SCHEMA),
        seeds: out.seeds,
        budgets: out.budgets,
        cells: out.cells,
      } as GridConfig;
    }
  }
  checkGridConfig(out, source);
  return out;
}

/**
 * Check a merged grid config (see {@linkcode resolveGridConfig}); fills a budget's missing
 * `tokens` / `pixelSize` with `null`.
 * @param g the config (budgets normalized in place)
 * @param source where it came from, for messages
 * @throws {TypeError | RangeError} as {@linkcode resolveGridConfig}
 */
export function checkGridConfig(g: GridConfig, source = "<grid>"): void {
  const bad = (msg: string) => new RangeError(`Grid config ${source}: ${msg}`);
  if (!ID_RE.test(g.name)) throw bad(`name ${JSON.stringify(g.name)} is not a plain identifier`);
  if (
    !Array.isArray(g.seeds) || g.seeds.length === 0 ||
    !g.seeds.every((s) => Number.isInteger(s) && s >= 0)
  ) {
    throw bad(`seeds ${JSON.stringify(g.seeds)}: expected a non-empty array of integers >= 0`);
  }
  if (new Set(g.seeds).size !== g.seeds.length) {
    throw bad(`seeds ${JSON.stringify(g.seeds)} repeat`);
  }
  for (const k of ["finetuneSteps", "pretrainSteps", "evals"] as const) {
    if (!(g[k] >= 1)) throw bad(`${k} ${g[k]} must be >= 1`);
  }
  if (!(g.checkpointEvery >= 0)) throw bad(`checkpointEvery ${g.checkpointEvery} must be >= 0`);
  if (!(g.warmupFraction >= 0 && g.warmupFraction < 1)) {
    throw bad(`warmupFraction ${g.warmupFraction} must be in [0, 1)`);
  }
  for (const [name, t] of Object.entries(g.tokens)) {
    for (const k of ["train", "test", "codebook"] as const) {
      if (typeof t?.[k] !== "string") {
        throw new TypeError(`Grid config ${source}: tokens.${name}.${k} must be a file path`);
      }
    }
    if (t.tokenAdapt !== null && typeof t.tokenAdapt !== "string") {
      throw new TypeError(
        `Grid config ${source}: tokens.${name}.tokenAdapt must be a path or null`,
      );
    }
    for (const k of ["images", "tokenizer"] as const) {
      if (t[k] !== undefined && t[k] !== null && typeof t[k] !== "string") {
        throw new TypeError(`Grid config ${source}: tokens.${name}.${k} must be a path or null`);
      }
    }
    for (const k of Object.keys(t)) {
      if (!["train", "test", "codebook", "tokenAdapt", "images", "tokenizer"].includes(k)) {
        throw new TypeError(
          `Grid config ${source}: unknown key "tokens.${name}.${k}"; known keys: train, test, ` +
            `codebook, tokenAdapt, images, tokenizer`,
        );
      }
    }
  }
  const budgets = new Map<string, GridBudget>();
  if (!Array.isArray(g.budgets)) {
    throw new TypeError(`Grid config ${source}: budgets must be an array`);
  }
  g.budgets.forEach((b, i) => {
    const where = `budgets[${i}]`;
    if (b === null || typeof b !== "object") {
      throw new TypeError(`Grid config ${source}: ${where} must be an object`);
    }
    for (const k of Object.keys(b)) {
      if (!["id", "tokens", "pixelSize", "records"].includes(k)) {
        throw new TypeError(
          `Grid config ${source}: unknown key "${where}.${k}"; known keys: id, tokens, pixelSize, records`,
        );
      }
    }
    if (typeof b.id !== "string" || !ID_RE.test(b.id)) {
      throw bad(`${where}.id ${JSON.stringify(b.id)} is not a plain identifier`);
    }
    if (budgets.has(b.id)) throw bad(`budget id "${b.id}" is used twice`);
    const tokens = b.tokens ?? null, pixelSize = b.pixelSize ?? null;
    if ((tokens === null) === (pixelSize === null)) {
      throw bad(`budget "${b.id}" needs exactly one of tokens (a token set) and pixelSize`);
    }
    if (tokens !== null && !(tokens in g.tokens)) {
      throw bad(
        `budget "${b.id}" names token set "${tokens}"; known: ${Object.keys(g.tokens).join(", ")}`,
      );
    }
    if (
      pixelSize !== null && !(Number.isInteger(pixelSize) && pixelSize >= 1 && 28 % pixelSize === 0)
    ) {
      throw bad(`budget "${b.id}": pixelSize ${pixelSize} must divide 28`);
    }
    if (!(Number.isInteger(b.records) && b.records >= CLASSES && b.records % CLASSES === 0)) {
      throw bad(
        `budget "${b.id}": records ${b.records} must be a positive multiple of ${CLASSES} (class-balanced)`,
      );
    }
    budgets.set(b.id, { id: b.id, tokens, pixelSize, records: b.records });
    g.budgets[i] = budgets.get(b.id)!; // normalized: both keys present
  });
  if (!Array.isArray(g.cells) || g.cells.length === 0) {
    throw bad(`cells must list at least one block`);
  }
  g.cells.forEach((c, i) => {
    if (
      !Array.isArray(c?.budgets) || !Array.isArray(c?.arms) || !c.budgets.length || !c.arms.length
    ) {
      throw new TypeError(
        `Grid config ${source}: cells[${i}] needs non-empty "budgets" and "arms" arrays`,
      );
    }
    for (const arm of c.arms) {
      if (!(arm in GRID_ARMS)) {
        throw bad(`cells[${i}]: unknown arm "${arm}"; known: ${Object.keys(GRID_ARMS).join(", ")}`);
      }
    }
    for (const id of c.budgets) {
      const b = budgets.get(id);
      if (b === undefined) {
        throw bad(`cells[${i}]: unknown budget "${id}"; known: ${[...budgets.keys()].join(", ")}`);
      }
      for (const arm of c.arms) {
        const spec: GridArmSpec = GRID_ARMS[arm];
        if ((arm === "pixel") !== (b.pixelSize !== null)) {
          throw bad(
            `cells[${i}]: arm "${arm}" cannot run on budget "${id}" (${
              b.pixelSize !== null ? "pixels" : "tokens"
            }): the pixel arm takes pixel budgets, token arms token budgets`,
          );
        }
        const sw = spec.augment === null ? null : augmentArmSwitches(spec.augment);
        const usesTa = sw !== null && sw.tokenAdapt && sw.tokenAdaptSource === "tokenadapt";
        if (usesTa && b.tokens !== null && g.tokens[b.tokens].tokenAdapt === null) {
          throw bad(
            `cells[${i}]: arm "${arm}" uses TokenAdapt but token set "${b.tokens}" has no tokenAdapt weights`,
          );
        }
        const usesOracle = sw !== null && sw.tokenAdapt && sw.tokenAdaptSource === "oracle";
        if (usesOracle && b.tokens !== null) {
          const t = g.tokens[b.tokens];
          if (t.images == null || t.tokenizer == null) {
            throw bad(
              `cells[${i}]: arm "${arm}" re-tokenizes the training images but token set "${b.tokens}" ` +
                `names no ${
                  t.images == null ? "images" : "tokenizer"
                } (tokens.${b.tokens}.images: ` +
                `the idx images its train file was made from; tokens.${b.tokens}.tokenizer: the tokenizer folder)`,
            );
          }
        }
      }
    }
  });
}

/** A budget written to disk and measured. */
export interface MeasuredBudget {
  /** The budget id. */
  id: string;
  /** `tokens` or `pixels`. */
  kind: "tokens" | "pixels";
  /** The token set's name, or `pixels<side>`. */
  source: string;
  /** Token grid side n, or the pixel side. */
  gridSide: number;
  /** Records. */
  records: number;
  /** The training file: official token data (index and labels next to it) or idx images. */
  train: string;
  /** The labels file (token label text or idx labels). */
  labels: string;
  /** Stored payload bytes: token data + index, or the gzipped idx images. */
  storageBytes: number;
  /** Bytes of the labels file (not in `storageBytes`). */
  labelBytes: number;
  /** Indices of the chosen records in the full training set, ascending. */
  indices: number[];
}

/**
 * Class-balanced nested subset: per class a permutation from `Rng(seed).fork("class c")`,
 * the first `records / C` of each; returned ascending. Budgets of one source with the same
 * seed are nested (a smaller one's records are among a larger one's).
 *
 * @param labels every record's label (0..C-1)
 * @param records how many to choose (a multiple of C)
 * @param seed the subset seed
 * @param classes C
 * @returns ascending record indices
 * @throws {RangeError} when a class has fewer records than `records / C`
 */
export function balancedSubset(
  labels: ArrayLike<number>,
  records: number,
  seed: number,
  classes = CLASSES,
): number[] {
  const per = records / classes;
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  for (let i = 0; i < labels.length; i++) byClass[labels[i]]?.push(i);
  const root = new Rng(seed);
  const out: number[] = [];
  byClass.forEach((idx, c) => {
    if (idx.length < per) {
      throw new RangeError(
        `Cannot choose ${per} records of class ${c}: the training set has ${idx.length}`,
      );
    }
    const perm = root.fork(`class ${c}`).permutation(idx.length);
    for (let k = 0; k < per; k++) out.push(idx[perm[k]]);
  });
  return out.sort((a, b) => a - b);
}

async function fileSize(path: string): Promise<number> {
  return (await Deno.stat(path)).size;
}

async function readJson(path: string): Promise<unknown | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** The budgets that some cell of the grid uses, in config order. */
function usedBudgets(g: GridConfig): GridBudget[] {
  const used = new Set(g.cells.flatMap((c) => c.budgets));
  return g.budgets.filter((b) => used.has(b.id));
}

/**
 * Write every budget the grid uses under `<dataDir>/<id>/` (official token format, or gzipped
 * idx ubyte pixels) and measure its stored bytes. A budget already written with the same
 * source, records and subset (its `budget.json` says so) is measured again, not rewritten.
 *
 * @param g the grid config
 * @param dataDir where the subsets go (e.g. `<out>/data`)
 * @param print progress lines
 * @returns the measured budgets, in config order
 * @throws {RangeError} when the token release's labels and the pixel labels disagree, or a
 *   class is too small
 */
export async function prepareBudgets(
  g: GridConfig,
  dataDir: string,
  print: (line: string) => void = () => {},
): Promise<MeasuredBudget[]> {
  const out: MeasuredBudget[] = [];
  const labelCache = new Map<string, Int32Array>();
  for (const b of usedBudgets(g)) {
    const dir = join(dataDir, b.id);
    const manifestPath = join(dir, "budget.json");
    const source = b.tokens ?? `pixels${b.pixelSize}`;
    const want = {
      id: b.id,
      source,
      records: b.records,
      subsetSeed: g.subsetSeed,
      from: b.tokens !== null ? g.tokens[b.tokens].train : g.pixels.train,
    };
    const prev = await readJson(manifestPath) as (typeof want & { indices: number[] }) | null;
    const same = prev !== null &&
      (Object.keys(want) as (keyof typeof want)[]).every((k) => prev[k] === want[k]);
    let indices: number[];
    let train: string, labels: string, gridSide: number, payload: string[];
    if (b.tokens !== null) {
      train = join(dir, "fmnist-train-token.data.bin.gz");
      labels = tokenLabelsPath(train)!;
      payload = [train, tokenIndexPath(train)];
    } else {
      train = join(dir, "train-images-idx3-ubyte.gz");
      labels = join(dir, "train-labels-idx1-ubyte.gz");
      payload = [train];
    }
    if (same) {
      indices = prev.indices;
      gridSide = b.tokens !== null
        ? (await openTokenDataset(train, { verify: false })).gridSide
        : b.pixelSize!;
    } else {
      await Deno.remove(dir, { recursive: true }).catch((e) => {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      });
      await Deno.mkdir(dir, { recursive: true });
      if (b.tokens !== null) {
        const set = g.tokens[b.tokens];
        const ds = await openTokenDataset(set.train);
        if (ds.labels === null) {
          throw new RangeError(
            `Cannot choose a class-balanced subset of "${set.train}": it has no labels`,
          );
        }
        labelCache.set(set.train, ds.labels);
        indices = balancedSubset(ds.labels, b.records, g.subsetSeed);
        gridSide = ds.gridSide;
        await writeTokenDataset(train, ds.readBatch(indices), {
          gridSide,
          codebookSize: ds.codebookSize ?? undefined,
          labels: ds.labelsOf(indices),
        });
      } else {
        const px = await readIdxImagesAndLabels(g.pixels.train, g.pixels.trainLabels);
        const lab = Int32Array.from(px.labels.data as ArrayLike<number>);
        // the pixel budgets must hold the same images as the token budgets of the same size
        for (const tb of usedBudgets(g)) {
          const path = tb.tokens === null ? null : g.tokens[tb.tokens].train;
          if (path === null || labelCache.has(path)) continue;
          const tds = await openTokenDataset(path, { verify: false });
          if (tds.labels !== null) labelCache.set(path, tds.labels);
        }
        for (const [path, tl] of labelCache) {
          if (tl.length !== lab.length || tl.some((v, i) => v !== lab[i])) {
            throw new RangeError(
              `Cannot pair pixel budget "${b.id}" with the tokens: the labels of "${path}" and "${g.pixels.trainLabels}" differ`,
            );
          }
        }
        indices = balancedSubset(lab, b.records, g.subsetSeed);
        const [, H, W] = px.images.shape as [number, number, number];
        const src = px.images.data as Uint8Array;
        const chosen = new Uint8Array(indices.length * H * W);
        indices.forEach((r, k) => chosen.set(src.subarray(r * H * W, (r + 1) * H * W), k * H * W));
        const side = b.pixelSize!;
        const small = downsampleImages(chosen, [indices.length, H, W], side);
        gridSide = side;
        await writeFileAtomic(
          train,
          gzip(writeIdx({ dtype: "uint8", shape: [indices.length, side, side], data: small }), 9),
        );
        await writeFileAtomic(
          labels,
          gzip(
            writeIdx({
              dtype: "uint8",
              shape: [indices.length],
              data: Uint8Array.from(indices, (r) => lab[r]),
            }),
            9,
          ),
        );
      }
      await writeFileAtomic(
        manifestPath,
        new TextEncoder().encode(JSON.stringify({ ...want, indices }) + "\n"),
      );
      print(`grid: wrote budget ${b.id} (${b.records} records of ${source}) to ${dir}`);
    }
    let storageBytes = 0;
    for (const p of payload) storageBytes += await fileSize(p);
    out.push({
      id: b.id,
      kind: b.tokens !== null ? "tokens" : "pixels",
      source,
      gridSide,
      records: b.records,
      train,
      labels,
      storageBytes,
      labelBytes: await fileSize(labels),
      indices,
    });
  }
  return out;
}

/** The `grid` section of a grid run's `config.json`: what tables and figures group by. */
export interface GridRunInfo {
  /** The grid's name. */
  grid: string;
  /** The run id (= its folder name). */
  id: string;
  /** `pretrain`, `finetune` or `pixel`. */
  kind: "pretrain" | "finetune" | "pixel";
  /** The method arm (`mtm` for a pre-training run). */
  arm: GridArm | "mtm";
  /** The arm's label. */
  method: string;
  /**
   * The augmentation arm, or `null` (pixels). Run folders written before recipe 2 hold the
   * old names (`none`, `both`), which {@linkcode gridAugmentArm} reads as `seit`, `seitpp`.
   */
  augment: AugmentArm | null;
  /** Fine-tuned from MTM pre-training. */
  mtm: boolean;
  /** The budget id. */
  budget: string;
  /** Token set name or `pixels<side>`. */
  source: string;
  /** Token grid side or pixel side. */
  gridSide: number;
  /** Training records. */
  records: number;
  /** Stored payload bytes of the training set. */
  storageBytes: number;
  /** Bytes of its labels (not in `storageBytes`). */
  labelBytes: number;
  /** The run seed. */
  seed: number;
  /** The pre-training run's id, or `null`. */
  pretrain: string | null;
}

/** One run of an expanded grid. */
export interface GridRunSpec {
  /** Unique id, also the folder name: `pt-<budget>-s<seed>`, `ft-<arm>-<budget>-s<seed>`. */
  id: string;
  /** Which trainer runs it. */
  kind: "pretrain" | "finetune" | "pixel";
  /** The run folder. */
  dir: string;
  /** Ids of the runs that must finish first (the pre-training run). */
  deps: string[];
  /**
   * Everything the run needs, plain JSON; exactly what its `config.json` holds: the recipe's
   * resolved config plus `augment` (the augmentation step), `codebook`, `tokenAdaptWeights`
   * and `grid` ({@linkcode GridRunInfo}).
   */
  config: Record<string, unknown> & { grid: GridRunInfo };
}

/** Options of {@linkcode expandGrid}. */
export interface ExpandGridOptions {
  /** Where run folders go: `<runsDir>/<id>`. */
  runsDir: string;
}

/**
 * The schedule keys of a run of about `steps` optimizer steps on `records` records: whole
 * epochs, warmup as the grid's fraction of them, the grid's checkpoint interval and, for runs
 * that evaluate, `g.evals` evaluations.
 */
function runSchedule(
  g: GridConfig,
  steps: number,
  records: number,
  c: { batchSize: number; accumIter: number },
  evaluates: boolean,
) {
  const spe = epochPlan(records, c.batchSize, c.accumIter).stepsPerEpoch;
  const epochs = Math.max(1, Math.round(steps / spe));
  return {
    epochs,
    maxSteps: null,
    warmupEpochs: g.warmupFraction * epochs,
    ...(evaluates ? { evalEvery: Math.ceil(epochs / g.evals) } : {}),
    checkpointEvery: g.checkpointEvery,
  };
}

function plain<T>(v: T): T {
  return JSON.parse(JSON.stringify(v));
}

/**
 * Expand a grid into run specs: for every block, budget, arm and seed a fine-tuning (or
 * pixel) run, and one MTM pre-training run per (budget, seed) that some MTM arm needs,
 * shared by those arms. Order: pre-training runs first, then by seed, block, budget, arm,
 * so that an interrupted grid has whole seeds done. Pure: no files are touched.
 *
 * @param g the resolved grid config
 * @param budgets the measured budgets ({@linkcode prepareBudgets})
 * @param options where run folders go
 * @returns the runs, deduplicated by id
 * @throws {RangeError} when a budget was not measured, or a recipe override is out of range
 * @throws {TypeError} for an unknown recipe key in `finetune` / `pretrain` / `pixel` (named)
 */
export function expandGrid(
  g: GridConfig,
  budgets: readonly MeasuredBudget[],
  options: ExpandGridOptions,
): GridRunSpec[] {
  const byId = new Map(budgets.map((b) => [b.id, b]));
  const pre: GridRunSpec[] = [];
  const fine: GridRunSpec[] = [];
  const seen = new Set<string>();
  const dir = (id: string) => join(options.runsDir, id);
  const info = (
    b: MeasuredBudget,
    seed: number,
    base: Pick<GridRunInfo, "id" | "kind" | "arm" | "method" | "augment" | "mtm" | "pretrain">,
  ): GridRunInfo => ({
    grid: g.name,
    ...base,
    budget: b.id,
    source: b.source,
    gridSide: b.gridSide,
    records: b.records,
    storageBytes: b.storageBytes,
    labelBytes: b.labelBytes,
    seed,
  });
  const pretrainSpec = (b: MeasuredBudget, seed: number, arm: AugmentArm): GridRunSpec => {
    const ta = augmentArmSwitches(arm).tokenAdapt;
    const id = `pt-${ta ? "ta-" : ""}${b.id}-s${seed}`;
    const set = g.tokens[b.source];
    const n = b.gridSide as 8 | 16;
    const model = mtmFashion(n, {
      embedDim: g.model.embedDim,
      depth: g.model.depth,
      numHeads: g.model.numHeads,
      decoderEmbedDim: g.model.decoderEmbedDim,
      decoderDepth: g.model.decoderDepth,
      decoderNumHeads: g.model.decoderNumHeads,
    });
    let c = mergeConfig(
      { ...PRETRAIN_DEFAULTS, model } as unknown as PretrainConfig,
      g.pretrain,
      PRETRAIN_SCHEMA,
      "grid pretrain",
    );
    c = {
      ...c,
      seed,
      data: { train: b.train, test: null, limitTrain: null, limitTest: null },
      ...runSchedule(g, g.pretrainSteps, b.records, c, false),
    };
    checkRunConfig(c);
    const keys = {
      recipe: RECIPE_VERSION,
      augment: arm,
      augmentSettings: {},
      codebook: set.codebook,
      tokenAdaptWeights: ta ? set.tokenAdapt : null,
    };
    runAugmentStepConfig("pretrain", arm, {}, { gridSide: model.gridSide });
    return {
      id,
      kind: "pretrain",
      dir: dir(id),
      deps: [],
      config: plain({
        ...c,
        ...keys,
        grid: info(b, seed, {
          id,
          kind: "pretrain",
          arm: "mtm",
          method: ta ? "MTM pre-training with TokenAdapt" : "MTM pre-training",
          augment: arm,
          mtm: true,
          pretrain: null,
        }),
      }),
    };
  };
  for (const seed of g.seeds) {
    for (const block of g.cells) {
      for (const bid of block.budgets) {
        const b = byId.get(bid);
        if (b === undefined) {
          throw new RangeError(`Cannot expand the grid: budget "${bid}" was not measured`);
        }
        for (const arm of block.arms) {
          const a: GridArmSpec = GRID_ARMS[arm];
          const id = `${arm === "pixel" ? "px" : "ft"}-${
            arm === "pixel" ? "" : `${arm}-`
          }${b.id}-s${seed}`;
          if (seen.has(id)) continue;
          seen.add(id);
          if (arm === "pixel") {
            fine.push(pixelSpec(g, b, seed, id, dir(id), info));
            continue;
          }
          let ptId: string | null = null;
          if (a.mtm) {
            const ptArm = g.pretrainTokenAdapt ? pretrainArmOf(a.augment!) : "seit";
            const pt = pretrainSpec(b, seed, ptArm);
            ptId = pt.id;
            if (!seen.has(pt.id)) {
              seen.add(pt.id);
              pre.push(pt);
            }
          }
          const set = g.tokens[b.source];
          const n = b.gridSide as 8 | 16;
          const fashion = classifierFashion(n, {
            embedDim: g.model.embedDim,
            depth: g.model.depth,
            numHeads: g.model.numHeads,
            dropPath: g.model.dropPath,
          });
          // from scratch: timm's init (pos_embed and head trunc-normal 0.02)
          const model = ptId === null ? scratchInitModel(fashion) : fashion;
          let c = mergeConfig(
            { ...FINETUNE_DEFAULTS, model } as unknown as FinetuneConfig,
            g.finetune,
            FINETUNE_SCHEMA,
            "grid finetune",
          );
          c = {
            ...c,
            seed,
            data: { train: b.train, test: set.test, limitTrain: null, limitTest: c.data.limitTest },
            init: ptId === null ? null : dir(ptId),
            ...runSchedule(g, g.finetuneSteps, b.records, c, true),
          };
          checkRunConfig(c);
          const step = runAugmentStepConfig(
            "finetune",
            a.augment!,
            g.augment as never,
            model,
            c.smoothing,
          );
          const usesTa = step.tokenAdapt && step.tokenAdaptSource === "tokenadapt";
          const oracle = step.tokenAdapt && step.tokenAdaptSource === "oracle"
            ? { oracleImages: set.images ?? null, oracleTokenizer: set.tokenizer ?? null }
            : {};
          fine.push({
            id,
            kind: "finetune",
            dir: dir(id),
            deps: ptId === null ? [] : [ptId],
            config: plain({
              ...c,
              recipe: RECIPE_VERSION,
              augment: a.augment,
              augmentSettings: g.augment,
              codebook: set.codebook,
              tokenAdaptWeights: usesTa ? set.tokenAdapt : null,
              ...oracle,
              grid: info(b, seed, {
                id,
                kind: "finetune",
                arm,
                method: a.label,
                augment: a.augment,
                mtm: a.mtm,
                pretrain: ptId,
              }),
            }),
          });
        }
      }
    }
  }
  return [...pre, ...fine];
}

function pixelSpec(
  g: GridConfig,
  b: MeasuredBudget,
  seed: number,
  id: string,
  runDir: string,
  info: (
    b: MeasuredBudget,
    seed: number,
    base: Pick<GridRunInfo, "id" | "kind" | "arm" | "method" | "augment" | "mtm" | "pretrain">,
  ) => GridRunInfo,
): GridRunSpec {
  const side = b.gridSide;
  const model = resolvePixelVitConfig({
    imageSize: side,
    channels: 1,
    patchSize: side % 7 === 0 ? side / 7 : 1, // 7 x 7 = 49 positions when it divides
    numClasses: CLASSES,
    embedDim: g.model.embedDim,
    depth: g.model.depth,
    numHeads: g.model.numHeads,
    dropPath: g.model.dropPath,
  });
  let c = mergeConfig(
    { ...PIXEL_DEFAULTS, model } as unknown as PixelBaselineConfig,
    g.pixel,
    PIXEL_SCHEMA,
    "grid pixel",
  );
  c = {
    ...c,
    seed,
    data: {
      ...c.data,
      train: b.train,
      trainLabels: b.labels,
      test: g.pixels.test,
      testLabels: g.pixels.testLabels,
      imageSize: side,
    },
    ...runSchedule(g, g.finetuneSteps, b.records, c, true),
  };
  checkRunConfig(c);
  return {
    id,
    kind: "pixel",
    dir: runDir,
    deps: [],
    config: plain({
      ...c,
      recipe: RECIPE_VERSION,
      grid: info(b, seed, {
        id,
        kind: "pixel",
        arm: "pixel",
        method: `Pixels ${side}x${side} (ViT)`,
        augment: null,
        mtm: false,
        pretrain: null,
      }),
    }),
  };
}

/** Where a run folder stands, as the scheduler sees it. */
export type GridRunState =
  | { state: "done" }
  | { state: "resume"; step: number }
  | { state: "fresh" };

/**
 * A run folder already holds another run (its `config.json` differs from the spec):
 * the grid refuses to overwrite or mix results.
 */
export class GridConflictError extends Error {
  /** The run folder. */
  readonly dir: string;
  /** Dotted keys whose values differ. */
  readonly keys: string[];

  /**
   * A conflict in one folder.
   * @param dir the folder
   * @param keys the differing keys
   */
  constructor(dir: string, keys: string[], legacy = false) {
    super(
      legacy
        ? `Run folder "${dir}" was written under training recipe 1 (before the faithful ` +
          `recipe ${RECIPE_VERSION}: one crop range, base half first, the colour RandomChoice, ` +
          `TokenAdapt in SeiT++ pre-training, timm's from-scratch init): it cannot be resumed ` +
          `or counted as a run of this grid. Its figures still regenerate from its logs ` +
          `(deno task figures); to re-run it under recipe ${RECIPE_VERSION}, use another --out ` +
          `(or move the folder away)`
        : `Run folder "${dir}" holds another configuration (${keys.slice(0, 6).join(", ")}${
          keys.length > 6 ? ", ..." : ""
        } differ): delete it or use another --out`,
    );
    this.name = "GridConflictError";
    this.dir = dir;
    this.keys = keys;
  }
}

/**
 * Dotted keys at which two JSON values differ.
 * @param a a JSON value
 * @param b another
 * @param prefix key prefix
 * @returns the differing keys (empty when equal)
 */
export function jsonDiff(a: unknown, b: unknown, prefix = ""): string[] {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => jsonDiff(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || "(root)"];
}

/**
 * Where a run stands: `done` (metrics.json written), `resume` (a checkpoint but no
 * metrics), or `fresh` (nothing, or a folder that died before its first checkpoint).
 *
 * @param spec the run
 * @returns its state
 * @throws {GridConflictError} when the folder's `config.json` is not the spec's config
 */
export async function gridRunState(spec: GridRunSpec): Promise<GridRunState> {
  const config = await readJson(join(spec.dir, "config.json"));
  if (config === null) return { state: "fresh" };
  const diff = jsonDiff(withAddedRunKeys(config, spec.config), spec.config);
  if (diff.length > 0) {
    const legacy = (config as { recipe?: unknown }).recipe === undefined;
    throw new GridConflictError(spec.dir, diff, legacy);
  }
  if (await readJson(join(spec.dir, "metrics.json")) !== null) return { state: "done" };
  const ck = await readJson(join(spec.dir, "checkpoint.json")) as { step?: number } | null;
  if (ck !== null) return { state: "resume", step: ck.step ?? 0 };
  return { state: "fresh" };
}
