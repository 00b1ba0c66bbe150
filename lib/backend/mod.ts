/**
 * Tensor backends: choose one, verify it with a tiny computation, say which one runs;
 * on wasm, matrix multiplies on a system BLAS through Deno FFI when one loads.
 *
 * @module
 */
export * from "./backend.ts";
export {
  type Blas,
  blasCandidates,
  type BlasRequest,
  type BlasUnavailable,
  loadBlas,
  type LoadBlasOptions,
} from "./blas.ts";
export { activeBlas, installBlasKernels, uninstallBlasKernels } from "./blas_kernels.ts";
export {
  nativeAttention,
  nativeAttentionGrad,
  nativeGelu,
  nativeLayerNorm,
  nativeLayerNormGrad,
  nativeOpsActive,
  nativeSoftmaxCrossEntropy,
  nativeSoftmaxCrossEntropyGrad,
} from "./native_ops.ts";
