/**
 * Tensor backends: choose one, verify it with a tiny computation, say which one runs;
 * on wasm, matrix multiplies on a system BLAS through Deno FFI when one loads, and the fused
 * ops on C kernels (OpenMP) built at first use.
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
  buildNativeKernels,
  compilerCandidates,
  NATIVE_CFLAGS,
  type NativeBuildFailure,
  nativeCacheDir,
  type NativeLibrary,
} from "./native_build.ts";
export {
  activeNativeKernels,
  loadNativeKernels,
  type NativeKernels,
  type NativeKernelsUnavailable,
  setNativeKernels,
} from "./native_kernels.ts";
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
