/**
 * Training, split by concern (each folder has its mod.ts):
 *
 * - ./engine: AdamW, parameter groups, schedules, clipping, losses, the loop and runner (run
 *   folder, logs, checkpoints), typed configs, data-parallel workers;
 * - ./recipes: MTM pre-training, token fine-tuning, pixel fine-tuning, and their objective
 *   functions (./recipes/objectives.ts: where the MTM loss is computed and the mask drawn);
 * - ./augment: the section-6 augmentation step (where TokenAdapt enters a step), the arms,
 *   the draw trace;
 * - ./experiments: the run config, the launch path, recipe descriptions, grids.
 *
 * @module
 */
export * from "./engine/mod.ts";
export * from "./recipes/mod.ts";
export * from "./augment/mod.ts";
export * from "./experiments/mod.ts";
