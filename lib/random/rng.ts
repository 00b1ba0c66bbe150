/**
 * A small, fast, seeded random generator with a serializable state.
 *
 * xoshiro128** (Blackman and Vigna) on four 32-bit words, seeded through splitmix32.
 * Every random draw in seitpp comes from an injected {@linkcode Rng}: masking,
 * augmentations, initialization, data order. Its state is plain JSON, so a
 * checkpoint can store it and a resumed run continues the exact same stream.
 *
 * @module
 */

/** The serializable state of an {@linkcode Rng}: four unsigned 32-bit words. */
export type RngState = [number, number, number, number];

function splitmix32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x9e3779b9) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a of a string, for deriving named sub-streams. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * A seeded pseudo-random generator (xoshiro128**).
 *
 * @example
 * ```ts
 * import { Rng } from "@lib/random";
 * const a = new Rng(42), b = new Rng(42);
 * console.assert(a.uniform() === b.uniform());
 * const saved = a.getState();
 * const x = a.normal();
 * a.setState(saved);
 * console.assert(a.normal() === x);
 * ```
 */
export class Rng {
  #s = new Uint32Array(4);

  /**
   * @param seed any integer (only its low 32 bits are used) or a saved state
   */
  constructor(seed: number | RngState) {
    if (Array.isArray(seed)) {
      this.setState(seed);
    } else {
      if (!Number.isFinite(seed)) throw new RangeError(`Cannot seed an Rng with ${seed}`);
      const sm = splitmix32(Math.floor(seed) >>> 0 ^ Math.floor(seed / 2 ** 32));
      for (let i = 0; i < 4; i++) this.#s[i] = sm();
      if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
    }
  }

  /** @returns the state, plain JSON, to store in a checkpoint */
  getState(): RngState {
    return [this.#s[0], this.#s[1], this.#s[2], this.#s[3]];
  }

  /**
   * Restore a state from {@linkcode Rng.getState}.
   * @param state four unsigned 32-bit integers, not all zero
   * @throws {TypeError} for anything else
   */
  setState(state: RngState): void {
    if (
      !Array.isArray(state) || state.length !== 4 ||
      state.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff) ||
      state.every((w) => w === 0)
    ) {
      throw new TypeError(
        `Cannot restore an Rng from ${JSON.stringify(state)}: expected 4 uint32 words, not all 0`,
      );
    }
    for (let i = 0; i < 4; i++) this.#s[i] = state[i];
  }

  /**
   * An independent generator for a named purpose, derived from this one's current
   * state without advancing it (same state + same name -> same child).
   * @param name what the child stream is for, e.g. `"mask"`
   * @returns a new generator
   */
  fork(name: string): Rng {
    const h = hashString(name);
    const sm = splitmix32(this.#s[0] ^ h);
    const child = new Rng(1);
    child.setState([
      (sm() ^ this.#s[1]) >>> 0,
      (sm() ^ this.#s[2]) >>> 0,
      (sm() ^ this.#s[3]) >>> 0,
      (sm() | 1) >>> 0,
    ]);
    return child;
  }

  /** @returns a uniform unsigned 32-bit integer */
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /**
   * Fill `out` element by element: `below` where the next 32-bit draw is `< threshold`,
   * else `above`. One draw per element: the same draws, in the same order, as calling
   * {@linkcode Rng.nextUint32} `out.length` times (this is its fast path for masks: the
   * state stays in local variables for the whole loop).
   *
   * @param out the array to fill (its length is the number of draws)
   * @param threshold compared with each unsigned 32-bit draw
   * @param below the value where the draw is below the threshold
   * @param above the value elsewhere
   *
   * @example
   * ```ts
   * import { Rng } from "@lib/random";
   * const a = new Rng(3), b = new Rng(3);
   * const out = new Float32Array(4);
   * a.fillThreshold(out, 2 ** 31, 0, 1);
   * console.assert(out.every((x) => x === (b.nextUint32() < 2 ** 31 ? 0 : 1)));
   * ```
   */
  fillThreshold(out: Float32Array, threshold: number, below: number, above: number): void {
    const st = this.#s;
    let s0 = st[0] | 0, s1 = st[1] | 0, s2 = st[2] | 0, s3 = st[3] | 0;
    const n = out.length;
    for (let i = 0; i < n; i++) {
      const x = Math.imul(s1, 5);
      const result = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      out[i] = result < threshold ? below : above;
    }
    st[0] = s0;
    st[1] = s1;
    st[2] = s2;
    st[3] = s3;
  }

  /** @returns a uniform double in [0, 1) with 53 random bits */
  uniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /**
   * @param low inclusive lower bound
   * @param high exclusive upper bound
   * @returns a uniform double in [low, high)
   */
  uniformIn(low: number, high: number): number {
    return low + (high - low) * this.uniform();
  }

  /**
   * A uniform integer in [low, high), without modulo bias.
   * @param low inclusive lower bound
   * @param high exclusive upper bound (high - low must be in 1..2^32)
   * @returns the integer
   * @throws {RangeError} for an empty or too large range
   */
  int(low: number, high: number): number {
    const span = high - low;
    if (!Number.isInteger(low) || !Number.isInteger(high) || span < 1 || span > 2 ** 32) {
      throw new RangeError(`Cannot draw an integer from [${low}, ${high})`);
    }
    if (span === 2 ** 32) return low + this.nextUint32();
    const limit = 2 ** 32 - (2 ** 32 % span);
    let x: number;
    do x = this.nextUint32(); while (x >= limit);
    return low + (x % span);
  }

  /** @returns a standard normal draw (Box-Muller, one draw per call) */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /**
   * A normal(mean, std) draw truncated to [low, high], by rejection (exact).
   * @param mean the mean of the untruncated normal
   * @param std its standard deviation (> 0)
   * @param low lower bound
   * @param high upper bound (> low)
   * @returns the draw
   * @throws {RangeError} for bad parameters or an interval of negligible mass
   */
  truncatedNormal(mean: number, std: number, low: number, high: number): number {
    if (!(std > 0) || !(high > low)) {
      throw new RangeError(`Cannot sample N(${mean}, ${std}) truncated to [${low}, ${high}]`);
    }
    for (let i = 0; i < 1_000_000; i++) {
      const x = mean + std * this.normal();
      if (x >= low && x <= high) return x;
    }
    throw new RangeError(
      `N(${mean}, ${std}) has almost no mass in [${low}, ${high}]: rejection sampling gave up`,
    );
  }

  /**
   * @param p probability of true
   * @returns true with probability p
   */
  bernoulli(p: number): boolean {
    return this.uniform() < p;
  }

  /**
   * A uniformly random permutation of 0..n-1 (Fisher-Yates).
   * @param n length
   * @returns the permutation
   */
  permutation(n: number): Int32Array {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = i;
    this.shuffle(out);
    return out;
  }

  /**
   * Shuffle in place (Fisher-Yates).
   * @param a the array to shuffle
   * @returns the same array
   */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /**
   * @param n how many
   * @returns n standard normal draws
   */
  normalArray(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal();
    return out;
  }

  /**
   * @param n how many
   * @param low inclusive lower bound
   * @param high exclusive upper bound
   * @returns n uniform draws in [low, high)
   */
  uniformArray(n: number, low = 0, high = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = low + (high - low) * this.uniform();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
