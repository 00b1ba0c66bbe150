/**
 * The training engine, recipe-independent: AdamW and parameter groups, lr schedules,
 * clipping, losses, soft targets, metrics, the training loop and runner (run folder, logs,
 * progress, checkpoints, resume), typed configs, errors and the data-parallel workers.
 *
 * @module
 */
export * from "./adamw.ts";
export * from "./param_groups.ts";
export * from "./schedule.ts";
export * from "./clip.ts";
export * from "./errors.ts";
export * from "./metrics.ts";
export * from "./targets.ts";
export * from "./checkpoint.ts";
export * from "./run_log.ts";
export * from "./progress.ts";
export * from "./config.ts";
export * from "./loop.ts";
export * from "./runner.ts";
export * from "./resume_check.ts";
export * from "./stop_signal.ts";
export * from "./parallel.ts";
export {
  bceWithLogitsOneHot,
  crossEntropy,
  labelSmoothingCrossEntropy,
  softTargetCrossEntropy,
  tokenCrossEntropy,
} from "./losses.ts";
