/**
 * Model parameters held as `tf.Variable`s under the reference (PyTorch state-dict) names,
 * with export to and import from PyTorch's tensor layout.
 *
 * The internal layout may differ from PyTorch's where that makes the math faster:
 * - `linear`: PyTorch `[out, in]`, stored `[in, out]` (so `x W` is a plain matMul);
 * - `conv`: PyTorch Conv2d `[O, C, kh, kw]`, stored `[kh*kw*C, O]` with row
 *   `(i*kw + j)*C + c` (patch embedding as one matMul over (i, j, c)-ordered patches);
 * - `plain`: the same shape and order as PyTorch.
 * {@linkcode ParamStore.stateDict} always exports PyTorch layout, and
 * {@linkcode ParamStore.loadStateDict} imports it, reporting every missing, unexpected
 * or mismatched name (never dropping one silently).
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import { type HostTensor, toFloat32 } from "../io/mod.ts";

/** How a parameter's internal tensor relates to its PyTorch tensor. */
export type ParamLayout = "plain" | "linear" | "conv";

/** One parameter of a model. */
export interface ParamEntry {
  /** Reference state-dict name, e.g. `blocks.0.attn.qkv.weight`. */
  name: string;
  /** The tensor (internal layout). */
  variable: tf.Variable;
  /** Whether the optimizer trains it (false: a fixed table such as a sin-cos position table). */
  trainable: boolean;
  /** Its shape in PyTorch layout (what the reference state dict holds). */
  shape: number[];
  /** How the internal tensor maps to the PyTorch one. */
  layout: ParamLayout;
}

/** Options of {@linkcode ParamStore.add}. */
export interface AddParamOptions {
  /** PyTorch-layout shape. @default {the internal shape (layout "plain")} */
  shape?: number[];
  /** Layout. @default {"plain"} */
  layout?: ParamLayout;
  /** Trained by the optimizer. @default {true} */
  trainable?: boolean;
}

/** What {@linkcode ParamStore.loadStateDict} did. */
export interface LoadReport {
  /** Names that were loaded. */
  loaded: string[];
  /** Model parameters the state dict did not provide (left as they were). */
  missing: string[];
  /** State-dict names the model has no parameter for (ignored). */
  unexpected: string[];
  /** Names whose shape differs: `name: got [..], expected [..]` (not loaded). */
  mismatchedShapes: string[];
}

/** Options of {@linkcode ParamStore.loadStateDict}. */
export interface LoadOptions {
  /**
   * Throw a TypeError listing every missing, unexpected and mismatched name instead
   * of returning a report with problems.
   * @default {false}
   */
  strict?: boolean;
  /**
   * Only these model parameters take part (a filter on model names): parameters not
   * selected are neither loaded nor reported missing.
   * @default {every parameter}
   */
  select?: (name: string) => boolean;
}

let storeCounter = 0;

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Convert values of one parameter from PyTorch layout to the internal layout.
 * @param layout the layout
 * @param torchShape PyTorch-layout shape
 * @param data PyTorch-layout values
 * @returns internal-layout values (`data` itself for `plain`)
 */
export function torchToInternal(
  layout: ParamLayout,
  torchShape: readonly number[],
  data: Float32Array,
): Float32Array {
  if (layout === "plain") return data;
  if (layout === "linear") {
    const [out, inp] = torchShape;
    const r = new Float32Array(data.length);
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inp; i++) r[i * out + o] = data[o * inp + i];
    }
    return r;
  }
  const [o, c, kh, kw] = torchShape;
  const r = new Float32Array(data.length);
  for (let oo = 0; oo < o; oo++) {
    for (let cc = 0; cc < c; cc++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          r[((i * kw + j) * c + cc) * o + oo] = data[((oo * c + cc) * kh + i) * kw + j];
        }
      }
    }
  }
  return r;
}

/**
 * Convert values of one parameter from the internal layout to PyTorch layout.
 * @param layout the layout
 * @param torchShape PyTorch-layout shape
 * @param data internal-layout values
 * @returns PyTorch-layout values
 */
export function internalToTorch(
  layout: ParamLayout,
  torchShape: readonly number[],
  data: Float32Array,
): Float32Array {
  if (layout === "plain") return data;
  if (layout === "linear") {
    const [out, inp] = torchShape;
    const r = new Float32Array(data.length);
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inp; i++) r[o * inp + i] = data[i * out + o];
    }
    return r;
  }
  const [o, c, kh, kw] = torchShape;
  const r = new Float32Array(data.length);
  for (let oo = 0; oo < o; oo++) {
    for (let cc = 0; cc < c; cc++) {
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          r[((oo * c + cc) * kh + i) * kw + j] = data[((i * kw + j) * c + cc) * o + oo];
        }
      }
    }
  }
  return r;
}

/**
 * The internal shape of a parameter given its PyTorch shape and layout.
 * @param layout the layout
 * @param torchShape PyTorch-layout shape
 * @returns the internal shape
 */
export function internalShape(layout: ParamLayout, torchShape: readonly number[]): number[] {
  if (layout === "linear") return [torchShape[1], torchShape[0]];
  if (layout === "conv") {
    const [o, c, kh, kw] = torchShape;
    return [kh * kw * c, o];
  }
  return [...torchShape];
}

/**
 * A model's parameters by reference name, in a stable (insertion) order.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { ParamStore } from "@lib/models";
 * const p = new ParamStore("demo");
 * p.add("fc.weight", tf.zeros([3, 2]), { shape: [2, 3], layout: "linear" });
 * const sd = p.stateDict();
 * console.assert(sd.get("fc.weight")!.shape.join() === "2,3");
 * p.dispose();
 * ```
 */
export class ParamStore {
  #entries = new Map<string, ParamEntry>();
  #byVarName = new Map<string, string>();
  readonly #prefix: string;

  /**
   * An empty store.
   * @param label a short label for the tfjs variable names (made unique per store)
   */
  constructor(label: string) {
    this.#prefix = `${label}#${++storeCounter}/`;
  }

  /**
   * Register a parameter. Takes ownership of `value` (it becomes the variable).
   * @param name reference state-dict name
   * @param value initial value in the internal layout (float32)
   * @param options PyTorch shape, layout, trainable
   * @returns the variable
   * @throws {TypeError} for a duplicate name or a shape that does not fit the layout
   */
  add(name: string, value: tf.Tensor, options: AddParamOptions = {}): tf.Variable {
    if (this.#entries.has(name)) throw new TypeError(`Parameter "${name}" is defined twice`);
    const layout = options.layout ?? "plain";
    const shape = options.shape ?? [...value.shape];
    const want = internalShape(layout, shape);
    if (want.length !== value.rank || want.some((d, i) => d !== value.shape[i])) {
      throw new TypeError(
        `Parameter "${name}": internal value ${shapeStr(value.shape)} does not fit ` +
          `${layout} layout of ${shapeStr(shape)} (expected ${shapeStr(want)})`,
      );
    }
    const trainable = options.trainable ?? true;
    const variable = tf.variable(value, trainable, this.#prefix + name, "float32");
    value.dispose();
    this.#entries.set(name, { name, variable, trainable, shape, layout });
    this.#byVarName.set(variable.name, name);
    return variable;
  }

  /**
   * The variable of a parameter.
   * @param name reference name
   * @returns the variable (internal layout)
   * @throws {RangeError} for an unknown name
   */
  get(name: string): tf.Variable {
    const e = this.#entries.get(name);
    if (e === undefined) throw new RangeError(`The model has no parameter "${name}"`);
    return e.variable;
  }

  /**
   * The entry (variable, shape, layout, trainable) of a parameter.
   * @param name reference name
   * @returns its entry
   * @throws {RangeError} for an unknown name
   */
  entry(name: string): ParamEntry {
    const e = this.#entries.get(name);
    if (e === undefined) throw new RangeError(`The model has no parameter "${name}"`);
    return e;
  }

  /**
   * Whether a parameter exists.
   * @param name reference name
   * @returns whether the model has it
   */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /**
   * Every parameter.
   * @returns the entries, in registration order (stable across runs)
   */
  entries(): ParamEntry[] {
    return [...this.#entries.values()];
  }

  /**
   * Every reference name.
   * @returns the names, in registration order
   */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  /**
   * The variables the optimizer trains.
   * @returns the trainable variables, in registration order
   */
  trainableVariables(): tf.Variable[] {
    return this.entries().filter((e) => e.trainable).map((e) => e.variable);
  }

  /**
   * The number of scalar parameters.
   * @param trainableOnly count only trainable parameters
   * @returns the number of scalar parameters
   */
  count(trainableOnly = false): number {
    let n = 0;
    for (const e of this.#entries.values()) if (!trainableOnly || e.trainable) n += sizeOf(e.shape);
    return n;
  }

  /**
   * The reference name of one of this store's variables.
   * @param variableName `tf.Variable.name`
   * @returns the reference name, or undefined when the variable is not this store's
   */
  nameOfVariable(variableName: string): string | undefined {
    return this.#byVarName.get(variableName);
  }

  /**
   * Every parameter in PyTorch layout (copies), by reference name. Reads synchronously
   * (cpu, wasm); use {@linkcode ParamStore.readStateDict} on GPU backends.
   * @returns float32 host tensors, in registration order
   */
  stateDict(): Map<string, HostTensor> {
    const out = new Map<string, HostTensor>();
    for (const e of this.#entries.values()) {
      out.set(e.name, this.toTorch(e.name, e.variable));
    }
    return out;
  }

  /**
   * Convert a tensor in a parameter's internal layout (its value or its gradient) to a
   * PyTorch-layout host tensor (synchronous read: cpu, wasm; see
   * {@linkcode ParamStore.toTorchAsync}).
   * @param name reference name of the parameter
   * @param t a tensor of the parameter's internal shape
   * @returns float32 host tensor in PyTorch layout
   */
  toTorch(name: string, t: tf.Tensor): HostTensor<"float32"> {
    const e = this.entry(name);
    const raw = t.dataSync() as Float32Array;
    // dataSync may return a backend's own buffer (cpu): never hand it out.
    const data = e.layout === "plain"
      ? new Float32Array(raw)
      : internalToTorch(e.layout, e.shape, raw);
    return { dtype: "float32", shape: [...e.shape], data };
  }

  /**
   * Like {@linkcode ParamStore.toTorch} with an asynchronous read (works on every
   * backend, webgpu included).
   * @param name reference name of the parameter
   * @param t a tensor of the parameter's internal shape
   * @returns float32 host tensor in PyTorch layout
   */
  async toTorchAsync(name: string, t: tf.Tensor): Promise<HostTensor<"float32">> {
    const e = this.entry(name);
    const raw = Float32Array.from(await t.data() as Float32Array);
    const data = e.layout === "plain" ? raw : internalToTorch(e.layout, e.shape, raw);
    return { dtype: "float32", shape: [...e.shape], data };
  }

  /**
   * Like {@linkcode ParamStore.stateDict} with asynchronous reads (every backend).
   * @returns float32 host tensors in PyTorch layout, in registration order
   */
  async readStateDict(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const e of this.#entries.values()) {
      out.set(e.name, await this.toTorchAsync(e.name, e.variable));
    }
    return out;
  }

  /**
   * Load parameters from a PyTorch-layout state dict (float32, or any float/int dtype,
   * converted to float32).
   *
   * @param stateDict tensors by reference name
   * @param options strict, or a filter of the model names that take part
   * @returns what was loaded, missing, unexpected and mismatched
   * @throws {TypeError} when `strict` and anything is missing, unexpected or mismatched
   */
  loadStateDict(stateDict: Map<string, HostTensor>, options: LoadOptions = {}): LoadReport {
    const select = options.select ?? (() => true);
    const report: LoadReport = { loaded: [], missing: [], unexpected: [], mismatchedShapes: [] };
    const pending: [ParamEntry, Float32Array][] = [];
    for (const e of this.#entries.values()) {
      if (!select(e.name)) continue;
      const t = stateDict.get(e.name);
      if (t === undefined) {
        report.missing.push(e.name);
        continue;
      }
      if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        report.mismatchedShapes.push(
          `${e.name}: got ${shapeStr(t.shape)}, expected ${shapeStr(e.shape)}`,
        );
        continue;
      }
      pending.push([e, torchToInternal(e.layout, e.shape, toFloat32(t))]);
    }
    for (const name of stateDict.keys()) {
      if (!this.#entries.has(name) || !select(name)) report.unexpected.push(name);
    }
    const problems = report.missing.length + report.unexpected.length +
      report.mismatchedShapes.length;
    if (options.strict && problems > 0) {
      throw new TypeError(
        `Cannot load the state dict strictly: ${
          [
            report.missing.length ? `missing ${report.missing.join(", ")}` : "",
            report.unexpected.length ? `unexpected ${report.unexpected.join(", ")}` : "",
            report.mismatchedShapes.length
              ? `mismatched shapes ${report.mismatchedShapes.join("; ")}`
              : "",
          ].filter((s) => s !== "").join("; ")
        }`,
      );
    }
    for (const [e, data] of pending) {
      const v = tf.tensor(data, e.variable.shape, "float32");
      e.variable.assign(v);
      v.dispose();
      report.loaded.push(e.name);
    }
    return report;
  }

  /**
   * The value and the gradients of a scalar function of this store's trainable
   * parameters (`tf.variableGrads` over exactly these variables).
   *
   * @param f computes the scalar (tensors it creates are disposed, except the value)
   * @returns `value` and `grads` keyed by reference name (internal layout), all owned
   *   by the caller
   */
  valueAndGrads(f: () => tf.Scalar): { value: tf.Scalar; grads: Map<string, tf.Tensor> } {
    const { value, grads } = tf.variableGrads(f, this.trainableVariables());
    const out = new Map<string, tf.Tensor>();
    for (const e of this.#entries.values()) {
      const g = grads[e.variable.name];
      if (g !== undefined) out.set(e.name, g);
    }
    return { value, grads: out };
  }

  /** Dispose every variable. The store is unusable afterwards. */
  dispose(): void {
    for (const e of this.#entries.values()) e.variable.dispose();
    this.#entries.clear();
    this.#byVarName.clear();
  }
}
