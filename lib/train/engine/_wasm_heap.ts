/**
 * Direct access to float32 tensors on the wasm backend's heap, for the engine's one-pass
 * loops (the fused AdamW step, the data-parallel parameter and gradient exchange).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";

/** The parts of tfjs-backend-wasm's `BackendWasm` used here (pinned tfjs 4.22). */
export interface WasmHeapBackend {
  wasm: { HEAPU8: Uint8Array; asm?: { memory?: unknown } };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  refCount(dataId: object): number;
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
}

/** @returns the wasm backend when it is the active backend, else `null` */
export function activeWasm(): WasmHeapBackend | null {
  if (tf.getBackend() !== "wasm") return null;
  const b = tf.backend() as unknown as Partial<WasmHeapBackend>;
  return b.wasm?.HEAPU8 !== undefined && b.dataIdMap !== undefined &&
      typeof b.refCount === "function"
    ? b as WasmHeapBackend
    : null;
}

/**
 * A view of a float32 tensor's values on the wasm heap. Valid until the next tfjs
 * allocation (which may grow the heap and detach the buffer): take views after allocating.
 *
 * @param b the active wasm backend
 * @param t a tensor (or a kernel's tensor info)
 * @returns the view, or `null` when `t` is not a float32 tensor on that backend
 */
export function heapView(b: WasmHeapBackend, t: tf.TensorInfo): Float32Array | null {
  if (t.dtype !== "float32") return null;
  const d = b.dataIdMap.get(t.dataId);
  if (d === undefined) return null;
  let n = 1;
  for (const s of t.shape) n *= s;
  return new Float32Array(b.wasm.HEAPU8.buffer, d.memoryOffset, n);
}

/**
 * @param b the active wasm backend
 * @returns its `WebAssembly.Memory` (the heap), or `null` where the build does not expose it
 */
export function heapMemory(b: WasmHeapBackend): WebAssembly.Memory | null {
  const m = b.wasm.asm?.memory;
  return m instanceof WebAssembly.Memory ? m : null;
}

/**
 * Give a variable a buffer of its own when another tensor shares it (copy on write), so
 * that writing into its heap view changes nothing else.
 *
 * @param b the active wasm backend
 * @param x the variable
 */
export function ownBuffer(b: WasmHeapBackend, x: tf.Variable): void {
  if (b.refCount(x.dataId) <= 1) return;
  const copy = tf.mul(x, 1);
  x.assign(copy);
  copy.dispose();
}
