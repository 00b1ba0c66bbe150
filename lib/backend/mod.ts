/**
 * Tensor backends: choose one, verify it with a tiny computation, say which one runs.
 *
 * @module
 */
export * from "./backend.ts";
