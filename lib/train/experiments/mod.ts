/**
 * Experiments: the run-config shape and recipe version (./run_config.ts), the one launch path
 * that builds a run from a resolved config (./launch.ts), what a config's run executes
 * (./recipe.ts), and grids (./grid.ts: config, budgets, expansion; ./grid_run.ts: running and
 * scheduling).
 *
 * @module
 */
export * from "./run_config.ts";
export * from "./launch.ts";
export * from "./recipe.ts";
export * from "./grid.ts";
export * from "./grid_run.ts";
export * from "./tokenadapt_use.ts";
