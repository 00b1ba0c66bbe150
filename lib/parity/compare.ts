/**
 * Comparing computed tensors with reference fixtures under stated tolerances.
 *
 * The rule (from the fixtures' meta.json): elementwise `|got - ref| <= atol + rtol * |ref|`;
 * integer tensors, masks and codes compare exactly.
 *
 * @module
 */
import { type HostTensor, toFloat32 } from "../io/mod.ts";

/** A tolerance with `atol` already resolved to an absolute number. */
export interface Tolerance {
  /** Relative tolerance. */
  rtol: number;
  /** Absolute tolerance. */
  atol: number;
}

/** How `atol` scales with the reference tensor. */
export type AtolScale = "none" | "scale" | "maxabs";

/** A tolerance as stated in meta.json: `atol` may be relative to the reference's size. */
export interface ToleranceSpec {
  /** Relative tolerance. */
  rtol: number;
  /** Coefficient of atol. */
  atol: number;
  /**
   * `scale`: atol times max(1, max|ref|); `maxabs`: atol times max|ref|; `none`: atol as is.
   */
  atolScale: AtolScale;
}

/** One compared quantity: what `deno task parity` prints as a JSON line. */
export interface ComparisonResult {
  /** The section, e.g. `mtm`, `cls`, `adamw`, `tokenadapt`, `transforms`. */
  section: string;
  /** The compared quantity, e.g. `logits` or `grad:blocks.0.attn.qkv.weight`. */
  quantity: string;
  /** Reference shape. */
  shape: number[];
  /** max |got - ref|. */
  max_abs_err: number;
  /** max |got - ref| / max(|ref|, tiny) over the elements. */
  max_rel_err: number;
  /** Largest ratio |got - ref| / (atol + rtol |ref|); <= 1 passes. */
  worst_ratio: number;
  /** `exact` or the resolved tolerance. */
  tolerance: "exact" | Tolerance;
  /** Whether every element is within tolerance. */
  ok: boolean;
  /** Why it failed, when it did not compare at all (shape mismatch, missing tensor...). */
  error?: string;
}

/**
 * Parse a tolerance as meta.json states it: a number, `"1e-5 * scale"` (scale =
 * max(1, max|ref|)) or `"1e-5 * max|ref| of that tensor"`.
 *
 * @param rtol the rtol value
 * @param atol the atol value or expression
 * @returns the spec
 * @throws {SyntaxError} for an expression it does not understand
 */
export function parseTolerance(rtol: number | string, atol: number | string): ToleranceSpec {
  const num = (v: number | string, what: string): number => {
    const n = typeof v === "number" ? v : Number(v);
    if (!Number.isFinite(n) || n < 0) {
      throw new SyntaxError(`Cannot parse tolerance ${what} ${JSON.stringify(v)}`);
    }
    return n;
  };
  const r = num(rtol, "rtol");
  if (typeof atol === "number") return { rtol: r, atol: num(atol, "atol"), atolScale: "none" };
  const m = /^\s*([0-9.eE+-]+)\s*(?:\*\s*(.+))?$/.exec(atol);
  if (m === null) throw new SyntaxError(`Cannot parse tolerance atol ${JSON.stringify(atol)}`);
  const a = num(m[1], "atol");
  const rest = (m[2] ?? "").trim();
  if (rest === "") return { rtol: r, atol: a, atolScale: "none" };
  if (/^scale\b/.test(rest)) return { rtol: r, atol: a, atolScale: "scale" };
  if (/^max\s*\|ref\|/.test(rest)) return { rtol: r, atol: a, atolScale: "maxabs" };
  throw new SyntaxError(`Cannot parse tolerance atol ${JSON.stringify(atol)}`);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const v = Math.abs(a[i]);
    if (v > m || Number.isNaN(v)) m = v;
  }
  return m;
}

/**
 * Resolve a spec's atol against a reference tensor.
 * @param spec the parsed spec
 * @param ref reference values
 * @returns the absolute tolerance
 */
export function resolveTolerance(spec: ToleranceSpec, ref: ArrayLike<number>): Tolerance {
  const m = maxAbs(ref);
  const f = spec.atolScale === "scale" ? Math.max(1, m) : spec.atolScale === "maxabs" ? m : 1;
  return { rtol: spec.rtol, atol: spec.atol * f };
}

function shapeEq(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Compare floating-point values elementwise under a tolerance.
 *
 * @param section section name for the report
 * @param quantity quantity name for the report
 * @param got computed values and shape
 * @param ref reference tensor
 * @param spec tolerance spec
 * @returns the comparison (never throws for a mismatch; `ok` says)
 */
export function compareClose(
  section: string,
  quantity: string,
  got: { shape: readonly number[]; data: ArrayLike<number> },
  ref: HostTensor,
  spec: ToleranceSpec,
): ComparisonResult {
  const r = toFloat32(ref);
  const tol = resolveTolerance(spec, r);
  const base = { section, quantity, shape: ref.shape, tolerance: tol };
  if (!shapeEq(got.shape, ref.shape) || got.data.length !== r.length) {
    return {
      ...base,
      max_abs_err: Infinity,
      max_rel_err: Infinity,
      worst_ratio: Infinity,
      ok: false,
      error: `shape [${got.shape}] != reference [${ref.shape}]`,
    };
  }
  let maxAbsErr = 0, maxRel = 0, worst = 0;
  for (let i = 0; i < r.length; i++) {
    const d = Math.abs(got.data[i] - r[i]);
    const allowed = tol.atol + tol.rtol * Math.abs(r[i]);
    const ratio = Number.isNaN(d) ? Infinity : allowed > 0 ? d / allowed : d > 0 ? Infinity : 0;
    if (!(d <= maxAbsErr)) maxAbsErr = Number.isNaN(d) ? Infinity : d;
    const rel = d / Math.max(Math.abs(r[i]), 1e-30);
    if (!(rel <= maxRel)) maxRel = Number.isNaN(rel) ? Infinity : rel;
    if (!(ratio <= worst)) worst = ratio;
  }
  return {
    ...base,
    max_abs_err: maxAbsErr,
    max_rel_err: maxRel,
    worst_ratio: worst,
    ok: worst <= 1,
  };
}

/**
 * Compare values exactly (integers, masks, codes, loaded tensors bit for bit).
 *
 * @param section section name
 * @param quantity quantity name
 * @param got computed values and shape
 * @param ref reference tensor
 * @returns the comparison; `max_abs_err` counts in value units, `ok` only if all equal
 */
export function compareExact(
  section: string,
  quantity: string,
  got: { shape: readonly number[]; data: ArrayLike<number | bigint> },
  ref: HostTensor,
): ComparisonResult {
  const base = { section, quantity, shape: ref.shape, tolerance: "exact" as const };
  const n = ref.data.length;
  if (!shapeEq(got.shape, ref.shape) || got.data.length !== n) {
    return {
      ...base,
      max_abs_err: Infinity,
      max_rel_err: Infinity,
      worst_ratio: Infinity,
      ok: false,
      error: `shape [${got.shape}] != reference [${ref.shape}]`,
    };
  }
  let maxAbsErr = 0, mismatches = 0;
  const refData = ref.data as ArrayLike<number | bigint>;
  for (let i = 0; i < n; i++) {
    const a = Number(got.data[i]), b = Number(refData[i]);
    const same = Object.is(a, b) || a === b;
    if (!same) {
      mismatches++;
      const d = Math.abs(a - b);
      if (!(d <= maxAbsErr)) maxAbsErr = Number.isNaN(d) ? Infinity : d;
    }
  }
  return {
    ...base,
    max_abs_err: maxAbsErr,
    max_rel_err: mismatches / Math.max(n, 1),
    worst_ratio: mismatches === 0 ? 0 : Infinity,
    ok: mismatches === 0,
    ...(mismatches > 0 ? { error: `${mismatches} of ${n} elements differ` } : {}),
  };
}

/**
 * Compare two scalars (e.g. losses) under a tolerance.
 * @param section section name
 * @param quantity quantity name
 * @param got computed value
 * @param ref reference value
 * @param tol tolerance
 * @returns the comparison
 */
export function compareScalar(
  section: string,
  quantity: string,
  got: number,
  ref: number,
  tol: Tolerance,
): ComparisonResult {
  return compareClose(section, quantity, { shape: [], data: [got] }, {
    dtype: "float64",
    shape: [],
    data: new Float64Array([ref]),
  }, { rtol: tol.rtol, atol: tol.atol, atolScale: "none" });
}
