/**
 * Whether a fine-tuning run's initial weights (`--init`, an MTM pre-training run) fit the
 * classifier. Only the names a classifier never has (the MTM decoder, mask token, MLM
 * head) may be dropped, and only the classifier's own head may start fresh: a tensor of
 * another shape, an encoder name the classifier lacks (a deeper encoder) or an encoder
 * parameter the weights lack (a shallower one) means the pre-training run is of another
 * model, and fine-tuning from it would silently train from scratch.
 *
 * @module
 */

/** What `loadFromMtm` reports (`LoadReport` of `@lib/models`). */
export interface InitLoadReport {
  /** Names loaded. */
  loaded: string[];
  /** Classifier parameters the weights did not provide. */
  missing: string[];
  /** Weight names the classifier did not take. */
  unexpected: string[];
  /** `name: got [..], expected [..]`. */
  mismatchedShapes: string[];
}

/** Initial weights that do not fit the classifier (another width, depth or grid). */
export class InitMismatchError extends Error {
  /** The weights file. */
  readonly source: string;
  /**
   * @param source the weights file
   * @param message what does not fit
   */
  constructor(source: string, message: string) {
    super(message);
    this.name = "InitMismatchError";
    this.source = source;
  }
}

/**
 * Names of the encoder: what a classifier takes from an MTM model (the same list as
 * `CLASSIFIER_FROM_MTM_PREFIXES` of `@lib/models`, repeated so training does not import
 * the model code).
 */
const ENCODER_PREFIXES: readonly string[] = [
  "token_emb.",
  "patch_embed.",
  "cls_token",
  "pos_embed",
  "blocks.",
  "norm.",
];

function isEncoderName(n: string): boolean {
  return ENCODER_PREFIXES.some((p) => n === p || n.startsWith(p));
}

/** How a load report splits once checked. */
export interface InitCheck {
  /** Classifier parameters that start fresh (its own head: not in an MTM model). */
  fresh: string[];
  /** MTM names that are dropped (decoder, mask token, MLM head). */
  dropped: string[];
}

/**
 * Check a `loadFromMtm` report: refuse any shape mismatch and any encoder name missing on
 * either side.
 *
 * @param report what `loadFromMtm` did
 * @param source the weights file (for messages)
 * @returns the expected fresh and dropped names
 * @throws {InitMismatchError} naming the first mismatched tensor with both shapes, or the
 *   first encoder name only one side has
 *
 * @example
 * ```ts
 * import { checkInitReport } from "@lib/train";
 * const r = checkInitReport({
 *   loaded: ["blocks.0.attn.qkv.weight"],
 *   missing: ["head.weight"],
 *   unexpected: ["decoder_embed.weight"],
 *   mismatchedShapes: [],
 * }, "pt/model.safetensors");
 * console.assert(r.fresh[0] === "head.weight" && r.dropped[0] === "decoder_embed.weight");
 * ```
 */
export function checkInitReport(report: InitLoadReport, source: string): InitCheck {
  const cannot = `Cannot fine-tune from "${source}": it is not a pre-training of this model`;
  if (report.mismatchedShapes.length > 0) {
    throw new InitMismatchError(
      source,
      `${cannot}: tensor ${report.mismatchedShapes[0]}` +
        (report.mismatchedShapes.length > 1
          ? ` (and ${report.mismatchedShapes.length - 1} more mismatched)`
          : ""),
    );
  }
  const missingEncoder = report.missing.filter(isEncoderName);
  if (missingEncoder.length > 0) {
    throw new InitMismatchError(
      source,
      `${cannot}: encoder tensor ${missingEncoder[0]} is missing from it` +
        (missingEncoder.length > 1 ? ` (and ${missingEncoder.length - 1} more)` : "") +
        " (a shallower or different encoder)",
    );
  }
  const extraEncoder = report.unexpected.filter(isEncoderName);
  if (extraEncoder.length > 0) {
    throw new InitMismatchError(
      source,
      `${cannot}: encoder tensor ${extraEncoder[0]} has no place in the classifier` +
        (extraEncoder.length > 1 ? ` (and ${extraEncoder.length - 1} more)` : "") +
        " (a deeper or different encoder)",
    );
  }
  if (report.loaded.length === 0) {
    throw new InitMismatchError(source, `${cannot}: no tensor name matches the classifier`);
  }
  return { fresh: [...report.missing], dropped: [...report.unexpected] };
}
