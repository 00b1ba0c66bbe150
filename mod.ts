/**
 * seitpp: SeiT++ (storage-efficient vision training on VQ tokens) for Deno.
 *
 * Import what you need from here or from the per-topic modules (`@lib/tokens`, ...).
 *
 * @module
 */
export * from "./lib/backend/mod.ts";
export * from "./lib/random/mod.ts";
export * from "./lib/io/mod.ts";
