/**
 * The training-step augmentation of REFERENCE.md section 6 (./augment_step.ts), the one
 * vocabulary of arms (./arms.ts), the run-config keys that name a step and the loading of
 * its codebook and TokenAdapt (./augment_run.ts), the draw trace (./draw_trace.ts), and the
 * oracle TokenAdapt half (./oracle.ts).
 *
 * @module
 */
export * from "./augment_step.ts";
export * from "./arms.ts";
export * from "./augment_run.ts";
export * from "./draw_trace.ts";
export * from "./oracle.ts";
