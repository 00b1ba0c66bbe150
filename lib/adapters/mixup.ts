/**
 * Mixup and CutMix on embedding maps with soft, label-smoothed targets, following timm's
 * `Mixup` (v0.5.4) in batch mode: one mixing decision and one lambda per batch, each sample
 * mixed with the batch reversed.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Rng } from "../random/mod.ts";
import { checkMaps, checkProb, describeValue } from "../tokens/mod.ts";

/** Options of {@linkcode createMixup} (timm's `Mixup` arguments). */
export interface MixupOptions {
  /** Number of classes K of the soft targets. */
  numClasses: number;
  /**
   * Mixup's Beta(alpha, alpha) parameter; 0 turns Mixup off.
   * @default {1}
   */
  mixupAlpha?: number;
  /**
   * CutMix's Beta(alpha, alpha) parameter; 0 turns CutMix off.
   * @default {0}
   */
  cutmixAlpha?: number;
  /**
   * When set, CutMix box sides are drawn uniformly in `[min, max)` times the map side
   * instead of from lambda (timm's `cutmix_minmax`); lambda is then always corrected, and
   * `cutmixAlpha` becomes 1 as in timm.
   * @default {null}
   */
  cutmixMinMax?: readonly [number, number] | null;
  /**
   * Probability that a batch is mixed at all.
   * @default {1}
   */
  prob?: number;
  /**
   * With both alphas > 0: probability of CutMix instead of Mixup.
   * @default {0.5}
   */
  switchProb?: number;
  /**
   * Label smoothing of the targets: off value `s/K`, on value `1 - s + s/K`.
   * @default {0.1}
   */
  labelSmoothing?: number;
  /**
   * Correct lambda to the area the clipped CutMix box actually covers.
   * @default {true}
   */
  correctLam?: boolean;
}

/** {@linkcode MixupOptions} with every field present and checked. Plain JSON. */
export type ResolvedMixupOptions = Required<MixupOptions>;

/** A CutMix box: rows `yl..yh-1`, columns `xl..xh-1` (timm's `(yl, yh, xl, xh)`). */
export interface CutBox {
  /** First row. */
  yl: number;
  /** One past the last row. */
  yh: number;
  /** First column. */
  xl: number;
  /** One past the last column. */
  xh: number;
}

/** Parameters of one batch's mixing. */
export interface MixupParams {
  /** Weight of the sample itself (1: no mixing). For CutMix, already corrected for the box. */
  lam: number;
  /** Whether CutMix (else Mixup) is used. */
  cutmix: boolean;
  /** The CutMix box, `null` for Mixup or no mixing. */
  box: CutBox | null;
}

/** What {@linkcode Mixup.apply} returns; both tensors are owned by the caller. */
export interface MixupResult {
  /** The mixed maps, same shape as the input. */
  x: tf.Tensor4D;
  /** `[B, K]` float32 soft targets. */
  targets: tf.Tensor2D;
}

/** A configured Mixup/CutMix: draw parameters, apply them, or both. */
export interface Mixup {
  /** The resolved options. */
  readonly options: ResolvedMixupOptions;
  /** A one-line description, e.g. `mixup(alpha=0.8, cutmix=1, switch=0.5, smoothing=0.1)`. */
  readonly description: string;
  /**
   * Draw one batch's parameters (timm's `_params_per_batch`, then the CutMix box).
   * @param shape the maps' shape `[B, C, H, W]` (or `[B, H, W]`)
   * @param rng the generator
   * @returns the parameters
   */
  draw(shape: readonly number[], rng: Rng): MixupParams;
  /**
   * Mix maps and build soft targets with given parameters.
   * @param x `[B, C, H, W]` float32, B even (not disposed)
   * @param labels B integer class labels in `0..K-1`
   * @param params from {@linkcode Mixup.draw}
   * @returns mixed maps and targets, owned by the caller
   */
  apply(x: tf.Tensor4D, labels: ArrayLike<number>, params: MixupParams): MixupResult;
  /**
   * Draw and apply.
   * @param x `[B, C, H, W]` float32, B even (not disposed)
   * @param labels B integer labels
   * @param rng the generator
   * @returns mixed maps, targets (caller owns both) and the parameters
   */
  run(x: tf.Tensor4D, labels: ArrayLike<number>, rng: Rng): MixupResult & { params: MixupParams };
}

/**
 * Check and complete Mixup options.
 * @param options the options
 * @returns every field present
 * @throws {RangeError} for an out-of-range value, or both alphas 0
 */
export function resolveMixupOptions(options: MixupOptions): ResolvedMixupOptions {
  const r: ResolvedMixupOptions = {
    numClasses: options.numClasses,
    mixupAlpha: options.mixupAlpha ?? 1,
    cutmixAlpha: options.cutmixAlpha ?? 0,
    cutmixMinMax: options.cutmixMinMax ?? null,
    prob: checkProb(options.prob ?? 1, "mixup prob"),
    switchProb: checkProb(options.switchProb ?? 0.5, "mixup switchProb"),
    labelSmoothing: checkProb(options.labelSmoothing ?? 0.1, "mixup labelSmoothing"),
    correctLam: options.correctLam ?? true,
  };
  if (!Number.isInteger(r.numClasses) || r.numClasses < 1) {
    throw new RangeError(`Cannot use mixup numClasses = ${r.numClasses}: expected an integer >= 1`);
  }
  if (!(r.mixupAlpha >= 0) || !(r.cutmixAlpha >= 0)) {
    throw new RangeError(
      `Cannot use mixupAlpha = ${r.mixupAlpha}, cutmixAlpha = ${r.cutmixAlpha}: expected >= 0`,
    );
  }
  // timm forces cutmix_alpha = 1 when cutmix_minmax is given
  if (r.cutmixMinMax !== null) r.cutmixAlpha = 1;
  if (r.mixupAlpha === 0 && r.cutmixAlpha === 0) {
    throw new RangeError("Cannot use mixup with mixupAlpha = cutmixAlpha = 0: nothing would mix");
  }
  if (r.cutmixMinMax !== null) {
    const [lo, hi] = r.cutmixMinMax;
    if (!(lo >= 0 && hi > lo && hi <= 1)) {
      throw new RangeError(`Cannot use cutmixMinMax [${lo}, ${hi}]: expected 0 <= min < max <= 1`);
    }
    r.cutmixMinMax = [lo, hi];
  }
  return r;
}

/**
 * A Gamma(a, 1) draw (Marsaglia and Tsang; for a < 1 boosted by U^(1/a)).
 * @param rng the generator
 * @param a shape > 0
 * @returns the draw
 */
export function sampleGamma(rng: Rng, a: number): number {
  if (!(a > 0)) throw new RangeError(`Cannot draw Gamma(${a})`);
  if (a < 1) {
    let u = 0;
    while (u === 0) u = rng.uniform();
    return sampleGamma(rng, a + 1) * Math.pow(u, 1 / a);
  }
  const d = a - 1 / 3, c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number, v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * x ** 4) return d * v;
    if (u > 0 && Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/**
 * A Beta(a, b) draw as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
 * @param rng the generator
 * @param a first shape > 0
 * @param b second shape > 0
 * @returns the draw in [0, 1]
 */
export function sampleBeta(rng: Rng, a: number, b: number): number {
  const x = sampleGamma(rng, a), y = sampleGamma(rng, b);
  return x + y === 0 ? 0.5 : x / (x + y);
}

/**
 * timm's `rand_bbox` (margin 0): cut side `int(side * sqrt(1 - lam))`, centre uniform in
 * the map, box clipped to the map (half-sides `cut // 2` on both sides of the centre).
 * @param rng the generator
 * @param height map height H
 * @param width map width W
 * @param lam the drawn lambda
 * @returns the box
 */
export function drawCutBox(rng: Rng, height: number, width: number, lam: number): CutBox {
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.trunc(height * ratio), cutW = Math.trunc(width * ratio);
  const cy = rng.int(0, height), cx = rng.int(0, width);
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  const hh = Math.floor(cutH / 2), hw = Math.floor(cutW / 2);
  return {
    yl: clip(cy - hh, height),
    yh: clip(cy + hh, height),
    xl: clip(cx - hw, width),
    xh: clip(cx + hw, width),
  };
}

/**
 * timm's `rand_bbox_minmax`: sides uniform in `[int(side*min), int(side*max))`, top-left
 * uniform so that the box fits.
 * @param rng the generator
 * @param height map height H
 * @param width map width W
 * @param minmax side range as fractions
 * @returns the box
 */
export function drawCutBoxMinMax(
  rng: Rng,
  height: number,
  width: number,
  minmax: readonly [number, number],
): CutBox {
  const span = (side: number) => {
    const lo = Math.trunc(side * minmax[0]), hi = Math.trunc(side * minmax[1]);
    if (hi <= lo) {
      throw new RangeError(
        `Cannot draw a CutMix side in [${lo}, ${hi}) for a side of ${side} (cutmixMinMax [${minmax}])`,
      );
    }
    return rng.int(lo, hi);
  };
  const cutH = span(height), cutW = span(width);
  const yl = rng.int(0, height - cutH), xl = rng.int(0, width - cutW);
  return { yl, yh: yl + cutH, xl, xh: xl + cutW };
}

/**
 * Soft targets (timm's `mixup_target`): `lam * onehot_s(y) + (1 - lam) * onehot_s(flip(y))`
 * with `onehot_s` the label-smoothed one-hot (off `s/K`, on `1 - s + s/K`), in float32
 * arithmetic as torch does it. (Same rule as `mixupTargets` of `@lib/train`, which this
 * topic cannot import without a cycle.)
 */
function mixupTarget(
  labels: ArrayLike<number>,
  numClasses: number,
  lam: number,
  smoothing: number,
): tf.Tensor2D {
  const B = labels.length, K = numClasses;
  for (let b = 0; b < B; b++) {
    const y = labels[b];
    if (!Number.isInteger(y) || y < 0 || y >= K) {
      throw new RangeError(
        `Cannot make a target for label ${y} of sample ${b}: expected 0..${K - 1}`,
      );
    }
  }
  const off = Math.fround(smoothing / K), on = Math.fround(1 - smoothing + smoothing / K);
  const l = Math.fround(lam), ml = Math.fround(1 - lam);
  const offMix = Math.fround(Math.fround(off * l) + Math.fround(off * ml));
  const out = new Float32Array(B * K);
  for (let b = 0; b < B; b++) {
    const y1 = labels[b], y2 = labels[B - 1 - b];
    const row = out.subarray(b * K, (b + 1) * K);
    row.fill(offMix);
    row[y1] = Math.fround(Math.fround(on * l) + Math.fround((y1 === y2 ? on : off) * ml));
    if (y2 !== y1) row[y2] = Math.fround(Math.fround(off * l) + Math.fround(on * ml));
  }
  return tf.tensor2d(out, [B, K]);
}

/**
 * Configure Mixup/CutMix (timm `Mixup`, batch mode).
 *
 * Draws per batch: `u < prob` decides whether to mix; with both alphas > 0,
 * `u < switchProb` picks CutMix; lambda ~ Beta(alpha, alpha) of the chosen method; for
 * CutMix a box ({@linkcode drawCutBox}, or {@linkcode drawCutBoxMinMax}) and, with
 * `correctLam`, `lam = 1 - box area / (H*W)`. Mixup: `x <- lam*x + (1-lam)*flip(x)`;
 * CutMix: the box of each sample is taken from the reversed batch. A lambda of exactly 1
 * (no mixing) leaves the maps unchanged.
 *
 * @param options the options
 * @returns the configured mixer
 * @throws {RangeError} for bad options
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { Rng } from "@lib/random";
 * import { createMixup } from "@lib/adapters";
 * const mix = createMixup({ numClasses: 10, mixupAlpha: 0.8, cutmixAlpha: 1 });
 * const x = tf.randomNormal([4, 2, 6, 6]) as tf.Tensor4D;
 * const { x: mixed, targets, params } = mix.run(x, [1, 2, 3, 4], new Rng(0));
 * console.assert(targets.shape.join() === "4,10" && params.lam <= 1);
 * tf.dispose([x, mixed, targets]);
 * ```
 */
export function createMixup(options: MixupOptions): Mixup {
  const o = resolveMixupOptions(options);
  const description = `mixup(alpha=${o.mixupAlpha}, cutmix=${o.cutmixAlpha}${
    o.cutmixMinMax ? `, minmax=[${o.cutmixMinMax}]` : ""
  }, switch=${o.switchProb}, p=${o.prob}, smoothing=${o.labelSmoothing})`;
  const draw = (shape: readonly number[], rng: Rng): MixupParams => {
    if (!Array.isArray(shape) || shape.length < 3) {
      throw new TypeError(`Cannot draw mixup parameters for shape ${describeValue(shape)}`);
    }
    const H = shape[shape.length - 2], W = shape[shape.length - 1];
    let lam = 1, cutmix = false;
    if (rng.uniform() < o.prob) {
      if (o.mixupAlpha > 0 && o.cutmixAlpha > 0) {
        cutmix = rng.uniform() < o.switchProb;
        lam = cutmix
          ? sampleBeta(rng, o.cutmixAlpha, o.cutmixAlpha)
          : sampleBeta(rng, o.mixupAlpha, o.mixupAlpha);
      } else if (o.mixupAlpha > 0) {
        lam = sampleBeta(rng, o.mixupAlpha, o.mixupAlpha);
      } else {
        cutmix = true;
        lam = sampleBeta(rng, o.cutmixAlpha, o.cutmixAlpha);
      }
    }
    if (lam === 1) return { lam: 1, cutmix: false, box: null };
    if (!cutmix) return { lam, cutmix, box: null };
    const box = o.cutmixMinMax !== null
      ? drawCutBoxMinMax(rng, H, W, o.cutmixMinMax)
      : drawCutBox(rng, H, W, lam);
    if (o.correctLam || o.cutmixMinMax !== null) {
      lam = 1 - ((box.yh - box.yl) * (box.xh - box.xl)) / (H * W);
    }
    return { lam, cutmix, box };
  };
  const apply = (x: tf.Tensor4D, labels: ArrayLike<number>, params: MixupParams): MixupResult => {
    const [B, , H, W] = checkMaps(x, "mixup input");
    if (B % 2 !== 0) throw new RangeError(`Cannot mix a batch of ${B}: timm's Mixup needs it even`);
    if (labels === null || typeof labels !== "object" || labels.length !== B) {
      throw new TypeError(`Cannot mix ${B} samples with labels ${describeValue(labels)}`);
    }
    const { lam, cutmix, box } = params ?? {};
    if (typeof lam !== "number" || !(lam >= 0 && lam <= 1)) {
      throw new RangeError(`Cannot mix with lam = ${lam}: expected a number in [0, 1]`);
    }
    if (cutmix && (box === null || box === undefined)) {
      throw new TypeError("Cannot apply CutMix without a box");
    }
    const b = box as CutBox;
    if (
      cutmix && lam !== 1 &&
      !([b.yl, b.yh, b.xl, b.xh].every(Number.isInteger) && 0 <= b.yl && b.yl <= b.yh &&
        b.yh <= H && 0 <= b.xl && b.xl <= b.xh && b.xh <= W)
    ) {
      throw new RangeError(`Cannot apply CutMix box ${JSON.stringify(b)} to ${H}x${W} maps`);
    }
    const targets = mixupTarget(labels, o.numClasses, lam, o.labelSmoothing);
    const mixed = tf.tidy(() => {
      if (lam === 1) return tf.clone(x);
      const flipped = tf.reverse(x, 0);
      if (!cutmix) return x.mul(lam).add(flipped.mul(1 - lam)) as tf.Tensor4D;
      // a full-shape condition: tfjs-wasm's `where` is much slower with a broadcast one
      const C = x.shape[1];
      const cond = new Uint8Array(B * C * H * W);
      for (let p = 0; p < B * C; p++) {
        for (let y = b.yl; y < b.yh; y++) {
          cond.fill(1, (p * H + y) * W + b.xl, (p * H + y) * W + b.xh);
        }
      }
      return tf.where(tf.tensor4d(cond, [B, C, H, W], "bool"), flipped, x);
    });
    return { x: mixed as tf.Tensor4D, targets };
  };
  return {
    options: o,
    description,
    draw,
    apply,
    run(x, labels, rng) {
      const params = draw(checkMaps(x, "mixup input"), rng);
      return { ...apply(x, labels, params), params };
    },
  };
}
