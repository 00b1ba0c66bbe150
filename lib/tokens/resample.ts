/**
 * Resampling of `[B, C, H, W]` maps that tfjs lacks: torch-exact bicubic resize and crop
 * (as separable `[in, out]` weight matrices applied by plain matMuls), and bilinear affine
 * warps with zero fill (as sparse `[HW_out, HW_in]` maps with 4 non-zeros a row, applied by
 * gathers with an explicit sparse gradient). Both are linear in the map, so both are
 * differentiable: TokenAdapt training backpropagates through them.
 *
 * ## Bicubic, as torch 1.13 computes it (`F.interpolate(mode="bicubic", align_corners=False)`)
 * For an axis of `in` source and `out` target samples: `scale = float32(in / out)`; target
 * `i` reads source coordinate `s = scale * (i + 0.5) - 0.5`, taps `floor(s) - 1 .. floor(s) + 2`
 * clamped to `[0, in - 1]` (border replication), weights Keys' cubic with `a = -0.75` at
 * `t = s - floor(s)`; no antialiasing. A crop `(i, j, h, w)` is resized as torch does it, crop
 * first: coordinates and clamping are relative to the crop.
 *
 * Measured against the fixtures (`transformed56` = 64 -> 56, `rrc_out` = crops -> 28): the
 * scale is a float32 value but the coordinate `scale * (i + 0.5) - 0.5` behaves as if
 * evaluated in double precision (C++ promotes `i + 0.5` to double). Max abs error vs the
 * fixtures, same inputs: this rule 3.7e-6 / 2.5e-6; all-float32 coordinates 1.7e-5 / 6.1e-6;
 * all-float64 (scale too) 2.6e-5 / 1.1e-5 (the fixture's own float64 check). The weights are
 * rounded to float32 as torch stores them.
 *
 * ## Affine warps, as torchvision 0.14 `F.affine` / `RandomAffine` does it on tensors
 * Coordinates are centred: pixel `(row, col)` sits at `x = col + 0.5 - W/2`, `y = row + 0.5 - H/2`
 * (y points down). The forward map is `p' = R(θ) SHy(φy) SHx(φx) p + t` with
 * `R(θ) = [[cos θ, -sin θ], [sin θ, cos θ]]` (clockwise on screen for θ > 0, since y points
 * down), `SHx(φ) = [[1, -tan φ], [0, 1]]`, `SHy(φ) = [[1, 0], [-tan φ, 1]]` and `t` the
 * translation in pixels. Multiplying out, `R SHy SHx = [[a, b], [c, d]]` with
 * `a = cos(θ-φy)/cos φy`, `c = sin(θ-φy)/cos φy`, `b = -a tan φx - sin θ`,
 * `d = -c tan φx + cos θ` (use `cos θ + sin θ tan φy = cos(θ-φy)/cos φy` and
 * `sin θ - cos θ tan φy = sin(θ-φy)/cos φy`). Shears and rotations have determinant 1, so
 * the inverse is `[[d, -b], [-c, a]]`. Sampling pulls: output pixel `q` reads the input at
 * `p = [[d, -b], [-c, a]] (q - t)`. torchvision builds exactly this 2x3 inverse matrix and
 * feeds it to `grid_sample(bilinear, zeros, align_corners=False)` through a grid normalized
 * by `W/2`, `H/2`, which maps back to the centred pixel coordinates above.
 * With a numeric `fill` (RandomAffine always passes one, default 0), torchvision also warps
 * an all-ones mask channel and blends `out * mask + (1 - mask) * fill`; with fill 0 a border
 * pixel is therefore scaled by its in-bounds weight a second time. {@linkcode affineWarp}
 * mirrors that by default (`fillMask: true`).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** A crop box, torchvision's `(i, j, h, w)`: rows `i..i+h-1`, columns `j..j+w-1`. */
type Box = { readonly i: number; readonly j: number; readonly h: number; readonly w: number };

/**
 * Resampling weights for one axis, stored transposed as `[in, out]` row-major (so that
 * `x[..., in] @ weights` is a plain 2-D matMul).
 */
export interface AxisWeights {
  /** Number of source samples. */
  inSize: number;
  /** Number of target samples. */
  outSize: number;
  /** `[inSize, outSize]` float32, row-major: `data[s * outSize + o]` = weight of source s in target o. */
  data: Float32Array;
}

const A = -0.75;

/** Keys' cubic kernel for |x| <= 1. */
function cubic1(x: number): number {
  return ((A + 2) * x - (A + 3)) * x * x + 1;
}

/** Keys' cubic kernel for 1 < |x| < 2. */
function cubic2(x: number): number {
  return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

function checkSize(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`Cannot resample: ${what} ${v} is not an integer >= 1`);
  }
}

/**
 * Torch-exact bicubic weights for one axis (see the module doc): source samples
 * `start .. start+length-1` (a crop; the whole axis by default) resized to `outSize`, taps
 * clamped to the crop.
 *
 * @param inSize source axis length
 * @param outSize target length
 * @param start first source sample of the crop
 * @param length crop length
 * @returns the weights, `[inSize, outSize]` (zero rows outside the crop)
 * @throws {RangeError} for non-integer sizes or a crop outside the axis
 *
 * @example
 * ```ts
 * import { bicubicWeights } from "@lib/tokens";
 * const w = bicubicWeights(4, 4); // same size: the identity
 * console.assert(w.data[0] === 1 && w.data[1] === 0 && w.data[5] === 1);
 * ```
 */
export function bicubicWeights(
  inSize: number,
  outSize: number,
  start = 0,
  length = inSize - start,
): AxisWeights {
  checkSize(inSize, "input size");
  checkSize(outSize, "output size");
  checkSize(length, "crop length");
  if (!Number.isInteger(start) || start < 0 || start + length > inSize) {
    throw new RangeError(
      `Cannot resample samples ${start}..${start + length - 1} of an axis of ${inSize}`,
    );
  }
  const data = new Float32Array(inSize * outSize);
  const scale = Math.fround(length / outSize);
  for (let o = 0; o < outSize; o++) {
    const s = scale * (o + 0.5) - 0.5;
    const f = Math.floor(s);
    const t = s - f;
    const w = [cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)];
    for (let k = 0; k < 4; k++) {
      const src = start + Math.min(Math.max(f - 1 + k, 0), length - 1);
      data[src * outSize + o] += Math.fround(w[k]);
    }
  }
  return { inSize, outSize, data };
}

/**
 * Bicubic weights for a continuous window of an axis: target `o` reads source coordinate
 * `start + (o + 0.5) * length / outSize - 0.5` (double precision), taps clamped to the whole
 * axis. For fractional crops (e.g. a crop chosen on a coarser grid and mapped to pixels);
 * use {@linkcode bicubicWeights} for torch's integer crops.
 *
 * @param inSize source axis length
 * @param outSize target length
 * @param start window start, in source samples (may be fractional)
 * @param length window length, in source samples (> 0, may be fractional)
 * @returns the weights, `[inSize, outSize]`
 * @throws {RangeError} for bad sizes or a non-finite window
 */
export function bicubicWindowWeights(
  inSize: number,
  outSize: number,
  start: number,
  length: number,
): AxisWeights {
  checkSize(inSize, "input size");
  checkSize(outSize, "output size");
  if (!Number.isFinite(start) || !(length > 0) || !Number.isFinite(length)) {
    throw new RangeError(`Cannot resample the window start ${start}, length ${length}`);
  }
  const data = new Float32Array(inSize * outSize);
  const scale = length / outSize;
  for (let o = 0; o < outSize; o++) {
    const s = start + scale * (o + 0.5) - 0.5;
    const f = Math.floor(s);
    const t = s - f;
    const w = [cubic2(t + 1), cubic1(t), cubic1(1 - t), cubic2(2 - t)];
    for (let k = 0; k < 4; k++) {
      const src = Math.min(Math.max(f - 1 + k, 0), inSize - 1);
      data[src * outSize + o] += Math.fround(w[k]);
    }
  }
  return { inSize, outSize, data };
}

function check4d(x: unknown, what: string): [number, number, number, number] {
  if (!(x instanceof tf.Tensor) || x.rank !== 4 || x.dtype !== "float32") {
    const got = x instanceof tf.Tensor ? `a ${x.dtype} tensor of shape [${x.shape}]` : typeof x;
    throw new TypeError(
      `Cannot resample ${what}: expected a [B, C, H, W] float32 tensor, got ${got}`,
    );
  }
  return x.shape as [number, number, number, number];
}

function checkAxis(w: AxisWeights, inSize: number, what: string): void {
  if (w.inSize !== inSize || w.data.length !== w.inSize * w.outSize) {
    throw new TypeError(
      `Cannot resample: ${what} weights are for ${w.inSize} -> ${w.outSize} ` +
        `(${w.data.length} values), the map has ${inSize}`,
    );
  }
}

/**
 * Apply separable resampling weights: rows with `rows`, columns with `cols`. One pair for
 * the whole batch (two plain 2-D matMuls), or one pair per sample (batched matMuls).
 * Differentiable with respect to `x`.
 *
 * @param x `[B, C, H, W]` float32 (not disposed)
 * @param rows weights along H (`inSize` = H): one for all samples or an array of B
 * @param cols weights along W (`inSize` = W): one for all samples or an array of B
 * @returns `[B, C, rows.outSize, cols.outSize]` float32, owned by the caller
 * @throws {TypeError} when the weights do not fit the map or per-sample counts differ from B
 */
export function resampleSeparable(
  x: tf.Tensor4D,
  rows: AxisWeights | readonly AxisWeights[],
  cols: AxisWeights | readonly AxisWeights[],
): tf.Tensor4D {
  const [B, C, H, W] = check4d(x, "input");
  const perSample = Array.isArray(rows) || Array.isArray(cols);
  const rowList = Array.isArray(rows) ? rows : Array<AxisWeights>(B).fill(rows as AxisWeights);
  const colList = Array.isArray(cols) ? cols : Array<AxisWeights>(B).fill(cols as AxisWeights);
  if (rowList.length !== B || colList.length !== B) {
    throw new TypeError(
      `Cannot resample ${B} samples with ${rowList.length} row and ${colList.length} column weights`,
    );
  }
  rowList.forEach((w) => checkAxis(w, H, "row"));
  colList.forEach((w) => checkAxis(w, W, "column"));
  const Ho = rowList[0].outSize, Wo = colList[0].outSize;
  if (rowList.some((w) => w.outSize !== Ho) || colList.some((w) => w.outSize !== Wo)) {
    throw new TypeError("Cannot resample: per-sample weights have different output sizes");
  }
  return tf.tidy(() => {
    if (!perSample) {
      const wx = tf.tensor2d(colList[0].data, [W, Wo]);
      const wy = tf.tensor2d(rowList[0].data, [H, Ho]);
      const a = tf.matMul(x.reshape([B * C * H, W]), wx); // [B*C*H, Wo]
      const b = a.reshape([B, C, H, Wo]).transpose([0, 1, 3, 2]).reshape([B * C * Wo, H]);
      const c = tf.matMul(b, wy); // [B*C*Wo, Ho]
      return c.reshape([B, C, Wo, Ho]).transpose([0, 1, 3, 2]) as tf.Tensor4D;
    }
    const wxData = new Float32Array(B * W * Wo), wyData = new Float32Array(B * H * Ho);
    colList.forEach((w, k) => wxData.set(w.data, k * W * Wo));
    rowList.forEach((w, k) => wyData.set(w.data, k * H * Ho));
    const wx = tf.tensor3d(wxData, [B, W, Wo]);
    const wy = tf.tensor3d(wyData, [B, H, Ho]);
    const a = tf.matMul(x.reshape([B, C * H, W]), wx); // [B, C*H, Wo]
    const b = a.reshape([B, C, H, Wo]).transpose([0, 1, 3, 2]).reshape([B, C * Wo, H]);
    const c = tf.matMul(b, wy); // [B, C*Wo, Ho]
    return c.reshape([B, C, Wo, Ho]).transpose([0, 1, 3, 2]) as tf.Tensor4D;
  });
}

/**
 * Bicubic resize of every sample to `[outH, outW]`, exactly as
 * `F.interpolate(x, size, mode="bicubic", align_corners=False)` (see the module doc).
 *
 * @param x `[B, C, H, W]` float32 (not disposed)
 * @param size `[outH, outW]`
 * @returns `[B, C, outH, outW]` float32, owned by the caller
 * @throws {TypeError} for a wrong input
 * @throws {RangeError} for a bad size
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { resizeBicubic } from "@lib/tokens";
 * const x = tf.ones([1, 2, 5, 5]) as tf.Tensor4D;
 * const y = resizeBicubic(x, [3, 7]); // constant in, constant out
 * console.assert(y.shape.join() === "1,2,3,7" && Math.abs(y.arraySync()[0][1][2][6] - 1) < 1e-6);
 * tf.dispose([x, y]);
 * ```
 */
export function resizeBicubic(x: tf.Tensor4D, size: readonly [number, number]): tf.Tensor4D {
  const [, , H, W] = check4d(x, "input");
  return resampleSeparable(x, bicubicWeights(H, size[0]), bicubicWeights(W, size[1]));
}

/**
 * Crop one box per sample and resize it bicubically, as torch does it crop first
 * (`F.interpolate(x[b:b+1, :, i:i+h, j:j+w], size, mode="bicubic")`): the resize step of a
 * random resized crop.
 *
 * @param x `[B, C, H, W]` float32 (not disposed)
 * @param boxes one `(i, j, h, w)` box per sample, or one box for all
 * @param size `[outH, outW]`
 * @returns `[B, C, outH, outW]` float32, owned by the caller
 * @throws {TypeError} for a wrong input or box count
 * @throws {RangeError} for a box outside the map or a bad size
 */
export function cropResizeBicubic(
  x: tf.Tensor4D,
  boxes: Box | readonly Box[],
  size: readonly [number, number],
): tf.Tensor4D {
  const [B, , H, W] = check4d(x, "input");
  if (!Array.isArray(boxes)) {
    const b = boxes as Box;
    return resampleSeparable(
      x,
      bicubicWeights(H, size[0], b.i, b.h),
      bicubicWeights(W, size[1], b.j, b.w),
    );
  }
  if (boxes.length !== B) {
    throw new TypeError(`Cannot crop ${B} samples with ${boxes.length} boxes`);
  }
  return resampleSeparable(
    x,
    boxes.map((b) => bicubicWeights(H, size[0], b.i, b.h)),
    boxes.map((b) => bicubicWeights(W, size[1], b.j, b.w)),
  );
}

// ---------------------------------------------------------------------------------------------
// Affine warps

/**
 * Parameters of an affine warp about the map centre (torchvision `F.affine` conventions):
 * angles in degrees, translation as a fraction of the map size.
 */
export interface AffineParams {
  /** Rotation, degrees, clockwise on screen for positive values. @default {0} */
  angle?: number;
  /** Horizontal translation as a fraction of the width (positive moves content right). @default {0} */
  translateX?: number;
  /** Vertical translation as a fraction of the height (positive moves content down). @default {0} */
  translateY?: number;
  /** Shear along x, degrees. @default {0} */
  shearX?: number;
  /** Shear along y, degrees. @default {0} */
  shearY?: number;
}

/**
 * The inverse affine matrix torchvision hands to `grid_sample`: maps centred output
 * coordinates `q` to centred input coordinates `p = M[:, :2] q + M[:, 2]`.
 *
 * @param angle rotation in degrees
 * @param translate translation `[tx, ty]` in pixels
 * @param shear `[shearX, shearY]` in degrees
 * @returns `[m00, m01, m02, m10, m11, m12]` (row-major 2x3)
 *
 * @example
 * ```ts
 * import { inverseAffineMatrix } from "@lib/tokens";
 * const m = inverseAffineMatrix(90, [0, 0], [0, 0]);
 * // q = (1, 0) (right of centre) reads p = (0, -1) (above the centre): clockwise rotation
 * console.assert(Math.abs(m[0]) < 1e-12 && Math.abs(m[3] + 1) < 1e-12);
 * ```
 */
export function inverseAffineMatrix(
  angle: number,
  translate: readonly [number, number],
  shear: readonly [number, number],
): [number, number, number, number, number, number] {
  const rot = (angle * Math.PI) / 180;
  const sx = (shear[0] * Math.PI) / 180, sy = (shear[1] * Math.PI) / 180;
  const a = Math.cos(rot - sy) / Math.cos(sy);
  const c = Math.sin(rot - sy) / Math.cos(sy);
  const b = -a * Math.tan(sx) - Math.sin(rot);
  const d = -c * Math.tan(sx) + Math.cos(rot);
  // inverse of [[a, b], [c, d]] (determinant 1), then p = Minv (q - t)
  const [tx, ty] = translate;
  return [d, -b, -(d * tx - b * ty), -c, a, -(-c * tx + a * ty)];
}

/**
 * A linear resampling map from an `inH x inW` grid to an `outH x outW` grid, stored sparsely:
 * `taps` (source index, weight) pairs per output pixel, row-major pixel order, unused slots
 * with weight 0. A bilinear affine warp has 4 taps ({@linkcode affineWarp}); compositions
 * ({@linkcode composeWarps}) and bicubic crops ({@linkcode separableWarp}) have more. Apply
 * with {@linkcode applyWarp}.
 */
export interface SparseWarp {
  /** Source grid height. */
  inH: number;
  /** Source grid width. */
  inW: number;
  /** Target grid height. */
  outH: number;
  /** Target grid width. */
  outW: number;
  /** Slots per output pixel. */
  taps: number;
  /** `[outH*outW*taps]` source pixel indices (`row * inW + col`), 0 in unused slots. */
  index: Int32Array;
  /** `[outH*outW*taps]` float32 weights, 0 in unused slots. */
  weight: Float32Array;
}

/** Options of {@linkcode affineWarp}. */
export interface AffineWarpOptions {
  /**
   * Mirror torchvision's numeric-fill blend (`out * mask` for fill 0, the mask being the
   * warped all-ones channel): border pixels are scaled by their in-bounds weight once more.
   * `false` gives plain `grid_sample` zero padding.
   * @default {true}
   */
  fillMask?: boolean;
}

/**
 * The bilinear warp of an affine transform about the centre, as torchvision's
 * `F.affine(img, angle, translate, scale=1, shear, BILINEAR, fill=0)` on a tensor, except that
 * the translation is the given fraction of the size (torchvision's `RandomAffine` rounds
 * `fraction * size` to whole pixels before calling `F.affine`; pass rounded fractions to
 * reproduce that).
 *
 * @param height grid height (input and output)
 * @param width grid width
 * @param params rotation, translation fractions, shears
 * @param options fill-mask behaviour
 * @returns the sparse map
 * @throws {RangeError} for bad sizes or non-finite parameters
 */
export function affineWarp(
  height: number,
  width: number,
  params: AffineParams,
  options: AffineWarpOptions = {},
): SparseWarp {
  checkSize(height, "height");
  checkSize(width, "width");
  const angle = params.angle ?? 0, tx = params.translateX ?? 0, ty = params.translateY ?? 0;
  const shx = params.shearX ?? 0, shy = params.shearY ?? 0;
  for (const [k, v] of Object.entries({ angle, tx, ty, shx, shy })) {
    if (!Number.isFinite(v)) throw new RangeError(`Cannot build an affine warp with ${k} = ${v}`);
  }
  const m = inverseAffineMatrix(angle, [tx * width, ty * height], [shx, shy]);
  const fillMask = options.fillMask ?? true;
  const n = height * width;
  const index = new Int32Array(n * 4), weight = new Float32Array(n * 4);
  for (let r = 0; r < height; r++) {
    const qy = r + 0.5 - height / 2;
    for (let c = 0; c < width; c++) {
      const qx = c + 0.5 - width / 2;
      const px = m[0] * qx + m[1] * qy + m[2] + width / 2 - 0.5;
      const py = m[3] * qx + m[4] * qy + m[5] + height / 2 - 0.5;
      const x0 = Math.floor(px), y0 = Math.floor(py);
      const fx = px - x0, fy = py - y0;
      const taps: [number, number, number][] = [
        [y0, x0, (1 - fy) * (1 - fx)],
        [y0, x0 + 1, (1 - fy) * fx],
        [y0 + 1, x0, fy * (1 - fx)],
        [y0 + 1, x0 + 1, fy * fx],
      ];
      let inside = 0;
      for (const [yy, xx, w] of taps) {
        if (yy >= 0 && yy < height && xx >= 0 && xx < width) inside += w;
      }
      const o = (r * width + c) * 4;
      taps.forEach(([yy, xx, w], k) => {
        if (yy >= 0 && yy < height && xx >= 0 && xx < width) {
          index[o + k] = yy * width + xx;
          weight[o + k] = fillMask ? w * inside : w;
        }
      });
    }
  }
  return { inH: height, inW: width, outH: height, outW: width, taps: 4, index, weight };
}

/**
 * The identity map of a grid, or its horizontal mirror (one tap of weight 1 per pixel).
 * @param height grid height
 * @param width grid width
 * @param flip mirror the columns
 * @returns the map
 * @throws {RangeError} for bad sizes
 */
export function permutationWarp(height: number, width: number, flip = false): SparseWarp {
  checkSize(height, "height");
  checkSize(width, "width");
  const n = height * width;
  const index = new Int32Array(n), weight = new Float32Array(n).fill(1);
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) index[r * width + c] = r * width + (flip ? width - 1 - c : c);
  }
  return { inH: height, inW: width, outH: height, outW: width, taps: 1, index, weight };
}

/**
 * Separable resampling weights (e.g. a torch-exact bicubic crop-resize) as one sparse 2-D map:
 * output pixel `(i, j)` takes `rows[y, i] * cols[x, j]` from source pixel `(y, x)`.
 * @param rows weights along H, `[inH, outH]`
 * @param cols weights along W, `[inW, outW]`
 * @returns the map
 */
export function separableWarp(rows: AxisWeights, cols: AxisWeights): SparseWarp {
  const nz = (w: AxisWeights) =>
    Array.from({ length: w.outSize }, (_, o) => {
      const list: [number, number][] = [];
      for (let s = 0; s < w.inSize; s++) {
        const v = w.data[s * w.outSize + o];
        if (v !== 0) list.push([s, v]);
      }
      return list;
    });
  const ry = nz(rows), cx = nz(cols);
  const taps = Math.max(1, ...ry.map((l) => l.length)) * Math.max(1, ...cx.map((l) => l.length));
  const outH = rows.outSize, outW = cols.outSize, inW = cols.inSize;
  const index = new Int32Array(outH * outW * taps), weight = new Float32Array(outH * outW * taps);
  for (let i = 0; i < outH; i++) {
    for (let j = 0; j < outW; j++) {
      let t = (i * outW + j) * taps;
      for (const [y, wy] of ry[i]) {
        for (const [x, wx] of cx[j]) {
          index[t] = y * inW + x;
          weight[t++] = wy * wx;
        }
      }
    }
  }
  return { inH: rows.inSize, inW, outH, outW, taps, index, weight };
}

/**
 * The composition "apply `first`, then `second`" as one sparse map (the product of the two
 * linear maps, exact up to float32 rounding of the products).
 * @param first applied first
 * @param second applied to the result of `first`
 * @returns the composed map from `first`'s source grid to `second`'s target grid
 * @throws {TypeError} when `second` does not read `first`'s output grid
 */
export function composeWarps(first: SparseWarp, second: SparseWarp): SparseWarp {
  if (second.inH !== first.outH || second.inW !== first.outW) {
    throw new TypeError(
      `Cannot compose a warp to ${first.outH}x${first.outW} with one from ${second.inH}x${second.inW}`,
    );
  }
  const nOut = second.outH * second.outW;
  const rows: Map<number, number>[] = [];
  let taps = 1;
  for (let r = 0; r < nOut; r++) {
    const acc = new Map<number, number>();
    for (let t = r * second.taps; t < (r + 1) * second.taps; t++) {
      const w2 = second.weight[t];
      if (w2 === 0) continue;
      const mid = second.index[t];
      for (let u = mid * first.taps; u < (mid + 1) * first.taps; u++) {
        const w1 = first.weight[u];
        if (w1 === 0) continue;
        const src = first.index[u];
        acc.set(src, (acc.get(src) ?? 0) + w2 * w1);
      }
    }
    rows.push(acc);
    taps = Math.max(taps, acc.size);
  }
  const index = new Int32Array(nOut * taps), weight = new Float32Array(nOut * taps);
  rows.forEach((acc, r) => {
    let t = r * taps;
    for (const [src, w] of acc) {
      index[t] = src;
      weight[t++] = w;
    }
  });
  return {
    inH: first.inH,
    inW: first.inW,
    outH: second.outH,
    outW: second.outW,
    taps,
    index,
    weight,
  };
}

/**
 * The dense `[outH*outW, inH*inW]` matrix of a sparse warp (tests, small maps).
 * @param warp the warp
 * @returns row-major float32 matrix
 */
export function warpToDense(warp: SparseWarp): Float32Array {
  const nIn = warp.inH * warp.inW;
  const m = new Float32Array(warp.outH * warp.outW * nIn);
  for (let t = 0; t < warp.index.length; t++) {
    if (warp.weight[t] !== 0) m[Math.floor(t / warp.taps) * nIn + warp.index[t]] += warp.weight[t];
  }
  return m;
}

/**
 * The transposed structure of a warp, for the gather gradient: for each source pixel, the
 * output pixels that read it (padded with weight 0 to the largest count).
 */
function transposeWarp(w: SparseWarp): SparseWarp {
  const nIn = w.inH * w.inW;
  const counts = new Int32Array(nIn);
  for (let t = 0; t < w.index.length; t++) if (w.weight[t] !== 0) counts[w.index[t]]++;
  let k = 1;
  for (let i = 0; i < nIn; i++) k = Math.max(k, counts[i]);
  const index = new Int32Array(nIn * k), weight = new Float32Array(nIn * k);
  const fill = new Int32Array(nIn);
  for (let t = 0; t < w.index.length; t++) {
    if (w.weight[t] === 0) continue;
    const src = w.index[t];
    const slot = src * k + fill[src]++;
    index[slot] = Math.floor(t / w.taps);
    weight[slot] = w.weight[t];
  }
  return { inH: w.outH, inW: w.outW, outH: w.inH, outW: w.inW, taps: k, index, weight };
}

function gatherSum(
  x: tf.Tensor2D,
  index: tf.Tensor1D,
  weight: tf.Tensor2D,
  k: number,
): tf.Tensor2D {
  const n = x.shape[0], nOut = weight.shape[0];
  return tf.gather(x, index, 1).reshape([n, nOut, k]).mul(weight).sum(2) as tf.Tensor2D;
}

/** Options of {@linkcode applyWarp}. */
export interface ApplyWarpOptions {
  /**
   * `dense`: each map as a dense `[in, out]` matrix applied by matMul (fast for small grids);
   * `gather`: gathers of the taps (memory `O(out x taps)`, for large grids); `auto` picks
   * dense when the dense matrices hold at most 4M values and the grid has under 190 source
   * pixels per tap (where a matMul beats a gather on wasm).
   * @default {"auto"}
   */
  method?: "auto" | "dense" | "gather";
}

/**
 * Apply sparse maps to a batch: one map for all samples, or one per sample. Differentiable
 * with respect to `x`; the gradient is the transposed map, computed the same way
 * (`tf.image.transform` has no gradient; tfjs' gather gradient needs UnsortedSegmentSum,
 * which wasm lacks).
 *
 * @param x `[B, C, inH, inW]` float32 (not disposed)
 * @param warp one map, or an array of B maps (all with the same grid sizes)
 * @param options dense or gather application
 * @returns `[B, C, outH, outW]` float32, owned by the caller
 * @throws {TypeError} when a map does not fit the batch or the map count is not B
 */
export function applyWarp(
  x: tf.Tensor4D,
  warp: SparseWarp | readonly SparseWarp[],
  options: ApplyWarpOptions = {},
): tf.Tensor4D {
  const [B, C, H, W] = check4d(x, "warp input");
  const list = Array.isArray(warp) ? warp : [warp as SparseWarp];
  if (Array.isArray(warp) && warp.length !== B) {
    throw new TypeError(`Cannot warp ${B} samples with ${warp.length} warps`);
  }
  const { outH, outW } = list[0];
  for (const w of list) {
    if (w.inH !== H || w.inW !== W || w.outH !== outH || w.outW !== outW) {
      throw new TypeError(
        `Cannot warp a ${H}x${W} map with a warp from ${w.inH}x${w.inW} to ${w.outH}x${w.outW}`,
      );
    }
  }
  const nIn = H * W, nOut = outH * outW, G = list.length;
  const taps = Math.max(...list.map((w) => w.taps));
  const method = options.method ?? "auto";
  const dense = method === "dense" ||
    (method === "auto" && G * nIn * nOut <= 4_194_304 && nIn < 190 * taps);
  if (dense) return applyDense(x, list, nIn, nOut);
  // Several maps: one block-diagonal map over the flattened batch, x viewed as [C, B*nIn].
  let fw: SparseWarp;
  if (G === 1) {
    fw = list[0];
  } else {
    fw = {
      inH: G * H,
      inW: W,
      outH: G * outH,
      outW,
      taps,
      index: new Int32Array(G * nOut * taps),
      weight: new Float32Array(G * nOut * taps),
    };
    list.forEach((w, b) => {
      for (let r = 0; r < nOut; r++) {
        for (let k = 0; k < w.taps; k++) {
          fw.index[(b * nOut + r) * taps + k] = w.index[r * w.taps + k] + b * nIn;
          fw.weight[(b * nOut + r) * taps + k] = w.weight[r * w.taps + k];
        }
      }
    });
  }
  const tw = transposeWarp(fw);
  const totalIn = fw.inH * fw.inW, totalOut = fw.outH * fw.outW;
  // The constants are made inside the custom op and handed to its gradient through `save`
  // (tfjs keeps saved tensors alive until backprop ends and disposes them then).
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xs = args[0] as tf.Tensor2D, save = args[1] as tf.GradSaveFunc;
    const idx = tf.tensor1d(fw.index, "int32");
    const wts = tf.tensor2d(fw.weight, [totalOut, fw.taps]);
    const value = gatherSum(xs, idx, wts, fw.taps);
    save([tf.tensor1d(tw.index, "int32"), tf.tensor2d(tw.weight, [totalIn, tw.taps])]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) =>
      gatherSum(dy as tf.Tensor2D, saved[0] as tf.Tensor1D, saved[1] as tf.Tensor2D, tw.taps);
    return { value, gradFunc };
  });
  return tf.tidy(() => {
    const rows = G === 1
      ? x.reshape([B * C, nIn])
      : x.transpose([1, 0, 2, 3]).reshape([C, B * nIn]);
    const out = op(rows as tf.Tensor2D) as tf.Tensor2D;
    return (G === 1
      ? out.reshape([B, C, outH, outW])
      : out.reshape([C, B, outH, outW]).transpose([1, 0, 2, 3])) as tf.Tensor4D;
  });
}

/** Dense application: `x [B, C, nIn] @ M^T`, gradient `dy @ M`, both without transposes. */
function applyDense(
  x: tf.Tensor4D,
  list: readonly SparseWarp[],
  nIn: number,
  nOut: number,
): tf.Tensor4D {
  const [B, C] = x.shape;
  const G = list.length;
  const mT = new Float32Array(G * nIn * nOut), m = new Float32Array(G * nOut * nIn);
  list.forEach((w, g) => {
    for (let t = 0; t < w.index.length; t++) {
      const v = w.weight[t];
      if (v === 0) continue;
      const r = Math.floor(t / w.taps), s = w.index[t];
      mT[g * nIn * nOut + s * nOut + r] += v;
      m[g * nOut * nIn + r * nIn + s] += v;
    }
  });
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xs = args[0] as tf.Tensor, save = args[1] as tf.GradSaveFunc;
    const value = G === 1
      ? tf.matMul(xs as tf.Tensor2D, tf.tensor2d(mT, [nIn, nOut]))
      : tf.matMul(xs as tf.Tensor3D, tf.tensor3d(mT, [G, nIn, nOut]));
    save([G === 1 ? tf.tensor2d(m, [nOut, nIn]) : tf.tensor3d(m, [G, nOut, nIn])]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) =>
      G === 1
        ? tf.matMul(dy as tf.Tensor2D, saved[0] as tf.Tensor2D)
        : tf.matMul(dy as tf.Tensor3D, saved[0] as tf.Tensor3D);
    return { value, gradFunc };
  });
  return tf.tidy(() => {
    const rows = G === 1 ? x.reshape([B * C, nIn]) : x.reshape([B, C, nIn]);
    return op(rows).reshape([B, C, list[0].outH, list[0].outW]) as tf.Tensor4D;
  });
}
