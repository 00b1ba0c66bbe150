/**
 * The VQ codebook: a float32 `[K, d]` matrix whose row c embeds token c. Loaded from
 * `.npy` / `.npy.gz`, `.safetensors`, or a `torch.save`d bare tensor (`.ckpt` / `.pth` / `.pt`).
 *
 * @module
 */
import {
  flattenTensors,
  type HostTensor,
  readFileChecked,
  readNpy,
  readSafetensors,
  readTorchFile,
  toFloat32,
} from "../io/mod.ts";

/** A codebook: `[K, d]` float32, row-major. */
export type Codebook = HostTensor<"float32">;

/** Options of {@linkcode loadCodebook} and {@linkcode toCodebook}. */
export interface CodebookOptions {
  /** Require exactly this many codes K. */
  size?: number;
  /** Require exactly this embedding width d. */
  dim?: number;
}

/** Names tried, in order, for the codebook tensor of a multi-tensor file. */
export const CODEBOOK_TENSOR_NAMES: readonly string[] = ["codebook", "weight"];

/**
 * Check a host tensor as a codebook and convert it to float32.
 *
 * @param t a 2-D floating-point tensor (float32, float64, float16 or bfloat16)
 * @param source the file name used in error messages
 * @param options required K and/or d
 * @returns the codebook (`t` itself when already float32)
 * @throws {TypeError} for a non-float dtype, a rank other than 2, or a K/d other than required
 * @throws {RangeError} for a non-finite value
 *
 * @example
 * ```ts
 * import { toCodebook } from "@lib/tokens";
 * const cb = toCodebook({ dtype: "float64", shape: [2, 1], data: new Float64Array([1, -1]) });
 * console.assert(cb.dtype === "float32" && cb.shape.join() === "2,1");
 * ```
 */
export function toCodebook(
  t: HostTensor,
  source = "<tensor>",
  options: CodebookOptions = {},
): Codebook {
  const what = `${t.dtype} [${t.shape}]`;
  const bad = (why: string) =>
    new TypeError(`Cannot use "${source}" as a codebook: ${why}, got ${what}`);
  if (!["float32", "float64", "float16", "bfloat16"].includes(t.dtype)) {
    throw bad("expected a floating-point [K, d] tensor");
  }
  if (t.shape.length !== 2 || t.shape[0] < 1 || t.shape[1] < 1) {
    throw bad("expected a non-empty [K, d] tensor");
  }
  const [k, d] = t.shape;
  if (options.size !== undefined && k !== options.size) {
    throw bad(`expected K = ${options.size} codes`);
  }
  if (options.dim !== undefined && d !== options.dim) {
    throw bad(`expected width d = ${options.dim}`);
  }
  const data = toFloat32(t);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new RangeError(
        `Cannot use "${source}" as a codebook: row ${Math.floor(i / d)}, column ${i % d} is ${
          data[i]
        }`,
      );
    }
  }
  return { dtype: "float32", shape: [k, d], data };
}

/**
 * Pick the codebook tensor of a file: the one named `codebook`, else `weight`, else the
 * only tensor.
 *
 * @param tensors the file's tensors
 * @param source the file name used in error messages
 * @returns the tensor
 * @throws {TypeError} when none of these applies
 */
export function pickCodebookTensor(
  tensors: Map<string, HostTensor>,
  source = "<tensors>",
): HostTensor {
  for (const name of CODEBOOK_TENSOR_NAMES) {
    const t = tensors.get(name);
    if (t !== undefined) return t;
  }
  if (tensors.size === 1) return tensors.values().next().value!;
  const names = [...tensors.keys()];
  throw new TypeError(
    `Cannot find the codebook in "${source}": it holds ${names.length} tensors (${
      names.slice(0, 8).join(", ")
    }${names.length > 8 ? ", ..." : ""}) and none is named "codebook" or "weight"`,
  );
}

/**
 * Load a codebook by file type: `.npy`/`.npy.gz`, `.safetensors` (tensor `codebook`,
 * `weight` or the only one), `.ckpt`/`.pth`/`.pt` (a `torch.save`d bare tensor, or a dict
 * holding one by those rules; read by the safe torch reader of `@lib/io`, zip or legacy).
 *
 * @param path the file
 * @param options required K and/or d
 * @returns the `[K, d]` float32 codebook
 * @throws {Deno.errors.NotFound} when the file does not exist
 * @throws {SyntaxError} for a malformed file
 * @throws {UnsafePickleError} for a torch file whose pickle names a global outside the
 *   safe reader's allow-list (nothing is executed)
 * @throws {TypeError} for an unsupported extension or a tensor that is not a `[K, d]` float
 *   matrix (of the required size)
 * @throws {RangeError} for a non-finite value
 *
 * @example
 * ```ts ignore
 * import { loadCodebook } from "@lib/tokens";
 * const cb = await loadCodebook("data/codebook.safetensors", { size: 391 });
 * ```
 */
export async function loadCodebook(path: string, options: CodebookOptions = {}): Promise<Codebook> {
  const lower = path.toLowerCase();
  let t: HostTensor;
  if (lower.endsWith(".npy") || lower.endsWith(".npy.gz")) {
    t = readNpy(await readFileChecked(path, { what: "codebook" }), { source: path });
  } else if (lower.endsWith(".safetensors")) {
    t = pickCodebookTensor(
      readSafetensors(await readFileChecked(path, { what: "codebook" }), { source: path }).tensors,
      path,
    );
  } else if (lower.endsWith(".ckpt") || lower.endsWith(".pth") || lower.endsWith(".pt")) {
    t = pickCodebookTensor(flattenTensors(await readTorchFile(path)).tensors, path);
  } else {
    throw new TypeError(
      `Cannot load codebook "${path}": unknown file type (expected .npy, .npy.gz, .safetensors, .ckpt, .pth or .pt)`,
    );
  }
  return toCodebook(t, path, options);
}
