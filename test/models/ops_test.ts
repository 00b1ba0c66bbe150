/**
 * The hand-written gradients of lib/models/ops.ts against tfjs autodiff of the naive
 * formulas, on cpu and on wasm (where the fast row kernels run).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  attention,
  bceOneHotRows,
  bmm,
  concatRows,
  dropout,
  dropoutMask,
  gatherRows,
  gelu,
  layerNorm,
  linear,
  linearDetachedWeight,
  softmaxCrossEntropyRows,
} from "@lib/models";
import { Rng } from "@lib/random";
import { filledTensor } from "../../lib/models/_kernels.ts";
import { fillThresholdWasm } from "../../lib/models/_mask_wasm.ts";

function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from(rng.normalArray(n), (v) => v * scale), shape);
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/** Compare value and gradients of `fast` and `naive` (same inputs, a random cotangent). */
function checkGrad(
  name: string,
  inputs: tf.Tensor[],
  fast: (...xs: tf.Tensor[]) => tf.Tensor,
  naive: (...xs: tf.Tensor[]) => tf.Tensor,
  tol = 2e-5,
): void {
  tf.tidy(() => {
    const yf = fast(...inputs);
    const yn = naive(...inputs);
    assert.ok(maxDiff(yf, yn) < tol, `${name}: value differs by ${maxDiff(yf, yn)}`);
    const w = rand(yf.shape, 99);
    const gf = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(fast(...xs), w)))(inputs);
    const gn = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(naive(...xs), w)))(inputs);
    gf.forEach((g, i) => {
      const d = maxDiff(g, gn[i]);
      const scale = Math.max(1, tf.max(tf.abs(gn[i])).dataSync()[0]);
      assert.ok(d < tol * scale, `${name}: gradient ${i} differs by ${d}`);
    });
  });
}

function naiveAttention(qkv: tf.Tensor, b: number, n: number, h: number): tf.Tensor {
  const c = qkv.shape[1]! / 3;
  const hd = c / h;
  const t = tf.transpose(tf.reshape(qkv, [b, n, 3, h, hd]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(t);
  const a = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)));
  return tf.reshape(tf.transpose(tf.matMul(a, v), [0, 2, 1, 3]), [b * n, c]);
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`custom-gradient ops match tfjs autodiff of the naive formulas (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    const x = rand([6, 8], 1);
    const w = rand([8, 5], 2, 0.3);
    const b = rand([5], 3);
    checkGrad(
      "linear",
      [x, w, b],
      (x, w, b) => linear(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D),
      (x, w, b) => tf.add(tf.matMul(x, w), b),
    );
    checkGrad(
      "linear no bias",
      [x, w],
      (x, w) => linear(x as tf.Tensor2D, w as tf.Tensor2D),
      (x, w) => tf.matMul(x, w),
    );
    const wt = rand([5, 8], 4);
    checkGrad(
      "linearDetachedWeight",
      [x, b],
      (x, b) => linearDetachedWeight(x as tf.Tensor2D, wt as tf.Tensor2D, b as tf.Tensor1D),
      (x, b) => tf.add(tf.matMul(x, tf.transpose(wt)), b),
    );
    const g = rand([8], 5, 0.5), be = rand([8], 6, 0.1);
    checkGrad(
      "layerNorm",
      [x, g, be],
      (x, g, b) => layerNorm(x as tf.Tensor2D, g as tf.Tensor1D, b as tf.Tensor1D, 1e-6),
      (x, g, b) => {
        const m = tf.moments(x, -1, true);
        return tf.add(tf.mul(tf.div(tf.sub(x, m.mean), tf.sqrt(tf.add(m.variance, 1e-6))), g), b);
      },
    );
    checkGrad(
      "gelu",
      [x],
      (x) => gelu(x),
      (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))),
    );
    const qkv = rand([2 * 5, 3 * 8], 7);
    checkGrad(
      "attention",
      [qkv],
      (q) => attention(q as tf.Tensor2D, 2, 5, 2),
      (q) => naiveAttention(q, 2, 5, 2),
    );
    const rows = new Int32Array([3, 0, 3, 5, 1]);
    checkGrad(
      "gatherRows (repeated rows accumulate)",
      [x],
      (x) => gatherRows(x as tf.Tensor2D, rows),
      (x) => tf.matMul(tf.oneHot(tf.tensor1d(rows, "int32"), 6).toFloat(), x),
    );
    const targets = tf.tensor1d([0, 4, 2, 2, 1, 3], "int32");
    const logits = rand([6, 5], 8, 2);
    for (const s of [0, 0.1]) {
      checkGrad(
        `softmaxCrossEntropyRows s=${s}`,
        [logits],
        (x) => softmaxCrossEntropyRows(x as tf.Tensor2D, targets, s),
        (x) => {
          const lp = tf.logSoftmax(x);
          const nll = tf.neg(tf.sum(tf.mul(lp, tf.oneHot(targets, 5).toFloat()), -1));
          return tf.add(tf.mul(nll, 1 - s), tf.mul(tf.neg(tf.mean(lp, -1)), s));
        },
      );
    }
    checkGrad(
      "bceOneHotRows",
      [logits],
      (x) => bceOneHotRows(x as tf.Tensor2D, targets),
      (x) => {
        const y = tf.oneHot(targets, 5).toFloat();
        const p = tf.sigmoid(x);
        return tf.mean(
          tf.neg(tf.add(tf.mul(y, tf.log(p)), tf.mul(tf.sub(1, y), tf.log(tf.sub(1, p))))),
          -1,
        );
      },
      1e-4,
    );
    tf.dispose([x, w, b, wt, g, be, qkv, targets, logits]);
    assert.equal(tf.memory().numTensors, before);
  });

  Deno.test(`bmm equals batched tf.matMul, and dropoutMask is seeded and scaled (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const a = rand([7, 3, 4], 1), b = rand([7, 4, 2], 2);
      assert.ok(
        maxDiff(
          bmm(a as tf.Tensor3D, b as tf.Tensor3D),
          tf.matMul(a as tf.Tensor3D, b as tf.Tensor3D),
        ) < 1e-5,
      );
      const m1 = dropoutMask([1000], 0.25, new Rng(3)).dataSync();
      const m2 = dropoutMask([1000], 0.25, new Rng(3)).dataSync();
      assert.deepEqual(m1, m2);
      const zeros = m1.filter((v) => v === 0).length;
      assert.ok(zeros > 200 && zeros < 300, `${zeros} of 1000 dropped at p = 0.25`);
      assert.ok(m1.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6));
      // The definition: element i dropped where the i-th 32-bit draw is below p * 2^32.
      const r = new Rng(3);
      const want = Float32Array.from(
        { length: 1000 },
        () => r.nextUint32() < 0.25 * 2 ** 32 ? 0 : 1 / 0.75,
      );
      assert.deepEqual(m1, want);
      // ... and leaves the generator where those draws leave it.
      const after = new Rng(3);
      dropoutMask([1000], 0.25, after).dispose();
      assert.deepEqual(after.getState(), r.getState());
    });
    assert.equal(tf.memory().numTensors, before);
  });
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`dropout: the mask of dropoutMask on the same draws; its gradient is that mask (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const x = rand([37, 11], 4);
      const dy = rand([37, 11], 5);
      const mask = dropoutMask([37, 11], 0.3, new Rng(9));
      const f = (x: tf.Tensor) => dropout(x, 0.3, new Rng(9));
      const { value, grad } = tf.valueAndGrad(f)(x, dy);
      assert.deepEqual(value.dataSync(), tf.mul(x, mask).dataSync());
      assert.deepEqual(grad.dataSync(), tf.mul(dy, mask).dataSync());
      const dropped = mask.dataSync().filter((v) => v === 0).length;
      assert.ok(dropped > 60 && dropped < 180, `${dropped} of 407 dropped at p = 0.3`);
    });
    assert.equal(tf.memory().numTensors, before);
  });
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`concatRows: value and gradient of tf.concat on axis 0 (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    const a = rand([7, 5], 11), b = rand([1, 5], 12);
    const exact = (f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, g: typeof f) =>
      tf.tidy(() => {
        const w = rand([8, 5], 99);
        const gf = tf.grads((x, y) => tf.sum(tf.mul(f(x, y), w)))([a, b]);
        const gn = tf.grads((x, y) => tf.sum(tf.mul(g(x, y), w)))([a, b]);
        assert.deepEqual(f(a, b).dataSync(), g(a, b).dataSync());
        gf.forEach((t, i) => assert.deepEqual(t.dataSync(), gn[i].dataSync(), `gradient ${i}`));
      });
    exact(
      (x, y) => concatRows(x as tf.Tensor2D, y as tf.Tensor2D),
      (x, y) => tf.concat([x, y], 0),
    );
    tf.tidy(() =>
      assert.throws(() => concatRows(a as tf.Tensor2D, rand([2, 4], 1) as tf.Tensor2D), TypeError)
    );
    tf.dispose([a, b]);
    assert.equal(tf.memory().numTensors, before);
  });
}

Deno.test("gatherRows refuses an out-of-range row on wasm", async () => {
  await initBackend({ backend: "wasm" });
  const x = tf.zeros([3, 2]) as tf.Tensor2D;
  assert.throws(() => gatherRows(x, new Int32Array([0, 3])), RangeError);
  x.dispose();
});

Deno.test("dropout masks on wasm are drawn in wasm: same values and generator state as the JS loop", async () => {
  await initBackend({ backend: "wasm" });
  const before = tf.memory().numTensors;
  for (const [n, p] of [[1, 0.5], [4099, 0.1], [100_003, 0.9], [64, 0]] as const) {
    const a = new Rng(n).fork("drop"), b = new Rng(n).fork("drop");
    let usedWasm = false;
    const t = filledTensor([n], (out, memory) => {
      assert.ok(memory !== null, "wasm exposes its memory");
      usedWasm = fillThresholdWasm(memory, out, a, p * 2 ** 32, 0, 1 / (1 - p));
    });
    assert.ok(usedWasm, `n ${n}: the wasm filler ran`);
    const want = new Float32Array(n);
    b.fillThreshold(want, p * 2 ** 32, 0, 1 / (1 - p));
    assert.deepEqual(t.dataSync(), want, `n ${n}, p ${p}`);
    assert.deepEqual(a.getState(), b.getState());
    t.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});
