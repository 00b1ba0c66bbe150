/**
 * What `--resume` may change, and whether a resumed run has anything left to do.
 *
 * A resumed run continues exactly only when everything that shapes its numbers is the run's
 * own: its stored config is the base and every `--key=value` override is compared with it.
 * A key in {@linkcode RESUME_HARMLESS_KEYS} may change (it only changes logging,
 * checkpointing or evaluation); a change of any other key (data order, schedule, optimizer,
 * model, augmentation, budget) is refused with {@linkcode ResumeConflictError} unless
 * forced (`--force`). The table (README.md, Training, has it too):
 *
 * | key | on resume | why |
 * | --- | --- | --- |
 * | `logEvery`, `checkpointEvery`, `keepCheckpoints` | allowed | what is written, not what is trained |
 * | `evalEvery`, `evalBatchSize`, `data.test`, `data.limitTest` | allowed | evaluation only (uses no training generator) |
 * | `maxSteps` | allowed when `null` or at least the checkpoint's step | moves where the run stops; the schedule is the epochs' |
 * | `seed`, `batchSize`, `accumIter`, `data.train`, `data.limitTrain` | refused | data order and the epoch's step count |
 * | `maxSteps` below the checkpoint's step | refused | the run is already past it |
 * | `epochs`, `warmupEpochs`, `blr`, `lr`, `lrScaling`, `minLr` | refused | lr schedule and budget |
 * | `betas`, `eps`, `weightDecay`, `layerDecay`, `gradClip`, `smoothing` | refused | the update of every step |
 * | `workers` | refused | other dropout / mask streams per shard, other summation order |
 * | `model.*`, `init`, `crop`, `augment*`, `codebook`, `tokenAdaptWeights`, any other | refused | the model and its inputs |
 *
 * @module
 */
import { epochPlan } from "./loop.ts";
import type { CheckpointState } from "./checkpoint.ts";
import type { RunOptimConfig } from "./runner.ts";

/**
 * Keys a resumed run may change without `--force`, with the reason: none of them touches
 * the data order, the schedule, the update or the model.
 */
export const RESUME_HARMLESS_KEYS: Readonly<Record<string, string>> = {
  logEvery: "logging only",
  checkpointEvery: "checkpoint frequency only",
  keepCheckpoints: "checkpoint files kept only",
  evalEvery: "evaluation only",
  evalBatchSize: "evaluation only",
  "data.test": "evaluation only",
  "data.limitTest": "evaluation only",
};

/** A resumed run's config differs from the run's own in a key that shapes its numbers. */
export class ResumeConflictError extends Error {
  /** The dotted key. */
  readonly key: string;
  /**
   * @param runDir the resumed run folder
   * @param key the dotted key
   * @param stored the run's value
   * @param requested the value asked for
   */
  constructor(runDir: string, key: string, stored: unknown, requested: unknown, why?: string) {
    super(
      `Cannot resume "${runDir}" with ${key}=${show(requested)}: the run has ${key}=${
        show(stored)
      }, and ${
        why ?? "changing it changes the data order or schedule (not an exact resume)"
      }; pass --force to resume with it anyway`,
    );
    this.name = "ResumeConflictError";
    this.key = key;
  }
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * The dotted keys whose values differ between two configs (leaves; arrays compare whole).
 * @param a one config
 * @param b the other
 * @returns `[key, a's value, b's value]` in `a`'s key order, then keys only `b` has
 */
export function configChanges(a: unknown, b: unknown): [string, unknown, unknown][] {
  const out: [string, unknown, unknown][] = [];
  const walk = (x: unknown, y: unknown, prefix: string) => {
    if (isObj(x) && isObj(y)) {
      const keys = [...Object.keys(x), ...Object.keys(y).filter((k) => !(k in x))];
      for (const k of keys) walk(x[k], y[k], prefix ? `${prefix}.${k}` : k);
    } else if (show(x) !== show(y)) {
      out.push([prefix, x, y]);
    }
  };
  walk(a, b, "");
  return out;
}

/** What {@linkcode checkResumeConfig} found. */
export interface ResumeChanges {
  /** Harmless changes applied, `[key, stored, requested]`. */
  harmless: [string, unknown, unknown][];
  /** Refused changes applied because of `force`. */
  forced: [string, unknown, unknown][];
}

/**
 * Compare a resumed run's config (after overrides) with the one it was saved with.
 *
 * @param runDir the run folder (for messages)
 * @param stored the checkpoint's config (with later-added keys filled in)
 * @param requested the config the resumed run would use
 * @param options `step`: the checkpoint's step (a `maxSteps` below it is refused);
 *   `force` accepts refused changes (they are returned in `forced`)
 * @returns the changes found
 * @throws {ResumeConflictError} at the first change of a key not in
 *   {@linkcode RESUME_HARMLESS_KEYS}, unless forced
 *
 * @example
 * ```ts
 * import { checkResumeConfig } from "@lib/train";
 * const c = checkResumeConfig("runs/x", { batchSize: 16, logEvery: 20 }, { batchSize: 16, logEvery: 1 });
 * console.assert(c.harmless.length === 1 && c.forced.length === 0);
 * ```
 */
export function checkResumeConfig(
  runDir: string,
  stored: unknown,
  requested: unknown,
  options: { step?: number; force?: boolean } = {},
): ResumeChanges {
  const out: ResumeChanges = { harmless: [], forced: [] };
  for (const change of configChanges(stored, requested)) {
    const [key, a, b] = change;
    const step = options.step ?? 0;
    const budget = key === "maxSteps";
    if (key in RESUME_HARMLESS_KEYS || (budget && (b === null || (b as number) >= step))) {
      out.harmless.push(change);
    } else if (options.force) {
      out.forced.push(change);
    } else {
      throw new ResumeConflictError(
        runDir,
        key,
        a,
        b,
        budget ? `its checkpoint is at step ${step} already` : undefined,
      );
    }
  }
  return out;
}

/** The keys of a run's config that say how many steps it takes. */
export type ScheduleKeys = Pick<RunOptimConfig, "batchSize" | "accumIter" | "epochs" | "maxSteps">;

/**
 * The optimizer steps a run's schedule ends at: every epoch's whole steps, capped by
 * `maxSteps`.
 * @param config the run's config
 * @param records training records used (after `data.limitTrain`)
 * @returns the total
 * @throws {RangeError} when not one step fits in an epoch
 */
export function scheduledSteps(config: ScheduleKeys, records: number): number {
  const plan = epochPlan(records, config.batchSize, config.accumIter);
  return Math.min(config.maxSteps ?? Infinity, config.epochs * plan.stepsPerEpoch);
}

/**
 * Whether a checkpoint is the end of its run (nothing left to train under `config`).
 * @param state the checkpoint's JSON half
 * @param config the config the run would resume with
 * @param records training records used
 * @returns true when the schedule or the step budget is used up
 */
export function runIsFinished(
  state: Pick<CheckpointState, "step" | "epoch">,
  config: ScheduleKeys,
  records: number,
): boolean {
  return state.step >= scheduledSteps(config, records) || state.epoch >= config.epochs;
}
