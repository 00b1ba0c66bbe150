/**
 * Configuration of the VQ tokenizer: its architecture (saved next to its weights as
 * `tokenizer.json`) and its training recipe.
 *
 * @module
 */

/** Architecture of a {@linkcode VqTokenizer}. Every field is optional; see the defaults. */
export interface TokenizerConfig {
  /**
   * Side of the square image the network sees. Smaller inputs are zero-padded
   * symmetrically to it (Fashion-MNIST 28 -> 32), larger ones are refused.
   * @default {32}
   */
  imageSize?: number;
  /**
   * Side of the images the tokenizer was made for (the unpadded size). Inputs must be
   * exactly this size; decoded images are cropped back to it.
   * @default {28}
   */
  inputSize?: number;
  /**
   * Image channels (1 grayscale, 3 RGB).
   * @default {1}
   */
  channels?: number;
  /**
   * Downsampling factor from pixels to codes: 2, 4 or 8 (each factor 2 is one stride-2
   * stage). 4 turns a 32x32 image into 8x8 codes.
   * @default {4}
   */
  downsample?: number;
  /**
   * Feature widths, one per resolution level from full resolution down to the code grid
   * (length log2(downsample) + 1). Small, because training runs on 2 shared CPU cores.
   * @default {[16, 32, 64] for downsample 4}
   */
  widths?: number[];
  /**
   * Residual blocks (two 3x3 convolutions each) per level in the encoder, one count per
   * level as in `widths`, or one count for every level. Full-resolution blocks are the most
   * expensive, hence none there by default.
   * @default {[0, 1, 1, ...]}
   */
  encoderBlocks?: number | number[];
  /**
   * Residual blocks per level in the decoder (pixel quality lives here), like
   * `encoderBlocks`.
   * @default {[1, 2, 2, ...]}
   */
  decoderBlocks?: number | number[];
  /**
   * Width d of a code vector (the reference release uses 32).
   * @default {32}
   */
  codeDim?: number;
  /**
   * Number of codes K while training. After training the codebook is pruned to the codes
   * used on the training set, so the saved K is usually smaller.
   * @default {256}
   */
  codebookSize?: number;
}

/** A {@linkcode TokenizerConfig} with every field present and validated. Plain JSON. */
export interface ResolvedTokenizerConfig {
  /** See {@linkcode TokenizerConfig.imageSize}. */
  imageSize: number;
  /** See {@linkcode TokenizerConfig.inputSize}. */
  inputSize: number;
  /** See {@linkcode TokenizerConfig.channels}. */
  channels: number;
  /** See {@linkcode TokenizerConfig.downsample}. */
  downsample: number;
  /** See {@linkcode TokenizerConfig.widths}. */
  widths: number[];
  /** See {@linkcode TokenizerConfig.encoderBlocks}: one count per level. */
  encoderBlocks: number[];
  /** See {@linkcode TokenizerConfig.decoderBlocks}: one count per level. */
  decoderBlocks: number[];
  /** See {@linkcode TokenizerConfig.codeDim}. */
  codeDim: number;
  /** See {@linkcode TokenizerConfig.codebookSize}. */
  codebookSize: number;
}

const TOKENIZER_KEYS = [
  "imageSize",
  "inputSize",
  "channels",
  "downsample",
  "widths",
  "encoderBlocks",
  "decoderBlocks",
  "codeDim",
  "codebookSize",
] as const;

function checkKeys(what: string, obj: object, keys: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!keys.includes(k)) {
      throw new TypeError(`Unknown ${what} key "${k}": expected one of ${keys.join(", ")}`);
    }
  }
}

function posInt(what: string, v: unknown, min = 1): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(what: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi) {
    throw new RangeError(`${what} must be a number in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function perLevel(
  what: string,
  v: number | number[] | undefined,
  levels: number,
  first: number,
  rest: number,
): number[] {
  const out = v === undefined
    ? [first, ...new Array(levels).fill(rest)]
    : typeof v === "number"
    ? new Array(levels + 1).fill(v)
    : v;
  if (!Array.isArray(out) || out.length !== levels + 1) {
    throw new RangeError(`${what} must list ${levels + 1} counts, got ${JSON.stringify(v)}`);
  }
  out.forEach((b, i) => posInt(`${what}[${i}]`, b, 0));
  return [...out];
}

/**
 * Fill in defaults and validate a tokenizer architecture.
 *
 * @param config partial config (unknown keys are refused)
 * @returns the resolved config, plain JSON
 * @throws {TypeError} for an unknown key
 * @throws {RangeError} for an out-of-range value (the message names the field and value)
 *
 * @example
 * ```ts
 * import { resolveTokenizerConfig } from "@lib/tokenizer";
 * const c = resolveTokenizerConfig({ downsample: 2 });
 * console.assert(c.widths.length === 2 && c.imageSize / c.downsample === 16);
 * ```
 */
export function resolveTokenizerConfig(config: TokenizerConfig = {}): ResolvedTokenizerConfig {
  checkKeys("tokenizer config", config, TOKENIZER_KEYS);
  const downsample = posInt("downsample", config.downsample ?? 4, 2);
  if (![2, 4, 8].includes(downsample)) {
    throw new RangeError(`downsample must be 2, 4 or 8, got ${downsample}`);
  }
  const levels = Math.log2(downsample);
  const defaultWidths = [16, 32, 64, 64].slice(0, levels + 1);
  const widths = config.widths ?? defaultWidths;
  if (!Array.isArray(widths) || widths.length !== levels + 1) {
    throw new RangeError(
      `widths must list ${levels + 1} widths for downsample ${downsample}, got ` +
        JSON.stringify(widths),
    );
  }
  widths.forEach((w, i) => posInt(`widths[${i}]`, w));
  const imageSize = posInt("imageSize", config.imageSize ?? 32);
  if (imageSize % downsample !== 0) {
    throw new RangeError(`imageSize ${imageSize} is not a multiple of downsample ${downsample}`);
  }
  const inputSize = posInt("inputSize", config.inputSize ?? Math.min(28, imageSize));
  if (inputSize > imageSize || (imageSize - inputSize) % 2 !== 0) {
    throw new RangeError(
      `inputSize ${inputSize} must be <= imageSize ${imageSize} with an even difference ` +
        "(symmetric padding)",
    );
  }
  const codebookSize = posInt("codebookSize", config.codebookSize ?? 256, 2);
  return {
    imageSize,
    inputSize,
    channels: posInt("channels", config.channels ?? 1),
    downsample,
    widths: [...widths],
    encoderBlocks: perLevel("encoderBlocks", config.encoderBlocks, levels, 0, 1),
    decoderBlocks: perLevel("decoderBlocks", config.decoderBlocks, levels, 1, 2),
    codeDim: posInt("codeDim", config.codeDim ?? 32),
    codebookSize,
  };
}

/**
 * The code grid side n of a tokenizer: `imageSize / downsample`.
 *
 * @param config a resolved config
 * @returns n (codes per image = n * n)
 */
export function gridSize(config: ResolvedTokenizerConfig): number {
  return config.imageSize / config.downsample;
}

/** Training recipe of {@linkcode trainTokenizer}. Every field is optional. */
export interface TokenizerTrainConfig {
  /**
   * Seed of every random draw (initialization, data order, code restarts).
   * @default {0}
   */
  seed?: number;
  /**
   * Images per step.
   * @default {64}
   */
  batchSize?: number;
  /**
   * Optimizer steps in total (the run's length; epochs follow from the data size).
   * @default {3000}
   */
  steps?: number;
  /**
   * Peak Adam learning rate (linear warmup, then cosine decay to 10% of it).
   * @default {2e-3}
   */
  lr?: number;
  /**
   * Warmup steps of the learning rate.
   * @default {100}
   */
  warmupSteps?: number;
  /**
   * Weight of the commitment loss `||e - sg(q)||^2` (e, q unit vectors).
   * @default {0.25}
   */
  beta?: number;
  /**
   * Decay of the exponential moving averages that update the codebook (EMA VQ-VAE).
   * @default {0.99}
   */
  emaDecay?: number;
  /**
   * A code whose EMA usage (assignments per step) falls below this is dead and gets
   * restarted from a recent encoder output.
   * @default {0.03}
   */
  deadThreshold?: number;
  /**
   * Check for dead codes every this many steps (0: never restart).
   * @default {50}
   */
  restartEvery?: number;
  /**
   * Stop restarting dead codes after this fraction of the steps, so the final codebook
   * settles before pruning.
   * @default {0.8}
   */
  restartUntil?: number;
  /**
   * Save a checkpoint every this many steps (0: only at the end).
   * @default {250}
   */
  checkpointEvery?: number;
}

/** A {@linkcode TokenizerTrainConfig} with every field present and validated. Plain JSON. */
export interface ResolvedTokenizerTrainConfig {
  /** See {@linkcode TokenizerTrainConfig.seed}. */
  seed: number;
  /** See {@linkcode TokenizerTrainConfig.batchSize}. */
  batchSize: number;
  /** See {@linkcode TokenizerTrainConfig.steps}. */
  steps: number;
  /** See {@linkcode TokenizerTrainConfig.lr}. */
  lr: number;
  /** See {@linkcode TokenizerTrainConfig.warmupSteps}. */
  warmupSteps: number;
  /** See {@linkcode TokenizerTrainConfig.beta}. */
  beta: number;
  /** See {@linkcode TokenizerTrainConfig.emaDecay}. */
  emaDecay: number;
  /** See {@linkcode TokenizerTrainConfig.deadThreshold}. */
  deadThreshold: number;
  /** See {@linkcode TokenizerTrainConfig.restartEvery}. */
  restartEvery: number;
  /** See {@linkcode TokenizerTrainConfig.restartUntil}. */
  restartUntil: number;
  /** See {@linkcode TokenizerTrainConfig.checkpointEvery}. */
  checkpointEvery: number;
}

const TRAIN_KEYS = [
  "seed",
  "batchSize",
  "steps",
  "lr",
  "warmupSteps",
  "beta",
  "emaDecay",
  "deadThreshold",
  "restartEvery",
  "restartUntil",
  "checkpointEvery",
] as const;

/**
 * Fill in defaults and validate a training recipe.
 *
 * @param config partial recipe (unknown keys are refused)
 * @returns the resolved recipe, plain JSON
 * @throws {TypeError} for an unknown key
 * @throws {RangeError} for an out-of-range value
 */
export function resolveTokenizerTrainConfig(
  config: TokenizerTrainConfig = {},
): ResolvedTokenizerTrainConfig {
  checkKeys("tokenizer train config", config, TRAIN_KEYS);
  const seed = config.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  return {
    seed,
    batchSize: posInt("batchSize", config.batchSize ?? 64),
    steps: posInt("steps", config.steps ?? 3000),
    lr: num("lr", config.lr ?? 2e-3, 0, 1),
    warmupSteps: posInt("warmupSteps", config.warmupSteps ?? 100, 0),
    beta: num("beta", config.beta ?? 0.25, 0, 100),
    emaDecay: num("emaDecay", config.emaDecay ?? 0.99, 0, 0.99999),
    deadThreshold: num("deadThreshold", config.deadThreshold ?? 0.03, 0, 1e9),
    restartEvery: posInt("restartEvery", config.restartEvery ?? 50, 0),
    restartUntil: num("restartUntil", config.restartUntil ?? 0.8, 0, 1),
    checkpointEvery: posInt("checkpointEvery", config.checkpointEvery ?? 250, 0),
  };
}
