/**
 * Seeded, injectable random generators with serializable state.
 *
 * @module
 */
export * from "./rng.ts";
