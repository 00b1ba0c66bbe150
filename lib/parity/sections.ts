/**
 * The registry of parity sections that `deno task parity` runs, in order.
 * Each section lives in its own file of this folder and is added to `SECTIONS`.
 *
 * @module
 */
import type { ComparisonResult } from "./compare.ts";
import type { Fixture } from "./fixture.ts";
import { adamwSection } from "./adamw.ts";
import { convertToCodesSection, transformsSection } from "./transforms.ts";
import { tokenAdaptSection } from "./tokenadapt.ts";
import { mtmSection } from "./mtm.ts";
import { clsSection } from "./cls.ts";

/** One group of comparisons against a fixture (e.g. the MTM forward and backward). */
export interface ParitySection {
  /** Short name, used by `--only`. */
  name: string;
  /** What it checks, one line. */
  description: string;
  /**
   * Run the comparisons. Sections must dispose every tensor they create.
   * @param fixture the opened fixture
   * @returns the comparisons, one per quantity
   */
  run(fixture: Fixture): AsyncIterable<ComparisonResult> | Promise<ComparisonResult[]>;
}

/** Every section, in the order they run. Sections add themselves here. */
export const SECTIONS: ParitySection[] = [
  adamwSection,
  transformsSection,
  convertToCodesSection,
  tokenAdaptSection,
  mtmSection,
  clsSection,
];
