/**
 * TokenAdapt (SeiT++ section 3): a conversion network f that lifts a token grid's codebook
 * embeddings `[B, d, n, n]` to a finer feature map `[B, d, 2n, 2n]` where pixel-style
 * geometric augmentations make sense, and an inversion network g that maps a `[B, d, 2m, 2m]`
 * feature map back to `m x m` codes.
 *
 * f: per-position Linear(d -> D) + fixed 2-D sin-cos table (n x n) -> pre-norm transformer
 * layers -> LayerNorm -> ConvTranspose2d(D -> d, kernel 2, stride 2).
 * g: Conv2d(d -> D, kernel 2, stride 2) + fixed sin-cos table (m x m) -> transformer layers ->
 * LayerNorm -> Linear(D -> K) -> logits; argmax gives codes.
 * The layers: pre-norm, `heads x headDim` attention without qkv bias, Linear-Tanh-Linear MLP,
 * LayerNorm eps 1e-5. Kernel-2 stride-2 (transposed) convolutions are a reshape around one
 * matMul.
 *
 * Parameters carry the reference's state-dict names (`conversion_function.*`,
 * `reverse_transform.*`); {@linkcode TokenAdapt.stateDict} and
 * {@linkcode TokenAdapt.loadStateDict} convert between torch layouts and the tfjs layouts
 * used inside (`[in, out]` linear weights).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import {
  flattenTensors,
  type HostTensor,
  readSafetensorsFile,
  readTorchFile,
  toFloat32,
  writeSafetensorsFile,
} from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";
import { layerNorm, type LayerParams, linear, transformerLayer } from "./_layers.ts";
import { sinCosTable2d } from "./sincos.ts";
import {
  isCleanMatch,
  matchStateDict,
  StateDictMismatchError,
  type StateDictReport,
} from "./state_dict.ts";

/** Geometry and sizes of a TokenAdapt network. Every field has the official value as default. */
export interface TokenAdaptConfig {
  /** Codebook size K (classes of g). @default {391} */
  codebookSize?: number;
  /** Codebook embedding width d. @default {32} */
  codeDim?: number;
  /** Side n of the stored token grid fed to f (f outputs 2n x 2n). @default {32} */
  inputGrid?: number;
  /** Side m of the code grid g outputs (g reads 2m x 2m). @default {28} */
  outputGrid?: number;
  /** Transformer width D. @default {384} */
  width?: number;
  /** Attention heads. @default {6} */
  heads?: number;
  /** Width of one head (heads x headDim need not equal D). @default {64} */
  headDim?: number;
  /** Hidden width of the tanh MLP. @default {1536} */
  mlpDim?: number;
  /** Transformer layers in f and in g each. @default {1} */
  depth?: number;
  /** LayerNorm eps. @default {1e-5} */
  normEps?: number;
}

/** A {@linkcode TokenAdaptConfig} with every field set (plain JSON). */
export type ResolvedTokenAdaptConfig = Required<TokenAdaptConfig>;

const DEFAULTS: ResolvedTokenAdaptConfig = {
  codebookSize: 391,
  codeDim: 32,
  inputGrid: 32,
  outputGrid: 28,
  width: 384,
  heads: 6,
  headDim: 64,
  mlpDim: 1536,
  depth: 1,
  normEps: 1e-5,
};

/**
 * Fill in defaults and validate.
 *
 * @param config partial config (plain JSON, e.g. from a checkpoint's metadata)
 * @returns the resolved config
 * @throws {TypeError} for an unknown key or a non-numeric value
 * @throws {RangeError} for a non-positive or non-integer size, or a width not divisible by 4
 *
 * @example
 * ```ts
 * import { resolveTokenAdaptConfig } from "@lib/adapters";
 * const c = resolveTokenAdaptConfig({ inputGrid: 8, outputGrid: 8, width: 128 });
 * console.assert(c.heads === 6 && c.codebookSize === 391);
 * ```
 */
export function resolveTokenAdaptConfig(config: TokenAdaptConfig = {}): ResolvedTokenAdaptConfig {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new TypeError(`Cannot resolve a TokenAdapt config from ${JSON.stringify(config)}`);
  }
  const out = { ...DEFAULTS };
  for (const [k, v] of Object.entries(config)) {
    if (!(k in DEFAULTS)) {
      throw new TypeError(
        `Unknown TokenAdapt config key "${k}"; known keys: ${Object.keys(DEFAULTS).join(", ")}`,
      );
    }
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TypeError(
        `TokenAdapt config key "${k}": expected a number, got ${JSON.stringify(v)}`,
      );
    }
    (out as Record<string, number>)[k] = v;
  }
  for (const [k, v] of Object.entries(out)) {
    if (k === "normEps") {
      if (!(v > 0)) throw new RangeError(`TokenAdapt config key "normEps": ${v} is not > 0`);
    } else if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`TokenAdapt config key "${k}": ${v} is not an integer >= 1`);
    }
  }
  if (out.width % 4 !== 0) {
    throw new RangeError(`TokenAdapt config key "width": ${out.width} is not divisible by 4`);
  }
  return out;
}

/**
 * The official TokenAdapt geometry: 32x32 tokens -> 64x64 features, 56x56 -> 28x28 codes,
 * 384 wide, 6 heads of 64, tanh MLP 1536, one layer each, K = 391, d = 32.
 * @returns the resolved config
 */
export function tokenAdaptOfficial(): ResolvedTokenAdaptConfig {
  return resolveTokenAdaptConfig({});
}

/**
 * A small TokenAdapt for small token grids (e.g. Fashion-MNIST's 8x8 tokens): 128 wide,
 * 4 heads of 32, MLP 512, one layer each.
 * @param grid n = m, the token grid side
 * @param codebookSize K
 * @param codeDim d
 * @returns the resolved config
 */
export function tokenAdaptSmall(
  grid: number,
  codebookSize: number,
  codeDim: number,
): ResolvedTokenAdaptConfig {
  return resolveTokenAdaptConfig({
    inputGrid: grid,
    outputGrid: grid,
    codebookSize,
    codeDim,
    width: 128,
    heads: 4,
    headDim: 32,
    mlpDim: 512,
  });
}

/** How a torch tensor maps to the tensor used here. */
type Layout = "plain" | "linear" | "convT" | "conv" | "table";

interface ParamSpec {
  key: string;
  torchShape: number[];
  layout: Layout;
  /** torch default init bound 1/sqrt(fanIn); 0 for LayerNorm-style init. */
  fanIn: number;
  /** LayerNorm weight (ones) or bias (zeros). */
  norm?: "weight" | "bias";
}

function layerSpecs(prefix: string, c: ResolvedTokenAdaptConfig): ParamSpec[] {
  const D = c.width, inner = c.heads * c.headDim;
  const out: ParamSpec[] = [];
  for (let i = 0; i < c.depth; i++) {
    const a = `${prefix}.transformer.layers.${i}.0`, m = `${prefix}.transformer.layers.${i}.1`;
    out.push(
      { key: `${a}.norm.weight`, torchShape: [D], layout: "plain", fanIn: 0, norm: "weight" },
      { key: `${a}.norm.bias`, torchShape: [D], layout: "plain", fanIn: 0, norm: "bias" },
      { key: `${a}.fn.to_qkv.weight`, torchShape: [3 * inner, D], layout: "linear", fanIn: D },
      { key: `${a}.fn.to_out.weight`, torchShape: [D, inner], layout: "linear", fanIn: inner },
      { key: `${a}.fn.to_out.bias`, torchShape: [D], layout: "plain", fanIn: inner },
      { key: `${m}.norm.weight`, torchShape: [D], layout: "plain", fanIn: 0, norm: "weight" },
      { key: `${m}.norm.bias`, torchShape: [D], layout: "plain", fanIn: 0, norm: "bias" },
      { key: `${m}.fn.net.0.weight`, torchShape: [c.mlpDim, D], layout: "linear", fanIn: D },
      { key: `${m}.fn.net.0.bias`, torchShape: [c.mlpDim], layout: "plain", fanIn: D },
      { key: `${m}.fn.net.2.weight`, torchShape: [D, c.mlpDim], layout: "linear", fanIn: c.mlpDim },
      { key: `${m}.fn.net.2.bias`, torchShape: [D], layout: "plain", fanIn: c.mlpDim },
    );
  }
  out.push(
    {
      key: `${prefix}.transformer.norm.weight`,
      torchShape: [D],
      layout: "plain",
      fanIn: 0,
      norm: "weight",
    },
    {
      key: `${prefix}.transformer.norm.bias`,
      torchShape: [D],
      layout: "plain",
      fanIn: 0,
      norm: "bias",
    },
  );
  return out;
}

/** Key of f's fixed sin-cos table in the state dict. */
export const CONVERSION_TABLE_KEY = "conversion_function.1.de_pos_embedding";
/** Key of g's fixed sin-cos table in the state dict. */
export const INVERSION_TABLE_KEY = "reverse_transform.0.en_pos_embedding";

function paramSpecs(c: ResolvedTokenAdaptConfig): ParamSpec[] {
  const D = c.width, d = c.codeDim, n = c.inputGrid, m = c.outputGrid;
  return [
    { key: "conversion_function.0.weight", torchShape: [D, d], layout: "linear", fanIn: d },
    { key: "conversion_function.0.bias", torchShape: [D], layout: "plain", fanIn: d },
    { key: CONVERSION_TABLE_KEY, torchShape: [1, n * n, D], layout: "table", fanIn: 0 },
    ...layerSpecs("conversion_function.1", c),
    // ConvTranspose2d weight [in, out, k, k]: torch's fan-in is out * k * k
    {
      key: "conversion_function.1.to_pixel.1.weight",
      torchShape: [D, d, 2, 2],
      layout: "convT",
      fanIn: d * 4,
    },
    {
      key: "conversion_function.1.to_pixel.1.bias",
      torchShape: [d],
      layout: "plain",
      fanIn: d * 4,
    },
    { key: INVERSION_TABLE_KEY, torchShape: [1, m * m, D], layout: "table", fanIn: 0 },
    {
      key: "reverse_transform.0.to_patch_embedding.0.weight",
      torchShape: [D, d, 2, 2],
      layout: "conv",
      fanIn: d * 4,
    },
    {
      key: "reverse_transform.0.to_patch_embedding.0.bias",
      torchShape: [D],
      layout: "plain",
      fanIn: d * 4,
    },
    ...layerSpecs("reverse_transform.0", c),
    {
      key: "reverse_transform.1.weight",
      torchShape: [c.codebookSize, D],
      layout: "linear",
      fanIn: D,
    },
    { key: "reverse_transform.1.bias", torchShape: [c.codebookSize], layout: "plain", fanIn: D },
  ];
}

/** The shape used here for a torch tensor of the given layout. */
function localShape(s: ParamSpec): number[] {
  const t = s.torchShape;
  switch (s.layout) {
    case "plain":
      return t;
    case "linear":
      return [t[1], t[0]];
    case "convT":
      return [t[0], t[1] * t[2] * t[3]];
    case "conv":
      return [t[1] * t[2] * t[3], t[0]];
    case "table":
      return [t[1], t[2]];
  }
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  }
  return out;
}

/** torch layout -> local layout (row-major data). */
function fromTorch(s: ParamSpec, data: Float32Array): Float32Array {
  const t = s.torchShape;
  if (s.layout === "linear") return transpose2d(data, t[0], t[1]);
  if (s.layout === "conv") return transpose2d(data, t[0], t[1] * t[2] * t[3]);
  return data.slice();
}

/** local layout -> torch layout (row-major data). */
function toTorch(s: ParamSpec, data: Float32Array): Float32Array {
  const t = s.torchShape;
  if (s.layout === "linear") return transpose2d(data, t[1], t[0]);
  if (s.layout === "conv") return transpose2d(data, t[1] * t[2] * t[3], t[0]);
  return data.slice();
}

/** How far a loaded sin-cos table may differ from the one computed here. */
const TABLE_TOLERANCE = 1e-5;

/** Options of {@linkcode TokenAdapt.loadStateDict}. */
export interface LoadStateDictOptions {
  /**
   * Throw {@linkcode StateDictMismatchError} on any missing, unexpected or mis-shaped key.
   * With `false`, matching keys are loaded and the report says what was not.
   * @default {true}
   */
  strict?: boolean;
  /** Name of the source for messages (a file path). @default {"<state dict>"} */
  source?: string;
}

/**
 * A TokenAdapt network: parameters as `tf.Variable`s named by their reference state-dict keys,
 * plus the two fixed sin-cos tables.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { TokenAdapt, tokenAdaptSmall } from "@lib/adapters";
 * import { Rng } from "@lib/random";
 * const ta = TokenAdapt.create(tokenAdaptSmall(4, 16, 8), new Rng(0));
 * const emb = tf.randomNormal([2, 8, 4, 4]) as tf.Tensor4D;
 * const up = ta.convert(emb); // [2, 8, 8, 8]
 * const codes = ta.invert(up); // [2, 4, 4] int32
 * console.assert(up.shape.join() === "2,8,8,8" && codes.shape.join() === "2,4,4");
 * tf.dispose([emb, up, codes]);
 * ta.dispose();
 * ```
 */
export class TokenAdapt {
  /** The resolved geometry (plain JSON: store it with the weights). */
  readonly config: ResolvedTokenAdaptConfig;
  readonly #specs: ParamSpec[];
  readonly #vars = new Map<string, tf.Variable>();
  readonly #tables = new Map<string, tf.Tensor2D>();
  #disposed = false;

  private constructor(config: ResolvedTokenAdaptConfig, init: (s: ParamSpec) => Float32Array) {
    this.config = config;
    this.#specs = paramSpecs(config);
    for (const s of this.#specs) {
      const shape = localShape(s);
      const data = init(s);
      if (s.layout === "table") {
        this.#tables.set(s.key, tf.tensor2d(data, shape as [number, number]));
      } else {
        const init = tf.tensor(data, shape);
        this.#vars.set(s.key, tf.variable(init, true));
        init.dispose();
      }
    }
  }

  /**
   * A freshly initialized network: torch's default init (`U(-1/sqrt(fanIn), 1/sqrt(fanIn))`
   * for Linear/Conv weights and biases, LayerNorm ones/zeros), drawn from `rng`.
   *
   * @param config the geometry (resolved; see {@linkcode resolveTokenAdaptConfig})
   * @param rng the generator for the initial weights
   * @returns the network; call {@linkcode TokenAdapt.dispose} when done
   */
  static create(config: TokenAdaptConfig, rng: Rng): TokenAdapt {
    const c = resolveTokenAdaptConfig(config);
    return new TokenAdapt(c, (s) => initialValue(s, c, rng));
  }

  /**
   * A network from a state dict (reference keys and torch layouts).
   *
   * @param config the geometry the tensors must fit
   * @param tensors tensors by state-dict key
   * @param options strictness and source name
   * @returns the network and the load report
   * @throws {StateDictMismatchError} in strict mode for any missing, unexpected or mis-shaped key
   * @throws {RangeError} when a sin-cos table in the file is not the fixed table of its grid
   */
  static fromStateDict(
    config: TokenAdaptConfig,
    tensors: ReadonlyMap<string, HostTensor>,
    options: LoadStateDictOptions = {},
  ): { model: TokenAdapt; report: StateDictReport } {
    const c = resolveTokenAdaptConfig(config);
    const model = new TokenAdapt(c, (s) => initialValue(s, c, null));
    try {
      const report = model.loadStateDict(tensors, options);
      return { model, report };
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  /**
   * Load a TokenAdapt file: the authors' `tokenadapt.ckpt` (torch.save zip, read by the safe
   * reader) or a safetensors file. A safetensors file written by {@linkcode TokenAdapt.save}
   * carries its config in its metadata; otherwise `config` (default: the official geometry)
   * must fit.
   *
   * @param path `.ckpt`/`.pth`/`.pt` (torch.save) or `.safetensors`
   * @param config the geometry when the file does not say
   * @param options strictness
   * @returns the network and the load report
   * @throws {StateDictMismatchError} in strict mode when the keys or shapes do not fit
   * @throws {SyntaxError} for an unreadable file, {@linkcode UnsafePickleError} for a hostile one
   */
  static async load(
    path: string,
    config?: TokenAdaptConfig,
    options: Omit<LoadStateDictOptions, "source"> = {},
  ): Promise<{ model: TokenAdapt; report: StateDictReport }> {
    let tensors: Map<string, HostTensor>;
    let fileConfig: TokenAdaptConfig | undefined;
    if (/\.(ckpt|pth|pt)$/i.test(path)) {
      tensors = flattenTensors(await readTorchFile(path)).tensors;
    } else {
      const st = await readSafetensorsFile(path);
      tensors = st.tensors;
      if (st.metadata.tokenadapt_config !== undefined) {
        try {
          fileConfig = JSON.parse(st.metadata.tokenadapt_config);
        } catch (e) {
          throw new SyntaxError(
            `Cannot parse the tokenadapt_config metadata of "${path}": ${(e as Error).message}`,
          );
        }
      }
    }
    return TokenAdapt.fromStateDict(config ?? fileConfig ?? {}, tensors, {
      ...options,
      source: path,
    });
  }

  /** @returns every trainable parameter with its state-dict key, in state-dict order */
  variables(): { name: string; variable: tf.Variable }[] {
    this.#check();
    return [...this.#vars].map(([name, variable]) => ({ name, variable }));
  }

  /** @returns the number of trainable parameters */
  parameterCount(): number {
    let n = 0;
    for (const v of this.#vars.values()) n += v.size;
    return n;
  }

  /** @returns the state-dict keys and their torch shapes, in state-dict order */
  expectedKeys(): Map<string, number[]> {
    return new Map(this.#specs.map((s) => [s.key, s.torchShape]));
  }

  /**
   * Copy tensors in (reference keys, torch layouts).
   *
   * @param tensors tensors by key
   * @param options strictness and source name
   * @returns the report of matched, missing, unexpected and mis-shaped keys
   * @throws {StateDictMismatchError} in strict mode (nothing is loaded then)
   * @throws {RangeError} when a sin-cos table is not the fixed table of its grid
   * @throws {TypeError} for a tensor that is not floating point
   */
  loadStateDict(
    tensors: ReadonlyMap<string, HostTensor>,
    options: LoadStateDictOptions = {},
  ): StateDictReport {
    this.#check();
    const source = options.source ?? "<state dict>";
    const report = matchStateDict(this.expectedKeys(), tensors);
    if ((options.strict ?? true) && !isCleanMatch(report)) {
      throw new StateDictMismatchError(source, report);
    }
    const matched = new Set(report.matched);
    for (const s of this.#specs) {
      if (!matched.has(s.key)) continue;
      const t = tensors.get(s.key)!;
      if (!t.dtype.startsWith("float") && t.dtype !== "bfloat16") {
        throw new TypeError(`Cannot load "${s.key}" of "${source}": dtype ${t.dtype}, not float`);
      }
      const data = fromTorch(s, toFloat32(t));
      if (s.layout === "table") {
        const want = this.#tables.get(s.key)!;
        const ref = want.dataSync();
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ref[i] - data[i]));
        if (!(worst <= TABLE_TOLERANCE)) {
          throw new RangeError(
            `Cannot load "${s.key}" of "${source}": it is not the fixed 2-D sin-cos table of its ` +
              `grid (max |difference| ${worst.toExponential(2)} > ${TABLE_TOLERANCE})`,
          );
        }
        // keep the file's own values (bit-exact parity with the reference)
        want.dispose();
        this.#tables.set(s.key, tf.tensor2d(data, localShape(s) as [number, number]));
      } else {
        const v = this.#vars.get(s.key)!;
        tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
      }
    }
    return report;
  }

  /**
   * The parameters and tables as host tensors in the reference's layouts and key order.
   * @returns tensors by state-dict key (fresh copies)
   */
  stateDict(): Map<string, HostTensor> {
    this.#check();
    const out = new Map<string, HostTensor>();
    for (const s of this.#specs) {
      const t = s.layout === "table" ? this.#tables.get(s.key)! : this.#vars.get(s.key)!;
      const data = toTorch(s, t.dataSync() as Float32Array);
      out.set(s.key, { dtype: "float32", shape: [...s.torchShape], data });
    }
    return out;
  }

  /**
   * Write the state dict to a safetensors file, with the config in its metadata
   * (`tokenadapt_config`) plus any extra metadata.
   * @param path output file
   * @param metadata extra string metadata (e.g. how it was trained)
   */
  async save(path: string, metadata: Record<string, string> = {}): Promise<void> {
    await writeSafetensorsFile(path, this.stateDict(), {
      ...metadata,
      tokenadapt_config: JSON.stringify(this.config),
    });
  }

  #v<T extends tf.Tensor>(key: string): T {
    return this.#vars.get(key)! as unknown as T;
  }

  #layers(prefix: string): LayerParams[] {
    return Array.from({ length: this.config.depth }, (_, i) => {
      const a = `${prefix}.transformer.layers.${i}.0`, m = `${prefix}.transformer.layers.${i}.1`;
      return {
        ln1g: this.#v(`${a}.norm.weight`),
        ln1b: this.#v(`${a}.norm.bias`),
        qkv: this.#v(`${a}.fn.to_qkv.weight`),
        outW: this.#v(`${a}.fn.to_out.weight`),
        outB: this.#v(`${a}.fn.to_out.bias`),
        ln2g: this.#v(`${m}.norm.weight`),
        ln2b: this.#v(`${m}.norm.bias`),
        fc1W: this.#v(`${m}.fn.net.0.weight`),
        fc1B: this.#v(`${m}.fn.net.0.bias`),
        fc2W: this.#v(`${m}.fn.net.2.weight`),
        fc2B: this.#v(`${m}.fn.net.2.bias`),
      };
    });
  }

  /** Positions `[B*L, D]` (+ the fixed table) -> layers -> final LayerNorm, still `[B*L, D]`. */
  #encoder(x: tf.Tensor2D, table: tf.Tensor2D, batch: number, prefix: string): tf.Tensor2D {
    const c = this.config;
    const L = table.shape[0];
    let h = tf.add(x.reshape([batch, L, c.width]), table).reshape([
      batch * L,
      c.width,
    ]) as tf.Tensor2D;
    for (const p of this.#layers(prefix)) {
      h = transformerLayer(h, p, batch, L, c.heads, c.normEps);
    }
    return layerNorm(
      h,
      this.#v(`${prefix}.transformer.norm.weight`),
      this.#v(`${prefix}.transformer.norm.bias`),
      c.normEps,
    );
  }

  /**
   * The conversion network f (the reference's `forward_conversion`): embeddings of an
   * `n x n` token grid to a `2n x 2n` feature map. Differentiable.
   *
   * @param emb `[B, d, n, n]` float32 codebook embeddings (not disposed)
   * @returns `[B, d, 2n, 2n]` float32, owned by the caller
   * @throws {TypeError} for a wrong shape or dtype
   */
  convert(emb: tf.Tensor4D): tf.Tensor4D {
    this.#check();
    const c = this.config, n = c.inputGrid, d = c.codeDim;
    checkMap(emb, [d, n, n], "TokenAdapt.convert input");
    const B = emb.shape[0];
    return tf.tidy(() => {
      const x = emb.transpose([0, 2, 3, 1]).reshape([B * n * n, d]) as tf.Tensor2D;
      const h = linear(
        x,
        this.#v("conversion_function.0.weight"),
        this.#v("conversion_function.0.bias"),
      );
      const z = this.#encoder(
        h,
        this.#tables.get(CONVERSION_TABLE_KEY)!,
        B,
        "conversion_function.1",
      );
      // ConvTranspose2d(k=2, s=2): one matMul to [B*n*n, d*2*2], then the 2x2 blocks in place
      const px = linear(z, this.#v("conversion_function.1.to_pixel.1.weight"))
        .reshape([B, n, n, d, 2, 2])
        .transpose([0, 3, 1, 4, 2, 5])
        .reshape([B, d, 2 * n, 2 * n]);
      return px.add(
        this.#v<tf.Tensor1D>("conversion_function.1.to_pixel.1.bias").reshape([1, d, 1, 1]),
      ) as tf.Tensor4D;
    });
  }

  /**
   * The inversion network g up to its logits (the reference's `reverse_transform`).
   * Differentiable.
   *
   * @param x `[B, d, 2m, 2m]` float32 feature map (not disposed)
   * @returns `[B, m*m, K]` float32 logits, position `h * m + w`, owned by the caller
   * @throws {TypeError} for a wrong shape or dtype
   */
  invertLogits(x: tf.Tensor4D): tf.Tensor3D {
    this.#check();
    const c = this.config, m = c.outputGrid, d = c.codeDim;
    checkMap(x, [d, 2 * m, 2 * m], "TokenAdapt.invertLogits input");
    const B = x.shape[0];
    return tf.tidy(() => {
      // Conv2d(k=2, s=2): the 2x2 patches as rows, then one matMul
      const patches = x.reshape([B, d, m, 2, m, 2]).transpose([0, 2, 4, 1, 3, 5])
        .reshape([B * m * m, d * 4]) as tf.Tensor2D;
      const h = linear(
        patches,
        this.#v("reverse_transform.0.to_patch_embedding.0.weight"),
        this.#v("reverse_transform.0.to_patch_embedding.0.bias"),
      );
      const z = this.#encoder(h, this.#tables.get(INVERSION_TABLE_KEY)!, B, "reverse_transform.0");
      return linear(z, this.#v("reverse_transform.1.weight"), this.#v("reverse_transform.1.bias"))
        .reshape([B, m * m, c.codebookSize]) as tf.Tensor3D;
    });
  }

  /**
   * The inversion network g to codes: argmax of {@linkcode TokenAdapt.invertLogits}.
   * Not differentiable (argmax).
   *
   * @param x `[B, d, 2m, 2m]` float32 feature map (not disposed)
   * @returns `[B, m, m]` int32 codes, owned by the caller
   * @throws {TypeError} for a wrong shape or dtype
   */
  invert(x: tf.Tensor4D): tf.Tensor3D {
    const m = this.config.outputGrid;
    return tf.tidy(() => this.invertLogits(x).argMax(2).reshape([x.shape[0], m, m]) as tf.Tensor3D);
  }

  /** Release every tensor. Further calls throw. */
  dispose(): void {
    if (this.#disposed) return;
    for (const v of this.#vars.values()) v.dispose();
    for (const t of this.#tables.values()) t.dispose();
    this.#vars.clear();
    this.#tables.clear();
    this.#disposed = true;
  }

  #check(): void {
    if (this.#disposed) throw new TypeError("Cannot use a disposed TokenAdapt");
  }
}

function initialValue(s: ParamSpec, c: ResolvedTokenAdaptConfig, rng: Rng | null): Float32Array {
  const n = localShape(s).reduce((a, b) => a * b, 1);
  if (s.layout === "table") {
    const grid = s.key === CONVERSION_TABLE_KEY ? c.inputGrid : c.outputGrid;
    return sinCosTable2d(grid, grid, c.width);
  }
  if (s.norm === "weight") return new Float32Array(n).fill(1);
  if (s.norm === "bias" || rng === null) return new Float32Array(n);
  const bound = 1 / Math.sqrt(s.fanIn);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.uniformIn(-bound, bound);
  return out;
}

function checkMap(x: unknown, chw: number[], what: string): void {
  const ok = x instanceof tf.Tensor && x.rank === 4 && x.dtype === "float32" &&
    x.shape.slice(1).every((v: number, i: number) => v === chw[i]);
  if (!ok) {
    const got = x instanceof tf.Tensor ? `a ${x.dtype} tensor of shape [${x.shape}]` : typeof x;
    throw new TypeError(`Cannot use ${what}: expected [B, ${chw.join(", ")}] float32, got ${got}`);
  }
}
