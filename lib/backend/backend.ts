/**
 * Choosing, loading and verifying the TensorFlow.js backend.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { type BlasRequest, loadBlas } from "./blas.ts";
import { installBlasKernels, uninstallBlasKernels } from "./blas_kernels.ts";
import { registerNativeOps, removeNativeOps } from "./native_ops.ts";
import { loadNativeKernels, setNativeKernels } from "./native_kernels.ts";

/** A backend that can be asked for. `auto` picks the best one that is present. */
export type BackendRequest = "auto" | "wasm" | "cpu" | "webgpu" | "tensorflow";

/** A backend that actually runs. */
export type BackendName = Exclude<BackendRequest, "auto">;

/** Every accepted value of {@linkcode BackendRequest}, for argument parsers. */
export const BACKEND_REQUESTS: readonly BackendRequest[] = [
  "auto",
  "wasm",
  "cpu",
  "webgpu",
  "tensorflow",
];

/** Options of {@linkcode initBackend}. */
export interface InitBackendOptions {
  /**
   * The backend to run on.
   * @default {"auto"}
   */
  backend?: BackendRequest;
  /**
   * Print one line saying which backend runs (and why, for `auto`) to stderr.
   * @default {false}
   */
  verbose?: boolean;
  /**
   * wasm only: the system BLAS that runs its matrix multiplies (through Deno FFI, on the
   * wasm heap). `auto` uses the environment variable `SEITPP_BLAS` (a library path or
   * `off`) if set, else OpenBLAS / MKL / Accelerate from the usual places; `off` keeps
   * tfjs-wasm's own single-threaded matMul; any other value is a library path. When no
   * BLAS loads (or `--allow-ffi` is missing) the plain wasm matMul runs and one line on
   * stderr says why.
   * @default {"auto"}
   */
  blas?: BlasRequest;
  /**
   * wasm only: threads for the BLAS; 0 = all logical cores. Without it the environment
   * variable `SEITPP_BLAS_THREADS` is used, else all cores.
   * @default {0}
   */
  blasThreads?: number;
}

/** What {@linkcode initBackend} found and started. */
export interface BackendInfo {
  /** What was asked for. */
  requested: BackendRequest;
  /** What actually runs (`tf.getBackend()` after verification). */
  name: BackendName;
  /** A one-line human description, e.g. `wasm (SIMD, 1 thread)`. */
  description: string;
  /** For `auto`: why each better backend was skipped. Empty otherwise. */
  skipped: string[];
  /** tfjs version in use. */
  tfjsVersion: string;
  /**
   * wasm: the BLAS running matMul (e.g. `OpenBLAS 0.3.21 (libopenblas.so.0, 2 threads)`),
   * or `undefined` for tfjs-wasm's own matMul (and on other backends).
   */
  blas?: string;
  /** wasm: why no BLAS runs (`undefined` when one runs or when it was turned off). */
  blasSkipped?: string;
  /**
   * wasm with a BLAS: the C kernels running GELU, LayerNorm, cross-entropy and the
   * attention's softmax (e.g. `C kernels (gcc ..., 2 OpenMP threads)`), or `undefined`
   * when the JS kernels run.
   */
  nativeKernels?: string;
  /** wasm with a BLAS: why the JS kernels run instead of the C ones. */
  nativeKernelsSkipped?: string;
}

/** A backend that was asked for explicitly cannot run here. */
export class BackendUnavailableError extends Error {
  /** The backend that was asked for. */
  readonly backend: BackendName;
  /**
   * @param backend the backend that was asked for
   * @param message what is missing, how to get it, and what to run instead
   */
  constructor(backend: BackendName, message: string) {
    super(message);
    this.name = "BackendUnavailableError";
    this.backend = backend;
  }
}

const HINTS: Record<BackendName, string> = {
  tensorflow: "install it in the project with `deno add npm:@tensorflow/tfjs-node-gpu@4.22.0` " +
    "(or tfjs-node for CPU), then `deno approve-scripts`; it needs libtensorflow 2.9.1 " +
    "(CUDA 11.2 and cuDNN 8.1 for the GPU build)",
  webgpu: "Deno exposes WebGPU through Vulkan/Metal; on Debian without a GPU install " +
    "`mesa-vulkan-drivers libvulkan1` (lavapipe runs WebGPU on the CPU)",
  wasm: "the wasm binaries come with npm:@tensorflow/tfjs-backend-wasm; run `deno install` " +
    "in the project root so that node_modules/ holds them",
  cpu: "the cpu backend is part of @tensorflow/tfjs and should always load",
};

const FALLBACK: Record<BackendName, string> = {
  tensorflow: "--backend webgpu or --backend wasm",
  webgpu: "--backend wasm",
  wasm: "--backend cpu",
  cpu: "nothing: the installation is broken",
};

function unavailable(backend: BackendName, why: string): BackendUnavailableError {
  return new BackendUnavailableError(
    backend,
    `Backend "${backend}" is unavailable: ${why}. To get it: ${HINTS[backend]}. ` +
      `What runs instead: ${FALLBACK[backend]}.`,
  );
}

let wasmPathsSet = false;

function findWasmDir(): string | undefined {
  const candidates = [
    new URL("../../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url),
  ];
  try {
    candidates.push(
      new URL(`file://${Deno.cwd()}/node_modules/@tensorflow/tfjs-backend-wasm/dist/`),
    );
  } catch {
    // no cwd permission: only the module-relative location is tried
  }
  for (const url of candidates) {
    if (url.protocol !== "file:") continue;
    try {
      Deno.statSync(new URL("tfjs-backend-wasm-simd.wasm", url));
      return url.href;
    } catch {
      // try the next location
    }
  }
  return undefined;
}

function tensorflowPackageDir(): string | undefined {
  for (const pkg of ["tfjs-node-gpu", "tfjs-node"]) {
    for (
      const base of [
        new URL("../../node_modules/@tensorflow/", import.meta.url),
        new URL(`file://${Deno.cwd()}/node_modules/@tensorflow/`),
      ]
    ) {
      try {
        const dir = new URL(`${pkg}/`, base);
        Deno.statSync(new URL("package.json", dir));
        return `npm:@tensorflow/${pkg}@4.22.0`;
      } catch {
        // not there
      }
    }
  }
  return undefined;
}

async function loadTensorflow(): Promise<void> {
  const spec = tensorflowPackageDir();
  if (spec === undefined) {
    throw unavailable("tensorflow", "neither @tensorflow/tfjs-node-gpu nor tfjs-node is installed");
  }
  try {
    await import(spec);
  } catch (e) {
    throw unavailable("tensorflow", `${spec} failed to load (${(e as Error).message})`);
  }
}

interface AdapterFacts {
  description: string;
  /** A software rasterizer (e.g. Mesa's llvmpipe/lavapipe) rather than a GPU. */
  software: boolean;
}

/**
 * Deno's WebGPU (wgpu over Vulkan) prints "XDG_RUNTIME_DIR is invalid or not set" on
 * headless machines where the variable is unset. Point it at a private folder first.
 * Without env or write permission nothing changes (the warning is printed).
 */
export function ensureXdgRuntimeDir(): void {
  try {
    if (Deno.env.get("XDG_RUNTIME_DIR")) return;
    const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/seitpp-xdg-${Deno.uid() ?? "user"}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // without env/write permission the warning is printed; nothing else changes
  }
}

async function webgpuAdapter(): Promise<AdapterFacts> {
  const gpu = (navigator as { gpu?: GPU }).gpu;
  ensureXdgRuntimeDir();
  if (gpu === undefined) throw unavailable("webgpu", "navigator.gpu is not defined");
  const adapter = await gpu.requestAdapter();
  if (adapter === null) {
    throw unavailable("webgpu", "navigator.gpu.requestAdapter() found no adapter");
  }
  const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
  const description = info.description || info.device || info.vendor || "unnamed adapter";
  const software = info.isFallbackAdapter === true ||
    /llvmpipe|lavapipe|swiftshader/i.test(description);
  return { description, software };
}

/**
 * A tiny computation whose answer is known: matMul, softmax, sum and a gradient.
 * Returns the largest absolute error.
 */
async function selfTest(): Promise<number> {
  const errs = tf.tidy(() => {
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const b = tf.tensor2d([0.5, -1, 2, 0, -0.25, 1], [3, 2]);
    const c = tf.matMul(a, b); // [[3.75, 2], [10.5, 2]]
    const s = tf.softmax(tf.tensor1d([0, Math.log(3)])); // [0.25, 0.75]
    const g = tf.grad((x: tf.Tensor) => x.square().sum())(tf.tensor1d([1, -2])); // [2, -4]
    const want = tf.tensor1d([3.75, 2, 10.5, 2, 0.25, 0.75, 2, -4]);
    return tf.concat([c.reshape([-1]), s, g]).sub(want).abs().max();
  });
  const [err] = await errs.data();
  errs.dispose();
  return err;
}

/** Reasons already printed, so that each "no BLAS" line appears once per process. */
const blasReasonsPrinted = new Set<string>();

interface BlasChoice {
  blas?: string;
  blasSkipped?: string;
  nativeKernels?: string;
  nativeKernelsSkipped?: string;
}

/** Reasons already printed, so that each "no C kernels" line appears once per process. */
const nativeReasonsPrinted = new Set<string>();

function envFlag(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * Load (or turn off) the BLAS behind the wasm backend's matMul kernels, and with it the
 * C kernels of the fused ops (same thread count).
 */
async function setUpBlas(options: InitBackendOptions): Promise<BlasChoice> {
  const r = loadBlas({ blas: options.blas, threads: options.blasThreads });
  if ("reason" in r) {
    uninstallBlasKernels();
    removeNativeOps();
    setNativeKernels(undefined);
    if (r.reason !== undefined && !blasReasonsPrinted.has(r.reason)) {
      blasReasonsPrinted.add(r.reason);
      console.error(`seitpp: wasm matMul without a BLAS: ${r.reason}`);
    }
    return { blasSkipped: r.reason };
  }
  installBlasKernels(r);
  const blas = `${r.vendor} (${r.path}${r.threads > 0 ? `, ${r.threads} threads` : ""})`;
  if (envFlag("SEITPP_NATIVE_OPS") === "off") {
    removeNativeOps();
    setNativeKernels(undefined);
    return { blas };
  }
  registerNativeOps();
  const threads = r.threads > 0 ? r.threads : Math.max(1, navigator.hardwareConcurrency || 1);
  const k = await loadNativeKernels(threads);
  if ("reason" in k) {
    setNativeKernels(undefined);
    if (!nativeReasonsPrinted.has(k.reason)) {
      nativeReasonsPrinted.add(k.reason);
      console.error(`seitpp: fused ops on the JS kernels, not the C ones: ${k.reason}`);
    }
    return { blas, nativeKernelsSkipped: k.reason };
  }
  setNativeKernels(k);
  return {
    blas,
    nativeKernels: `C kernels (${k.compiler.replace(/ \(.*\)/, "")}, ${k.threads} OpenMP threads)`,
  };
}

async function activate(
  name: BackendName,
  auto = false,
  options: InitBackendOptions = {},
): Promise<{ description: string } & BlasChoice> {
  let description: string = name;
  let blas: BlasChoice = {};
  if (name === "tensorflow") {
    await loadTensorflow();
  } else if (name === "webgpu") {
    const adapter = await webgpuAdapter();
    if (auto && adapter.software) {
      throw unavailable(
        "webgpu",
        `the only WebGPU adapter is a software rasterizer (${adapter.description}), slower ` +
          "than wasm on the same CPU; ask for --backend webgpu to use it anyway",
      );
    }
    await import("@tensorflow/tfjs-backend-webgpu");
    description = `webgpu (${adapter.description}${adapter.software ? ", software" : ""})`;
  } else if (name === "wasm") {
    if (!wasmPathsSet) {
      const dir = findWasmDir();
      if (dir === undefined) {
        throw unavailable("wasm", "tfjs-backend-wasm-simd.wasm was not found under node_modules");
      }
      setWasmPaths(dir);
      wasmPathsSet = true;
    }
  }
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (e) {
    throw unavailable(name, `tf.setBackend("${name}") threw: ${(e as Error).message}`);
  }
  if (!ok || tf.getBackend() !== name) {
    throw unavailable(
      name,
      `tf.setBackend("${name}") returned false (running: ${tf.getBackend()})`,
    );
  }
  if (name === "wasm") {
    const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
    const threads = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
    description = `wasm (${simd ? "SIMD" : "no SIMD"}, ${threads ? "threads" : "1 thread"})`;
    blas = await setUpBlas(options);
    if (blas.blas !== undefined) description += ` + matMul on ${blas.blas}`;
    if (blas.nativeKernels !== undefined) description += ` + fused ops on ${blas.nativeKernels}`;
    else if (blas.blas !== undefined) description += " + fused ops on JS kernels";
  } else if (name === "cpu") {
    description = "cpu (pure JS)";
  } else if (name === "tensorflow") {
    description = "tensorflow (libtensorflow via tfjs-node)";
  }
  const err = await selfTest();
  if (!(err < 1e-4)) {
    throw unavailable(name, `the self-test computed a wrong answer (max error ${err})`);
  }
  return { description, ...blas };
}

/**
 * Load, verify and activate a TensorFlow.js backend, and report which one runs.
 *
 * An explicit request that cannot be met throws {@linkcode BackendUnavailableError}
 * (what is missing, how to get it, what runs instead); it never falls back silently.
 * `auto` tries tensorflow (if installed), then webgpu (if a hardware adapter exists;
 * a software rasterizer such as lavapipe is skipped), then wasm, and lists in `skipped` why each better one was passed over.
 *
 * @param options which backend, and whether to print the choice
 * @returns what runs
 * @throws {BackendUnavailableError} when the requested backend (or, for auto, every one) fails
 * @throws {RangeError} for an unknown backend name
 *
 * @example
 * ```ts
 * import { initBackend } from "@lib/backend";
 * const info = await initBackend({ backend: "cpu" });
 * console.assert(info.name === "cpu");
 * ```
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  const requested = options.backend ?? "auto";
  if (!BACKEND_REQUESTS.includes(requested)) {
    throw new RangeError(
      `Unknown backend "${requested}": expected one of ${BACKEND_REQUESTS.join(", ")}`,
    );
  }
  // tfjs prints a banner recommending tfjs-node when it sees `process`; we report instead.
  tf.env().set("PROD", true);
  const skipped: string[] = [];
  let name: BackendName | undefined;
  let description = "";
  let blas: BlasChoice = {};
  if (requested === "auto") {
    for (const candidate of ["tensorflow", "webgpu", "wasm"] as const) {
      try {
        ({ description, ...blas } = await activate(candidate, true, options));
        name = candidate;
        break;
      } catch (e) {
        if (!(e instanceof BackendUnavailableError)) throw e;
        skipped.push(e.message);
      }
    }
    if (name === undefined) {
      throw new BackendUnavailableError(
        "wasm",
        `No backend could run: ${skipped.join(" | ")}`,
      );
    }
  } else {
    name = requested;
    ({ description, ...blas } = await activate(requested, false, options));
  }
  const info: BackendInfo = {
    requested,
    name,
    description,
    skipped,
    tfjsVersion: tf.version.tfjs,
    ...blas,
  };
  if (options.verbose) console.error(describeBackend(info));
  return info;
}

/**
 * One line saying which backend runs, and for `auto` why the better ones were skipped.
 *
 * @param info what {@linkcode initBackend} returned
 * @returns a line such as `backend: wasm (SIMD, 1 thread) [auto; skipped: ...]`
 */
export function describeBackend(info: BackendInfo): string {
  let line = `backend: ${info.description}, tfjs ${info.tfjsVersion}`;
  if (info.name === "wasm" && info.blas === undefined) {
    line += info.blasSkipped === undefined
      ? " [matMul: wasm's own, BLAS off]"
      : ` [matMul: wasm's own; no BLAS: ${info.blasSkipped}]`;
  }
  if (info.name === "wasm" && info.nativeKernelsSkipped !== undefined) {
    line += ` [fused ops: JS kernels; ${info.nativeKernelsSkipped}]`;
  }
  if (info.requested === "auto") {
    line += " [auto";
    if (info.skipped.length > 0) {
      line += "; skipped: " +
        info.skipped.map((s) => s.replace(/ To get it:.*$/, "")).join("; ");
    }
    line += "]";
  }
  return line;
}
