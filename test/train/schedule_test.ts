import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import {
  clipByGlobalNorm,
  cosineLr,
  globalNorm,
  scaleLr,
  scheduleEpoch,
  topKCorrect,
} from "@lib/train";

await initBackend({ backend: "cpu" });

const close = (a: number, b: number, tol = 1e-15) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

Deno.test("scaleLr: linear blr*batch/256 (MTM) and sqrt blr*sqrt(batch)/8 (fine-tuning)", () => {
  close(scaleLr(1.5e-4, 4096, "linear"), 2.4e-3);
  close(scaleLr(1.5e-4, 64 * 4, "linear"), 1.5e-4);
  close(scaleLr(1e-3, 1024, "sqrt"), 4e-3);
  close(scaleLr(1e-3, 256, "sqrt"), 2e-3);
  assert.equal(scaleLr(3e-4, 7, "none"), 3e-4);
  assert.throws(() => scaleLr(1e-3, 0, "linear"), { name: "RangeError" });
  assert.throws(() => scaleLr(1e-3, 8, "cube" as "linear"), {
    name: "RangeError",
    message: 'Unknown lr scaling rule "cube": expected linear, sqrt or none',
  });
});

Deno.test("cosineLr: the MTM recipe (40 of 400 epochs warmup) at known points", () => {
  const o = { lr: 2.4e-3, minLr: 0, warmupEpochs: 40, epochs: 400 };
  assert.equal(cosineLr(0, o), 0);
  close(cosineLr(20, o), 1.2e-3);
  close(cosineLr(40, o), 2.4e-3);
  close(cosineLr(220, o), 1.2e-3); // half way through the cosine
  close(cosineLr(400, o), 0, 1e-18);
  // per iteration: epoch 10, iteration 250 of 1000 -> 10.25
  close(cosineLr(scheduleEpoch(10, 250, 1000), o), 2.4e-3 * 10.25 / 40);
});

Deno.test("cosineLr: the fine-tuning recipe (5 of 100, min 1e-6) at known points", () => {
  const o = { lr: 4e-3, minLr: 1e-6, warmupEpochs: 5, epochs: 100 };
  close(cosineLr(2.5, o), 2e-3);
  close(cosineLr(52.5, o), 1e-6 + (4e-3 - 1e-6) * 0.5);
  close(cosineLr(5 + 95 / 3, o), 1e-6 + (4e-3 - 1e-6) * 0.75);
  close(cosineLr(100, o), 1e-6);
  assert.throws(() => cosineLr(-1, o), { name: "RangeError" });
  assert.throws(() => cosineLr(6, { lr: 1, warmupEpochs: 5, epochs: 5 }), { name: "RangeError" });
});

Deno.test("clipByGlobalNorm scales by maxNorm/(norm+1e-6) only when above, as torch", () => {
  const before = tf.memory().numTensors;
  const a = tf.tensor1d([3, 0]), b = tf.tensor2d([[0, 4]]);
  const grads = new Map<string, tf.Tensor>([["a", a], ["b", b]]);
  const n = globalNorm(grads.values());
  close(n.dataSync()[0], 5, 1e-7);
  n.dispose();
  const c = clipByGlobalNorm(grads, 1);
  close(c.norm.dataSync()[0], 5, 1e-7);
  const coef = 1 / (5 + 1e-6);
  close(c.grads.get("a")!.dataSync()[0], 3 * coef, 1e-7);
  close(c.grads.get("b")!.dataSync()[1], 4 * coef, 1e-7);
  tf.dispose([c.norm, ...c.grads.values()]);
  const d = clipByGlobalNorm(grads, 10); // below the limit: unchanged
  assert.deepEqual(Array.from(d.grads.get("a")!.dataSync()), [3, 0]);
  tf.dispose([d.norm, ...d.grads.values(), a, b]);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => clipByGlobalNorm(grads, 0), { name: "RangeError" });
});

Deno.test("topKCorrect counts labels among the k highest logits", async () => {
  const before = tf.memory().numTensors;
  const logits = tf.tensor2d([
    [0.1, 0.5, 0.2, 0.9, 0.0, -1],
    [3, 2, 1, 0, -1, -2],
    [0, 0.1, 0.2, 0.3, 0.4, 0.5],
  ]);
  assert.deepEqual(await topKCorrect(logits, [3, 2, 0], [1, 3, 5]), [1, 2, 2]);
  await assert.rejects(() => topKCorrect(logits, [0, 1], [1]), { name: "TypeError" });
  await assert.rejects(() => topKCorrect(logits, [0, 1, 2], [7]), {
    name: "RangeError",
    message: "Cannot compute top-7 accuracy over 6 classes",
  });
  logits.dispose();
  assert.equal(tf.memory().numTensors, before);
});
