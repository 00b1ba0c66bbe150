/**
 * BatchMatMul and _FusedMatMul kernels for tfjs-backend-wasm that call a system BLAS
 * (./blas.ts) directly on the wasm heap: no copies, the BLAS's own threads.
 *
 * The kernels follow tfjs's definitions: inputs of rank >= 2 with broadcast batch
 * dimensions, `transposeA` / `transposeB`, and for `_FusedMatMul` a bias broadcast to the
 * output followed by an activation (`linear`, `relu`, `relu6`, `elu`, `leakyrelu` with
 * `leakyreluAlpha`, `prelu` with broadcast weights, `sigmoid`). Non-float32 inputs go to the
 * wasm backend's own kernels.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { Blas } from "./blas.ts";

/** The parts of tfjs-backend-wasm's `BackendWasm` these kernels use. */
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
}

const KERNELS = ["BatchMatMul", "_FusedMatMul"] as const;

/** The wasm backend's own kernels, kept while ours are registered. */
const originals = new Map<string, tf.KernelConfig>();
let active: Blas | undefined;

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of `shape` seen from `outShape` (0 where `shape` broadcasts). */
function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const strides = new Array<number>(outShape.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1, j = outShape.length - 1; i >= 0; i--, j--) {
    strides[j] = shape[i] === 1 ? 0 : s;
    s *= shape[i];
  }
  return strides;
}

/** Offsets (in elements) of each output batch's matrix within a broadcast input. */
function batchOffsets(
  inBatch: readonly number[],
  outBatch: readonly number[],
  matrixSize: number,
): Int32Array {
  const strides = broadcastStrides(inBatch, outBatch);
  const n = size(outBatch);
  const offsets = new Int32Array(n);
  const idx = new Array<number>(outBatch.length).fill(0);
  for (let i = 0; i < n; i++) {
    let o = 0;
    for (let d = 0; d < idx.length; d++) o += idx[d] * strides[d];
    offsets[i] = o * matrixSize;
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d] < outBatch[d]) break;
      idx[d] = 0;
    }
  }
  return offsets;
}

/**
 * For each row of `outShape` (all dims but the last), the element offset of the broadcast
 * `shape`'s row, and whether its last dim is 1 (one value per row).
 */
function rowSource(shape: readonly number[], outShape: readonly number[]) {
  const strides = broadcastStrides(shape, outShape);
  const lead = outShape.slice(0, -1);
  const rows = size(lead);
  const offsets = new Int32Array(rows);
  const idx = new Array<number>(lead.length).fill(0);
  for (let r = 0; r < rows; r++) {
    let o = 0;
    for (let d = 0; d < idx.length; d++) o += idx[d] * strides[d];
    offsets[r] = o;
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d] < lead[d]) break;
      idx[d] = 0;
    }
  }
  const last = shape.length === 0 ? 1 : shape[shape.length - 1];
  return { offsets, scalarPerRow: last === 1 };
}

function heapF32(
  backend: WasmBackendLike,
  t: tf.TensorInfo,
  buffer: ArrayBufferLike,
): Float32Array {
  const data = backend.dataIdMap.get(t.dataId);
  if (data === undefined) {
    throw new TypeError(`BLAS matMul: tensor of shape [${t.shape}] is not on the wasm backend`);
  }
  return new Float32Array(buffer, data.memoryOffset, size(t.shape));
}

function matMulInto(
  blas: Blas,
  backend: WasmBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transA: boolean,
  transB: boolean,
  bias: tf.TensorInfo | undefined,
): { out: tf.TensorInfo; buffer: ArrayBufferLike } {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const ka = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (ka !== kb) {
    throw new RangeError(
      `BLAS matMul: inner dimensions differ: a [${a.shape}] (transposeA ${transA}) and ` +
        `b [${b.shape}] (transposeB ${transB}) give ${ka} and ${kb}`,
    );
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
  const outShape = [...outBatch, m, n];
  // makeOutput may grow the wasm memory: take the heap buffer after it.
  const out = backend.makeOutput(outShape, "float32");
  const buffer = backend.wasm.HEAPU8.buffer;
  const av = heapF32(backend, a, buffer);
  const bv = heapF32(backend, b, buffer);
  const cv = heapF32(backend, out, buffer);
  if (cv.length === 0) return { out, buffer };
  let beta = 0;
  if (bias !== undefined && size(bias.shape) === n && bias.shape[bias.shape.length - 1] === n) {
    // one bias row for every output row (the usual [N] bias): copy it, then double the
    // filled part (a few large copies instead of one per row)
    cv.set(heapF32(backend, bias, buffer), 0);
    for (let filled = n; filled < cv.length; filled *= 2) {
      cv.copyWithin(filled, 0, Math.min(filled, cv.length - filled));
    }
    beta = 1;
  } else if (bias !== undefined) {
    const src = heapF32(backend, bias, buffer);
    const { offsets, scalarPerRow } = rowSource(bias.shape, outShape);
    for (let r = 0; r < offsets.length; r++) {
      if (scalarPerRow) cv.fill(src[offsets[r]], r * n, (r + 1) * n);
      else cv.set(src.subarray(offsets[r], offsets[r] + n), r * n);
    }
    beta = 1;
  } else if (ka === 0) {
    cv.fill(0);
  }
  if (ka === 0) return { out, buffer };
  const lda = transA ? m : ka;
  const ldb = transB ? ka : n;
  const batches = size(outBatch);
  const aMat = m * ka;
  const bMat = ka * n;
  if (size(bBatch) === 1 && !transA && size(aBatch) === batches) {
    // b is shared by every batch and a's matrices are stacked rows: one GEMM.
    blas.sgemm(false, transB, batches * m, n, ka, 1, av, lda, bv, ldb, beta, cv, n);
    return { out, buffer };
  }
  const aOff = batchOffsets(aBatch, outBatch, aMat);
  const bOff = batchOffsets(bBatch, outBatch, bMat);
  for (let i = 0; i < batches; i++) {
    blas.sgemm(
      transA,
      transB,
      m,
      n,
      ka,
      1,
      av.subarray(aOff[i], aOff[i] + aMat),
      lda,
      bv.subarray(bOff[i], bOff[i] + bMat),
      ldb,
      beta,
      cv.subarray(i * m * n, (i + 1) * m * n),
      n,
    );
  }
  return { out, buffer };
}

function applyActivation(
  backend: WasmBackendLike,
  out: tf.TensorInfo,
  buffer: ArrayBufferLike,
  activation: string,
  alpha: number,
  prelu: tf.TensorInfo | undefined,
): void {
  const v = heapF32(backend, out, buffer);
  const len = v.length;
  switch (activation) {
    case "linear":
      return;
    case "relu":
      for (let i = 0; i < len; i++) if (v[i] < 0) v[i] = 0;
      return;
    case "relu6":
      for (let i = 0; i < len; i++) v[i] = v[i] < 0 ? 0 : v[i] > 6 ? 6 : v[i];
      return;
    case "elu":
      for (let i = 0; i < len; i++) if (v[i] < 0) v[i] = Math.exp(v[i]) - 1;
      return;
    case "leakyrelu":
      for (let i = 0; i < len; i++) if (v[i] < 0) v[i] *= alpha;
      return;
    case "sigmoid":
      for (let i = 0; i < len; i++) v[i] = 1 / (1 + Math.exp(-v[i]));
      return;
    case "prelu": {
      if (prelu === undefined) {
        throw new TypeError("BLAS _FusedMatMul: activation prelu without preluActivationWeights");
      }
      const w = heapF32(backend, prelu, buffer);
      const n = out.shape[out.shape.length - 1];
      const { offsets, scalarPerRow } = rowSource(prelu.shape, out.shape);
      for (let r = 0; r < offsets.length; r++) {
        for (let j = 0; j < n; j++) {
          const i = r * n + j;
          if (v[i] < 0) v[i] *= w[offsets[r] + (scalarPerRow ? 0 : j)];
        }
      }
      return;
    }
    default:
      throw new RangeError(`BLAS _FusedMatMul: unknown activation "${activation}"`);
  }
}

function allFloat32(...ts: (tf.TensorInfo | undefined)[]): boolean {
  return ts.every((t) => t === undefined || t.dtype === "float32");
}

function makeConfig(name: (typeof KERNELS)[number], original: tf.KernelConfig): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = (args) => {
    const blas = active;
    const inputs = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const attrs = args.attrs as Record<string, unknown>;
    const { a, b, bias, preluActivationWeights } = inputs;
    if (blas === undefined || a === undefined || b === undefined) return original.kernelFunc(args);
    if (!allFloat32(a, b, bias, preluActivationWeights)) return original.kernelFunc(args);
    const backend = args.backend as unknown as WasmBackendLike;
    const transA = attrs.transposeA === true;
    const transB = attrs.transposeB === true;
    if (name === "BatchMatMul") {
      return matMulInto(blas, backend, a, b, transA, transB, undefined).out;
    }
    const { out, buffer } = matMulInto(blas, backend, a, b, transA, transB, bias);
    applyActivation(
      backend,
      out,
      buffer,
      String(attrs.activation ?? "linear"),
      Number(attrs.leakyreluAlpha ?? 0.2),
      preluActivationWeights,
    );
    return out;
  };
  return {
    kernelName: name,
    backendName: "wasm",
    setupFunc: original.setupFunc,
    disposeFunc: original.disposeFunc,
    kernelFunc,
  };
}

/**
 * Route the wasm backend's BatchMatMul and _FusedMatMul through `blas` (replacing a BLAS
 * installed before). The wasm backend must be registered (import of tfjs-backend-wasm).
 *
 * @param blas a loaded BLAS from {@linkcode loadBlas}
 * @throws {TypeError} when the wasm backend's own kernels are not registered
 */
export function installBlasKernels(blas: Blas): void {
  for (const name of KERNELS) {
    if (!originals.has(name)) {
      const original = tf.getKernel(name, "wasm");
      if (original === undefined) {
        throw new TypeError(
          `Cannot install BLAS kernels: the wasm backend has no "${name}" kernel registered ` +
            "(import @tensorflow/tfjs-backend-wasm first)",
        );
      }
      originals.set(name, original);
      tf.unregisterKernel(name, "wasm");
      tf.registerKernel(makeConfig(name, original));
    }
  }
  active = blas;
}

/** Give the wasm backend its own matMul kernels back (no-op when none were replaced). */
export function uninstallBlasKernels(): void {
  for (const [name, original] of originals) {
    tf.unregisterKernel(name, "wasm");
    tf.registerKernel(original);
  }
  originals.clear();
  active = undefined;
}

/** The BLAS the wasm backend's matMul kernels use now, if any. */
export function activeBlas(): Blas | undefined {
  return active;
}
