/**
 * Finding and loading a system BLAS (OpenBLAS, MKL, Apple Accelerate) through Deno FFI,
 * for the wasm backend's matrix multiplies (see ./blas_kernels.ts).
 *
 * @module
 */

/** Which BLAS to load: `auto` searches the usual places, `off` loads none, anything else is a library path or name. */
export type BlasRequest = "auto" | "off" | (string & Record<never, never>);

/** The FFI symbols used from a CBLAS library. */
const CBLAS_SYMBOLS = {
  cblas_sgemm: {
    // order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** Optional thread-control symbols, looked up one by one (a library may lack them). */
const THREAD_SYMBOLS = {
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  MKL_Set_Num_Threads: { parameters: ["i32"], result: "void", optional: true },
  MKL_Get_Max_Threads: { parameters: [], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

type BlasSymbols = typeof CBLAS_SYMBOLS & typeof THREAD_SYMBOLS;

/** A loaded CBLAS: single-precision GEMM on typed arrays, and its thread setting. */
export interface Blas {
  /** The path or name that was loaded, e.g. `libopenblas.so.0`. */
  readonly path: string;
  /** A short name of the implementation, e.g. `OpenBLAS 0.3.21` or `MKL`. */
  readonly vendor: string;
  /** Threads the library uses (as far as it can say; 0 when unknown). */
  readonly threads: number;
  /**
   * Row-major `C = alpha op(A) op(B) + beta C` (`cblas_sgemm`), on float32 views that may
   * live on a WebAssembly heap.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
}

/** Options of {@linkcode loadBlas}. */
export interface LoadBlasOptions {
  /**
   * Which library: `auto` (the environment variable `SEITPP_BLAS` if set, else the usual
   * places), `off`, or a path/name given to `Deno.dlopen`.
   * @default {"auto"}
   */
  blas?: BlasRequest;
  /**
   * Threads for the BLAS: a positive count, or 0 for all logical cores. Without it the
   * environment variable `SEITPP_BLAS_THREADS` is used, else all cores.
   * @default {0}
   */
  threads?: number;
}

/** Why no BLAS was loaded (`off` asked for, FFI not permitted, or no library found). */
export interface BlasUnavailable {
  /** One line saying why; `undefined` when the BLAS was turned off on purpose. */
  reason: string | undefined;
}

/** Library names tried in order by `auto`, per operating system. */
export function blasCandidates(os: typeof Deno.build.os = Deno.build.os): string[] {
  switch (os) {
    case "darwin":
      return [
        "/System/Library/Frameworks/Accelerate.framework/Versions/A/Frameworks/vecLib.framework/Versions/A/libBLAS.dylib",
        "/System/Library/Frameworks/Accelerate.framework/Accelerate",
        "libopenblas.dylib",
        "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
        "/usr/local/opt/openblas/lib/libopenblas.dylib",
        "libmkl_rt.dylib",
      ];
    case "windows":
      return ["libopenblas.dll", "openblas.dll", "mkl_rt.2.dll", "mkl_rt.dll"];
    default:
      return [
        "libopenblas.so.0",
        "libopenblas.so",
        "libmkl_rt.so.2",
        "libmkl_rt.so",
        "libblis.so.4",
        "libcblas.so.3",
      ];
  }
}

function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no env permission: the option or the default decides
  }
}

function ffiPermitted(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

function resolveThreads(threads: number | undefined): number {
  const fromEnv = envGet("SEITPP_BLAS_THREADS");
  const t = threads ?? (fromEnv === undefined ? 0 : Number(fromEnv));
  if (!Number.isInteger(t) || t < 0) {
    throw new RangeError(
      `Invalid BLAS thread count ${
        threads === undefined ? `SEITPP_BLAS_THREADS="${fromEnv}"` : t
      }: ` +
        "expected a whole number >= 0 (0 = all cores)",
    );
  }
  return t === 0 ? Math.max(1, navigator.hardwareConcurrency || 1) : t;
}

function open(path: string): Deno.DynamicLibrary<BlasSymbols> {
  return Deno.dlopen(path, { ...CBLAS_SYMBOLS, ...THREAD_SYMBOLS });
}

function wrap(path: string, lib: Deno.DynamicLibrary<BlasSymbols>, threads: number): Blas {
  const s = lib.symbols;
  let vendor = "CBLAS";
  let actual = 0;
  if (s.openblas_set_num_threads) {
    s.openblas_set_num_threads(threads);
    actual = s.openblas_get_num_threads?.() ?? threads;
    const cfg = s.openblas_get_config?.();
    const text = cfg ? new Deno.UnsafePointerView(cfg).getCString() : "OpenBLAS";
    vendor = text.split(" ").slice(0, 2).join(" ");
  } else if (s.MKL_Set_Num_Threads) {
    s.MKL_Set_Num_Threads(threads);
    actual = s.MKL_Get_Max_Threads?.() ?? threads;
    vendor = "MKL";
  } else if (/Accelerate|vecLib/.test(path)) {
    vendor = "Accelerate";
  }
  const sgemm = s.cblas_sgemm;
  return {
    path,
    vendor,
    threads: actual,
    sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      // 101 = CblasRowMajor, 111 = CblasNoTrans, 112 = CblasTrans
      sgemm(
        101,
        transA ? 112 : 111,
        transB ? 112 : 111,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      );
    },
  };
}

/** Libraries already opened, by path (opening one twice would only add a handle). */
const opened = new Map<string, Deno.DynamicLibrary<BlasSymbols>>();

/**
 * Load a CBLAS through Deno FFI and set its thread count.
 *
 * Never throws for a missing library or a missing `--allow-ffi`: it returns why instead,
 * so that the caller can run without it.
 *
 * @param options which library and how many threads
 * @returns the loaded BLAS, or why there is none
 * @throws {RangeError} for an invalid thread count
 *
 * @example
 * ```ts
 * import { loadBlas } from "./blas.ts";
 * const r = loadBlas({ blas: "off" });
 * console.assert("reason" in r && r.reason === undefined);
 * ```
 */
export function loadBlas(options: LoadBlasOptions = {}): Blas | BlasUnavailable {
  const request = options.blas ?? "auto";
  const threads = resolveThreads(options.threads);
  const chosen = request === "auto" ? (envGet("SEITPP_BLAS") ?? "auto") : request;
  if (chosen === "off") return { reason: undefined };
  const via = request === "auto" && chosen !== "auto" ? " (from SEITPP_BLAS)" : "";
  if (!ffiPermitted()) {
    return { reason: "FFI is not permitted (run deno with --allow-ffi or -A)" };
  }
  const candidates = chosen === "auto" ? blasCandidates() : [chosen];
  const failures: string[] = [];
  for (const path of candidates) {
    let lib = opened.get(path);
    if (lib === undefined) {
      try {
        lib = open(path);
      } catch (e) {
        failures.push(
          `${path}: ${
            (e as Error).message.split("\n")[0].replace(/^(Could not open library: )+/, "")
          }`,
        );
        continue;
      }
      opened.set(path, lib);
    }
    return wrap(path, lib, threads);
  }
  return {
    reason: chosen === "auto"
      ? `no BLAS library found (tried ${candidates.join(", ")}; on Debian/Ubuntu: ` +
        "apt-get install libopenblas0-pthread)"
      : `cannot load "${chosen}"${via} (${failures[0]})`,
  };
}
