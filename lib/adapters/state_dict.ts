/**
 * Matching a loaded state dict against the names and shapes a module expects, and
 * reporting every missing, unexpected and mis-shaped tensor by name (the reference loads
 * with `strict=False` and says nothing; here a mismatch is loud).
 *
 * @module
 */
import type { HostTensor } from "../io/mod.ts";

/** One tensor whose shape differs from the expected one. */
export interface ShapeMismatch {
  /** State-dict key. */
  key: string;
  /** The shape the module expects. */
  expected: number[];
  /** The shape in the file. */
  got: number[];
}

/** What {@linkcode matchStateDict} found. */
export interface StateDictReport {
  /** Expected keys absent from the file, in the module's order. */
  missing: string[];
  /** Keys in the file the module does not have, in the file's order. */
  unexpected: string[];
  /** Keys present on both sides with different shapes. */
  mismatched: ShapeMismatch[];
  /** Keys that matched in name and shape. */
  matched: string[];
}

/**
 * A state dict does not fit the module it is loaded into. Catch it to inspect
 * {@linkcode StateDictMismatchError.report}; the message names every offending key.
 */
export class StateDictMismatchError extends Error {
  /** The full comparison. */
  readonly report: StateDictReport;
  /** Where the tensors came from (a file name) for the message. */
  readonly source: string;

  /**
   * @param source where the state dict came from
   * @param report the comparison
   */
  constructor(source: string, report: StateDictReport) {
    const parts: string[] = [];
    if (report.missing.length > 0) parts.push(`missing ${report.missing.join(", ")}`);
    if (report.unexpected.length > 0) parts.push(`unexpected ${report.unexpected.join(", ")}`);
    for (const m of report.mismatched) {
      parts.push(`"${m.key}" has shape [${m.got}], expected [${m.expected}]`);
    }
    super(`Cannot load the state dict "${source}": ${parts.join("; ")}`);
    this.name = "StateDictMismatchError";
    this.report = report;
    this.source = source;
  }
}

/**
 * Compare a state dict with the expected keys and shapes.
 *
 * @param expected key -> shape, in the module's order
 * @param tensors the loaded tensors by key
 * @returns the report (never throws)
 *
 * @example
 * ```ts
 * import { matchStateDict } from "@lib/adapters";
 * const t = (shape: number[]) => ({ dtype: "float32" as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
 * const r = matchStateDict(new Map([["a", [2]], ["b", [3]]]), new Map([["a", t([2])], ["c", t([1])]]));
 * console.assert(r.missing[0] === "b" && r.unexpected[0] === "c" && r.matched[0] === "a");
 * ```
 */
export function matchStateDict(
  expected: ReadonlyMap<string, readonly number[]>,
  tensors: ReadonlyMap<string, HostTensor>,
): StateDictReport {
  const report: StateDictReport = { missing: [], unexpected: [], mismatched: [], matched: [] };
  for (const [key, shape] of expected) {
    const t = tensors.get(key);
    if (t === undefined) {
      report.missing.push(key);
    } else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      report.mismatched.push({ key, expected: [...shape], got: [...t.shape] });
    } else {
      report.matched.push(key);
    }
  }
  for (const key of tensors.keys()) if (!expected.has(key)) report.unexpected.push(key);
  return report;
}

/**
 * @param report a report from {@linkcode matchStateDict}
 * @returns true when nothing is missing, unexpected or mis-shaped
 */
export function isCleanMatch(report: StateDictReport): boolean {
  return report.missing.length === 0 && report.unexpected.length === 0 &&
    report.mismatched.length === 0;
}
