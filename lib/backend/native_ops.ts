/**
 * Fused kernels for the wasm backend when a BLAS runs its matMuls (./blas_kernels.ts):
 * multi-head attention forward and backward straight from / into the fused qkv matrix
 * (strided BLAS calls, no head split/merge transposes, softmax in one pass), and an
 * `Identity` that shares the input's memory (as tfjs's cpu backend does) instead of
 * copying it.
 *
 * Each kernel runs the C kernels of ./native_kernels.ts (OpenMP threads) when they are
 * loaded, else a single-threaded JS loop computing the same values.
 *
 * Models call {@linkcode nativeAttention} / {@linkcode nativeAttentionGrad} only when
 * {@linkcode nativeOpsActive} says so; elsewhere they use plain tfjs ops.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { activeBlas } from "./blas_kernels.ts";
import type { Blas } from "./blas.ts";
import { activeNativeKernels, type NativeKernels } from "./native_kernels.ts";

const ATTENTION = "SeitppBlasAttention";
const ATTENTION_GRAD = "SeitppBlasAttentionGrad";
const GELU = "SeitppGelu";
const LAYER_NORM = "SeitppLayerNorm";
const SOFTMAX_XENT = "SeitppSoftmaxXent";
const SOFTMAX_XENT_GRAD = "SeitppSoftmaxXentGrad";
const LAYER_NORM_GRAD = "SeitppLayerNormGrad";

/** The parts of tfjs-backend-wasm's `BackendWasm` these kernels use. */
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
  incRef(dataId: object): void;
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function view(backend: WasmBackendLike, t: tf.TensorInfo, buffer: ArrayBufferLike): Float32Array {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined) {
    throw new TypeError(
      `Native attention: tensor of shape [${t.shape}] is not on the wasm backend`,
    );
  }
  return new Float32Array(buffer, data.memoryOffset, size(t.shape));
}

function requireBlas(): Blas {
  const blas = activeBlas();
  if (blas === undefined) {
    throw new TypeError("Native attention kernels need the wasm backend's BLAS (initBackend)");
  }
  return blas;
}

let scratch = new Float32Array(0);
function scratchOf(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch.subarray(0, n);
}

/** One (batch, head) block of the fused qkv matrix: n rows, head width hd, model width c. */
interface Block {
  n: number;
  hd: number;
  c: number;
  /** the row stride of qkv (3 c) */
  c3: number;
}

/** `out = scale q k^T` for the block whose q starts at `row0` of `x`. */
function blockScores(
  blas: Blas,
  g: Block,
  x: Float32Array,
  row0: number,
  scale: number,
  out: Float32Array,
): void {
  const { n, hd, c, c3 } = g;
  blas.sgemm(
    false,
    true,
    n,
    n,
    hd,
    scale,
    x.subarray(row0),
    c3,
    x.subarray(row0 + c),
    c3,
    0,
    out,
    n,
  );
}

/** `out = a v` (rows of `out` strided by c). */
function blockValues(
  blas: Blas,
  g: Block,
  a: Float32Array,
  x: Float32Array,
  row0: number,
  out: Float32Array,
): void {
  const { n, hd, c, c3 } = g;
  blas.sgemm(false, false, n, hd, n, 1, a, n, x.subarray(row0 + 2 * c), c3, 0, out, c);
}

/** `dv = a^T dO` into `dx`, and `dP = dO v^T` into `dP`. */
function blockGradValues(
  blas: Blas,
  g: Block,
  a: Float32Array,
  dO: Float32Array,
  x: Float32Array,
  row0: number,
  dx: Float32Array,
  dP: Float32Array,
): void {
  const { n, hd, c, c3 } = g;
  blas.sgemm(true, false, n, hd, n, 1, a, n, dO, c, 0, dx.subarray(row0 + 2 * c), c3);
  blas.sgemm(false, true, n, n, hd, 1, dO, c, x.subarray(row0 + 2 * c), c3, 0, dP, n);
}

/** `dq = scale dS k` and `dk = scale dS^T q` into `dx`. */
function blockGradQK(
  blas: Blas,
  g: Block,
  dS: Float32Array,
  x: Float32Array,
  row0: number,
  scale: number,
  dx: Float32Array,
): void {
  const { n, hd, c, c3 } = g;
  blas.sgemm(
    false,
    false,
    n,
    hd,
    n,
    scale,
    dS,
    n,
    x.subarray(row0 + c),
    c3,
    0,
    dx.subarray(row0),
    c3,
  );
  blas.sgemm(
    true,
    false,
    n,
    hd,
    n,
    scale,
    dS,
    n,
    x.subarray(row0),
    c3,
    0,
    dx.subarray(row0 + c),
    c3,
  );
}

interface AttentionAttrs {
  batch: number;
  seq: number;
  heads: number;
  scale: number;
}

function attentionKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: unknown },
): tf.TensorInfo[] {
  const blas = requireBlas();
  const { batch, seq, heads, scale } = args.attrs as unknown as AttentionAttrs;
  const backend = args.backend as WasmBackendLike;
  const qkv = args.inputs.qkv as tf.TensorInfo;
  const mask = args.inputs.mask as tf.TensorInfo | undefined;
  const c3 = qkv.shape[1];
  const c = c3 / 3;
  const hd = c / heads;
  const g: Block = { n: seq, hd, c, c3 };
  const n = seq;
  const out = backend.makeOutput([batch * n, c], "float32");
  const probs = backend.makeOutput([batch * heads, n, n], "float32");
  const buffer = backend.wasm.HEAPU8.buffer; // after the allocations (the heap may grow)
  const x = view(backend, qkv, buffer);
  const o = view(backend, out, buffer);
  const p = view(backend, probs, buffer);
  const m = mask === undefined ? undefined : view(backend, mask, buffer);
  const native = activeNativeKernels();
  if (native !== undefined) {
    attentionNative(native, blas, { batch, seq, heads, scale }, c, x, o, p, m);
    return [out, probs];
  }
  const used = m === undefined ? undefined : scratchOf(n * n);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const row0 = b * n * c3 + h * hd;
      const pOff = (b * heads + h) * n * n;
      const pbh = p.subarray(pOff, pOff + n * n);
      // scores = scale q k^T, straight from the strided q and k columns of qkv
      blockScores(blas, g, x, row0, scale, pbh);
      for (let i = 0; i < n; i++) {
        const r = i * n;
        let max = -Infinity;
        for (let j = 0; j < n; j++) if (pbh[r + j] > max) max = pbh[r + j];
        let sum = 0;
        for (let j = 0; j < n; j++) {
          const e = Math.exp(pbh[r + j] - max);
          pbh[r + j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let j = 0; j < n; j++) pbh[r + j] *= inv;
      }
      let a = pbh;
      if (m !== undefined && used !== undefined) {
        for (let i = 0; i < n * n; i++) used[i] = pbh[i] * m[pOff + i];
        a = used;
      }
      blockValues(blas, g, a, x, row0, o.subarray(b * n * c + h * hd));
    }
  }
  return [out, probs];
}

/**
 * Scratch floats per chunk of attention blocks: 256K (1 MB, twice that in the backward), so
 * that a chunk stays in cache between its BLAS calls and its C pass (measured: chunks of 1M
 * or 4M floats were 10-40% slower on the bench shapes, one block per chunk about the same).
 */
let chunkFloats = 1 << 18;

/**
 * Set the chunk size of the C attention path (for tests: chunks of a few blocks).
 *
 * @param floats scratch floats per chunk, >= 1
 * @returns the previous value
 */
export function setAttentionChunkFloats(floats: number): number {
  const previous = chunkFloats;
  chunkFloats = Math.max(1, Math.floor(floats));
  return previous;
}

/** Attention blocks per C call: their scratch stays under {@linkcode chunkFloats}. */
function blocksPerChunk(n: number, blocks: number): number {
  return Math.max(1, Math.min(blocks, Math.floor(chunkFloats / Math.max(1, n * n))));
}

let chunkScratch = new Float32Array(0);
function chunkScratchOf(n: number): Float32Array {
  if (chunkScratch.length < n) chunkScratch = new Float32Array(n);
  return chunkScratch.subarray(0, n);
}

/**
 * Attention forward with the C kernels, in chunks of (batch, head) blocks: the chunk's
 * scores (BLAS), one threaded C pass for their softmax (and `P * mask`), then the chunk's
 * `P v` (BLAS). Few switches between the BLAS's threads and OpenMP's.
 */
function attentionNative(
  k: NativeKernels,
  blas: Blas,
  { batch, seq: n, heads, scale }: AttentionAttrs,
  c: number,
  x: Float32Array,
  o: Float32Array,
  p: Float32Array,
  m: Float32Array | undefined,
): void {
  const c3 = 3 * c;
  const hd = c / heads;
  const g: Block = { n, hd, c, c3 };
  const nn = n * n;
  const blocks = batch * heads;
  const chunk = blocksPerChunk(n, blocks);
  const used = m === undefined ? undefined : chunkScratchOf(chunk * nn);
  for (let first = 0; first < blocks; first += chunk) {
    const last = Math.min(blocks, first + chunk);
    for (let i = first; i < last; i++) {
      const b = Math.floor(i / heads);
      const row0 = b * n * c3 + (i % heads) * hd;
      const pbh = p.subarray(i * nn, (i + 1) * nn);
      blockScores(blas, g, x, row0, scale, pbh);
    }
    k.softmaxRows(
      p.subarray(first * nn, last * nn),
      m === undefined ? null : m.subarray(first * nn, last * nn),
      used ?? null,
      (last - first) * n,
      n,
    );
    for (let i = first; i < last; i++) {
      const b = Math.floor(i / heads);
      const h = i % heads;
      const row0 = b * n * c3 + h * hd;
      const a = used === undefined
        ? p.subarray(i * nn, (i + 1) * nn)
        : used.subarray((i - first) * nn, (i - first + 1) * nn);
      blockValues(blas, g, a, x, row0, o.subarray(b * n * c + h * hd));
    }
  }
}

/**
 * Attention backward with the C kernels, in chunks of blocks: `dv` and `dP` (BLAS), one
 * threaded C pass for the softmax backward with the dropout mask, then `dq` and `dk` (BLAS).
 */
function attentionGradNative(
  k: NativeKernels,
  blas: Blas,
  { batch, seq: n, heads, scale }: AttentionAttrs,
  c: number,
  x: Float32Array,
  dy: Float32Array,
  p: Float32Array,
  m: Float32Array | undefined,
  dx: Float32Array,
): void {
  const c3 = 3 * c;
  const hd = c / heads;
  const g: Block = { n, hd, c, c3 };
  const nn = n * n;
  const blocks = batch * heads;
  const chunk = blocksPerChunk(n, blocks);
  const work = chunkScratchOf((m === undefined ? 1 : 2) * chunk * nn);
  const dS = work.subarray(0, chunk * nn);
  const used = m === undefined ? undefined : work.subarray(chunk * nn);
  for (let first = 0; first < blocks; first += chunk) {
    const last = Math.min(blocks, first + chunk);
    const pc = p.subarray(first * nn, last * nn);
    const mc = m === undefined ? null : m.subarray(first * nn, last * nn);
    if (mc !== null && used !== undefined) k.mul(pc, mc, used.subarray(0, (last - first) * nn));
    for (let i = first; i < last; i++) {
      const b = Math.floor(i / heads);
      const h = i % heads;
      const row0 = b * n * c3 + h * hd;
      const j = i - first;
      const a = used === undefined
        ? p.subarray(i * nn, (i + 1) * nn)
        : used.subarray(j * nn, (j + 1) * nn);
      const dO = dy.subarray(b * n * c + h * hd);
      blockGradValues(blas, g, a, dO, x, row0, dx, dS.subarray(j * nn, (j + 1) * nn));
    }
    k.softmaxRowsGrad(dS.subarray(0, (last - first) * nn), pc, mc, (last - first) * n, n);
    for (let i = first; i < last; i++) {
      const b = Math.floor(i / heads);
      const h = i % heads;
      const row0 = b * n * c3 + h * hd;
      const j = i - first;
      const dSb = dS.subarray(j * nn, (j + 1) * nn);
      blockGradQK(blas, g, dSb, x, row0, scale, dx);
    }
  }
}

function attentionGradKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: unknown },
): tf.TensorInfo {
  const blas = requireBlas();
  const { batch, seq, heads, scale } = args.attrs as unknown as AttentionAttrs;
  const backend = args.backend as WasmBackendLike;
  const dyT = args.inputs.dy as tf.TensorInfo;
  const qkv = args.inputs.qkv as tf.TensorInfo;
  const probs = args.inputs.probs as tf.TensorInfo;
  const mask = args.inputs.mask as tf.TensorInfo | undefined;
  const c3 = qkv.shape[1];
  const c = c3 / 3;
  const hd = c / heads;
  const g: Block = { n: seq, hd, c, c3 };
  const n = seq;
  const dqkv = backend.makeOutput([batch * n, c3], "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const x = view(backend, qkv, buffer);
  const dy = view(backend, dyT, buffer);
  const p = view(backend, probs, buffer);
  const dx = view(backend, dqkv, buffer);
  const m = mask === undefined ? undefined : view(backend, mask, buffer);
  const native = activeNativeKernels();
  if (native !== undefined) {
    attentionGradNative(native, blas, { batch, seq, heads, scale }, c, x, dy, p, m, dx);
    return dqkv;
  }
  const work = scratchOf(2 * n * n);
  const dS = work.subarray(0, n * n);
  const used = work.subarray(n * n);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const row0 = b * n * c3 + h * hd;
      const pOff = (b * heads + h) * n * n;
      const pbh = p.subarray(pOff, pOff + n * n);
      const dO = dy.subarray(b * n * c + h * hd);
      let a = pbh;
      if (m !== undefined) {
        for (let i = 0; i < n * n; i++) used[i] = pbh[i] * m[pOff + i];
        a = used;
      }
      // dv = P_used^T dO, dP = dO v^T (then the dropout mask)
      blockGradValues(blas, g, a, dO, x, row0, dx, dS);
      if (m !== undefined) { for (let i = 0; i < n * n; i++) dS[i] *= m[pOff + i]; }
      // dS = P (dP - rowsum(dP P))
      for (let i = 0; i < n; i++) {
        const r = i * n;
        let dot = 0;
        for (let j = 0; j < n; j++) dot += dS[r + j] * pbh[r + j];
        for (let j = 0; j < n; j++) dS[r + j] = pbh[r + j] * (dS[r + j] - dot);
      }
      // dq = scale dS k, dk = scale dS^T q
      blockGradQK(blas, g, dS, x, row0, scale, dx);
    }
  }
  return dqkv;
}

// Abramowitz & Stegun 7.1.26 (|error of erf| <= 1.5e-7), as lib/models/ops.ts's gelu.
const ERF_P = 0.3275911;
const [A1, A2, A3, A4, A5] = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429];
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** GELU (erf form) and its derivative `Phi(x) + x phi(x)` in one pass. */
function geluKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown },
): tf.TensorInfo[] {
  const backend = args.backend as WasmBackendLike;
  const xT = args.inputs.x as tf.TensorInfo;
  const y = backend.makeOutput(xT.shape, "float32");
  const d = backend.makeOutput(xT.shape, "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const x = view(backend, xT, buffer);
  const yv = view(backend, y, buffer);
  const dv = view(backend, d, buffer);
  const native = activeNativeKernels();
  if (native !== undefined) {
    native.gelu(x, yv, dv);
    return [y, d];
  }
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const z = Math.abs(v) * Math.SQRT1_2;
    const t = 1 / (1 + ERF_P * z);
    const poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    const gauss = Math.exp(-0.5 * v * v);
    const tail = 0.5 * poly * gauss; // Phi(-|x|)
    const cdf = v > 0 ? 1 - tail : tail;
    yv[i] = v * cdf;
    dv[i] = cdf + v * gauss * INV_SQRT_2PI;
  }
  return [y, d];
}

/** LayerNorm over the last axis: `[y, xhat, rstd]` in one pass per row. */
function layerNormKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: unknown },
): tf.TensorInfo[] {
  const backend = args.backend as WasmBackendLike;
  const { eps } = args.attrs as unknown as { eps: number };
  const xT = args.inputs.x as tf.TensorInfo;
  const [rows, c] = xT.shape;
  const y = backend.makeOutput([rows, c], "float32");
  const xhat = backend.makeOutput([rows, c], "float32");
  const rstd = backend.makeOutput([rows, 1], "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const x = view(backend, xT, buffer);
  const g = view(backend, args.inputs.gamma as tf.TensorInfo, buffer);
  const bt = view(backend, args.inputs.beta as tf.TensorInfo, buffer);
  const yv = view(backend, y, buffer);
  const hv = view(backend, xhat, buffer);
  const rv = view(backend, rstd, buffer);
  const native = activeNativeKernels();
  if (native !== undefined) {
    native.layerNorm(x, g, bt, yv, hv, rv, rows, c, eps);
    return [y, xhat, rstd];
  }
  for (let r = 0; r < rows; r++) {
    const o = r * c;
    let mean = 0;
    for (let j = 0; j < c; j++) mean += x[o + j];
    mean /= c;
    let v = 0;
    for (let j = 0; j < c; j++) {
      const d = x[o + j] - mean;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / c + eps);
    rv[r] = rs;
    for (let j = 0; j < c; j++) {
      const h = (x[o + j] - mean) * rs;
      hv[o + j] = h;
      yv[o + j] = h * g[j] + bt[j];
    }
  }
  return [y, xhat, rstd];
}

/** The LayerNorm gradient: `[dx, dgamma, dbeta]` from dy, xhat, rstd and gamma. */
function layerNormGradKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown },
): tf.TensorInfo[] {
  const backend = args.backend as WasmBackendLike;
  const dyT = args.inputs.dy as tf.TensorInfo;
  const [rows, c] = dyT.shape;
  const dx = backend.makeOutput([rows, c], "float32");
  const dg = backend.makeOutput([c], "float32");
  const db = backend.makeOutput([c], "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const dy = view(backend, dyT, buffer);
  const h = view(backend, args.inputs.xhat as tf.TensorInfo, buffer);
  const rs = view(backend, args.inputs.rstd as tf.TensorInfo, buffer);
  const g = view(backend, args.inputs.gamma as tf.TensorInfo, buffer);
  const dxv = view(backend, dx, buffer);
  const native = activeNativeKernels();
  if (native !== undefined) {
    const dgv = view(backend, dg, buffer);
    const dbv = view(backend, db, buffer);
    native.layerNormGrad(dy, h, rs, g, dxv, dgv, dbv, rows, c);
    return [dx, dg, db];
  }
  const sg = new Float64Array(c);
  const sb = new Float64Array(c);
  for (let r = 0; r < rows; r++) {
    const o = r * c;
    let m1 = 0;
    let m2 = 0;
    for (let j = 0; j < c; j++) {
      const d = dy[o + j];
      const dxh = d * g[j];
      m1 += dxh;
      m2 += dxh * h[o + j];
      sg[j] += d * h[o + j];
      sb[j] += d;
    }
    m1 /= c;
    m2 /= c;
    const rr = rs[r];
    for (let j = 0; j < c; j++) {
      dxv[o + j] = rr * (dy[o + j] * g[j] - m1 - h[o + j] * m2);
    }
  }
  view(backend, dg, buffer).set(sg);
  view(backend, db, buffer).set(sb);
  return [dx, dg, db];
}

function indices(backend: WasmBackendLike, t: tf.TensorInfo, buffer: ArrayBufferLike): Int32Array {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined || t.dtype !== "int32") {
    throw new TypeError(`Native cross-entropy: targets must be int32 on the wasm backend`);
  }
  return new Int32Array(buffer, data.memoryOffset, size(t.shape));
}

function checkTargets(t: Int32Array, k: number): void {
  for (let r = 0; r < t.length; r++) {
    const target = t[r];
    if (!(target >= 0 && target < k)) {
      throw new RangeError(`Cannot take class ${target} (row ${r}) of ${k} logits`);
    }
  }
}

/** Per-row softmax cross-entropy with label smoothing: `[loss [N], probs [N, K]]`. */
function softmaxXentKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: unknown },
): tf.TensorInfo[] {
  const backend = args.backend as WasmBackendLike;
  const { smoothing } = args.attrs as unknown as { smoothing: number };
  const xT = args.inputs.x as tf.TensorInfo;
  const [rows, k] = xT.shape;
  const loss = backend.makeOutput([rows], "float32");
  const probs = backend.makeOutput([rows, k], "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const x = view(backend, xT, buffer);
  const t = indices(backend, args.inputs.targets as tf.TensorInfo, buffer);
  const lv = view(backend, loss, buffer);
  const pv = view(backend, probs, buffer);
  checkTargets(t, k);
  const native = activeNativeKernels();
  if (native !== undefined) {
    native.softmaxXent(x, t, lv, pv, rows, k, smoothing);
    return [loss, probs];
  }
  for (let r = 0; r < rows; r++) {
    const o = r * k;
    const target = t[r];
    let max = -Infinity;
    for (let j = 0; j < k; j++) if (x[o + j] > max) max = x[o + j];
    let sum = 0;
    let zsum = 0;
    for (let j = 0; j < k; j++) {
      const z = x[o + j] - max;
      zsum += z;
      const e = Math.exp(z);
      pv[o + j] = e;
      sum += e;
    }
    const lse = Math.log(sum);
    const inv = 1 / sum;
    for (let j = 0; j < k; j++) pv[o + j] *= inv;
    const nll = lse - (x[o + target] - max);
    lv[r] = smoothing > 0 ? (1 - smoothing) * nll + smoothing * (lse - zsum / k) : nll;
  }
  return [loss, probs];
}

/** Its gradient: `(probs - (1-s) onehot - s/K) * dy[row]`. */
function softmaxXentGradKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: unknown },
): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { smoothing } = args.attrs as unknown as { smoothing: number };
  const pT = args.inputs.probs as tf.TensorInfo;
  const [rows, k] = pT.shape;
  const grad = backend.makeOutput([rows, k], "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const p = view(backend, pT, buffer);
  const t = indices(backend, args.inputs.targets as tf.TensorInfo, buffer);
  const dy = view(backend, args.inputs.dy as tf.TensorInfo, buffer);
  const g = view(backend, grad, buffer);
  checkTargets(t, k);
  const native = activeNativeKernels();
  if (native !== undefined) {
    native.softmaxXentGrad(p, t, dy, g, rows, k, smoothing);
    return grad;
  }
  const off = smoothing / k;
  for (let r = 0; r < rows; r++) {
    const o = r * k;
    const d = dy[r];
    for (let j = 0; j < k; j++) g[o + j] = (p[o + j] - off) * d;
    g[o + t[r]] -= (1 - smoothing) * d;
  }
  return grad;
}

/** Identity without a copy: the output shares the input's memory (reference counted). */
function identityKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown },
): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  (args.backend as WasmBackendLike).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

let identityOriginal: tf.KernelConfig | undefined;
let registered = false;

/**
 * Register the native kernels for the wasm backend (idempotent); called by
 * {@linkcode initBackend} when a BLAS loads. The copy-free Identity replaces wasm's own
 * until {@linkcode removeNativeOps}.
 */
export function registerNativeOps(): void {
  if (!registered) {
    for (
      const [kernelName, kernelFunc] of [
        [ATTENTION, attentionKernel],
        [ATTENTION_GRAD, attentionGradKernel],
        [GELU, geluKernel],
        [LAYER_NORM, layerNormKernel],
        [LAYER_NORM_GRAD, layerNormGradKernel],
        [SOFTMAX_XENT, softmaxXentKernel],
        [SOFTMAX_XENT_GRAD, softmaxXentGradKernel],
      ] as const
    ) {
      if (tf.getKernel(kernelName, "wasm") === undefined) {
        tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: kernelFunc as never });
      }
    }
    registered = true;
  }
  if (identityOriginal === undefined) {
    const original = tf.getKernel("Identity", "wasm");
    if (original !== undefined) {
      identityOriginal = original;
      tf.unregisterKernel("Identity", "wasm");
      tf.registerKernel({
        kernelName: "Identity",
        backendName: "wasm",
        kernelFunc: identityKernel as never,
      });
    }
  }
}

/**
 * Turn the fused kernels off: {@linkcode nativeOpsActive} answers false and the wasm
 * backend gets its own Identity back (with a BLAS, `SEITPP_NATIVE_OPS=off` does this, to
 * compare the two paths).
 */
export function removeNativeOps(): void {
  registered = false;
  if (identityOriginal !== undefined) {
    tf.unregisterKernel("Identity", "wasm");
    tf.registerKernel(identityOriginal);
    identityOriginal = undefined;
  }
}

/**
 * Whether the fused native kernels can run now: the active backend is wasm and its
 * matMuls run on a BLAS.
 *
 * @returns true when {@linkcode nativeAttention} may be called
 */
export function nativeOpsActive(): boolean {
  return registered && activeBlas() !== undefined && tf.getBackend() === "wasm";
}

function checkQkv(qkv: tf.Tensor2D, batch: number, seq: number, heads: number): void {
  if (qkv.dtype !== "float32" || qkv.shape[0] !== batch * seq || qkv.shape[1] % (3 * heads) !== 0) {
    throw new TypeError(
      `Cannot run native attention with batch ${batch}, sequence ${seq}, ${heads} heads on ` +
        `${qkv.dtype} qkv [${qkv.shape}]`,
    );
  }
}

/**
 * Multi-head attention from a fused qkv projection (timm's layout: channel
 * `t*C + h*hd + e` is part t of head h): `softmax(scale q k^T)`, times the dropout mask if
 * given, times v, heads merged.
 *
 * @param qkv `[B*N, 3*C]` float32
 * @param batch B
 * @param seq N
 * @param heads H
 * @param scale the score scale (usually `hd^-0.5`)
 * @param mask optional dropout mask `[B*H, N, N]` float32 (0 or `1/(1-p)`)
 * @returns `[out, probs]`: `[B*N, C]` and the softmax before dropout `[B*H, N, N]`, both
 *   owned by the caller; no gradient is recorded (use inside `tf.customGrad`)
 * @throws {TypeError} for sizes that do not fit or without the wasm BLAS
 */
export function nativeAttention(
  qkv: tf.Tensor2D,
  batch: number,
  seq: number,
  heads: number,
  scale: number,
  mask?: tf.Tensor3D,
): [tf.Tensor2D, tf.Tensor3D] {
  checkQkv(qkv, batch, seq, heads);
  const inputs: tf.NamedTensorMap = mask === undefined ? { qkv } : { qkv, mask };
  const attrs = { batch, seq, heads, scale };
  return tf.engine().runKernel(ATTENTION, inputs, attrs as never) as unknown as [
    tf.Tensor2D,
    tf.Tensor3D,
  ];
}

/**
 * The gradient of {@linkcode nativeAttention} with respect to qkv.
 *
 * @param dy `[B*N, C]` gradient of the output
 * @param qkv the forward input `[B*N, 3*C]`
 * @param probs the forward's softmax `[B*H, N, N]`
 * @param batch B
 * @param seq N
 * @param heads H
 * @param scale the forward's scale
 * @param mask the forward's dropout mask, if any
 * @returns `[B*N, 3*C]` float32, owned by the caller
 * @throws {TypeError} for sizes that do not fit or without the wasm BLAS
 */
export function nativeAttentionGrad(
  dy: tf.Tensor2D,
  qkv: tf.Tensor2D,
  probs: tf.Tensor3D,
  batch: number,
  seq: number,
  heads: number,
  scale: number,
  mask?: tf.Tensor3D,
): tf.Tensor2D {
  checkQkv(qkv, batch, seq, heads);
  const inputs: tf.NamedTensorMap = mask === undefined
    ? { dy, qkv, probs }
    : { dy, qkv, probs, mask };
  const attrs = { batch, seq, heads, scale };
  return tf.engine().runKernel(ATTENTION_GRAD, inputs, attrs as never) as tf.Tensor2D;
}

/**
 * GELU (erf form, A&S 7.1.26 for erf) and its derivative, in one pass over the wasm heap.
 *
 * @param x any float32 tensor
 * @returns `[gelu(x), gelu'(x)]`, same shape, owned by the caller; no gradient is recorded
 *   (use inside `tf.customGrad`)
 * @throws {TypeError} for a non-float32 input
 */
export function nativeGelu<T extends tf.Tensor>(x: T): [T, T] {
  if (x.dtype !== "float32") throw new TypeError(`Cannot apply native GELU to ${x.dtype} input`);
  return tf.engine().runKernel(GELU, { x }, {}) as unknown as [T, T];
}

/**
 * LayerNorm over the last axis (biased variance), in one pass per row on the wasm heap.
 *
 * @param x `[N, C]` float32
 * @param gamma `[C]` scale
 * @param beta `[C]` shift
 * @param eps added to the variance
 * @returns `[y, xhat, rstd]`: `[N, C]`, `[N, C]`, `[N, 1]`, owned by the caller; no
 *   gradient is recorded (use inside `tf.customGrad`)
 */
export function nativeLayerNorm(
  x: tf.Tensor2D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
): [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D] {
  return tf.engine().runKernel(LAYER_NORM, { x, gamma, beta }, { eps } as never) as unknown as [
    tf.Tensor2D,
    tf.Tensor2D,
    tf.Tensor2D,
  ];
}

/**
 * The gradient of {@linkcode nativeLayerNorm}.
 *
 * @param dy `[N, C]` gradient of y
 * @param xhat the forward's normalized input `[N, C]`
 * @param rstd the forward's `1/sqrt(var + eps)` `[N, 1]`
 * @param gamma `[C]` scale
 * @returns `[dx, dgamma, dbeta]`: `[N, C]`, `[C]`, `[C]`, owned by the caller
 */
export function nativeLayerNormGrad(
  dy: tf.Tensor2D,
  xhat: tf.Tensor2D,
  rstd: tf.Tensor2D,
  gamma: tf.Tensor1D,
): [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D] {
  return tf.engine().runKernel(LAYER_NORM_GRAD, { dy, xhat, rstd, gamma }, {}) as unknown as [
    tf.Tensor2D,
    tf.Tensor1D,
    tf.Tensor1D,
  ];
}

/**
 * Per-row softmax cross-entropy with label smoothing `s`:
 * `(1-s) * nll + s * mean_k(-log p_k)`, in one pass over the logits on the wasm heap.
 *
 * @param x logits `[N, K]` float32
 * @param targets `[N]` int32 class indices
 * @param smoothing label smoothing in [0, 1)
 * @returns `[loss, probs]`: `[N]` and the softmax `[N, K]`, owned by the caller; no
 *   gradient is recorded (use inside `tf.customGrad`)
 * @throws {RangeError} (when run) for a target outside `[0, K)`
 */
export function nativeSoftmaxCrossEntropy(
  x: tf.Tensor2D,
  targets: tf.Tensor1D,
  smoothing: number,
): [tf.Tensor1D, tf.Tensor2D] {
  return tf.engine().runKernel(SOFTMAX_XENT, { x, targets }, { smoothing } as never) as unknown as [
    tf.Tensor1D,
    tf.Tensor2D,
  ];
}

/**
 * The gradient of {@linkcode nativeSoftmaxCrossEntropy} with respect to the logits.
 *
 * @param dy `[N]` gradient of the per-row loss
 * @param probs the forward's softmax `[N, K]`
 * @param targets `[N]` int32 class indices
 * @param smoothing the forward's label smoothing
 * @returns `[N, K]` float32, owned by the caller
 */
export function nativeSoftmaxCrossEntropyGrad(
  dy: tf.Tensor1D,
  probs: tf.Tensor2D,
  targets: tf.Tensor1D,
  smoothing: number,
): tf.Tensor2D {
  return tf.engine().runKernel(
    SOFTMAX_XENT_GRAD,
    { dy, probs, targets },
    { smoothing } as never,
  ) as tf.Tensor2D;
}
