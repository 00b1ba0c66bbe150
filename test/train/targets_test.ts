import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "@lib/backend";
import { toInt32 } from "@lib/io";
import { Fixture } from "@lib/parity";
import { mixupTargets, smoothedOneHot } from "@lib/train";
import { PARITY_DIR } from "../_support/fixtures.ts";

await initBackend({ backend: "cpu" });

Deno.test("mixupTargets equals cls_io soft_targets (lam 0.7, smoothing 0.1) bit for bit", async () => {
  const fx = await Fixture.open(PARITY_DIR);
  const labels = toInt32(await fx.tensor("cls_io.safetensors", "labels"));
  const ref = await fx.tensor("cls_io.safetensors", "soft_targets");
  const t = mixupTargets(labels, ref.shape[1], {
    lam: fx.get<number>("cls.mixup_lam"),
    smoothing: fx.get<number>("cls.soft_target_smoothing"),
  });
  assert.deepEqual(t.shape, ref.shape);
  assert.deepEqual(t.dataSync(), ref.data);
  t.dispose();
});

Deno.test("smoothedOneHot: off s/C, on 1-s+s/C; labels are range-checked", () => {
  const before = tf.memory().numTensors;
  const y = smoothedOneHot([2, 0], 4, 0.1);
  assert.deepEqual(Array.from(y), [
    ...[0.025, 0.025, 0.925, 0.025].map(Math.fround),
    ...[0.925, 0.025, 0.025, 0.025].map(Math.fround),
  ]);
  assert.throws(() => smoothedOneHot([4], 4), {
    name: "RangeError",
    message: "Label 4 of sample 0 is outside 0..3",
  });
  assert.throws(() => mixupTargets([0], 2, { lam: 1.5 }), { name: "RangeError" });
  assert.equal(tf.memory().numTensors, before);
});
