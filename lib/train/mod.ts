/**
 * Training: AdamW and parameter groups, lr schedules, clipping, the training loop,
 * checkpoints, run logs, progress and typed configs.
 *
 * @module
 */
export * from "./adamw.ts";
export * from "./param_groups.ts";
