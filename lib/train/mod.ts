/**
 * Training: AdamW and parameter groups, lr schedules, clipping, the training loop,
 * checkpoints, run logs, progress and typed configs.
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
export * from "./init_check.ts";
export * from "./stop_signal.ts";
export * from "./pretrain.ts";
export * from "./finetune.ts";
export * from "./augment_step.ts";
export * from "./augment_run.ts";
export * from "./parallel.ts";
export * from "./grid.ts";
export * from "./grid_pixel.ts";
export * from "./grid_run.ts";
export {
  bceWithLogitsOneHot,
  crossEntropy,
  labelSmoothingCrossEntropy,
  softTargetCrossEntropy,
  tokenCrossEntropy,
} from "./losses.ts";
