import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { conv3x3, depthToSpace2, linear, spaceToDepth2 } from "../../lib/tokenizer/_layers.ts";

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`conv3x3's custom gradients equal tf.conv2d's autodiff on cpu (run on ${backend})`, async () => {
    // the reference: tf.conv2d's own gradients on the cpu backend
    await initBackend({ backend: "cpu" });
    const x = tf.randomNormal([2, 6, 5, 3], 0, 1, "float32", 1) as tf.Tensor4D;
    const w = tf.randomNormal([3, 3, 3, 4], 0, 1, "float32", 2) as tf.Tensor4D;
    const bias = tf.randomNormal([4], 0, 1, "float32", 3) as tf.Tensor1D;
    const dy = tf.randomNormal([2, 6, 5, 4], 0, 1, "float32", 4);
    const ref = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(tf.add(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 1, "same"), bias), dy));
    const [rx, rw] = tf.grads(ref)([x, w]);
    const refY = tf.add(tf.conv2d(x, w, 1, "same"), bias);
    const host = await Promise.all([x, w, bias, dy, rx, rw, refY].map((t) => t.array()));
    await initBackend({ backend });
    const [X, Wt, Bt, DY, RX, RW, RY] = host.map((a) => tf.tensor(a as number[]));
    const mine = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(conv3x3(xx as tf.Tensor4D, ww as tf.Tensor4D, Bt as tf.Tensor1D), DY));
    const [gx, gw] = tf.grads(mine)([X, Wt]);
    const y = conv3x3(X as tf.Tensor4D, Wt as tf.Tensor4D, Bt as tf.Tensor1D);
    assert.ok(maxAbsDiff(y, RY) < 1e-4, "forward");
    assert.ok(maxAbsDiff(gx, RX) < 1e-4, "dx");
    assert.ok(maxAbsDiff(gw, RW) < 1e-4, "dw");
    tf.dispose([X, Wt, Bt, DY, RX, RW, RY, gx, gw, y]);
    await initBackend({ backend: "cpu" });
    tf.dispose([x, w, bias, dy, rx, rw, refY]);
  });

  Deno.test(`linear's explicit-transpose gradients equal matMul's (${backend})`, async () => {
    await initBackend({ backend });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      for (const [n, i, o] of [[7, 3, 5], [4, 6, 2]]) {
        const x = tf.randomNormal([n, i], 0, 1, "float32", 5);
        const w = tf.randomNormal([i, o], 0, 1, "float32", 6);
        const dy = tf.randomNormal([n, o], 0, 1, "float32", 7);
        const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a, b), dy));
        const g = (a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(linear(a as tf.Tensor2D, b as tf.Tensor2D), dy));
        const [ax, aw] = tf.grads(f)([x, w]);
        const [bx, bw] = tf.grads(g)([x, w]);
        assert.ok(maxAbsDiff(ax, bx) < 1e-4);
        assert.ok(maxAbsDiff(aw, bw) < 1e-4);
      }
    });
    assert.equal(tf.memory().numTensors, before);
  });
}

Deno.test("spaceToDepth2 gathers 2x2 patches as (dy, dx, c) and depthToSpace2 inverts it", async () => {
  await initBackend({ backend: "cpu" });
  tf.tidy(() => {
    const x = tf.tensor4d(Array.from({ length: 2 * 4 * 6 * 3 }, (_, i) => i), [2, 4, 6, 3]);
    const s = spaceToDepth2(x);
    assert.deepEqual(s.shape, [2, 2, 3, 12]);
    const xa = x.arraySync(), sa = s.arraySync();
    // output (b, Y, X) channel (dy*2 + dx)*C + c is input (b, 2Y+dy, 2X+dx, c)
    for (
      const [b, Y, X, dy, dx, c] of [[0, 0, 0, 0, 0, 0], [1, 1, 2, 1, 0, 2], [0, 1, 1, 1, 1, 1]]
    ) {
      assert.equal(sa[b][Y][X][(dy * 2 + dx) * 3 + c], xa[b][2 * Y + dy][2 * X + dx][c]);
    }
    assert.equal(maxAbsDiff(depthToSpace2(s), x), 0);
  });
});
