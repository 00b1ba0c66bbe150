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
export * from "./lib/tokens/mod.ts";
export * from "./lib/tokenizer/mod.ts";
export * from "./lib/adapters/mod.ts";
export * from "./lib/models/mod.ts";
export * from "./lib/train/mod.ts";
export * from "./lib/report/mod.ts";
export * from "./lib/parity/mod.ts";
