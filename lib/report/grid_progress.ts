/**
 * Live progress for experiment grids in a notebook: wraps a grid executor so that each run gets
 * its own {@linkcode LiveProgress} (label = run id, curve = training loss), fed from the run's
 * `log.jsonl` by {@linkcode followRun}, and finished with the run's final test top-1.
 *
 * @module
 */

import { epochPlan, finalTop1, type GridExecutor, type GridRunSpec } from "../train/mod.ts";
import { followRun } from "./follow_run.ts";
import { LiveProgress, type ProgressOutput } from "./progress.ts";

/** Options for {@linkcode liveGridExecutor}. */
export interface LiveGridOptions {
  /** Least milliseconds between two updates of one run's display. @default 500 */
  throttleMs?: number;
  /** Milliseconds between two reads of a run's log. @default 250 */
  intervalMs?: number;
  /** Where the progress goes ("auto": Jupyter in the kernel, else the terminal). @default "auto" */
  output?: ProgressOutput;
}

/**
 * The optimizer steps a grid run is scheduled for: `epochs * stepsPerEpoch` of its training
 * records (the budget's), capped by `maxSteps`.
 *
 * @param spec A run of an expanded grid.
 * @returns The planned step count (at least 1).
 * @throws TypeError when the run's config lacks `epochs` or `batchSize`.
 */
export function plannedSteps(spec: GridRunSpec): number {
  const c = spec.config as Record<string, unknown>;
  const epochs = c.epochs, batch = c.batchSize;
  if (typeof epochs !== "number" || typeof batch !== "number") {
    throw new TypeError(`Cannot plan run "${spec.id}": its config has no epochs / batchSize`);
  }
  const accum = typeof c.accumIter === "number" ? c.accumIter : 1;
  const records = spec.config.grid.records;
  const steps = epochs * epochPlan(records, batch, accum).stepsPerEpoch;
  const max = typeof c.maxSteps === "number" ? c.maxSteps : Infinity;
  return Math.max(1, Math.min(steps, max));
}

/**
 * Wraps a grid executor (e.g. `inProcessExecutor()` of `@lib/train`) so that every run it
 * starts shows a live progress display with its loss curve, ended by its test top-1 (or the
 * error). The run itself is exactly what the wrapped executor does.
 *
 * @param execute The executor that runs one run.
 * @param options Throttle, log interval, output.
 * @returns An executor for `runGrid`'s `execute` option.
 * @example
 * ```ts ignore
 * const results = await runGrid(specs, { execute: liveGridExecutor(inProcessExecutor()) });
 * ```
 */
export function liveGridExecutor(
  execute: GridExecutor,
  options: LiveGridOptions = {},
): GridExecutor {
  return async (spec, state) => {
    const live = new LiveProgress({
      total: plannedSteps(spec),
      label: spec.id,
      plotMetric: "loss",
      throttleMs: options.throttleMs ?? 500,
      output: options.output,
    });
    const follower = followRun(spec.dir, live, { intervalMs: options.intervalMs ?? 250 });
    try {
      await execute(spec, state);
    } catch (e) {
      await follower.stop(`failed: ${(e as Error)?.message ?? String(e)}`).catch(() => {});
      throw e;
    }
    const top1 = await finalTop1(spec.dir);
    await follower.stop(top1 === undefined ? "done" : `test top-1 ${(100 * top1).toFixed(2)}%`);
  };
}
