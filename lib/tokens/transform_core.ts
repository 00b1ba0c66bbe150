/**
 * The shape every token/embedding augmentation takes: draw parameters from an injected
 * {@linkcode Rng}, then apply them. Keeping the two apart makes each transform a pure
 * function, lets parity tests feed the reference's recorded draws, and lets a log say
 * exactly what was done.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";

/**
 * A random augmentation split into "draw parameters" and "apply given parameters".
 *
 * Tensor-valued transforms return a new tensor owned by the caller and never dispose their
 * input. Host-valued transforms return new arrays and never modify their input.
 *
 * @typeParam X what is transformed (a tensor, or host code grids)
 * @typeParam P the parameters of one application (plain JSON-friendly data)
 */
export interface Transform<X, P> {
  /** A readable one-line description for logs, e.g. `swap(scale<=0.25)`. */
  readonly description: string;
  /**
   * Draw this transform's random parameters for `input`. Reads only `input`'s shape;
   * advances only `rng`.
   * @param input what will be transformed
   * @param rng the generator to draw from
   * @returns the parameters for {@linkcode Transform.apply}
   */
  draw(input: X, rng: Rng): P;
  /**
   * Apply given parameters (deterministic).
   * @param input what to transform (not modified, not disposed)
   * @param params parameters from {@linkcode Transform.draw} or recorded elsewhere
   * @returns the transformed value, owned by the caller
   */
  apply(input: X, params: P): X;
}

/** What {@linkcode runTransform} returns: the output and the parameters that made it. */
export interface TransformResult<X, P> {
  /** The transformed value, owned by the caller. */
  output: X;
  /** The drawn parameters, e.g. to log or to replay. */
  params: P;
}

/**
 * Draw and apply in one call.
 *
 * @param transform the transform
 * @param input what to transform (not modified, not disposed)
 * @param rng the generator to draw from
 * @returns output and parameters
 *
 * @example
 * ```ts
 * import { Rng } from "@lib/random";
 * import { runTransform, swapCodes } from "@lib/tokens";
 * const grid = { dtype: "int32" as const, shape: [1, 8, 8], data: Int32Array.from({ length: 64 }, (_, i) => i) };
 * const { output, params } = runTransform(swapCodes(), grid, new Rng(0));
 * console.assert(output.data.length === 64 && params.length === 1);
 * ```
 */
export function runTransform<X, P>(
  transform: Transform<X, P>,
  input: X,
  rng: Rng,
): TransformResult<X, P> {
  const params = transform.draw(input, rng);
  return { output: transform.apply(input, params), params };
}

/**
 * Chain transforms: each one's parameters are drawn on the previous one's output, in order.
 * Intermediate tensors are disposed.
 *
 * Since the draws of a later stage may depend on the shape an earlier stage produced,
 * `draw` of the composition runs the earlier stages' `apply`s too (and disposes what they
 * made); to avoid doing the work twice, use {@linkcode runTransform}-style
 * `composed.run(input, rng)`, which draws and applies stage by stage once.
 *
 * @param stages the transforms, applied first to last
 * @returns the composition; its parameters are the stages' parameters in order
 * @throws {RangeError} for an empty list
 */
export function composeTransforms<X>(
  ...stages: Transform<X, unknown>[]
): Transform<X, unknown[]> & { run(input: X, rng: Rng): TransformResult<X, unknown[]> } {
  if (stages.length === 0) throw new RangeError("Cannot compose zero transforms");
  const release = (v: X, keep: X, input: X) => {
    if (v instanceof tf.Tensor && v !== keep && v !== input) v.dispose();
  };
  const run = (input: X, rng: Rng): TransformResult<X, unknown[]> => {
    const params: unknown[] = [];
    let cur = input;
    for (const s of stages) {
      const p = s.draw(cur, rng);
      const next = s.apply(cur, p);
      release(cur, next, input);
      params.push(p);
      cur = next;
    }
    return { output: cur, params };
  };
  return {
    description: `compose(${stages.map((s) => s.description).join(", ")})`,
    draw(input: X, rng: Rng): unknown[] {
      const r = run(input, rng);
      release(r.output, input, input);
      return r.params;
    },
    apply(input: X, params: unknown[]): X {
      if (!Array.isArray(params) || params.length !== stages.length) {
        throw new TypeError(
          `Cannot apply ${stages.length} composed transforms with ${
            Array.isArray(params) ? params.length : typeof params
          } parameter sets`,
        );
      }
      let cur = input;
      stages.forEach((s, k) => {
        const next = s.apply(cur, params[k]);
        release(cur, next, input);
        cur = next;
      });
      return cur;
    },
    run,
  };
}

/**
 * Python's `round()` on a double: to the nearest integer, ties to even (torchvision's
 * size rules depend on it: `round(2.5) == 2`).
 * @param x a finite number
 * @returns the rounded integer
 */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * A uniform draw in `[low, high)` rounded to float32, as torch's `uniform_` on a float32
 * tensor gives (the reference's size rules see float32 values).
 * @param rng the generator
 * @param low lower bound
 * @param high upper bound
 * @returns the float32-valued draw
 */
export function uniformFloat32(rng: Rng, low: number, high: number): number {
  const v = Math.fround(Math.fround(low) + Math.fround(high - low) * rng.uniform());
  // rounding may land on `high`; keep the interval half-open as torch does
  return v >= high && high > low ? Math.fround(high - (high - low) * 2 ** -24) : v;
}

/** Code grids on the host: `[B, H, W]` int32, row-major. */
export type CodeGrids = HostTensor<"int32">;

/**
 * Check host code grids.
 * @param codes the value to check
 * @param what the name used in the error, e.g. `"swapCodes input"`
 * @returns `[B, H, W]`
 * @throws {TypeError} unless it is an int32 host tensor of rank 3 with matching data length
 */
export function checkCodeGrids(codes: unknown, what: string): [number, number, number] {
  const t = codes as HostTensor;
  if (
    t === null || typeof t !== "object" || t instanceof tf.Tensor || !Array.isArray(t.shape) ||
    t.dtype !== "int32" || !(t.data instanceof Int32Array) || t.shape.length !== 3 ||
    t.data.length !== t.shape[0] * t.shape[1] * t.shape[2]
  ) {
    throw new TypeError(
      `Cannot use ${what}: expected [B, H, W] int32 host code grids, got ${describeValue(codes)}`,
    );
  }
  return [t.shape[0], t.shape[1], t.shape[2]];
}

/**
 * Check an embedding-map batch tensor.
 * @param x the value to check
 * @param what the name used in the error, e.g. `"colorAdapt input"`
 * @param rank accepted ranks
 * @returns the shape
 * @throws {TypeError} unless it is a float32 tensor of one of the ranks
 */
export function checkMaps(x: unknown, what: string, rank: readonly number[] = [4]): number[] {
  if (!(x instanceof tf.Tensor) || !rank.includes(x.rank) || x.dtype !== "float32") {
    const want = rank.map((r) => (r === 4 ? "[B, C, H, W]" : `rank-${r}`)).join(" or ");
    throw new TypeError(
      `Cannot use ${what}: expected a ${want} float32 tensor, got ${describeValue(x)}`,
    );
  }
  return x.shape;
}

/**
 * Describe a value for an error message: dtype and shape of tensors, else its type.
 * @param x anything
 * @returns e.g. `a float32 tensor of shape [2, 3]`
 */
export function describeValue(x: unknown): string {
  if (x instanceof tf.Tensor) return `a ${x.dtype} tensor of shape [${x.shape.join(", ")}]`;
  if (x !== null && typeof x === "object" && "shape" in x && "dtype" in x) {
    const t = x as HostTensor;
    return `a ${t.dtype} host tensor of shape [${(t.shape ?? []).join(", ")}]`;
  }
  return x === null ? "null" : Array.isArray(x) ? "an array" : typeof x;
}

/**
 * Check a probability.
 * @param p the value
 * @param what its name in the error
 * @returns p
 * @throws {RangeError} unless 0 <= p <= 1
 */
export function checkProb(p: number, what: string): number {
  if (typeof p !== "number" || !(p >= 0 && p <= 1)) {
    throw new RangeError(`Cannot use ${what} = ${p}: expected a probability in [0, 1]`);
  }
  return p;
}
