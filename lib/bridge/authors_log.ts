/**
 * The `log.txt` the authors' scripts (and MAE's, which they follow) append to their
 * `--output_dir`: one JSON dict per epoch, e.g.
 * `{"finetune/train_lr": ..., "finetune/train_loss": ..., "finetune/test_acc1": ..., "epoch": 3}`
 * (SeiT++ fine-tuning), `{"pretrain/loss": ..., "pretrain/lr": ..., "epoch": 3}` (SeiT++
 * pre-training) or MAE's unprefixed `{"train_lr": ..., "train_loss": ..., "test_acc1": ...,
 * "epoch": 3, "n_parameters": ...}`. Python's `json.dumps` writes a NaN loss as `NaN`,
 * which is read as null.
 *
 * @module
 */

/** One epoch of an authors' log, with the prefixes taken off. */
export interface AuthorsEpoch {
  /** The 0-based epoch. */
  epoch: number;
  /** Mean training loss of the epoch, or null. */
  trainLoss: number | null;
  /** The lr at the end of the epoch, or null. */
  trainLr: number | null;
  /** Test loss, or null (pre-training). */
  testLoss: number | null;
  /** Test top-1 in percent, or null. */
  testAcc1: number | null;
  /** Test top-5 in percent, or null. */
  testAcc5: number | null;
  /** Every key of the line, prefixes removed (`train_loss`, `test_acc1`, `n_parameters`...). */
  values: Record<string, unknown>;
}

/** What {@linkcode parseAuthorsLog} found. */
export interface AuthorsLog {
  /** `pretrain` when the lines carry `pretrain/` keys, `finetune` when they have test accuracy. */
  phase: "pretrain" | "finetune" | null;
  /** The epochs in file order. */
  epochs: AuthorsEpoch[];
}

function numberOrNull(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * Parse an authors' `log.txt`.
 *
 * @param text the file's text
 * @param source the file name, for messages
 * @returns the epochs and the phase they tell
 * @throws {SyntaxError} naming file and line for a line that is not a JSON object with an
 *   integer `epoch`
 *
 * @example
 * ```ts
 * import { parseAuthorsLog } from "@lib/bridge";
 * const log = parseAuthorsLog('{"pretrain/loss": 5.5, "pretrain/lr": 0.001, "epoch": 0}\n');
 * console.assert(log.phase === "pretrain" && log.epochs[0].trainLoss === 5.5);
 * ```
 */
export function parseAuthorsLog(text: string, source = "log.txt"): AuthorsLog {
  const epochs: AuthorsEpoch[] = [];
  let pretrain = false, finetune = false;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    const where = `line ${i + 1} of "${source}"`;
    let raw: unknown;
    try {
      // json.dumps writes non-finite floats as bare NaN / Infinity
      raw = JSON.parse(line.replace(/(:\s*)(-?Infinity|NaN)(?=\s*[,}])/g, "$1null"));
    } catch (e) {
      throw new SyntaxError(`Cannot parse ${where}: ${(e as Error).message}`);
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      throw new SyntaxError(`Cannot parse ${where}: expected a JSON object`);
    }
    const values: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(raw)) {
      const m = /^(pretrain|finetune)\/(.*)$/.exec(k);
      if (m === null) {
        values[k] = v;
        continue;
      }
      if (m[1] === "pretrain") pretrain = true;
      else finetune = true;
      // their pre-training logs `pretrain/loss`, `pretrain/lr`
      const key = m[1] === "pretrain" && (m[2] === "loss" || m[2] === "lr")
        ? `train_${m[2]}`
        : m[2];
      values[key] = v;
    }
    const epoch = values.epoch;
    if (typeof epoch !== "number" || !Number.isInteger(epoch) || epoch < 0) {
      throw new SyntaxError(
        `Cannot read ${where}: "epoch" is ${JSON.stringify(epoch)}, not a non-negative integer`,
      );
    }
    if ("test_acc1" in values) finetune = true;
    epochs.push({
      epoch,
      trainLoss: numberOrNull(values.train_loss),
      trainLr: numberOrNull(values.train_lr),
      testLoss: numberOrNull(values.test_loss),
      testAcc1: numberOrNull(values.test_acc1),
      testAcc5: numberOrNull(values.test_acc5),
      values,
    });
  }
  const phase = pretrain && !finetune ? "pretrain" : finetune ? "finetune" : null;
  return { phase, epochs };
}
