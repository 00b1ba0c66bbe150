/**
 * A tiny but real token classifier for loop tests: code embeddings (one-hot matMul),
 * mean over positions, a linear head; and a small in-memory token dataset.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "@lib/random";
import type { TokenSource, TrainableEntry, TrainableParams } from "@lib/train";

export class TinyClassifier implements TrainableParams {
  readonly K: number;
  readonly C: number;
  #entries: TrainableEntry[] = [];

  constructor(K: number, D: number, C: number, seed: number) {
    this.K = K;
    this.C = C;
    const rng = new Rng(seed);
    const add = (name: string, shape: number[], std: number, trainable = true) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = Float32Array.from(rng.normalArray(n), (x) => x * std);
      const variable = tf.tidy(() => tf.variable(tf.tensor(data, shape), trainable));
      this.#entries.push({ name, variable, trainable, shape });
    };
    add("token_emb.weight", [K, D], 0.5);
    add("norm.weight", [D], 0.1);
    add("head.weight", [D, C], 0.3);
    add("head.bias", [C], 0.0);
    add("pos_embed", [1, D], 0.1, false);
  }

  entries(): readonly TrainableEntry[] {
    return this.#entries;
  }

  #v(name: string): tf.Variable {
    return this.#entries.find((e) => e.name === name)!.variable;
  }

  /** logits [B, C] of codes [B, L] int32 (optionally scaled inputs, for NaN tests) */
  logits(codes: tf.Tensor2D, scale = 1): tf.Tensor2D {
    return tf.tidy(() => {
      const [B, L] = codes.shape;
      const onehot = tf.oneHot(codes.reshape([-1]), this.K).toFloat();
      const emb = tf.matMul(onehot, this.#v("token_emb.weight")).add(this.#v("pos_embed"));
      const pooled = emb.reshape([B, L, -1]).mean(1).mul(this.#v("norm.weight").add(1));
      return tf.matMul(pooled.mul(scale), this.#v("head.weight")).add(this.#v("head.bias"));
    });
  }

  loss(codes: tf.Tensor2D, labels: Int32Array, scale = 1): tf.Scalar {
    return tf.tidy(() => {
      const y = tf.oneHot(tf.tensor1d(labels, "int32"), this.C).toFloat();
      return tf.losses.softmaxCrossEntropy(y, this.logits(codes, scale)) as tf.Scalar;
    });
  }

  valueAndGrads(f: () => tf.Scalar): { value: tf.Scalar; grads: Map<string, tf.Tensor> } {
    const vars = this.#entries.filter((e) => e.trainable).map((e) => e.variable);
    const { value, grads } = tf.variableGrads(f, vars);
    const out = new Map<string, tf.Tensor>();
    for (const e of this.#entries) {
      const g = grads[e.variable.name];
      if (g !== undefined) out.set(e.name, g);
    }
    return { value, grads: out };
  }

  values(): Map<string, Float32Array> {
    return new Map(
      this.#entries.map((e) => [e.name, e.variable.dataSync().slice() as Float32Array]),
    );
  }

  load(values: Map<string, Float32Array>): void {
    for (const e of this.#entries) {
      tf.tidy(() => e.variable.assign(tf.tensor(values.get(e.name)!, e.variable.shape)));
    }
  }

  dispose(): void {
    for (const e of this.#entries) e.variable.dispose();
  }
}

/** N records of n x n codes < K whose label is a function of the codes (learnable). */
export function tinyData(N: number, n: number, K: number, C: number, seed: number): TokenSource {
  const rng = new Rng(seed);
  const codes = new Int32Array(N * n * n);
  const labels = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    labels[i] = rng.int(0, C);
    for (let j = 0; j < n * n; j++) {
      // codes biased towards a label-specific range
      codes[i * n * n + j] = rng.uniform() < 0.6
        ? (labels[i] * Math.floor(K / C) + rng.int(0, Math.floor(K / C))) % K
        : rng.int(0, K);
    }
  }
  return {
    length: N,
    gridSide: n,
    labels,
    readBatch(indices: ArrayLike<number>, out?: Int32Array): Int32Array {
      const nn = n * n;
      const o = out ?? new Int32Array(indices.length * nn);
      for (let b = 0; b < indices.length; b++) {
        o.set(codes.subarray(indices[b] * nn, (indices[b] + 1) * nn), b * nn);
      }
      return o;
    },
  };
}
