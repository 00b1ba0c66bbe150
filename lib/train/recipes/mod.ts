/**
 * The training recipes: MTM pre-training (./pretrain.ts), token fine-tuning
 * (./finetune.ts) and the pixel baseline's fine-tuning (./pixel.ts). Each phase's loss is
 * ONE objective function (./objectives.ts: `mtmObjective`, `classifierObjective`; the MTM
 * mask is drawn by `drawMtmMask`) called by the single-thread path and by the data-parallel
 * worker shards alike. TokenAdapt enters a step through the recipe's `augment` hook
 * (../augment/augment_step.ts).
 *
 * @module
 */
export * from "./objectives.ts";
export * from "./pretrain.ts";
export * from "./finetune.ts";
export * from "./init_check.ts";
export * from "./pixel.ts";
