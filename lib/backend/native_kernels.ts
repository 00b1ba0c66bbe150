/**
 * The C kernels (./native/kernels.c, built by ./native_build.ts) loaded through Deno FFI:
 * GELU, LayerNorm, softmax cross-entropy and the attention's softmax passes, OpenMP-threaded,
 * working in place on Float32Array views of the wasm heap. ./native_ops.ts calls them when
 * they are loaded ({@linkcode activeNativeKernels}) and its JS loops otherwise.
 *
 * `SEITPP_NATIVE_KERNELS=off` keeps the JS loops. libgomp's idle threads sleep instead of
 * spinning (`OMP_WAIT_POLICY=passive` while the library loads, unless the environment sets
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT): spinning OpenMP threads and OpenBLAS's own pool fight
 * over the cores (3-7x slower training steps measured on 2 busy cores).
 *
 * @module
 */
import { buildNativeKernels } from "./native_build.ts";

const SYMBOLS = {
  seitpp_abi: { parameters: [], result: "i32" },
  seitpp_set_threads: { parameters: ["i32"], result: "i32" },
  seitpp_gelu: { parameters: ["buffer", "buffer", "buffer", "i32"], result: "void" },
  seitpp_layer_norm: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "buffer", "buffer", "i32", "i32", "f64"],
    result: "void",
  },
  seitpp_layer_norm_grad: {
    parameters: [
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "i32",
      "i32",
    ],
    result: "i32",
  },
  seitpp_softmax_xent: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "i32", "i32", "f64"],
    result: "void",
  },
  seitpp_softmax_xent_grad: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "i32", "i32", "f64"],
    result: "void",
  },
  seitpp_softmax_rows: {
    parameters: ["buffer", "buffer", "buffer", "i32", "i32"],
    result: "void",
  },
  seitpp_mul: { parameters: ["buffer", "buffer", "buffer", "i32"], result: "void" },
  seitpp_softmax_rows_grad: {
    parameters: ["buffer", "buffer", "buffer", "i32", "i32"],
    result: "void",
  },
} as const satisfies Deno.ForeignLibraryInterface;

const ABI = 3;

/** The loaded C kernels; every array is a float32 (or int32 target) view, written in place. */
export interface NativeKernels {
  /** Path of the shared library. */
  readonly path: string;
  /** The compiler that built it. */
  readonly compiler: string;
  /** OpenMP threads per call. */
  readonly threads: number;
  /** `y = gelu(x)`, `d = gelu'(x)` (erf form, A&S 7.1.26). */
  gelu(x: Float32Array, y: Float32Array, d: Float32Array): void;
  /** LayerNorm over rows of `c`: y, xhat and rstd (one per row). */
  layerNorm(
    x: Float32Array,
    g: Float32Array,
    b: Float32Array,
    y: Float32Array,
    xhat: Float32Array,
    rstd: Float32Array,
    rows: number,
    c: number,
    eps: number,
  ): void;
  /** The LayerNorm gradient: dx, dgamma, dbeta (RangeError when its sums cannot be allocated). */
  layerNormGrad(
    dy: Float32Array,
    xhat: Float32Array,
    rstd: Float32Array,
    g: Float32Array,
    dx: Float32Array,
    dg: Float32Array,
    db: Float32Array,
    rows: number,
    c: number,
  ): void;
  /** Softmax cross-entropy per row (targets already checked to lie in `[0, k)`). */
  softmaxXent(
    x: Float32Array,
    targets: Int32Array,
    loss: Float32Array,
    probs: Float32Array,
    rows: number,
    k: number,
    smoothing: number,
  ): void;
  /** Its gradient with respect to the logits. */
  softmaxXentGrad(
    probs: Float32Array,
    targets: Int32Array,
    dy: Float32Array,
    grad: Float32Array,
    rows: number,
    k: number,
    smoothing: number,
  ): void;
  /**
   * Row softmax in place over `rows` rows of `n`; with a mask `m` also `used = softmax * m`
   * (both `null` for none).
   */
  softmaxRows(
    s: Float32Array,
    m: Float32Array | null,
    used: Float32Array | null,
    rows: number,
    n: number,
  ): void;
  /** `out = a * b` element-wise over `out.length` values. */
  mul(a: Float32Array, b: Float32Array, out: Float32Array): void;
  /** Softmax backward in place: `ds = p (dP m - rowsum(dP m p))` (m optional). */
  softmaxRowsGrad(
    ds: Float32Array,
    p: Float32Array,
    m: Float32Array | null,
    rows: number,
    n: number,
  ): void;
}

/** Why the C kernels are not in use (one line). */
export interface NativeKernelsUnavailable {
  /** One line saying why (also when turned off on purpose). */
  reason: string;
}

let active: NativeKernels | undefined;
const opened = new Map<string, Deno.DynamicLibrary<typeof SYMBOLS>>();

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Run `load` (the dlopen that starts libgomp, which reads its settings then) with
 * `OMP_WAIT_POLICY=passive` unless the environment already says how OpenMP threads wait;
 * the variable is removed again afterwards, so that child processes (the PyTorch baseline of
 * bench:train) keep their own defaults.
 */
function withWaitPolicy<T>(load: () => T): T {
  if (env("OMP_WAIT_POLICY") !== undefined || env("GOMP_SPINCOUNT") !== undefined) return load();
  let set = false;
  try {
    Deno.env.set("OMP_WAIT_POLICY", "passive");
    set = true;
  } catch {
    // without env permission libgomp spins a while before sleeping (its default)
  }
  try {
    return load();
  } finally {
    if (set) Deno.env.delete("OMP_WAIT_POLICY");
  }
}

function wrap(
  path: string,
  compiler: string,
  lib: Deno.DynamicLibrary<typeof SYMBOLS>,
  threads: number,
): NativeKernels {
  const s = lib.symbols;
  const used = s.seitpp_set_threads(threads);
  return {
    path,
    compiler,
    threads: used,
    gelu: (x, y, d) => s.seitpp_gelu(x, y, d, x.length),
    layerNorm: (x, g, b, y, xhat, rstd, rows, c, eps) =>
      s.seitpp_layer_norm(x, g, b, y, xhat, rstd, rows, c, eps),
    layerNormGrad: (dy, xhat, rstd, g, dx, dg, db, rows, c) => {
      if (s.seitpp_layer_norm_grad(dy, xhat, rstd, g, dx, dg, db, rows, c) !== 0) {
        throw new RangeError(
          `Native LayerNorm gradient: cannot allocate the sums for ${c} channels`,
        );
      }
    },
    softmaxXent: (x, t, loss, probs, rows, k, sm) =>
      s.seitpp_softmax_xent(x, t, loss, probs, rows, k, sm),
    softmaxXentGrad: (p, t, dy, g, rows, k, sm) =>
      s.seitpp_softmax_xent_grad(p, t, dy, g, rows, k, sm),
    softmaxRows: (v, m, used, rows, n) => s.seitpp_softmax_rows(v, m, used, rows, n),
    mul: (a, b, out) => s.seitpp_mul(a, b, out, out.length),
    softmaxRowsGrad: (ds, p, m, rows, n) => s.seitpp_softmax_rows_grad(ds, p, m, rows, n),
  };
}

/** A known answer through the library: softmax([0, ln 3]) and gelu(0), gelu'(0). */
function selfCheck(k: NativeKernels): string | undefined {
  const v = new Float32Array([0, Math.log(3)]);
  k.softmaxRows(v, null, null, 1, 2);
  const x = new Float32Array([0, 1]);
  const y = new Float32Array(2);
  const d = new Float32Array(2);
  k.gelu(x, y, d);
  const err = Math.max(
    Math.abs(v[0] - 0.25),
    Math.abs(v[1] - 0.75),
    Math.abs(y[0]),
    Math.abs(d[0] - 0.5),
    Math.abs(y[1] - 0.8413447),
  );
  return err < 1e-5 ? undefined : `its self-check computed a wrong answer (max error ${err})`;
}

/**
 * Build (or take from the cache) and load the C kernels, with `threads` OpenMP threads.
 * Never throws for a missing compiler, a failed build, a library that does not load or a
 * missing `--allow-ffi`: it returns why instead, so that the JS kernels can run.
 *
 * @param threads threads per call (the BLAS's count), >= 1
 * @returns the kernels, or why there are none
 * @throws {RangeError} for an unknown `SEITPP_NATIVE_KERNELS` value
 */
export async function loadNativeKernels(
  threads: number,
): Promise<NativeKernels | NativeKernelsUnavailable> {
  const setting = env("SEITPP_NATIVE_KERNELS") ?? "auto";
  if (setting === "off") return { reason: "turned off (SEITPP_NATIVE_KERNELS=off)" };
  if (setting !== "auto" && setting !== "on") {
    throw new RangeError(
      `Invalid SEITPP_NATIVE_KERNELS="${setting}": expected auto, on or off`,
    );
  }
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      return { reason: "FFI is not permitted (run deno with --allow-ffi or -A)" };
    }
  } catch {
    return { reason: "FFI is not permitted (run deno with --allow-ffi or -A)" };
  }
  const built = await buildNativeKernels();
  if ("reason" in built) return built;
  let lib = opened.get(built.path);
  if (lib === undefined) {
    try {
      lib = withWaitPolicy(() => Deno.dlopen(built.path, SYMBOLS));
    } catch (e) {
      return { reason: `cannot load ${built.path}: ${(e as Error).message.split("\n")[0]}` };
    }
    const abi = lib.symbols.seitpp_abi();
    if (abi !== ABI) {
      lib.close();
      return { reason: `${built.path} has interface ${abi}, expected ${ABI}` };
    }
    opened.set(built.path, lib);
  }
  const kernels = wrap(built.path, built.compiler, lib, Math.max(1, Math.floor(threads)));
  const wrong = selfCheck(kernels);
  return wrong === undefined ? kernels : { reason: `${built.path}: ${wrong}` };
}

/**
 * Make `kernels` the ones ./native_ops.ts uses (`undefined`: its JS loops).
 *
 * @param kernels loaded kernels, or undefined
 */
export function setNativeKernels(kernels: NativeKernels | undefined): void {
  active = kernels;
}

/** The C kernels in use now, if any. */
export function activeNativeKernels(): NativeKernels | undefined {
  return active;
}
