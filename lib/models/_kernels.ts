/**
 * Row-level data movement (split a tensor along its first axis, gather rows) that is
 * fast on every backend.
 *
 * Why this exists: tfjs-backend-wasm 4.22 implements `Slice` by copying the WHOLE input
 * out of the wasm heap for every slice (`readSync`), so `tf.unstack` of a [96, 118, 64]
 * tensor costs ~100-200 ms, and its `GatherV2` moves one element at a time (~40 ms for
 * 3000 rows of 192). Attention on wasm needs many 2-D slices (batched matMul there runs
 * at ~2 GFLOP/s against ~25 GFLOP/s for plain 2-D matMul), and masking gathers rows.
 * On wasm these functions run two small kernels registered here, which copy rows
 * directly between heap views (memcpy speed); on every other backend they are plain
 * `tf.unstack` / `tf.gather`.
 *
 * The kernels have no registered gradient: use them inside `tf.customGrad` (as
 * `./ops.ts` does) or outside of gradient recording.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

const UNSTACK = "SeitppUnstack0";
const GATHER_ROWS = "SeitppGatherRows";
const SPLIT_ROWS = "SeitppSplitRows";

/** The parts of tfjs-backend-wasm's BackendWasm these kernels use (pinned tfjs 4.22). */
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array; asm?: { memory?: unknown } };
  dataIdMap: { get(dataId: unknown): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

function elementBytes(dtype: tf.DataType): number {
  if (dtype === "float32" || dtype === "int32") return 4;
  if (dtype === "bool") return 1;
  throw new TypeError(`Cannot move rows of a ${dtype} tensor`);
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function unstackKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown },
): tf.TensorInfo[] {
  const x = args.inputs.x as tf.TensorInfo;
  const backend = args.backend as WasmBackendLike;
  const inner = x.shape.slice(1);
  const bytes = sizeOf(inner) * elementBytes(x.dtype);
  const outs: tf.TensorInfo[] = [];
  for (let i = 0; i < x.shape[0]; i++) {
    const out = backend.makeOutput(inner, x.dtype);
    // makeOutput may grow the heap: take fresh views after it.
    const heap = backend.wasm.HEAPU8;
    const src = backend.dataIdMap.get(x.dataId).memoryOffset + i * bytes;
    const dst = backend.dataIdMap.get(out.dataId).memoryOffset;
    heap.copyWithin(dst, src, src + bytes);
    outs.push(out);
  }
  return outs;
}

function gatherRowsKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown },
): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  const indices = args.inputs.indices as tf.TensorInfo;
  const backend = args.backend as WasmBackendLike;
  const rows = x.shape[0];
  const n = indices.shape[0];
  const rowBytes = sizeOf(x.shape.slice(1)) * elementBytes(x.dtype);
  const out = backend.makeOutput([n, ...x.shape.slice(1)], x.dtype);
  const heap = backend.wasm.HEAPU8;
  const idxOff = backend.dataIdMap.get(indices.dataId).memoryOffset;
  const idx = new Int32Array(heap.buffer, idxOff, n);
  const src = backend.dataIdMap.get(x.dataId).memoryOffset;
  const dst = backend.dataIdMap.get(out.dataId).memoryOffset;
  for (let i = 0; i < n; i++) {
    const r = idx[i];
    if (!(r >= 0 && r < rows)) {
      throw new RangeError(`Cannot gather row ${r} (index ${i}) of a tensor with ${rows} rows`);
    }
    heap.copyWithin(dst + i * rowBytes, src + r * rowBytes, src + (r + 1) * rowBytes);
  }
  return out;
}

function splitRowsKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap },
): tf.TensorInfo[] {
  const x = args.inputs.x as tf.TensorInfo;
  const sizes = args.attrs.sizes as number[];
  const backend = args.backend as WasmBackendLike;
  const inner = x.shape.slice(1);
  const rowBytes = sizeOf(inner) * elementBytes(x.dtype);
  const outs: tf.TensorInfo[] = [];
  let row = 0;
  for (const n of sizes) {
    const out = backend.makeOutput([n, ...inner], x.dtype);
    // makeOutput may grow the heap: take fresh views after it.
    const heap = backend.wasm.HEAPU8;
    const src = backend.dataIdMap.get(x.dataId).memoryOffset + row * rowBytes;
    const dst = backend.dataIdMap.get(out.dataId).memoryOffset;
    heap.copyWithin(dst, src, src + n * rowBytes);
    outs.push(out);
    row += n;
  }
  return outs;
}

let registered = false;

function useWasmKernels(): boolean {
  if (tf.getBackend() !== "wasm") return false;
  if (!registered) {
    for (
      const [kernelName, kernelFunc] of [
        [UNSTACK, unstackKernel],
        [GATHER_ROWS, gatherRowsKernel],
        [SPLIT_ROWS, splitRowsKernel],
      ] as const
    ) {
      if (tf.getKernel(kernelName, "wasm") === undefined) {
        tf.registerKernel({ kernelName, backendName: "wasm", kernelFunc: kernelFunc as never });
      }
    }
    registered = true;
  }
  return true;
}

/**
 * Split a tensor along axis 0 into its slices (like `tf.unstack(x, 0)`).
 *
 * @param x any float32/int32 tensor of rank >= 1
 * @returns `x.shape[0]` new tensors of shape `x.shape.slice(1)`, owned by the caller
 *   (no gradient is recorded on wasm: use inside `tf.customGrad`)
 */
export function unstack0(x: tf.Tensor): tf.Tensor[] {
  if (useWasmKernels()) {
    return tf.engine().runKernel(UNSTACK, { x }, {}) as tf.Tensor[];
  }
  return tf.unstack(x, 0);
}

/**
 * Gather whole rows (slices along axis 0) of a tensor.
 *
 * @param x the source, shape `[R, ...]`
 * @param indices int32 row indices in `[0, R)`, shape `[n]`
 * @returns `[n, ...]` with row i = `x[indices[i]]`, owned by the caller (no gradient is
 *   recorded on wasm: use inside `tf.customGrad`)
 * @throws {RangeError} on wasm for an index outside `[0, R)` (other backends: tfjs's own check)
 */
export function gatherRows(x: tf.Tensor, indices: tf.Tensor1D): tf.Tensor {
  if (indices.dtype !== "int32") {
    throw new TypeError(`Cannot gather rows with ${indices.dtype} indices: expected int32`);
  }
  if (useWasmKernels()) {
    return tf.engine().runKernel(GATHER_ROWS, { x, indices }, {}) as tf.Tensor;
  }
  return tf.gather(x, indices, 0);
}

/**
 * Whether batched matMul should be run as a loop of plain 2-D matMuls on this backend
 * (wasm: ~10x faster; cpu: no slower and more predictable). GPU backends batch.
 *
 * @returns true on `wasm` and `cpu`
 */
export function prefersSlicedMatMul(): boolean {
  const b = tf.getBackend();
  return b === "wasm" || b === "cpu";
}

/**
 * Split a tensor along axis 0 into consecutive blocks of rows (like
 * `tf.split(x, sizes, 0)`; tfjs-wasm's `Slice` copies the whole input for every block).
 *
 * @param x any float32/int32 tensor of rank >= 1
 * @param sizes rows per block, summing to `x.shape[0]`
 * @returns one new tensor per block, owned by the caller (no gradient is recorded on wasm:
 *   use inside `tf.customGrad`)
 * @throws {RangeError} when the sizes do not sum to `x.shape[0]`
 */
export function splitRows(x: tf.Tensor, sizes: readonly number[]): tf.Tensor[] {
  if (
    sizes.some((n) => !(Number.isInteger(n) && n >= 0)) ||
    sizes.reduce((a, b) => a + b, 0) !== x.shape[0]
  ) {
    throw new RangeError(`Cannot split ${x.shape[0]} rows into blocks of [${sizes}]`);
  }
  if (useWasmKernels()) {
    return tf.engine().runKernel(SPLIT_ROWS, { x }, { sizes: [...sizes] }) as tf.Tensor[];
  }
  return tf.split(x, [...sizes], 0);
}

/**
 * A new float32 tensor whose values `fill` writes. On wasm, `fill` writes straight into
 * the tensor's memory on the wasm heap (no host array, no upload copy); elsewhere into a
 * host array that becomes the tensor.
 *
 * @param shape the tensor's shape
 * @param fill writes all `size(shape)` values into the view it gets (it must not run tfjs
 *   ops); on wasm it also gets the `WebAssembly.Memory` that the view is on, else `null`
 * @returns the tensor, owned by the caller
 */
export function filledTensor(
  shape: number[],
  fill: (values: Float32Array, memory: WebAssembly.Memory | null) => void,
): tf.Tensor {
  const n = sizeOf(shape);
  if (tf.getBackend() !== "wasm") {
    const values = new Float32Array(n);
    fill(values, null);
    return tf.tensor(values, shape, "float32");
  }
  const backend = tf.backend() as unknown as WasmBackendLike;
  const info = backend.makeOutput(shape, "float32");
  // makeOutput may grow the heap: take the view after it.
  const offset = backend.dataIdMap.get(info.dataId).memoryOffset;
  const memory = backend.wasm.asm?.memory;
  fill(
    new Float32Array(backend.wasm.HEAPU8.buffer, offset, n),
    memory instanceof WebAssembly.Memory ? memory : null,
  );
  return tf.engine().makeTensorFromTensorInfo(info);
}
