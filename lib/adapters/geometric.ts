/**
 * TokenAdapt's geometric augmentation in the `2n x 2n` feature space (SeiT++ section 3), as
 * the reference's torchvision pipeline does it on a batch tensor:
 *
 * 1. horizontal flip with probability 0.5 (one decision for the batch);
 * 2. with probability 0.5 a chain of five `RandomAffine`s, each firing with probability 0.5
 *    and applied one after the other (bilinear, fill 0): rotate `U(-30, 30)` degrees,
 *    translate-x `round(U(-0.2 W, 0.2 W))` pixels, translate-y likewise, shear-x `U(0, 15)`
 *    degrees, shear-y `U(0, 15)` degrees (one parameter draw for the batch);
 * 3. a random resized crop per sample (torchvision's `get_params`, bicubic) to `2m x 2m`.
 *
 * Parameters are drawn from an injected {@linkcode Rng} and applied by a pure function, so
 * the same parameters can be applied to maps of another resolution (TokenAdapt training
 * applies one draw to the pixel image and to f's output): translations are stored as
 * fractions of the size and crop boxes in the grid they were drawn on; on a map whose size
 * differs, the boxes scale to fractional windows (bicubic over the window, clamped to the
 * map). With `groupSize: k` every k consecutive samples share a flip and chain instead of the
 * whole batch (training; 1 = per sample).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import {
  affineWarp,
  applyWarp,
  bicubicWeights,
  bicubicWindowWeights,
  checkMaps,
  composeWarps,
  type CropBox,
  drawRrcBox,
  permutationWarp,
  resampleSeparable,
  roundHalfEven,
  type RrcTry,
  separableWarp,
  type SparseWarp,
  type Transform,
  uniformFloat32,
} from "../tokens/mod.ts";

/** Settings of the geometric augmentation; defaults are the reference's. */
export interface GeometricAugConfig {
  /** Probability of the horizontal flip. @default {0.5} */
  flipProb?: number;
  /** Probability that the affine chain runs at all. @default {0.5} */
  chainProb?: number;
  /** Probability of each of the five affine steps within the chain. @default {0.5} */
  stepProb?: number;
  /** Rotation range `U(-degrees, degrees)`. @default {30} */
  degrees?: number;
  /** Translation ranges as fractions of width and height. @default {[0.2, 0.2]} */
  translate?: [number, number];
  /** Shear-x range in degrees. @default {[0, 15]} */
  shearX?: [number, number];
  /** Shear-y range in degrees. @default {[0, 15]} */
  shearY?: [number, number];
  /** Area range of the random resized crop. @default {[0.08, 1]} */
  cropScale?: [number, number];
  /** Aspect-ratio range of the random resized crop. @default {[0.75, 1.3333333333333333]} */
  cropRatio?: [number, number];
  /**
   * Samples that share one flip/chain draw: 0 = the whole batch (the reference, one draw per
   * half-batch), k = every k consecutive samples (training), 1 = every sample. Crops are
   * always per sample.
   * @default {0}
   */
  groupSize?: number;
  /** Round translations to whole pixels of the drawing grid, as RandomAffine does. @default {true} */
  roundTranslate?: boolean;
  /** torchvision's fill-mask blend at borders (see `affineWarp`). @default {true} */
  fillMask?: boolean;
}

/** A {@linkcode GeometricAugConfig} with every field set (plain JSON). */
export type ResolvedGeometricAugConfig = Required<GeometricAugConfig>;

const GEO_DEFAULTS: ResolvedGeometricAugConfig = {
  flipProb: 0.5,
  chainProb: 0.5,
  stepProb: 0.5,
  degrees: 30,
  translate: [0.2, 0.2],
  shearX: [0, 15],
  shearY: [0, 15],
  cropScale: [0.08, 1],
  cropRatio: [3 / 4, 4 / 3],
  groupSize: 0,
  roundTranslate: true,
  fillMask: true,
};

/**
 * Fill in defaults and validate.
 * @param config partial settings
 * @returns the resolved settings
 * @throws {TypeError} for an unknown key or a value of the wrong type
 * @throws {RangeError} for probabilities outside [0, 1] or empty/negative ranges
 */
export function resolveGeometricAugConfig(
  config: GeometricAugConfig = {},
): ResolvedGeometricAugConfig {
  const out: Record<string, unknown> = structuredClone(GEO_DEFAULTS);
  for (const [k, v] of Object.entries(config)) {
    if (!(k in GEO_DEFAULTS)) {
      throw new TypeError(
        `Unknown geometric augmentation key "${k}"; known keys: ${
          Object.keys(GEO_DEFAULTS).join(", ")
        }`,
      );
    }
    if (v === undefined) continue;
    const def = (GEO_DEFAULTS as Record<string, unknown>)[k];
    const ok = Array.isArray(def)
      ? Array.isArray(v) && v.length === 2 &&
        v.every((x) => typeof x === "number" && Number.isFinite(x))
      : typeof v === typeof def && (typeof v !== "number" || Number.isFinite(v));
    if (!ok) {
      throw new TypeError(`Geometric augmentation key "${k}": bad value ${JSON.stringify(v)}`);
    }
    out[k] = structuredClone(v);
  }
  const c = out as ResolvedGeometricAugConfig;
  for (const k of ["flipProb", "chainProb", "stepProb"] as const) {
    if (!(c[k] >= 0 && c[k] <= 1)) {
      throw new RangeError(`Geometric augmentation key "${k}": ${c[k]} is not in [0, 1]`);
    }
  }
  if (!Number.isInteger(c.groupSize) || c.groupSize < 0) {
    throw new RangeError(
      `Geometric augmentation groupSize ${c.groupSize}: expected an integer >= 0`,
    );
  }
  if (!(c.degrees >= 0)) throw new RangeError(`Geometric augmentation degrees ${c.degrees} < 0`);
  if (!c.translate.every((t) => t >= 0 && t <= 1)) {
    throw new RangeError(
      `Geometric augmentation translate [${c.translate}]: expected fractions in [0, 1]`,
    );
  }
  for (const k of ["shearX", "shearY", "cropScale", "cropRatio"] as const) {
    const [lo, hi] = c[k];
    const bad = lo > hi || (k === "cropScale" && !(lo > 0 && hi <= 1)) ||
      (k === "cropRatio" && !(lo > 0)) || (k.startsWith("shear") && (lo <= -90 || hi >= 90));
    if (bad) throw new RangeError(`Geometric augmentation key "${k}": bad range [${lo}, ${hi}]`);
  }
  return c;
}

/** One affine step of the chain: the kind and its value (degrees, or a fraction of the size). */
export interface AffineStep {
  /** Which RandomAffine fired. */
  kind: "rotate" | "translateX" | "translateY" | "shearX" | "shearY";
  /** Degrees for rotate/shear, fraction of the width/height for translations. */
  value: number;
}

/** The drawn parameters of one application to a batch (plain JSON). */
export interface GeometricParams {
  /** `[H, W]` of the grid the parameters were drawn for (boxes are in its units). */
  grid: [number, number];
  /** Output side at the drawing grid's resolution (2m). */
  size: number;
  /** Per sample: mirrored or not. */
  flip: boolean[];
  /** Per sample: the affine steps that fired, in order. */
  steps: AffineStep[][];
  /** Per sample: the crop box, in grid units. */
  boxes: CropBox[];
}

const KINDS: AffineStep["kind"][] = ["rotate", "translateX", "translateY", "shearX", "shearY"];

function drawUnit(
  rng: Rng,
  c: ResolvedGeometricAugConfig,
  H: number,
  W: number,
): { flip: boolean; steps: AffineStep[] } {
  const flip = rng.uniform() < c.flipProb;
  const steps: AffineStep[] = [];
  if (rng.uniform() < c.chainProb) {
    for (const kind of KINDS) {
      if (!(rng.uniform() < c.stepProb)) continue;
      let value: number;
      if (kind === "rotate") {
        value = uniformFloat32(rng, -c.degrees, c.degrees);
      } else if (kind === "translateX" || kind === "translateY") {
        const size = kind === "translateX" ? W : H;
        const max = (kind === "translateX" ? c.translate[0] : c.translate[1]) * size;
        const px = uniformFloat32(rng, -max, max);
        value = (c.roundTranslate ? roundHalfEven(px) : px) / size;
      } else {
        const [lo, hi] = kind === "shearX" ? c.shearX : c.shearY;
        value = uniformFloat32(rng, lo, hi);
      }
      steps.push({ kind, value });
    }
  }
  return { flip, steps };
}

/**
 * Draw the parameters for a `[B, C, H, W]` batch (reads only the shape).
 *
 * @param shape `[B, C, H, W]`
 * @param size output side (2m)
 * @param config resolved settings
 * @param rng the generator
 * @param tries when given, receives each sample's RRC tries (for draw traces; draws unchanged)
 * @returns the parameters
 * @throws {RangeError} for a bad size
 */
export function drawGeometricParams(
  shape: readonly number[],
  size: number,
  config: ResolvedGeometricAugConfig,
  rng: Rng,
  tries?: RrcTry[][],
): GeometricParams {
  const [B, , H, W] = shape;
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`Cannot draw a geometric augmentation to size ${size}`);
  }
  const flip: boolean[] = [], steps: AffineStep[][] = [];
  const group = config.groupSize === 0 ? Math.max(B, 1) : config.groupSize;
  let u = drawUnit(rng, config, H, W);
  for (let b = 0; b < B; b++) {
    if (b > 0 && b % group === 0) u = drawUnit(rng, config, H, W);
    flip.push(u.flip);
    steps.push(u.steps);
  }
  const boxes = Array.from({ length: B }, () => {
    const t: RrcTry[] | undefined = tries === undefined ? undefined : [];
    const box = drawRrcBox(rng, H, W, config.cropScale, config.cropRatio, t);
    if (t !== undefined) tries!.push(t);
    return box;
  });
  return { grid: [H, W], size, flip, steps, boxes };
}

function stepWarp(H: number, W: number, s: AffineStep, fillMask: boolean): SparseWarp {
  const p = s.kind === "rotate"
    ? { angle: s.value }
    : s.kind === "translateX"
    ? { translateX: s.value }
    : s.kind === "translateY"
    ? { translateY: s.value }
    : s.kind === "shearX"
    ? { shearX: s.value }
    : { shearY: s.value };
  return affineWarp(H, W, p, { fillMask });
}

function sameSteps(a: AffineStep[], b: AffineStep[]): boolean {
  return a.length === b.length && a.every((s, i) => s.kind === b[i].kind && s.value === b[i].value);
}

/**
 * Apply drawn parameters to a batch at the drawing grid's resolution or another one (e.g.
 * the pixel image of the same samples). Differentiable with respect to `x`.
 *
 * @param x `[B, C, H, W]` float32 (not disposed); `H / grid[0] == W / grid[1]`
 * @param params from {@linkcode drawGeometricParams}
 * @param options `fillMask` (torchvision's border blend; default true)
 * @returns `[B, C, S, S]` float32 with `S = size * H / grid[0]` (must be an integer), owned by the caller
 * @throws {TypeError} for a wrong input or parameter count
 * @throws {RangeError} when the output size at this resolution is not an integer
 */
export function applyGeometric(
  x: tf.Tensor4D,
  params: GeometricParams,
  options: { fillMask?: boolean } = {},
): tf.Tensor4D {
  const [B, , H, W] = checkMaps(x, "geometric augmentation input");
  if (params.flip.length !== B || params.steps.length !== B || params.boxes.length !== B) {
    throw new TypeError(
      `Cannot apply geometric parameters for ${params.flip.length} samples to ${B}`,
    );
  }
  const scaleH = H / params.grid[0], scaleW = W / params.grid[1];
  const outSize = params.size * scaleH;
  if (!Number.isInteger(outSize) || Math.abs(scaleH - scaleW) > 1e-12) {
    throw new RangeError(
      `Cannot apply parameters drawn on a ${params.grid.join("x")} grid to a ${H}x${W} map: ` +
        `output side ${outSize} is not an integer or the aspect differs`,
    );
  }
  const fillMask = options.fillMask ?? true;
  // runs of consecutive samples that share a flip and chain
  const runs: [number, number][] = [];
  for (let b = 0; b < B; b++) {
    const last = runs[runs.length - 1];
    if (
      last !== undefined && params.flip[b] === params.flip[last[0]] &&
      sameSteps(params.steps[b], params.steps[last[0]])
    ) last[1]++;
    else runs.push([b, 1]);
  }
  const cropAxes = (b: CropBox) =>
    scaleH === 1 ? [bicubicWeights(H, outSize, b.i, b.h), bicubicWeights(W, outSize, b.j, b.w)] : [
      bicubicWindowWeights(H, outSize, b.i * scaleH, b.h * scaleH),
      bicubicWindowWeights(W, outSize, b.j * scaleW, b.w * scaleW),
    ];
  if (runs.length > Math.max(1, B / 4)) {
    // (nearly) every sample its own chain: flip, chain and crop composed into one sparse map
    // per sample (the product of the linear maps: the same result as applying them in turn)
    const maps = params.boxes.map((box, b) => {
      let m = permutationWarp(H, W, params.flip[b]);
      for (const s of params.steps[b]) m = composeWarps(m, stepWarp(H, W, s, fillMask));
      const [ry, cx] = cropAxes(box);
      return composeWarps(m, separableWarp(ry, cx));
    });
    return applyWarp(x, maps);
  }
  // a few runs: each run's flip and warps shared (plain matMuls), then the crops per sample
  return tf.tidy(() => {
    const parts = runs.map(([start, count]) => {
      let cur = runs.length === 1 ? x : x.slice([start], [count]);
      if (params.flip[start]) cur = tf.reverse(cur, 3);
      for (const s of params.steps[start]) cur = applyWarp(cur, stepWarp(H, W, s, fillMask));
      return cur;
    });
    const warped = parts.length === 1 ? parts[0] : tf.concat(parts);
    const axes = params.boxes.map(cropAxes);
    return resampleSeparable(warped, axes.map((a) => a[0]), axes.map((a) => a[1]));
  });
}

/**
 * The geometric augmentation as a {@linkcode Transform} (draw, then apply): `[B, C, 2n, 2n]`
 * -> `[B, C, size, size]`.
 *
 * @param size output side (2m)
 * @param config settings (defaults: the reference's)
 * @returns the transform
 * @throws {RangeError | TypeError} for bad settings
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { geometricAugmentation } from "@lib/adapters";
 * import { Rng } from "@lib/random";
 * const aug = geometricAugmentation(6);
 * const x = tf.randomNormal([2, 3, 8, 8]) as tf.Tensor4D;
 * const p = aug.draw(x, new Rng(0));
 * const y = aug.apply(x, p); // [2, 3, 6, 6]
 * console.assert(y.shape.join() === "2,3,6,6" && p.boxes.length === 2);
 * tf.dispose([x, y]);
 * ```
 */
export function geometricAugmentation(
  size: number,
  config: GeometricAugConfig = {},
): Transform<tf.Tensor4D, GeometricParams> {
  const c = resolveGeometricAugConfig(config);
  return {
    description: `tokenadapt-geometric(${size}, ${
      c.groupSize === 0 ? "one draw per batch" : `one draw per ${c.groupSize} samples`
    })`,
    draw(input: tf.Tensor4D, rng: Rng): GeometricParams {
      return drawGeometricParams(checkMaps(input, "geometric augmentation input"), size, c, rng);
    },
    apply(input: tf.Tensor4D, params: GeometricParams): tf.Tensor4D {
      return applyGeometric(input, params, { fillMask: c.fillMask });
    },
  };
}
