/**
 * Measured parity with the reference implementation: fixtures, tolerances, comparisons,
 * and the sections that `deno task parity` runs.
 *
 * @module
 */
export * from "./compare.ts";
export * from "./fixture.ts";
export * from "./sections.ts";
