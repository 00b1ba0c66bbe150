/**
 * A linear probe on token grids: multinomial logistic regression on one-hot
 * (position, code) features, trained by seeded SGD in plain JS. A quick check that a
 * tokenizer's codes carry class information (the committed Fashion-MNIST tokens must
 * reach >= 80% test accuracy this way).
 *
 * @module
 */
import { Rng } from "../random/mod.ts";

/** Options of {@linkcode linearProbe}. */
export interface LinearProbeOptions {
  /** Passes over the training records. @default {4} */
  epochs?: number;
  /** Initial SGD step (decays linearly to 10% of it). @default {0.05} */
  lr?: number;
  /** L2 weight decay per step. @default {1e-6} */
  weightDecay?: number;
  /** Seed of the data order. @default {0} */
  seed?: number;
}

/** Token grids with labels, as the probe takes them. */
export interface ProbeSet {
  /** `[N * L]` codes, L per record, row-major. */
  codes: Int32Array;
  /** `[N]` class labels in [0, classes). */
  labels: Int32Array;
}

/** What {@linkcode linearProbe} measured. */
export interface LinearProbeResult {
  /** Accuracy on the training records. */
  trainAccuracy: number;
  /** Accuracy on the test records. */
  testAccuracy: number;
  /** Feature count L * K. */
  features: number;
  /** Classes. */
  classes: number;
}

function check(set: ProbeSet, L: number, K: number, classes: number, what: string): number {
  const N = set.labels.length;
  if (set.codes.length !== N * L) {
    throw new TypeError(`Cannot probe ${what}: ${set.codes.length} codes for ${N} records of ${L}`);
  }
  for (let i = 0; i < set.codes.length; i++) {
    if (!(set.codes[i] >= 0 && set.codes[i] < K)) {
      throw new RangeError(
        `Cannot probe ${what}: record ${Math.floor(i / L)} has code ${set.codes[i]} >= ${K}`,
      );
    }
  }
  for (let i = 0; i < N; i++) {
    if (!(set.labels[i] >= 0 && set.labels[i] < classes)) {
      throw new RangeError(
        `Cannot probe ${what}: label ${set.labels[i]} of record ${i} >= ${classes}`,
      );
    }
  }
  return N;
}

/**
 * Train a linear classifier on one-hot (position, code) features and report accuracy.
 *
 * @param train training records
 * @param test test records
 * @param codesPerRecord L (n*n)
 * @param codebookSize K
 * @param options epochs, step size, decay, seed
 * @returns train and test accuracy
 * @throws {TypeError} for a code count that is not N * L
 * @throws {RangeError} for a code >= K or a negative label
 *
 * @example
 * ```ts
 * import { linearProbe } from "@lib/tokenizer";
 * // class = whether the single code is 1
 * const set = { codes: new Int32Array([0, 1, 0, 1]), labels: new Int32Array([0, 1, 0, 1]) };
 * console.assert(linearProbe(set, set, 1, 2).testAccuracy === 1);
 * ```
 */
export function linearProbe(
  train: ProbeSet,
  test: ProbeSet,
  codesPerRecord: number,
  codebookSize: number,
  options: LinearProbeOptions = {},
): LinearProbeResult {
  const L = codesPerRecord, K = codebookSize;
  let classes = 0;
  for (const l of train.labels) classes = Math.max(classes, l + 1);
  for (const l of test.labels) classes = Math.max(classes, l + 1);
  const N = check(train, L, K, classes, "training records");
  const M = check(test, L, K, classes, "test records");
  const epochs = options.epochs ?? 4;
  const lr0 = options.lr ?? 0.05;
  const wd = options.weightDecay ?? 1e-6;
  const rng = new Rng(options.seed ?? 0);
  const C = classes;
  const W = new Float32Array(L * K * C);
  const b = new Float32Array(C);
  const logits = new Float64Array(C);
  const forward = (codes: Int32Array, r: number) => {
    for (let j = 0; j < C; j++) logits[j] = b[j];
    for (let p = 0; p < L; p++) {
      const o = (p * K + codes[r * L + p]) * C;
      for (let j = 0; j < C; j++) logits[j] += W[o + j];
    }
  };
  const total = epochs * N;
  let t = 0;
  for (let e = 0; e < epochs; e++) {
    const order = rng.permutation(N);
    for (const r of order) {
      const lr = lr0 * (1 - 0.9 * t / total);
      t++;
      forward(train.codes, r);
      let max = -Infinity;
      for (let j = 0; j < C; j++) max = Math.max(max, logits[j]);
      let z = 0;
      for (let j = 0; j < C; j++) z += logits[j] = Math.exp(logits[j] - max);
      const y = train.labels[r];
      for (let j = 0; j < C; j++) {
        const g = logits[j] / z - (j === y ? 1 : 0);
        logits[j] = g;
        b[j] -= lr * g;
      }
      for (let p = 0; p < L; p++) {
        const o = (p * K + train.codes[r * L + p]) * C;
        for (let j = 0; j < C; j++) W[o + j] -= lr * (logits[j] + wd * W[o + j]);
      }
    }
  }
  const accuracy = (set: ProbeSet, n: number) => {
    let ok = 0;
    for (let r = 0; r < n; r++) {
      forward(set.codes, r);
      let best = 0;
      for (let j = 1; j < C; j++) if (logits[j] > logits[best]) best = j;
      if (best === set.labels[r]) ok++;
    }
    return ok / n;
  };
  return {
    trainAccuracy: accuracy(train, N),
    testAccuracy: accuracy(test, M),
    features: L * K,
    classes: C,
  };
}
