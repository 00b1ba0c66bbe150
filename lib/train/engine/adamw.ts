/**
 * AdamW with decoupled weight decay, step for step as torch 1.13's `torch.optim.AdamW`
 * (single-tensor path), with a per-parameter lr scale and weight decay, and a state
 * that saves and restores exactly.
 *
 * One step of parameter `p` with gradient `g`, scheduled lr `lr`, scale `s`, decay `wd`,
 * and its own step count `t` (incremented first):
 * ```
 * p <- p * (1 - lr*s*wd)
 * m <- b1*m + (1-b1)*g
 * v <- b2*v + (1-b2)*g*g
 * p <- p - (lr*s / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs";
import type { HostTensor } from "../../io/mod.ts";
import { canFuseAdamW, type FusedAdamWItem, fusedAdamWStep } from "./fused_adamw.ts";

/** One parameter handed to {@linkcode AdamW}. */
export interface OptimizerParam {
  /** Reference state-dict name (keys gradients and the saved state). */
  name: string;
  /** The parameter itself (float32). */
  variable: tf.Variable;
  /** Multiplier of the scheduled lr. @default {1} */
  lrScale?: number;
  /** Decoupled weight decay. @default {0} */
  weightDecay?: number;
}

/** Options of {@linkcode AdamW}. */
export interface AdamWOptions {
  /** Moment decay rates (MTM pre-training: [0.9, 0.95]). @default {[0.9, 0.999]} */
  betas?: [number, number];
  /** Added to the denominator. @default {1e-8} */
  eps?: number;
  /**
   * On the wasm backend, update all parameters in one pass in place on the wasm heap
   * (./fused_adamw.ts; bit for bit the tensor path's result). `false` always runs the
   * per-parameter tensor ops; other backends always do. @default {true}
   */
  fused?: boolean;
}

/** The JSON half of an {@linkcode AdamW} state (the moments are tensors). */
export interface AdamWStateJson {
  /** Always `"adamw"`. */
  type: "adamw";
  /** Moment decay rates. */
  betas: [number, number];
  /** Denominator epsilon. */
  eps: number;
  /** Parameter names in optimizer order. */
  names: string[];
  /** Step count of each parameter (same order as `names`). */
  steps: number[];
  /** The lr scale of each parameter, for the record. */
  lrScales: number[];
  /** The weight decay of each parameter, for the record. */
  weightDecays: number[];
}

/** Prefix of first-moment tensors in a saved state. */
export const EXP_AVG_PREFIX = "optimizer.exp_avg.";
/** Prefix of second-moment tensors in a saved state. */
export const EXP_AVG_SQ_PREFIX = "optimizer.exp_avg_sq.";

interface Slot {
  name: string;
  variable: tf.Variable;
  lrScale: number;
  weightDecay: number;
  m: tf.Variable;
  v: tf.Variable;
  step: number;
}

/**
 * torch 1.13 AdamW over named tf.Variables.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs";
 * import { AdamW } from "@lib/train";
 * const w = tf.variable(tf.tensor1d([1, -1]));
 * const opt = new AdamW([{ name: "w", variable: w, weightDecay: 0.1 }]);
 * const g = tf.tensor1d([0.5, 0.5]);
 * opt.step(new Map([["w", g]]), 1e-3);
 * g.dispose();
 * console.assert(Math.abs(w.dataSync()[0] - (1 * (1 - 1e-4) - 1e-3)) < 1e-6);
 * opt.dispose();
 * w.dispose();
 * ```
 */
export class AdamW {
  /** Moment decay rates. */
  readonly betas: [number, number];
  /** Denominator epsilon. */
  readonly eps: number;
  /** Whether the one-pass wasm update may run (see {@linkcode AdamWOptions.fused}). */
  readonly fused: boolean;
  #slots: Slot[] = [];
  #byName = new Map<string, Slot>();

  /**
   * @param params the optimized parameters; their order is the optimizer order
   * @param options betas and eps
   * @throws {TypeError} for duplicate names or non-float32 variables
   * @throws {RangeError} for betas outside [0, 1), eps < 0, or bad scales/decays
   */
  constructor(params: readonly OptimizerParam[], options: AdamWOptions = {}) {
    const betas = options.betas ?? [0.9, 0.999];
    const eps = options.eps ?? 1e-8;
    if (!betas.every((b) => b >= 0 && b < 1)) {
      throw new RangeError(`Cannot use AdamW betas ${JSON.stringify(betas)}: expected [0, 1)`);
    }
    if (!(eps >= 0)) throw new RangeError(`Cannot use AdamW eps ${eps}: expected >= 0`);
    this.betas = [betas[0], betas[1]];
    this.eps = eps;
    this.fused = options.fused ?? true;
    for (const p of params) {
      if (this.#byName.has(p.name)) {
        throw new TypeError(`Cannot optimize "${p.name}" twice`);
      }
      if (p.variable.dtype !== "float32") {
        throw new TypeError(`Cannot optimize "${p.name}": dtype ${p.variable.dtype}, not float32`);
      }
      const lrScale = p.lrScale ?? 1;
      const weightDecay = p.weightDecay ?? 0;
      if (!(lrScale >= 0) || !Number.isFinite(lrScale)) {
        throw new RangeError(`Cannot use lr scale ${lrScale} for "${p.name}"`);
      }
      if (!(weightDecay >= 0) || !Number.isFinite(weightDecay)) {
        throw new RangeError(`Cannot use weight decay ${weightDecay} for "${p.name}"`);
      }
      const slot: Slot = {
        name: p.name,
        variable: p.variable,
        lrScale,
        weightDecay,
        m: tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false)),
        v: tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false)),
        step: 0,
      };
      this.#slots.push(slot);
      this.#byName.set(p.name, slot);
    }
  }

  /** @returns the optimized parameter names, in optimizer order */
  get names(): string[] {
    return this.#slots.map((s) => s.name);
  }

  /**
   * @param name a parameter name
   * @returns how many steps that parameter has taken (0 before the first)
   * @throws {RangeError} for a name the optimizer does not hold
   */
  stepCount(name: string): number {
    return this.#slot(name).step;
  }

  #slot(name: string): Slot {
    const s = this.#byName.get(name);
    if (s === undefined) throw new RangeError(`The optimizer holds no parameter "${name}"`);
    return s;
  }

  /**
   * One AdamW step. Parameters without a gradient in `grads` are skipped (their step
   * count does not advance), as torch skips parameters whose `.grad` is None.
   *
   * @param grads gradients by parameter name (the caller keeps ownership)
   * @param lr the scheduled learning rate (each parameter uses `lr * lrScale`)
   * @throws {RangeError} for a gradient of a parameter the optimizer does not hold,
   *   or a non-finite / negative lr
   * @throws {TypeError} for a gradient whose shape differs from its parameter's
   */
  step(grads: ReadonlyMap<string, tf.Tensor> | Record<string, tf.Tensor>, lr: number): void {
    if (!(lr >= 0) || !Number.isFinite(lr)) {
      throw new RangeError(`Cannot take an AdamW step with lr ${lr}`);
    }
    const map = grads instanceof Map
      ? grads as ReadonlyMap<string, tf.Tensor>
      : new Map(Object.entries(grads as Record<string, tf.Tensor>));
    for (const name of map.keys()) this.#slot(name);
    const [b1, b2] = this.betas;
    const items: FusedAdamWItem[] = [];
    for (const s of this.#slots) {
      const g = map.get(s.name);
      if (g === undefined) continue;
      if (!shapeEq(g.shape, s.variable.shape)) {
        throw new TypeError(
          `Cannot apply gradient of shape [${g.shape}] to "${s.name}" of shape [${s.variable.shape}]`,
        );
      }
      items.push({
        variable: s.variable,
        m: s.m,
        v: s.v,
        grad: g,
        lr: lr * s.lrScale,
        weightDecay: s.weightDecay,
        t: s.step + 1,
      });
    }
    for (const s of this.#slots) if (map.has(s.name)) s.step += 1;
    if (this.fused && canFuseAdamW(items)) {
      fusedAdamWStep(items, this.betas, this.eps);
      return;
    }
    for (const it of items) {
      const plr = it.lr;
      const bc1 = 1 - b1 ** it.t;
      const bc2Sqrt = Math.sqrt(1 - b2 ** it.t);
      const g = it.grad;
      tf.tidy(() => {
        const p = it.variable.mul(1 - plr * it.weightDecay);
        const m = it.m.mul(b1).add(g.mul(1 - b1));
        const v = it.v.mul(b2).add(g.mul(1 - b2).mul(g));
        const denom = v.sqrt().div(bc2Sqrt).add(this.eps);
        it.variable.assign(p.sub(m.mul(plr / bc1).div(denom)));
        it.m.assign(m);
        it.v.assign(v);
      });
    }
  }

  /**
   * The moments as host tensors, named `optimizer.exp_avg.<name>` and
   * `optimizer.exp_avg_sq.<name>`, for a safetensors checkpoint.
   * @returns new host tensors (float32)
   */
  async stateTensors(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const s of this.#slots) {
      out.set(EXP_AVG_PREFIX + s.name, {
        dtype: "float32",
        shape: [...s.m.shape],
        data: (await s.m.data()) as Float32Array,
      });
      out.set(EXP_AVG_SQ_PREFIX + s.name, {
        dtype: "float32",
        shape: [...s.v.shape],
        data: (await s.v.data()) as Float32Array,
      });
    }
    return out;
  }

  /** @returns the JSON half of the state (step counts, hyper-parameters, order) */
  stateJson(): AdamWStateJson {
    return {
      type: "adamw",
      betas: [...this.betas],
      eps: this.eps,
      names: this.names,
      steps: this.#slots.map((s) => s.step),
      lrScales: this.#slots.map((s) => s.lrScale),
      weightDecays: this.#slots.map((s) => s.weightDecay),
    };
  }

  /**
   * Restore a state saved by {@linkcode AdamW.stateJson} + {@linkcode AdamW.stateTensors}.
   * The parameter names must be the same set (order may differ); the moments are
   * copied in.
   *
   * @param json the JSON half
   * @param tensors tensors holding at least every `optimizer.exp_avg(_sq).<name>`
   * @param source where the state came from, for error messages
   * @throws {TypeError} for a missing/extra parameter, a missing moment, or a shape mismatch
   */
  loadState(
    json: AdamWStateJson,
    tensors: ReadonlyMap<string, HostTensor>,
    source = "<state>",
  ): void {
    if (json?.type !== "adamw" || !Array.isArray(json.names) || !Array.isArray(json.steps)) {
      throw new TypeError(`Cannot load optimizer state from "${source}": not an AdamW state`);
    }
    const mine = new Set(this.names);
    const theirs = new Set(json.names);
    const missing = [...mine].filter((n) => !theirs.has(n));
    const extra = [...theirs].filter((n) => !mine.has(n));
    if (missing.length > 0 || extra.length > 0) {
      throw new TypeError(
        `Cannot load optimizer state from "${source}": parameters differ ` +
          `(missing: ${missing.join(", ") || "none"}; unexpected: ${extra.join(", ") || "none"})`,
      );
    }
    const pending: [Slot, HostTensor, HostTensor, number][] = [];
    json.names.forEach((name, i) => {
      const s = this.#slot(name);
      const m = tensors.get(EXP_AVG_PREFIX + name);
      const v = tensors.get(EXP_AVG_SQ_PREFIX + name);
      for (const [t, key] of [[m, EXP_AVG_PREFIX], [v, EXP_AVG_SQ_PREFIX]] as const) {
        if (t === undefined) {
          throw new TypeError(`Cannot load optimizer state from "${source}": no "${key}${name}"`);
        }
        if (!shapeEq(t.shape, s.variable.shape) || t.dtype !== "float32") {
          throw new TypeError(
            `Cannot load "${key}${name}" from "${source}": ${t.dtype} [${t.shape}], ` +
              `expected float32 [${s.variable.shape}]`,
          );
        }
      }
      const step = json.steps[i];
      if (!Number.isInteger(step) || step < 0) {
        throw new TypeError(
          `Cannot load optimizer state from "${source}": step ${step} of "${name}"`,
        );
      }
      pending.push([s, m!, v!, step]);
    });
    for (const [s, m, v, step] of pending) {
      tf.tidy(() => {
        s.m.assign(tf.tensor(m.data as Float32Array, s.variable.shape, "float32"));
        s.v.assign(tf.tensor(v.data as Float32Array, s.variable.shape, "float32"));
      });
      s.step = step;
    }
  }

  /** Free the moment tensors (the parameters belong to the model). */
  dispose(): void {
    for (const s of this.#slots) {
      s.m.dispose();
      s.v.dispose();
    }
    this.#slots = [];
    this.#byName.clear();
  }
}

function shapeEq(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
