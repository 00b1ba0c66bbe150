/**
 * Student-t intervals over seeds: the t quantile (from the regularized incomplete beta
 * function), the interval of one mean (`tInterval`, n - 1 degrees of freedom) and Welch's
 * interval of a difference of two means (`welchInterval`, Welch-Satterthwaite degrees of
 * freedom; the two groups need not have the same seeds or the same variance).
 *
 * @module
 */

const LANCZOS = [
  676.5203681218851,
  -1259.1392167224028,
  771.32342877765313,
  -176.61502916214059,
  12.507343278686905,
  -0.13857109526572012,
  9.9843695780195716e-6,
  1.5056327351493116e-7,
];

/** ln Gamma(x) for x > 0 (Lanczos, g = 7; relative error ~1e-15). */
function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let a = 0.99999999999980993;
  const t = z + 7.5;
  for (let i = 0; i < LANCZOS.length; i++) a += LANCZOS[i] / (z + i + 1);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The continued fraction of the incomplete beta function (modified Lentz). */
function betaFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - (a + b) * x / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/**
 * The regularized incomplete beta function I_x(a, b).
 * @param x in [0, 1]
 * @param a > 0
 * @param b > 0
 * @returns I_x(a, b) in [0, 1]
 * @throws {RangeError} for x outside [0, 1] or a non-positive a or b
 */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (!(x >= 0 && x <= 1) || !(a > 0) || !(b > 0)) {
    throw new RangeError(
      `incompleteBeta: expected x in [0, 1], a > 0, b > 0; got ${x}, ${a}, ${b}`,
    );
  }
  if (x === 0 || x === 1) return x;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) +
    b * Math.log(1 - x);
  const front = Math.exp(lnFront);
  return x < (a + 1) / (a + b + 2)
    ? front * betaFraction(a, b, x) / a
    : 1 - front * betaFraction(b, a, 1 - x) / b;
}

/**
 * The CDF of Student's t distribution.
 * @param t the value
 * @param df degrees of freedom (> 0, need not be an integer)
 * @returns P(T <= t)
 * @throws {RangeError} for df <= 0
 */
export function studentTCdf(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTCdf: expected df > 0, got ${df}`);
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/**
 * The quantile of Student's t distribution (bisection on the CDF to ~1e-12).
 * @param p probability in (0, 1)
 * @param df degrees of freedom (> 0)
 * @returns t with P(T <= t) = p
 * @throws {RangeError} for p outside (0, 1) or df <= 0
 */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`studentTQuantile: expected p in (0, 1), got ${p}`);
  if (!(df > 0)) throw new RangeError(`studentTQuantile: expected df > 0, got ${df}`);
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  let lo = 0, hi = 1;
  while (studentTCdf(hi, df) < p) hi *= 2;
  for (let i = 0; i < 200 && hi - lo > 1e-12 * Math.max(1, hi); i++) {
    const mid = (lo + hi) / 2;
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** A mean (or difference of means) with its two-sided t interval. */
export interface TInterval {
  /** The estimate. */
  estimate: number;
  /** Lower end, or null when it cannot be formed (fewer than 2 values in a group). */
  low: number | null;
  /** Upper end, or null. */
  high: number | null;
  /** Degrees of freedom, or null. */
  df: number | null;
}

function meanVar(v: readonly number[]): { mean: number; variance: number | null } {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const variance = v.length > 1
    ? v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)
    : null;
  return { mean, variance };
}

/**
 * The two-sided t interval of a mean: mean +- t(1 - alpha/2, n - 1) * s / sqrt(n).
 * @param values the sample (one value per seed)
 * @param level confidence level @default {0.95}
 * @returns the interval (ends null for n = 1)
 * @throws {RangeError} for an empty sample or a level outside (0, 1)
 */
export function tInterval(values: readonly number[], level = 0.95): TInterval {
  if (values.length === 0) throw new RangeError("tInterval: empty sample");
  if (!(level > 0 && level < 1)) throw new RangeError(`tInterval: level ${level} not in (0, 1)`);
  const { mean, variance } = meanVar(values);
  if (variance === null) return { estimate: mean, low: null, high: null, df: null };
  const df = values.length - 1;
  const half = studentTQuantile(1 - (1 - level) / 2, df) * Math.sqrt(variance / values.length);
  return { estimate: mean, low: mean - half, high: mean + half, df };
}

/**
 * Welch's two-sided t interval of mean(b) - mean(a), with Welch-Satterthwaite degrees of
 * freedom (unequal variances; unpaired).
 * @param a the baseline's sample
 * @param b the other sample
 * @param level confidence level @default {0.95}
 * @returns the interval (ends null when a group has one value, or both have zero spread)
 * @throws {RangeError} for an empty sample or a level outside (0, 1)
 */
export function welchInterval(
  a: readonly number[],
  b: readonly number[],
  level = 0.95,
): TInterval {
  if (a.length === 0 || b.length === 0) throw new RangeError("welchInterval: empty sample");
  if (!(level > 0 && level < 1)) {
    throw new RangeError(`welchInterval: level ${level} not in (0, 1)`);
  }
  const A = meanVar(a), B = meanVar(b);
  const estimate = B.mean - A.mean;
  if (A.variance === null || B.variance === null) {
    return { estimate, low: null, high: null, df: null };
  }
  const va = A.variance / a.length, vb = B.variance / b.length;
  const se2 = va + vb;
  if (se2 === 0) return { estimate, low: estimate, high: estimate, df: null };
  const df = se2 * se2 / (va * va / (a.length - 1) + vb * vb / (b.length - 1));
  const half = studentTQuantile(1 - (1 - level) / 2, df) * Math.sqrt(se2);
  return { estimate, low: estimate - half, high: estimate + half, df };
}
