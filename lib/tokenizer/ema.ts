/**
 * The codebook's training state: exponential moving averages of code usage and of the
 * (unit) encoder vectors assigned to each code (EMA VQ-VAE, van den Oord et al. 2017),
 * plus restarts of dead codes from recent encoder outputs. Kept on the host in float64,
 * so that a checkpoint resumes it exactly.
 *
 * @module
 */
import type { HostTensor } from "../io/mod.ts";
import type { Rng } from "../random/mod.ts";

/**
 * EMA statistics of a cosine codebook of K codes of width d.
 *
 * Units: `counts[k]` is the moving average of assignments to code k per step; the mean
 * over codes is `vectorsPerStep / K`.
 *
 * @example
 * ```ts
 * import { EmaCodebook } from "@lib/tokenizer";
 * import { Rng } from "@lib/random";
 * const ema = new EmaCodebook(2, 2);
 * const e = new Float32Array([1, 0, 0, 1, 1, 0]);
 * ema.initFromVectors(e, new Rng(0));
 * ema.update(e, new Int32Array([0, 1, 0]), 0.5);
 * console.assert(ema.codebook().length === 4);
 * ```
 */
export class EmaCodebook {
  /** Number of codes K. */
  readonly size: number;
  /** Code width d. */
  readonly dim: number;
  /** Moving average of assignments per step, `[K]`. */
  readonly counts: Float64Array;
  /** Moving average of the sum of assigned vectors, `[K, d]`. */
  readonly sums: Float64Array;

  /**
   * Zero statistics; call {@linkcode EmaCodebook.initFromVectors} before the first update.
   *
   * @param size K
   * @param dim d
   */
  constructor(size: number, dim: number) {
    this.size = size;
    this.dim = dim;
    this.counts = new Float64Array(size);
    this.sums = new Float64Array(size * dim);
  }

  #setCode(k: number, v: Float32Array, vOffset: number, count: number): void {
    const d = this.dim;
    this.counts[k] = count;
    for (let j = 0; j < d; j++) this.sums[k * d + j] = v[vOffset + j] * count;
  }

  /**
   * Data-dependent initialization: every code starts at a randomly drawn encoder vector,
   * with the mean usage as its count.
   *
   * @param e `[N, d]` unit encoder vectors, row-major
   * @param rng the generator for the draws
   */
  initFromVectors(e: Float32Array, rng: Rng): void {
    const n = e.length / this.dim;
    const mean = n / this.size;
    for (let k = 0; k < this.size; k++) this.#setCode(k, e, rng.int(0, n) * this.dim, mean);
  }

  /**
   * One EMA step: `counts <- decay*counts + (1-decay)*n_k`,
   * `sums <- decay*sums + (1-decay)*sum_{i: code i = k} e_i`.
   *
   * @param e `[N, d]` encoder vectors
   * @param codes `[N]` their assigned codes
   * @param decay the EMA decay in [0, 1)
   * @throws {RangeError} for a code outside [0, K)
   */
  update(e: Float32Array, codes: Int32Array, decay: number): void {
    const K = this.size, d = this.dim, n = codes.length;
    const cnt = new Float64Array(K);
    const sum = new Float64Array(K * d);
    for (let i = 0; i < n; i++) {
      const k = codes[i];
      if (!(k >= 0 && k < K)) throw new RangeError(`EMA update got code ${k} outside [0, ${K})`);
      cnt[k] += 1;
      const o = k * d, io = i * d;
      for (let j = 0; j < d; j++) sum[o + j] += e[io + j];
    }
    const a = 1 - decay;
    for (let k = 0; k < K; k++) this.counts[k] = decay * this.counts[k] + a * cnt[k];
    for (let i = 0; i < K * d; i++) this.sums[i] = decay * this.sums[i] + a * sum[i];
  }

  /**
   * Restart dead codes: each code whose count is below `threshold * mean` moves to a
   * randomly drawn vector of `e` and gets the mean count (so it has time to be used).
   *
   * @param e `[N, d]` recent unit encoder vectors
   * @param threshold the fraction of the mean usage under which a code is dead
   * @param rng the generator for the draws
   * @returns the restarted codes
   */
  restartDead(e: Float32Array, threshold: number, rng: Rng): number[] {
    const n = e.length / this.dim;
    const mean = n / this.size;
    const dead: number[] = [];
    for (let k = 0; k < this.size; k++) {
      if (this.counts[k] < threshold * mean) dead.push(k);
    }
    for (const k of dead) this.#setCode(k, e, rng.int(0, n) * this.dim, mean);
    return dead;
  }

  /**
   * The current codebook: each code's average vector, L2-normalized (a code never
   * assigned keeps a zero row only if its sum is exactly zero).
   *
   * @returns `[K, d]` float32, row-major
   */
  codebook(): Float32Array {
    const d = this.dim;
    const out = new Float32Array(this.size * d);
    for (let k = 0; k < this.size; k++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += this.sums[k * d + j] ** 2;
      const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
      for (let j = 0; j < d; j++) out[k * d + j] = this.sums[k * d + j] * inv;
    }
    return out;
  }

  /**
   * The state as host tensors (`ema.counts` `[K]`, `ema.sums` `[K, d]`, float64).
   * @returns new host tensors
   */
  toTensors(): Map<string, HostTensor> {
    return new Map<string, HostTensor>([
      ["ema.counts", { dtype: "float64", shape: [this.size], data: this.counts.slice() }],
      ["ema.sums", { dtype: "float64", shape: [this.size, this.dim], data: this.sums.slice() }],
    ]);
  }

  /**
   * Restore a state saved by {@linkcode EmaCodebook.toTensors}.
   * @param tensors holding `ema.counts` and `ema.sums`
   * @param source file name for messages
   * @throws {TypeError} for a missing tensor or a wrong shape or dtype
   */
  loadTensors(tensors: ReadonlyMap<string, HostTensor>, source = "<tensors>"): void {
    const c = tensors.get("ema.counts"), s = tensors.get("ema.sums");
    if (c?.dtype !== "float64" || c.shape.join() !== `${this.size}`) {
      throw new TypeError(
        `Cannot load "ema.counts" from "${source}": expected float64 [${this.size}]`,
      );
    }
    if (s?.dtype !== "float64" || s.shape.join() !== `${this.size},${this.dim}`) {
      throw new TypeError(
        `Cannot load "ema.sums" from "${source}": expected float64 [${this.size}, ${this.dim}]`,
      );
    }
    this.counts.set(c.data as Float64Array);
    this.sums.set(s.data as Float64Array);
  }
}
