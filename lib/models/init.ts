/**
 * Parameter initializers drawing from an injected {@linkcode Rng}, and the fixed 2-D
 * sin-cos position tables.
 *
 * @module
 */
import type { Rng } from "../random/mod.ts";

/**
 * Xavier (Glorot) uniform, as `torch.nn.init.xavier_uniform_` on a Linear weight:
 * U(-a, a) with `a = sqrt(6 / (fanIn + fanOut))`.
 *
 * @param fanIn input features
 * @param fanOut output features
 * @param rng generator
 * @returns `fanIn * fanOut` values (layout-agnostic: i.i.d.)
 */
export function xavierUniform(fanIn: number, fanOut: number, rng: Rng): Float32Array {
  const a = Math.sqrt(6 / (fanIn + fanOut));
  return uniform(fanIn * fanOut, -a, a, rng);
}

/**
 * i.i.d. uniform values.
 * @param n how many
 * @param low lower bound
 * @param high upper bound
 * @param rng generator
 * @returns the values
 */
export function uniform(n: number, low: number, high: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = low + (high - low) * rng.uniform();
  return out;
}

/**
 * i.i.d. normal values N(0, std).
 * @param n how many
 * @param std standard deviation
 * @param rng generator
 * @returns the values
 */
export function normal(n: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * rng.normal();
  return out;
}

/**
 * timm's `trunc_normal_(std)`: N(0, std) truncated to the ABSOLUTE interval [-2, 2]
 * (not +-2 std; for std 0.02 that is effectively untruncated).
 * @param n how many
 * @param std standard deviation
 * @param rng generator
 * @returns the values
 */
export function truncNormal(n: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.truncatedNormal(0, std, -2, 2);
  return out;
}

/**
 * PyTorch's default Conv2d initialization (`kaiming_uniform_(a=sqrt(5))` for the weight,
 * U(-1/sqrt(fanIn), 1/sqrt(fanIn)) for the bias), fanIn = inChannels * kernel^2.
 *
 * @param outChannels O
 * @param inChannels C
 * @param kernel kernel side k
 * @param rng generator
 * @returns weight values in PyTorch layout `[O, C, k, k]` and bias `[O]`
 */
export function conv2dDefault(
  outChannels: number,
  inChannels: number,
  kernel: number,
  rng: Rng,
): { weight: Float32Array; bias: Float32Array } {
  const fanIn = inChannels * kernel * kernel;
  const bound = 1 / Math.sqrt(fanIn);
  const weight = uniform(outChannels * fanIn, -bound, bound, rng);
  const bias = uniform(outChannels, -bound, bound, rng);
  return { weight, bias };
}

/**
 * The fixed 2-D sin-cos position table of MAE (`get_2d_sincos_pos_embed`), computed in
 * float64 and rounded to float32. For grid position (row i, column j) at index `i*G + j`:
 * channels `[0, D/4)` hold `sin(j w_c)`, `[D/4, D/2)` `cos(j w_c)`, `[D/2, 3D/4)`
 * `sin(i w_c)`, `[3D/4, D)` `cos(i w_c)`, with `w_c = 10000^(-c/(D/4))`: the first
 * half encodes the column. With `clsToken`, a row of zeros comes first.
 *
 * @param dim embedding width D (divisible by 4)
 * @param gridSide G
 * @param clsToken prepend a zero row
 * @returns `[(clsToken ? 1 : 0) + G*G, D]` row-major values
 * @throws {RangeError} when D is not divisible by 4
 */
export function sincos2d(dim: number, gridSide: number, clsToken: boolean): Float32Array {
  if (dim % 4 !== 0) {
    throw new RangeError(`Cannot build a 2-D sin-cos table of width ${dim}: not divisible by 4`);
  }
  const quarter = dim / 4;
  const off = clsToken ? 1 : 0;
  const out = new Float32Array((off + gridSide * gridSide) * dim);
  const omega = new Float64Array(quarter);
  for (let c = 0; c < quarter; c++) omega[c] = 1 / Math.pow(10000, c / quarter);
  for (let i = 0; i < gridSide; i++) {
    for (let j = 0; j < gridSide; j++) {
      const row = (off + i * gridSide + j) * dim;
      for (let c = 0; c < quarter; c++) {
        out[row + c] = Math.sin(j * omega[c]);
        out[row + quarter + c] = Math.cos(j * omega[c]);
        out[row + 2 * quarter + c] = Math.sin(i * omega[c]);
        out[row + 3 * quarter + c] = Math.cos(i * omega[c]);
      }
    }
  }
  return out;
}
